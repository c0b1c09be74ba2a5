//! The whole HTTP application: the manifest's router inside the outer layers.

use std::any::Any;

use axum::Router;
use axum::response::{IntoResponse, Response};
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
pub fn build(state: AppState) -> Router {
    let router = manifest::router(state.clone())
        .fallback(unrouted)
        .layer(CatchPanicLayer::custom(panicked));
    let router = if state.edge_controls() {
        router.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            headers::layer,
        ))
    } else {
        router
    };
    router
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            client::layer,
        ))
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(state)
}
