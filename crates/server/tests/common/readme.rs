//! What README.md promises about permissions, written out by hand: its route table (which
//! permission each tenant route needs) and its "Roles" paragraph (which permissions each role
//! holds). Tests take their expected statuses from here, never from the server's own table
//! (`rampart_core::Role::can`, the manifest), so a wrong entry in the server's table is a
//! failing test rather than a changed expectation. Edit this only when the README changes.

use rampart_core::Role;

/// README "HTTP API" table: `(method, path, permission)` for every route under
/// `/v1/workspaces/{ws}`, in the README's order.
pub const ROUTE_PERMISSIONS: &[(&str, &str, &str)] = &[
    ("GET", "/v1/workspaces/{ws}/contacts", "contacts:read"),
    ("POST", "/v1/workspaces/{ws}/contacts", "contacts:write"),
    ("GET", "/v1/workspaces/{ws}/contacts/{id}", "contacts:read"),
    (
        "PATCH",
        "/v1/workspaces/{ws}/contacts/{id}",
        "contacts:write",
    ),
    (
        "DELETE",
        "/v1/workspaces/{ws}/contacts/{id}",
        "contacts:write",
    ),
    ("GET", "/v1/workspaces/{ws}/api-keys", "keys:manage"),
    ("POST", "/v1/workspaces/{ws}/api-keys", "keys:manage"),
    ("DELETE", "/v1/workspaces/{ws}/api-keys/{id}", "keys:manage"),
    (
        "GET",
        "/v1/workspaces/{ws}/contacts/{id}/versions",
        "contacts:read",
    ),
    ("GET", "/v1/workspaces/{ws}/audit-events", "audit:read"),
    (
        "PUT",
        "/v1/workspaces/{ws}/credentials/{provider}",
        "credentials:manage",
    ),
    (
        "GET",
        "/v1/workspaces/{ws}/credentials/{provider}",
        "credentials:manage",
    ),
    (
        "DELETE",
        "/v1/workspaces/{ws}/credentials/{provider}",
        "credentials:manage",
    ),
    ("GET", "/v1/workspaces/{ws}/members", "workspace:read"),
    (
        "PATCH",
        "/v1/workspaces/{ws}/members/{id}",
        "members:manage",
    ),
    (
        "DELETE",
        "/v1/workspaces/{ws}/members/{id}",
        "members:manage",
    ),
    (
        "DELETE",
        "/v1/workspaces/{ws}/members/{id}/sessions",
        "members:manage",
    ),
    ("GET", "/v1/workspaces/{ws}/invitations", "members:manage"),
    ("POST", "/v1/workspaces/{ws}/invitations", "members:manage"),
    (
        "DELETE",
        "/v1/workspaces/{ws}/invitations/{id}",
        "members:manage",
    ),
];

/// README "Roles": `owner` (everything), `admin` (everything but billing management; both
/// manage provider credentials), `member` (writes contacts and campaigns), `approver` (reads,
/// approves campaigns), `billing` (billing only), `sales` (writes contacts, reads campaigns),
/// `viewer` (reads). "Reads" is read here as the workspace, contacts and campaigns (the audit
/// ledger and billing are named apart); a role that writes something reads it too. The README
/// does not say who holds `workspace:read` (the member list): every role is taken to, as a
/// member sees the workspace they are in.
pub fn role_permissions(role: Role) -> &'static [&'static str] {
    match role {
        Role::Owner => &[
            "workspace:read",
            "contacts:read",
            "contacts:write",
            "campaigns:read",
            "campaigns:write",
            "campaigns:approve",
            "billing:read",
            "billing:manage",
            "audit:read",
            "members:manage",
            "keys:manage",
            "credentials:manage",
        ],
        Role::Admin => &[
            "workspace:read",
            "contacts:read",
            "contacts:write",
            "campaigns:read",
            "campaigns:write",
            "campaigns:approve",
            "billing:read",
            "audit:read",
            "members:manage",
            "keys:manage",
            "credentials:manage",
        ],
        Role::Member => &[
            "workspace:read",
            "contacts:read",
            "contacts:write",
            "campaigns:read",
            "campaigns:write",
        ],
        Role::Approver => &[
            "workspace:read",
            "contacts:read",
            "campaigns:read",
            "campaigns:approve",
        ],
        Role::Billing => &["workspace:read", "billing:read", "billing:manage"],
        Role::Sales => &[
            "workspace:read",
            "contacts:read",
            "contacts:write",
            "campaigns:read",
        ],
        Role::Viewer => &["workspace:read", "contacts:read", "campaigns:read"],
    }
}

/// Whether the README gives `role` the permission named `permission` (wire name).
pub fn can(role: Role, permission: &str) -> bool {
    role_permissions(role).contains(&permission)
}

/// The permission the README's route table names for `method path`; panics for a tenant
/// route the README does not list (the README must document every route).
pub fn route_permission(method: &str, path: &str) -> &'static str {
    ROUTE_PERMISSIONS
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, perm)| *perm)
        .unwrap_or_else(|| panic!("README's route table has no {method} {path}"))
}
