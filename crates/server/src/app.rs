//! The whole HTTP application: the manifest's router inside the outer layers.

use std::any::Any;

use axum::Router;
use axum::response::{IntoResponse, Response};
use tower::Layer;
use tower::util::{Either, MapResponseLayer};
use tower_http::catch_panic::CatchPanicLayer;

use crate::http::error::ApiError;
use crate::http::{client, headers, request_id};
use crate::manifest;
use crate::state::AppState;

fn panicked(_payload: Box<dyn Any + Send + 'static>) -> Response {
    // The payload may quote data; it is not logged.
    tracing::error!("a handler panicked");
    ApiError::internal().into_response()
}

async fn unrouted() -> ApiError {
    ApiError::not_found()
}

/// Builds the application over `state`.
///
/// The outer layers wrap the routed application as one service, not through
/// `Router::layer`: that would box each layer around every route, and axum clones a route's
/// whole stack of boxes on every request (each `from_fn` layer clones the stack below it
/// again), so every layer added there cost every request a handful of allocations. Around the
/// router, a layer's clone is a reference count.
pub fn build(state: AppState) -> Router {
    let routed = manifest::router(state.clone())
        .fallback(unrouted)
        .with_state(state.clone());
    let caught = MapResponseLayer::new(IntoResponse::into_response)
        .layer(CatchPanicLayer::custom(panicked).layer(routed));
    let service = if state.edge_controls() {
        Either::Left(
            axum::middleware::from_fn_with_state(state.clone(), headers::layer).layer(caught),
        )
    } else {
        Either::Right(caught)
    };
    let service = axum::middleware::from_fn(request_id::layer)
        .layer(axum::middleware::from_fn_with_state(state, client::layer).layer(service));
    manifest::serve_only(service)
}
