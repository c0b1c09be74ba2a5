//! Handlers, one module per resource, verbs as functions. Each is a few lines: parse,
//! call the store through the context's transaction, map the result.

pub mod api_keys;
pub mod audit_events;
pub mod auth;
pub mod contacts;
pub mod credentials;
pub mod health;
pub mod members;
pub mod pages;

use serde::{Deserialize, Deserializer};

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`) in PATCH bodies.
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
