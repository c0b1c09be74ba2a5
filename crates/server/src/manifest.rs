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

use crate::routes::{api_keys, audit_events, contacts, credentials, health, pages};
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
        let guarded = method_router
            .layer::<_, Infallible>(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::http::guard::guard,
            ))
            .layer::<_, Infallible>(axum::Extension(spec));
        router = router.route(spec.path, guarded);
    }
    router
}
