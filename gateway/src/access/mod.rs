//! What a known (or anonymous) caller may do: authorization by role
//! ([`authz`], deny by default), CORS per route, and rate limits and
//! login lockouts.

pub mod authz;
pub mod cors;
pub mod rate_limit;
