//! The route manifest: every route, declared once, with what it needs (ARCHITECTURE §2).
//!
//! The router is built from this table and nothing else, and the tenant guard reads each
//! route's entry to authenticate, authorize and gate it. The cross-tenant test matrix walks
//! the same table, so a route added here joins the matrix with no new test.

use std::convert::Infallible;

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};
use rampart_core::{Permission, Plan};

use crate::routes::{api_keys, audit_events, auth, contacts, credentials, health, members, pages};
use crate::state::AppState;

/// Who may reach a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Anyone (health checks, later sign-in).
    Public,
    /// A principal with a membership in the `{ws}` path segment's workspace.
    Tenant,
    /// The platform operator.
    Platform,
    /// Any signed-in person (a fully signed-in session; API keys are not people).
    User,
}

/// Which rate-limit bucket a route draws from; the rates are configuration
/// (`[rate_limits]`), the guard applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Liveness, readiness and the status page: not limited.
    Health,
    /// The default API bucket, per key and per IP.
    Api,
    /// Sign-in, per IP.
    SignIn,
    /// Public form submissions, per IP and per email.
    PublicForm,
    /// Chat-like routes, per key.
    Chat,
    /// Heartbeat routes, per key.
    Heartbeat,
}

/// What the `{id}` path segment names, so tests and tools can fill it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// No object id in the path.
    None,
    /// A contact (`ct_…`).
    Contact,
    /// An API key (`key_…`).
    ApiKey,
    /// A workspace membership (`mem_…`).
    Member,
    /// One of the caller's sessions (`ses_…`).
    Session,
    /// An invitation to a workspace (`inv_…`).
    Invitation,
}

/// One route's declaration.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// HTTP method.
    pub method: Method,
    /// Path template in axum syntax (`/v1/workspaces/{ws}/contacts/{id}`).
    pub path: &'static str,
    /// Who may call it.
    pub scope: Scope,
    /// The permission the caller's role must hold (tenant routes).
    pub permission: Option<Permission>,
    /// Whether it changes state (opens a write transaction; audited).
    pub mutates: bool,
    /// Whether it destroys data (agents must confirm).
    pub destructive: bool,
    /// The lowest plan allowed.
    pub min_plan: Plan,
    /// Rate-limit bucket.
    pub bucket: Bucket,
    /// Audit action name, e.g. `contact.create`.
    pub action: &'static str,
    /// What `{id}` refers to.
    pub target: Target,
    /// A valid request body, used by generated tests and documentation.
    pub example_body: Option<&'static str>,
    /// Origins allowed to frame the response (`frame-ancestors`); empty means framing is refused.
    pub frame_ancestors: &'static [&'static str],
}

/// Largest request body a workspace route accepts.
pub const TENANT_BODY_LIMIT: usize = 1024 * 1024;
/// Largest request body a public or signed-in person's route (sign-in and account forms)
/// accepts: none of them needs more, and they are the routes anyone can reach.
pub const ACCOUNT_BODY_LIMIT: usize = 64 * 1024;

impl RouteSpec {
    /// The largest body this route accepts; the guard holds every request to it.
    pub fn body_limit(&self) -> usize {
        match self.scope {
            Scope::Tenant => TENANT_BODY_LIMIT,
            Scope::Public | Scope::User | Scope::Platform => ACCOUNT_BODY_LIMIT,
        }
    }
}

/// A manifest entry together with the handler that serves it.
pub struct Route {
    /// The declaration.
    pub spec: &'static RouteSpec,
    router: MethodRouter<AppState>,
}

fn route<H, T>(spec: &'static RouteSpec, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(spec.method.clone()).unwrap_or(MethodFilter::GET);
    Route {
        spec,
        router: on(filter, handler),
    }
}

/// Builds each entry's `pub static` declaration and [`routes`], which pairs it with its
/// handler, from one table (below) whose rows name every field.
macro_rules! manifest {
    (@perm -) => { None };
    (@perm $perm:ident) => { Some(Permission::$perm) };
    ($(
        $name:ident {
            route: $method:ident $path:literal,
            scope: $scope:ident, permission: $perm:tt, plan: $plan:ident, bucket: $bucket:ident,
            action: $action:literal, mutates: $mutates:literal, destructive: $destructive:literal, target: $target:ident,
            example: $body:expr,
            handler: $handler:path,
        }
    )*) => {
        $(
            /// Manifest entry for the route.
            pub static $name: RouteSpec = RouteSpec {
                method: Method::$method,
                path: $path,
                scope: Scope::$scope,
                permission: manifest!(@perm $perm),
                mutates: $mutates,
                destructive: $destructive,
                min_plan: Plan::$plan,
                bucket: Bucket::$bucket,
                action: $action,
                target: Target::$target,
                example_body: $body,
                frame_ancestors: &[],
            };
        )*

        /// Every route with its handler. The order is the order of the documentation.
        pub fn routes() -> Vec<Route> {
            vec![$(route(&$name, $handler)),*]
        }
    };
}

// The manifest. One row per route: its method and path, who may call it (`scope`), the
// permission its caller's role must hold (`-`: none, for public and personal routes), the
// lowest plan, the rate-limit bucket, the ledger's action name, whether it changes state and
// whether it destroys data (agents must confirm those), what `{id}` names, a valid example
// body (tests and documentation send it), and the handler.
#[rustfmt::skip]
manifest! {
    HOME {
        route: GET "/",
        scope: Public, permission: -, plan: Free, bucket: Health,
        action: "page.home", mutates: false, destructive: false, target: None,
        example: None,
        handler: pages::home,
    }
    HEALTHZ {
        route: GET "/healthz",
        scope: Public, permission: -, plan: Free, bucket: Health,
        action: "health.live", mutates: false, destructive: false, target: None,
        example: None,
        handler: health::live,
    }
    READYZ {
        route: GET "/readyz",
        scope: Public, permission: -, plan: Free, bucket: Health,
        action: "health.ready", mutates: false, destructive: false, target: None,
        example: None,
        handler: health::ready,
    }
    CONTACTS_LIST {
        route: GET "/v1/workspaces/{ws}/contacts",
        scope: Tenant, permission: ContactsRead, plan: Free, bucket: Api,
        action: "contact.list", mutates: false, destructive: false, target: None,
        example: None,
        handler: contacts::list,
    }
    CONTACTS_CREATE {
        route: POST "/v1/workspaces/{ws}/contacts",
        scope: Tenant, permission: ContactsWrite, plan: Free, bucket: Api,
        action: "contact.create", mutates: true, destructive: false, target: None,
        example: Some(r#"{"name":"Matrix Probe","email":"probe@example.com","tags":["probe"]}"#),
        handler: contacts::create,
    }
    CONTACTS_GET {
        route: GET "/v1/workspaces/{ws}/contacts/{id}",
        scope: Tenant, permission: ContactsRead, plan: Free, bucket: Api,
        action: "contact.get", mutates: false, destructive: false, target: Contact,
        example: None,
        handler: contacts::get,
    }
    CONTACTS_UPDATE {
        route: PATCH "/v1/workspaces/{ws}/contacts/{id}",
        scope: Tenant, permission: ContactsWrite, plan: Free, bucket: Api,
        action: "contact.update", mutates: true, destructive: false, target: Contact,
        example: Some(r#"{"name":"Overwritten","tags":["pwned"]}"#),
        handler: contacts::update,
    }
    CONTACTS_DELETE {
        route: DELETE "/v1/workspaces/{ws}/contacts/{id}",
        scope: Tenant, permission: ContactsWrite, plan: Free, bucket: Api,
        action: "contact.delete", mutates: true, destructive: true, target: Contact,
        example: None,
        handler: contacts::delete,
    }
    CONTACT_VERSIONS {
        route: GET "/v1/workspaces/{ws}/contacts/{id}/versions",
        scope: Tenant, permission: ContactsRead, plan: Free, bucket: Api,
        action: "contact.versions", mutates: false, destructive: false, target: Contact,
        example: None,
        handler: contacts::versions,
    }
    API_KEYS_LIST {
        route: GET "/v1/workspaces/{ws}/api-keys",
        scope: Tenant, permission: KeysManage, plan: Free, bucket: Api,
        action: "api_key.list", mutates: false, destructive: false, target: None,
        example: None,
        handler: api_keys::list,
    }
    API_KEYS_CREATE {
        route: POST "/v1/workspaces/{ws}/api-keys",
        scope: Tenant, permission: KeysManage, plan: Free, bucket: Api,
        action: "api_key.create", mutates: true, destructive: false, target: None,
        example: Some(r#"{"name":"matrix probe","role":"viewer"}"#),
        handler: api_keys::create,
    }
    API_KEYS_REVOKE {
        route: DELETE "/v1/workspaces/{ws}/api-keys/{id}",
        scope: Tenant, permission: KeysManage, plan: Free, bucket: Api,
        action: "api_key.revoke", mutates: true, destructive: true, target: ApiKey,
        example: None,
        handler: api_keys::revoke,
    }
    CREDENTIALS_PUT {
        route: PUT "/v1/workspaces/{ws}/credentials/{provider}",
        scope: Tenant, permission: CredentialsManage, plan: Free, bucket: Api,
        action: "credential.set", mutates: true, destructive: false, target: None,
        example: Some(r#"{"secret":"matrix-probe-secret-0000"}"#),
        handler: credentials::put,
    }
    CREDENTIALS_GET {
        route: GET "/v1/workspaces/{ws}/credentials/{provider}",
        scope: Tenant, permission: CredentialsManage, plan: Free, bucket: Api,
        action: "credential.get", mutates: false, destructive: false, target: None,
        example: None,
        handler: credentials::get,
    }
    CREDENTIALS_DELETE {
        route: DELETE "/v1/workspaces/{ws}/credentials/{provider}",
        scope: Tenant, permission: CredentialsManage, plan: Free, bucket: Api,
        action: "credential.delete", mutates: true, destructive: true, target: None,
        example: None,
        handler: credentials::delete,
    }
    AUDIT_EVENTS_LIST {
        route: GET "/v1/workspaces/{ws}/audit-events",
        scope: Tenant, permission: AuditRead, plan: Starter, bucket: Api,
        action: "audit_event.list", mutates: false, destructive: false, target: None,
        example: None,
        handler: audit_events::list,
    }
    MEMBERS_LIST {
        route: GET "/v1/workspaces/{ws}/members",
        scope: Tenant, permission: WorkspaceRead, plan: Free, bucket: Api,
        action: "member.list", mutates: false, destructive: false, target: None,
        example: None,
        handler: members::list,
    }
    MEMBERS_UPDATE {
        route: PATCH "/v1/workspaces/{ws}/members/{id}",
        scope: Tenant, permission: MembersManage, plan: Free, bucket: Api,
        action: "member.update", mutates: true, destructive: false, target: Member,
        example: Some(r#"{"role":"viewer"}"#),
        handler: members::update,
    }
    MEMBERS_REMOVE {
        route: DELETE "/v1/workspaces/{ws}/members/{id}",
        scope: Tenant, permission: MembersManage, plan: Free, bucket: Api,
        action: "member.remove", mutates: true, destructive: true, target: Member,
        example: None,
        handler: members::remove,
    }
    MEMBERS_END_SESSIONS {
        route: DELETE "/v1/workspaces/{ws}/members/{id}/sessions",
        scope: Tenant, permission: MembersManage, plan: Free, bucket: Api,
        action: "member.sessions_end", mutates: true, destructive: true, target: Member,
        example: None,
        handler: members::end_sessions,
    }
    INVITATIONS_LIST {
        route: GET "/v1/workspaces/{ws}/invitations",
        scope: Tenant, permission: MembersManage, plan: Free, bucket: Api,
        action: "invitation.list", mutates: false, destructive: false, target: None,
        example: None,
        handler: members::invitations,
    }
    INVITATIONS_CREATE {
        route: POST "/v1/workspaces/{ws}/invitations",
        scope: Tenant, permission: MembersManage, plan: Free, bucket: Api,
        action: "invitation.create", mutates: true, destructive: false, target: None,
        example: Some(r#"{"email":"matrix-invitee@example.com","role":"viewer"}"#),
        handler: members::invite,
    }
    INVITATIONS_REVOKE {
        route: DELETE "/v1/workspaces/{ws}/invitations/{id}",
        scope: Tenant, permission: MembersManage, plan: Free, bucket: Api,
        action: "invitation.revoke", mutates: true, destructive: true, target: Invitation,
        example: None,
        handler: members::revoke_invitation,
    }
    AUTH_SIGNUP {
        route: POST "/v1/auth/signup",
        scope: Public, permission: -, plan: Free, bucket: SignIn,
        action: "auth.signup", mutates: true, destructive: false, target: None,
        example: Some(r#"{"email":"probe@example.com","password":"Probe-Password-9","name":"Probe Person","org_name":"Probe Org"}"#),
        handler: auth::signup,
    }
    AUTH_CONFIRM {
        route: POST "/v1/auth/confirm",
        scope: Public, permission: -, plan: Free, bucket: SignIn,
        action: "auth.confirm", mutates: true, destructive: false, target: None,
        example: Some(r#"{"token":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#),
        handler: auth::confirm,
    }
    AUTH_SIGNIN {
        route: POST "/v1/auth/signin",
        scope: Public, permission: -, plan: Free, bucket: SignIn,
        action: "auth.signin", mutates: true, destructive: false, target: None,
        example: Some(r#"{"email":"probe@example.com","password":"Probe-Password-9"}"#),
        handler: auth::signin,
    }
    AUTH_SIGNIN_2FA {
        route: POST "/v1/auth/signin/2fa",
        scope: Public, permission: -, plan: Free, bucket: SignIn,
        action: "auth.signin_2fa", mutates: true, destructive: false, target: None,
        example: Some(r#"{"code":"123456"}"#),
        handler: auth::signin_second_factor,
    }
    AUTH_RESET_REQUEST {
        route: POST "/v1/auth/password/reset",
        scope: Public, permission: -, plan: Free, bucket: SignIn,
        action: "auth.password_reset_request", mutates: true, destructive: false, target: None,
        example: Some(r#"{"email":"probe@example.com"}"#),
        handler: auth::request_reset,
    }
    AUTH_RESET_COMPLETE {
        route: POST "/v1/auth/password/reset/complete",
        scope: Public, permission: -, plan: Free, bucket: SignIn,
        action: "auth.password_reset", mutates: true, destructive: false, target: None,
        example: Some(r#"{"token":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","password":"Probe-Password-9"}"#),
        handler: auth::complete_reset,
    }
    AUTH_MAGIC_REQUEST {
        route: POST "/v1/auth/magic-link",
        scope: Public, permission: -, plan: Free, bucket: SignIn,
        action: "auth.magic_link_request", mutates: true, destructive: false, target: None,
        example: Some(r#"{"email":"probe@example.com"}"#),
        handler: auth::request_magic_link,
    }
    AUTH_MAGIC_CONSUME {
        route: POST "/v1/auth/magic-link/consume",
        scope: Public, permission: -, plan: Free, bucket: SignIn,
        action: "auth.magic_link", mutates: true, destructive: false, target: None,
        example: Some(r#"{"token":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#),
        handler: auth::consume_magic_link,
    }
    AUTH_INVITATION_ACCEPT {
        route: POST "/v1/auth/invitations/accept",
        scope: Public, permission: -, plan: Free, bucket: SignIn,
        action: "member.accept", mutates: true, destructive: false, target: None,
        example: Some(r#"{"token":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","password":"Probe-Password-9"}"#),
        handler: auth::accept_invitation,
    }
    AUTH_ME {
        route: GET "/v1/auth/me",
        scope: User, permission: -, plan: Free, bucket: Api,
        action: "auth.me", mutates: false, destructive: false, target: None,
        example: None,
        handler: auth::me,
    }
    AUTH_SIGNOUT {
        route: POST "/v1/auth/signout",
        scope: User, permission: -, plan: Free, bucket: Api,
        action: "auth.signout", mutates: true, destructive: false, target: None,
        example: Some(r#"{}"#),
        handler: auth::signout,
    }
    AUTH_SESSIONS {
        route: GET "/v1/auth/sessions",
        scope: User, permission: -, plan: Free, bucket: Api,
        action: "auth.session_list", mutates: false, destructive: false, target: None,
        example: None,
        handler: auth::sessions,
    }
    AUTH_SESSION_END {
        route: DELETE "/v1/auth/sessions/{id}",
        scope: User, permission: -, plan: Free, bucket: Api,
        action: "auth.session_end", mutates: true, destructive: true, target: Session,
        example: None,
        handler: auth::end_session,
    }
    AUTH_PASSWORD_CHANGE {
        route: POST "/v1/auth/password",
        scope: User, permission: -, plan: Free, bucket: SignIn,
        action: "auth.password_change", mutates: true, destructive: false, target: None,
        example: Some(r#"{"current_password":"Probe-Password-9","new_password":"Probe-Password-10"}"#),
        handler: auth::change_password,
    }
    AUTH_TOTP_ENROLL {
        route: POST "/v1/auth/totp/enroll",
        scope: User, permission: -, plan: Free, bucket: SignIn,
        action: "auth.totp_enroll", mutates: true, destructive: false, target: None,
        example: Some(r#"{"password":"Probe-Password-9"}"#),
        handler: auth::totp_enroll,
    }
    AUTH_TOTP_CONFIRM {
        route: POST "/v1/auth/totp/confirm",
        scope: User, permission: -, plan: Free, bucket: SignIn,
        action: "auth.totp_enable", mutates: true, destructive: false, target: None,
        example: Some(r#"{"code":"123456"}"#),
        handler: auth::totp_confirm,
    }
    AUTH_BACKUP_CODES {
        route: POST "/v1/auth/totp/backup-codes",
        scope: User, permission: -, plan: Free, bucket: SignIn,
        action: "auth.backup_codes_regenerate", mutates: true, destructive: false, target: None,
        example: Some(r#"{"password":"Probe-Password-9"}"#),
        handler: auth::regenerate_backup_codes,
    }
    AUTH_TOTP_DISABLE {
        route: DELETE "/v1/auth/totp",
        scope: User, permission: -, plan: Free, bucket: SignIn,
        action: "auth.totp_disable", mutates: true, destructive: true, target: None,
        example: None,
        handler: auth::totp_disable,
    }
}

/// Every declaration, without handlers.
pub fn specs() -> Vec<&'static RouteSpec> {
    routes().into_iter().map(|r| r.spec).collect()
}

/// Builds the router from the manifest: each route is wrapped in the tenant guard, which
/// reads that route's entry. No route can be registered any other way.
pub fn router(state: AppState) -> Router<AppState> {
    let mut router = Router::new();
    for Route {
        spec,
        router: method_router,
    } in routes()
    {
        // One layer, holding the entry in its state: each layer here is boxed around the
        // route and cloned on every request.
        let guarded = method_router.layer::<_, Infallible>(axum::middleware::from_fn_with_state(
            crate::http::guard::Guarded {
                state: state.clone(),
                spec,
            },
            crate::http::guard::guard,
        ));
        router = router.route(spec.path, guarded);
    }
    router
}

/// A router that hands every request to `service` (the manifest's router inside the outer
/// layers) and has no route of its own: what `rampart serve` and the tests serve.
pub fn serve_only<T>(service: T) -> Router
where
    T: tower::Service<axum::extract::Request, Error = Infallible> + Clone + Send + Sync + 'static,
    T::Response: axum::response::IntoResponse,
    T::Future: Send + 'static,
{
    Router::new().fallback_service(service)
}
