//! Per-request cost of each identity kind and of the authorization decision.
//!
//! Run: `cargo bench -p gatehouse-gateway --bench identity`
//! Uncached JWT numbers build a fresh `Authenticator` per iteration (outside
//! the measurement), so they show the full signature check; "cached" is the
//! steady state for a client that reuses its token.

// A benchmark panics like a test when its fixture cannot be built.
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use gatehouse_gateway::identity::{
    credential, session, Authenticator, IdentityState, LoginAttempts,
};
use gatehouse_gateway::{access::authz, identity};
use gatehouse_policy::IdentityKind;

mod support;

fn headers(name: &'static str, value: &str) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    map.insert(name, value.parse().unwrap());
    map
}

/// The benchmarks measure verification, not the lockout.
struct Unlimited;

impl LoginAttempts for Unlimited {
    fn start(&self) -> bool {
        true
    }
}

fn bench(c: &mut Criterion) {
    let f = support::fixture(|identities, _| {
        format!(
            "{head}{identities}\n[[route]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:1\"\nroles = [\"viewer\"]\n",
            head = gatehouse_policy::testing::LISTEN_AND_TLS
        )
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let state = IdentityState::new().unwrap();
    let auth = Authenticator::new(&f.policy, &state).unwrap();
    let ip = "127.0.0.1".parse().unwrap();
    let all: std::collections::BTreeSet<IdentityKind> = IdentityKind::ALL.into_iter().collect();

    let mut group = c.benchmark_group("identity");
    let cases: Vec<(String, http::HeaderMap)> = [
        ("api key".to_owned(), headers("x-api-key", &f.api_key)),
        (
            "session cookie".to_owned(),
            headers(
                "cookie",
                &format!("{}={}", session::SESSION_COOKIE, f.session_cookie),
            ),
        ),
    ]
    .into_iter()
    .chain(f.tokens.iter().map(|(name, t)| {
        (
            format!("{name} cached"),
            headers("authorization", &format!("Bearer {t}")),
        )
    }))
    .collect();
    for (name, map) in &cases {
        group.bench_function(name.as_str(), |b| {
            b.to_async(&rt).iter(|| async {
                let cred = credential(map).unwrap().unwrap();
                auth.verify(cred, ip, &all, &Unlimited).await.unwrap()
            })
        });
    }
    for (name, token) in &f.tokens {
        let map = headers("authorization", &format!("Bearer {token}"));
        group.bench_function(format!("{name} uncached"), |b| {
            b.to_async(&rt).iter_batched(
                || Authenticator::new(&f.policy, &state).unwrap(),
                |fresh| {
                    let map = &map;
                    let all = &all;
                    async move {
                        let cred = credential(map).unwrap().unwrap();
                        let principal = fresh.verify(cred, ip, all, &Unlimited).await.unwrap();
                        // Returned so the verifier is dropped outside the measurement.
                        (principal, fresh)
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    let basic = headers("authorization", &f.basic);
    // A basic-auth client's steady state: its password was checked once.
    group.bench_function("basic remembered", |b| {
        b.to_async(&rt).iter(|| async {
            let cred = credential(&basic).unwrap().unwrap();
            auth.verify(cred, ip, &all, &Unlimited).await.unwrap()
        })
    });
    group.sample_size(10);
    group.bench_function("basic argon2id", |b| {
        b.to_async(&rt).iter_batched(
            || Authenticator::new(&f.policy, &state).unwrap(),
            |fresh| {
                let basic = &basic;
                let all = &all;
                async move {
                    let cred = credential(basic).unwrap().unwrap();
                    let principal = fresh.verify(cred, ip, all, &Unlimited).await.unwrap();
                    (principal, fresh)
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let principal =
        identity::Principal::hypothetical(["viewer".into()].into(), IdentityKind::ApiKey);
    let route = &f.policy.routes[0];
    c.bench_function("authz decide", |b| {
        b.iter(|| authz::decide(route, &f.policy.roles, Some(&principal), "GET").unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
