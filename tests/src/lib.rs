//! Test harness for Gatehouse's integration tests.
//!
//! Everything here is real: our binaries run as child processes on free
//! loopback ports, the upstream is a real HTTP server, certificates are
//! real X.509 signed by a throwaway CA. Children are killed when their
//! handle drops, so a failing test leaves nothing running.

pub mod audit;
pub mod binaries;
pub mod browser;
pub mod docker;
pub mod gateway;
pub mod haproxy;
pub mod http1;
pub mod idp;
pub mod metrics;
pub mod netns;
pub mod nginx;
pub mod pki;
pub mod postgres;
pub mod process;
pub mod raw_response;
pub mod recording;
pub mod redis;
#[cfg(test)]
mod repository;
pub mod scheduler;
pub mod template;
pub mod upstream;

pub use audit::AuditLog;
pub use browser::Browser;
pub use gateway::GatewayUnderTest;
pub use idp::Idp;
pub use netns::NetNs;
pub use nginx::Nginx;
pub use pki::TestPki;
pub use process::{free_port, wait_for_port, ChildProcess};
pub use recording::{RecordedRequest, RecordingUpstream};
pub use scheduler::SchedulerUnderTest;
pub use upstream::{DocumentServer, EchoUpstream};
