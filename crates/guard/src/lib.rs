//! Guards with no knowledge of HTTP: rate limits and daily quotas. Both run in-process by
//! default and move to Redis when it is configured, so every node shares them; the algorithm
//! is the same on both (GCRA for limits, a counter per UTC day for quotas), and what happens
//! when Redis is unreachable is an explicit choice ([`RedisFailure`]).

pub mod gcra;
pub mod limiter;

pub use gcra::{Decision, Rate};
pub use limiter::{BothChecked, Limiter, LimiterError, RedisFailure};
