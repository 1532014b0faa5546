//! The edge: the request as bytes, checked before anyone asks who is
//! calling. TLS and certificates by SNI, the client address, strict
//! framing, methods, the host, path normalisation, request ids and the
//! security headers every response carries. Nothing here knows the
//! snapshot, identities or metrics.

pub mod client_addr;
pub mod framing;
pub mod head_deadline;
pub mod headers;
pub mod host;
pub mod method;
pub mod path;
pub mod proxy_protocol;
pub mod request_id;
pub mod tls;
