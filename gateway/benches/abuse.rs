//! Per-request cost of the rate-limit check, and the audit writer's
//! sustained throughput with fsync batching.
//!
//! Run: `cargo bench -p gatehouse-gateway --bench abuse`
//! The audit numbers are time per 10,000 records written and flushed to
//! disk (fsync at the end, and every `fsync_interval` while writing), so
//! records per second = 10,000 / time.

// A benchmark panics like a test when its fixture cannot be built.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gatehouse_audit::{AuditEvent, AuditLog, EventKind, Outcome};
use gatehouse_gateway::access::rate_limit::RateLimits;
use gatehouse_gateway::identity::Principal;
use gatehouse_policy::{AuditSettings, IdentityKind, OnAuditFailure};

fn policy() -> gatehouse_policy::Policy {
    let text = format!(
        "{}\n[rate_limit]\nclient = \"1000000/s\"\nidentity = \"1000000/s\"\n[[route]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:1\"\npublic = true\n",
        gatehouse_policy::testing::LISTEN_AND_TLS
    );
    gatehouse_policy::parse(Path::new("bench.toml"), &text).unwrap()
}

fn rate_limit(c: &mut Criterion) {
    let policy = policy();
    let limits = RateLimits::new(&policy);
    let route = &policy.routes[0];
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let principal = Principal::hypothetical(BTreeSet::new(), IdentityKind::ApiKey);
    let mut group = c.benchmark_group("rate_limit");
    group.bench_function("client_address", |b| {
        b.iter(|| limits.check_request(route, None, ip).is_ok())
    });
    group.bench_function("identity", |b| {
        b.iter(|| limits.check_request(route, Some(&principal), ip).is_ok())
    });
    let mut n = 0u32;
    group.bench_function("new_address_each_time", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let ip = IpAddr::from(n.to_be_bytes());
            limits.check_request(route, None, ip).is_ok()
        })
    });
    group.finish();
}

fn audit_writer(c: &mut Criterion) {
    const RECORDS: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("audit_writer");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RECORDS));
    for (name, kind) in [
        ("denials_fsync_1s", EventKind::AccessDenied),
        ("logins_fsync_each_batch", EventKind::LoginFailure),
    ] {
        let log = AuditLog::open(&AuditSettings {
            path: dir.path().join(format!("{name}.jsonl")),
            fsync_interval: Duration::from_secs(1),
            max_file_size: 64 * 1024 * 1024,
            on_failure: OnAuditFailure::Deny,
            stdout: false,
            max_age: Duration::from_secs(365 * 86_400),
            max_total_size: 1 << 30,
        })
        .unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                for i in 0..RECORDS {
                    log.record(
                        AuditEvent::new(kind, Outcome::Denied)
                            .actor("alice@example.com", "oidc")
                            .client_ip(IpAddr::from([10, 0, 0, (i % 250) as u8]))
                            .request_id("0123456789ab-42")
                            .route("app")
                            .detail("reason", "forbidden")
                            .detail("rule", "route app: roles admin"),
                    );
                }
                assert!(log.flush(Duration::from_secs(60)));
            })
        });
    }
    group.finish();

    // One durable record at a time: the latency a login pays for its fsync.
    let log = AuditLog::open(&AuditSettings {
        path: dir.path().join("single.jsonl"),
        fsync_interval: Duration::from_secs(1),
        max_file_size: 64 * 1024 * 1024,
        on_failure: OnAuditFailure::Deny,
        stdout: false,
        max_age: Duration::from_secs(365 * 86_400),
        max_total_size: 1 << 30,
    })
    .unwrap();
    c.bench_function("audit_writer/one_login_record_durable", |b| {
        b.iter(|| {
            log.record(
                AuditEvent::new(EventKind::LoginSuccess, Outcome::Success).actor("alice", "oidc"),
            );
            assert!(log.flush(Duration::from_secs(10)));
        })
    });
}

criterion_group!(benches, rate_limit, audit_writer);
criterion_main!(benches);
