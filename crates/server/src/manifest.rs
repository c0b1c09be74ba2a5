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

macro_rules! spec {
    (@plan) => { Plan::Free };
    (@plan $plan:ident) => { Plan::$plan };
    ($name:ident: $method:ident $path:literal, $scope:ident, $perm:expr, mutates = $mutates:literal,
          destructive = $destructive:literal, $bucket:ident, $action:literal, $target:ident, $body:expr
     $(, plan = $plan:ident)?) => {
        /// Manifest entry for the route.
        pub static $name: RouteSpec = RouteSpec {
            method: Method::$method,
            path: $path,
            scope: Scope::$scope,
            permission: $perm,
            mutates: $mutates,
            destructive: $destructive,
                                    min_plan: spec!(@plan $($plan)?),
            bucket: Bucket::$bucket,
            action: $action,
            target: Target::$target,
            example_body: $body,
            frame_ancestors: &[],
        };
    };
}

use Permission as P;

spec!(HOME: GET "/", Public, None, mutates = false, destructive = false, Health, "page.home", None, None);
spec!(HEALTHZ: GET "/healthz", Public, None, mutates = false, destructive = false, Health, "health.live", None, None);
spec!(READYZ: GET "/readyz", Public, None, mutates = false, destructive = false, Health, "health.ready", None, None);
spec!(CONTACTS_LIST: GET "/v1/workspaces/{ws}/contacts", Tenant, Some(P::ContactsRead), mutates = false, destructive = false, Api, "contact.list", None, None);
spec!(CONTACTS_CREATE: POST "/v1/workspaces/{ws}/contacts", Tenant, Some(P::ContactsWrite), mutates = true, destructive = false, Api, "contact.create", None,
    Some(r#"{"name":"Matrix Probe","email":"probe@example.com","tags":["probe"]}"#));
spec!(CONTACTS_GET: GET "/v1/workspaces/{ws}/contacts/{id}", Tenant, Some(P::ContactsRead), mutates = false, destructive = false, Api, "contact.get", Contact, None);
spec!(CONTACTS_UPDATE: PATCH "/v1/workspaces/{ws}/contacts/{id}", Tenant, Some(P::ContactsWrite), mutates = true, destructive = false, Api, "contact.update", Contact,
    Some(r#"{"name":"Overwritten","tags":["pwned"]}"#));
spec!(CONTACTS_DELETE: DELETE "/v1/workspaces/{ws}/contacts/{id}", Tenant, Some(P::ContactsWrite), mutates = true, destructive = true, Api, "contact.delete", Contact, None);
spec!(API_KEYS_LIST: GET "/v1/workspaces/{ws}/api-keys", Tenant, Some(P::KeysManage), mutates = false, destructive = false, Api, "api_key.list", None, None);
spec!(API_KEYS_CREATE: POST "/v1/workspaces/{ws}/api-keys", Tenant, Some(P::KeysManage), mutates = true, destructive = false, Api, "api_key.create", None,
    Some(r#"{"name":"matrix probe","role":"viewer"}"#));
spec!(API_KEYS_REVOKE: DELETE "/v1/workspaces/{ws}/api-keys/{id}", Tenant, Some(P::KeysManage), mutates = true, destructive = true, Api, "api_key.revoke", ApiKey, None);
spec!(CREDENTIALS_PUT: PUT "/v1/workspaces/{ws}/credentials/{provider}", Tenant, Some(P::CredentialsManage), mutates = true, destructive = false, Api, "credential.set", None,
    Some(r#"{"secret":"matrix-probe-secret-0000"}"#));
spec!(CREDENTIALS_GET: GET "/v1/workspaces/{ws}/credentials/{provider}", Tenant, Some(P::CredentialsManage), mutates = false, destructive = false, Api, "credential.get", None, None);
spec!(CREDENTIALS_DELETE: DELETE "/v1/workspaces/{ws}/credentials/{provider}", Tenant, Some(P::CredentialsManage), mutates = true, destructive = true, Api, "credential.delete", None, None);

spec!(CONTACT_VERSIONS: GET "/v1/workspaces/{ws}/contacts/{id}/versions", Tenant, Some(P::ContactsRead), mutates = false, destructive = false, Api, "contact.versions", Contact, None);
spec!(AUDIT_EVENTS_LIST: GET "/v1/workspaces/{ws}/audit-events", Tenant, Some(P::AuditRead), mutates = false, destructive = false, Api, "audit_event.list", None, None, plan = Starter);

spec!(MEMBERS_LIST: GET "/v1/workspaces/{ws}/members", Tenant, Some(P::WorkspaceRead), mutates = false, destructive = false, Api, "member.list", None, None);
spec!(MEMBERS_UPDATE: PATCH "/v1/workspaces/{ws}/members/{id}", Tenant, Some(P::MembersManage), mutates = true, destructive = false, Api, "member.update", Member,
    Some(r#"{"role":"viewer"}"#));
spec!(MEMBERS_REMOVE: DELETE "/v1/workspaces/{ws}/members/{id}", Tenant, Some(P::MembersManage), mutates = true, destructive = true, Api, "member.remove", Member, None);
spec!(MEMBERS_END_SESSIONS: DELETE "/v1/workspaces/{ws}/members/{id}/sessions", Tenant, Some(P::MembersManage), mutates = true, destructive = true, Api, "member.sessions_end", Member, None);
spec!(INVITATIONS_LIST: GET "/v1/workspaces/{ws}/invitations", Tenant, Some(P::MembersManage), mutates = false, destructive = false, Api, "invitation.list", None, None);
spec!(INVITATIONS_CREATE: POST "/v1/workspaces/{ws}/invitations", Tenant, Some(P::MembersManage), mutates = true, destructive = false, Api, "invitation.create", None,
    Some(r#"{"email":"matrix-invitee@example.com","role":"viewer"}"#));
spec!(INVITATIONS_REVOKE: DELETE "/v1/workspaces/{ws}/invitations/{id}", Tenant, Some(P::MembersManage), mutates = true, destructive = true, Api, "invitation.revoke", Invitation, None);

spec!(AUTH_SIGNUP: POST "/v1/auth/signup", Public, None, mutates = true, destructive = false, SignIn, "auth.signup", None, Some(r#"{"email":"probe@example.com","password":"Probe-Password-9","name":"Probe Person","org_name":"Probe Org"}"#));
spec!(AUTH_CONFIRM: POST "/v1/auth/confirm", Public, None, mutates = true, destructive = false, SignIn, "auth.confirm", None, Some(r#"{"token":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#));
spec!(AUTH_SIGNIN: POST "/v1/auth/signin", Public, None, mutates = true, destructive = false, SignIn, "auth.signin", None, Some(r#"{"email":"probe@example.com","password":"Probe-Password-9"}"#));
spec!(AUTH_SIGNIN_2FA: POST "/v1/auth/signin/2fa", Public, None, mutates = true, destructive = false, SignIn, "auth.signin_2fa", None, Some(r#"{"code":"123456"}"#));
spec!(AUTH_RESET_REQUEST: POST "/v1/auth/password/reset", Public, None, mutates = true, destructive = false, SignIn, "auth.password_reset_request", None, Some(r#"{"email":"probe@example.com"}"#));
spec!(AUTH_RESET_COMPLETE: POST "/v1/auth/password/reset/complete", Public, None, mutates = true, destructive = false, SignIn, "auth.password_reset", None, Some(r#"{"token":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","password":"Probe-Password-9"}"#));
spec!(AUTH_MAGIC_REQUEST: POST "/v1/auth/magic-link", Public, None, mutates = true, destructive = false, SignIn, "auth.magic_link_request", None, Some(r#"{"email":"probe@example.com"}"#));
spec!(AUTH_MAGIC_CONSUME: POST "/v1/auth/magic-link/consume", Public, None, mutates = true, destructive = false, SignIn, "auth.magic_link", None, Some(r#"{"token":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#));
spec!(AUTH_INVITATION_ACCEPT: POST "/v1/auth/invitations/accept", Public, None, mutates = true, destructive = false, SignIn, "member.accept", None, Some(r#"{"token":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","password":"Probe-Password-9"}"#));
spec!(AUTH_ME: GET "/v1/auth/me", User, None, mutates = false, destructive = false, Api, "auth.me", None, None);
spec!(AUTH_SIGNOUT: POST "/v1/auth/signout", User, None, mutates = true, destructive = false, Api, "auth.signout", None, Some(r#"{}"#));
spec!(AUTH_SESSIONS: GET "/v1/auth/sessions", User, None, mutates = false, destructive = false, Api, "auth.session_list", None, None);
spec!(AUTH_SESSION_END: DELETE "/v1/auth/sessions/{id}", User, None, mutates = true, destructive = true, Api, "auth.session_end", Session, None);
spec!(AUTH_PASSWORD_CHANGE: POST "/v1/auth/password", User, None, mutates = true, destructive = false, SignIn, "auth.password_change", None, Some(r#"{"current_password":"Probe-Password-9","new_password":"Probe-Password-10"}"#));
spec!(AUTH_TOTP_ENROLL: POST "/v1/auth/totp/enroll", User, None, mutates = true, destructive = false, SignIn, "auth.totp_enroll", None, Some(r#"{"password":"Probe-Password-9"}"#));
spec!(AUTH_TOTP_CONFIRM: POST "/v1/auth/totp/confirm", User, None, mutates = true, destructive = false, SignIn, "auth.totp_enable", None, Some(r#"{"code":"123456"}"#));
spec!(AUTH_BACKUP_CODES: POST "/v1/auth/totp/backup-codes", User, None, mutates = true, destructive = false, SignIn, "auth.backup_codes_regenerate", None, Some(r#"{"password":"Probe-Password-9"}"#));
spec!(AUTH_TOTP_DISABLE: DELETE "/v1/auth/totp", User, None, mutates = true, destructive = true, SignIn, "auth.totp_disable", None, None);

/// Every route with its handler. The order is the order of the documentation.
pub fn routes() -> Vec<Route> {
    vec![
        route(&HOME, pages::home),
        route(&HEALTHZ, health::live),
        route(&READYZ, health::ready),
        route(&CONTACTS_LIST, contacts::list),
        route(&CONTACTS_CREATE, contacts::create),
        route(&CONTACTS_GET, contacts::get),
        route(&CONTACTS_UPDATE, contacts::update),
        route(&CONTACTS_DELETE, contacts::delete),
        route(&CONTACT_VERSIONS, contacts::versions),
        route(&API_KEYS_LIST, api_keys::list),
        route(&API_KEYS_CREATE, api_keys::create),
        route(&API_KEYS_REVOKE, api_keys::revoke),
        route(&CREDENTIALS_PUT, credentials::put),
        route(&CREDENTIALS_GET, credentials::get),
        route(&CREDENTIALS_DELETE, credentials::delete),
        route(&AUDIT_EVENTS_LIST, audit_events::list),
        route(&MEMBERS_LIST, members::list),
        route(&MEMBERS_UPDATE, members::update),
        route(&MEMBERS_REMOVE, members::remove),
        route(&MEMBERS_END_SESSIONS, members::end_sessions),
        route(&INVITATIONS_LIST, members::invitations),
        route(&INVITATIONS_CREATE, members::invite),
        route(&INVITATIONS_REVOKE, members::revoke_invitation),
        route(&AUTH_SIGNUP, auth::signup),
        route(&AUTH_CONFIRM, auth::confirm),
        route(&AUTH_SIGNIN, auth::signin),
        route(&AUTH_SIGNIN_2FA, auth::signin_second_factor),
        route(&AUTH_RESET_REQUEST, auth::request_reset),
        route(&AUTH_RESET_COMPLETE, auth::complete_reset),
        route(&AUTH_MAGIC_REQUEST, auth::request_magic_link),
        route(&AUTH_MAGIC_CONSUME, auth::consume_magic_link),
        route(&AUTH_INVITATION_ACCEPT, auth::accept_invitation),
        route(&AUTH_ME, auth::me),
        route(&AUTH_SIGNOUT, auth::signout),
        route(&AUTH_SESSIONS, auth::sessions),
        route(&AUTH_SESSION_END, auth::end_session),
        route(&AUTH_PASSWORD_CHANGE, auth::change_password),
        route(&AUTH_TOTP_ENROLL, auth::totp_enroll),
        route(&AUTH_TOTP_CONFIRM, auth::totp_confirm),
        route(&AUTH_BACKUP_CODES, auth::regenerate_backup_codes),
        route(&AUTH_TOTP_DISABLE, auth::totp_disable),
    ]
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
