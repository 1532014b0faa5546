//! The scheduler's integration tests, in one binary (linking dominates on
//! small machines). Everything runs for real: a private dockerd, the
//! gateway binary in front, the scheduler binary behind it.

mod allowances;
mod api;
mod cli;
mod cron_oracle;
mod dashboard;
mod docker_proxy;
mod engine;
mod keys;
mod limits;
mod logs;
mod mounts;
mod notify;
mod postgres;
mod recovery;
mod replay;
mod replicas;
mod runs;
mod startup;
mod swarm;
