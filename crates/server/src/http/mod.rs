//! The request path (ARCHITECTURE §2): request id and error envelope outermost, then the
//! manifest-driven tenant guard around each route, then the handler with its [`extract::Ctx`].

pub mod body;
pub mod client;
pub mod error;
pub mod extract;
pub mod guard;
pub mod headers;
pub mod limits;
pub mod mutation;
pub mod request_id;
