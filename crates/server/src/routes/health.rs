//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::http::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `GET /healthz`: the process is up.
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the database answers.
pub async fn ready(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    state.store().ping().await.map_err(ApiError::from)?;
    Ok(Json(
        json!({"status": "ready", "database": format!("{:?}", state.store().kind()).to_lowercase()}),
    ))
}
