//! The Rampart server: HTTP API, route manifest and operator commands. Only this crate knows
//! axum; the rooms below it speak domain types.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod conn;
pub mod http;
pub mod keycache;
pub mod manifest;
pub mod redirect;
pub mod routes;
pub mod state;
pub mod telemetry;
pub mod tls;

pub use state::AppState;
