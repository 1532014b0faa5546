//! One benchmark per stage of the request path, by name, so a regression
//! in one stage shows up as that stage: `stage/01-client` to
//! `stage/15-authorization` are the numbered stages of `Gateway::decide`
//! (src/proxy/stages.rs), `out/*` the way out (what the upstream receives,
//! the response headers, the access-log line and metrics), `path/*` all of
//! `decide` (through Pingora's `request_filter`) and `request/*` the
//! gateway's whole per-request work, per identity kind.
//!
//! Run: `cargo bench -p gatehouse-gateway --bench stages`
//! (`-- stage/12` for one stage; `--warm-up-time 1 --measurement-time 3`
//! for a quick pass).
//!
//! Each request is a browser-ish GET with about ten headers, read by
//! Pingora from an in-memory HTTP/1.1 connection, through a snapshot of a
//! policy with several routes, an allowlist, an audit log, JWT issuers, an
//! API key and sessions. Stages 1 to 11 and 13 to 15 take the JWT request
//! (a route with CORS rules, roles and a per-identity rate limit); stage
//! 12 and the whole path are measured per identity kind. Rate limits are
//! set high enough never to refuse. Pingora's own work (parsing, writing,
//! the connection to the upstream) is not measured.

// A benchmark panics like a test when its fixture cannot be built.
#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod conn;
mod fixture;

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use gatehouse_gateway::admin::access_log::AccessRecord;
use gatehouse_gateway::admin::logging::LogFormat;
use gatehouse_gateway::edge::{client_addr, framing, host, method, path};
use gatehouse_gateway::identity::Principal;
use gatehouse_gateway::proxy::bench_support::{
    cors_preflight, csrf, raw_head_if_needed, route_rules,
};
use gatehouse_gateway::proxy::{Gateway, RequestCtx};
use pingora::http::ResponseHeader;
use pingora::proxy::{ProxyHttp, Session};
use tokio::io::{AsyncReadExt, DuplexStream};
use tokio::runtime::Runtime;

use fixture::{Bench, Kind};

/// A client on the LAN, inside the policy's allowlist.
const PEER: [u8; 4] = [10, 1, 2, 3];
/// The name the client asked for in its TLS handshake.
const SNI: &str = "localhost";

/// A request that went through every stage, as the next phases see it.
async fn decided(gateway: &Gateway, session: &mut Session) -> RequestCtx {
    let mut ctx = gateway.new_ctx();
    let answered = gateway.request_filter(session, &mut ctx).await.unwrap();
    assert!(!answered, "the request is proxied, not answered or refused");
    ctx
}

/// What a typical upstream answers.
fn upstream_response() -> ResponseHeader {
    let mut response = ResponseHeader::build(200, Some(8)).unwrap();
    for (name, value) in [
        ("content-type", "application/json"),
        ("content-length", "100"),
        ("date", "Wed, 02 Dec 2026 15:00:00 GMT"),
        ("server", "nginx/1.22.1"),
        ("cache-control", "no-cache"),
        ("etag", "\"5f2b-1a2b3c\""),
    ] {
        response.insert_header(name, value).unwrap();
    }
    response
}

/// `iters` runs of `routine`, each on an input `setup` made outside the
/// timing in batches (as criterion's `iter_batched` does), for phases that
/// borrow the session mutably. Outputs are dropped outside the timing too.
async fn timed<I, O>(
    iters: u64,
    session: &mut Session,
    mut setup: impl AsyncFnMut(&mut Session) -> I,
    mut routine: impl AsyncFnMut(&mut Session, I) -> O,
) -> Duration {
    const BATCH: u64 = 256;
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(BATCH);
        let mut inputs = Vec::with_capacity(n as usize);
        for _ in 0..n {
            inputs.push(setup(session).await);
        }
        let mut outputs = Vec::with_capacity(n as usize);
        let start = Instant::now();
        for input in inputs {
            outputs.push(routine(session, input).await);
        }
        total += start.elapsed();
        drop(outputs);
        left -= n;
    }
    total
}

/// Stages 1 to 11, on the JWT request, each as `decide` calls it.
fn edge_stages(g: &mut Group<'_>, b: &Bench, s: &Session, rt: &Runtime) {
    let gw = &b.gateway;
    let policy = &b.snapshot.policy;
    let req = s.req_header();
    let peer = IpAddr::from(PEER);
    let mut ctx = gw.new_ctx();
    g.bench_function("01-client", |bn| bn.iter(|| gw.client(req, peer, &mut ctx)));
    g.bench_function("02-network", |bn| {
        bn.iter(|| {
            let ip = std::hint::black_box(peer);
            client_addr::is_allowed(ip, &policy.network.allow, &policy.network.deny)
        })
    });
    g.bench_function("03-audit", |bn| bn.iter(|| gw.audit.must_refuse()));
    g.bench_function("04-method", |bn| bn.iter(|| method::check(&req.method)));
    g.bench_function("05-framing", |bn| {
        bn.iter(|| {
            let raw_head = raw_head_if_needed(s);
            let head = framing::RequestHead::of(req, raw_head.as_deref());
            framing::check_request_head(&head, policy.limits.max_header_bytes)
        })
    });
    g.bench_function("06-host", |bn| {
        bn.iter(|| {
            let host = host::request_host(req).unwrap();
            host::check_sni(host.as_deref(), Some(SNI)).map(|()| host)
        })
    });
    g.bench_function("07-path", |bn| {
        bn.iter(|| path::normalize_path_and_query(req.raw_path()))
    });
    let (path, query) = path::normalize_path_and_query(req.raw_path()).unwrap();
    g.bench_function("08-gateway-endpoints", |bn| {
        bn.to_async(rt).iter(|| async {
            gw.jwks(req, &path).is_none()
                && gw.login_endpoint(req, &path, query, &ctx).await.is_ok()
        })
    });
    let host = host::request_host(req).unwrap();
    g.bench_function("09-route", |bn| {
        bn.iter(|| {
            let route = b.snapshot.routes.find(host.as_deref(), &path).unwrap();
            (route.clone(), query.map(str::to_owned))
        })
    });
    let route = &b
        .snapshot
        .routes
        .find(host.as_deref(), &path)
        .unwrap()
        .route;
    g.bench_function("10-route-rules", |bn| {
        bn.iter(|| route_rules(route, req, peer))
    });
    g.bench_function("11-cors-preflight", |bn| {
        bn.iter(|| cors_preflight(route, req))
    });
}

/// One identity kind's request, on its own connection.
struct Case {
    kind: Kind,
    session: Session,
    _client: DuplexStream,
}

impl Case {
    async fn new(kind: Kind, b: &Bench) -> Case {
        let peer = std::net::SocketAddr::from((PEER, 50_000));
        let (mut session, mut client) = conn::session(&kind.request_head(&b.fixture), peer).await;
        let mut ctx = b.gateway.new_ctx();
        if b.gateway
            .request_filter(&mut session, &mut ctx)
            .await
            .unwrap()
        {
            let mut answer = vec![0; 4096];
            let n = client.read(&mut answer).await.unwrap();
            let answer = String::from_utf8_lossy(&answer[..n]);
            panic!("the {} request is not proxied: {answer}", kind.name());
        }
        // Answered once, so the access log sees a status, as it would.
        session
            .write_response_header(Box::new(upstream_response()), false)
            .await
            .unwrap();
        Case {
            kind,
            session,
            _client: client,
        }
    }

    fn route<'a>(&self, b: &'a Bench) -> &'a gatehouse_policy::Route {
        let req = self.session.req_header();
        let host = host::request_host(req).unwrap();
        let (path, _) = path::normalize_path_and_query(req.raw_path()).unwrap();
        &b.snapshot
            .routes
            .find(host.as_deref(), &path)
            .unwrap()
            .route
    }
}

/// Stage 12 per identity kind, then stages 13 to 15 on the JWT request.
fn caller_stages(g: &mut Group<'_>, b: &Bench, cases: &[Case], rt: &Runtime) {
    let gw = &b.gateway;
    let peer = IpAddr::from(PEER);
    for case in cases {
        let req = case.session.req_header();
        let route = case.route(b);
        let mut ctx = gw.new_ctx();
        gw.client(req, peer, &mut ctx);
        g.bench_function(format!("12-identity/{}", case.kind.name()), |bn| {
            bn.to_async(rt)
                .iter(|| async { gw.identify(&ctx, req, route, peer).await })
        });
    }
    let case = jwt_case(cases);
    let req = case.session.req_header();
    let route = case.route(b);
    let mut ctx = gw.new_ctx();
    gw.client(req, peer, &mut ctx);
    let principal = rt
        .block_on(gw.identify(&ctx, req, route, peer))
        .ok()
        .unwrap();
    let principal = principal.as_ref();
    let public_origin = b.snapshot.policy.listen.public_origin.as_str();
    g.bench_function("13-csrf", |bn| {
        bn.iter(|| csrf(req, principal, public_origin))
    });
    let limits = &b.snapshot.rate_limits;
    // One caller would use up its allowance (at most 1,000,000/s) long
    // before the measurement ends; these share the calls between them.
    let callers: Vec<Principal> = (0..256)
        .map(|i| {
            let mut caller = principal.unwrap().clone();
            caller.subject = format!("{}-{i}", caller.subject);
            caller
        })
        .collect();
    let mut next = 0;
    g.bench_function("14-rate-limit", |bn| {
        bn.iter(|| {
            next = (next + 1) % callers.len();
            limits
                .check_request(route, Some(&callers[next]), peer)
                .is_ok()
        })
    });
    assert!(limits.check_request(route, callers.last(), peer).is_ok());
    // Built from the allowance once the request passed (`passed`).
    let allowance = limits.check_request(route, principal, peer).ok().unwrap();
    g.bench_function("14-rate-limit/headers", |bn| {
        bn.iter(|| allowance.headers())
    });
    g.bench_function("15-authorization", |bn| {
        bn.iter(|| gw.authorize(req, route, &b.snapshot, principal, peer))
    });
}

fn jwt_case(cases: &[Case]) -> &Case {
    cases.iter().find(|c| c.kind == Kind::JwtCached).unwrap()
}

/// The way out, through the phases Pingora calls: what the upstream
/// receives and the response headers per kind, then the access-log line
/// and metrics.
fn way_out(g: &mut Group<'_>, b: &Bench, cases: &mut [Case], rt: &Runtime) {
    let gw = &b.gateway;
    for case in cases.iter_mut() {
        let session = &mut case.session;
        let mut ctx = rt.block_on(decided(gw, session));
        g.bench_function(format!("upstream-prepare/{}", case.kind.name()), |bn| {
            bn.iter_custom(|iters| {
                rt.block_on(timed(
                    iters,
                    session,
                    // Pingora's copy of the request, not measured.
                    async |s| s.req_header().clone(),
                    async |s, mut upstream| {
                        let prepared = gw.upstream_request_filter(s, &mut upstream, &mut ctx);
                        prepared.await.unwrap();
                        upstream
                    },
                ))
            })
        });
        // `response_filter` takes what `decide` left for it, so each
        // response gets a freshly decided request.
        g.bench_function(format!("response-headers/{}", case.kind.name()), |bn| {
            bn.iter_custom(|iters| {
                rt.block_on(timed(
                    iters,
                    session,
                    async |s| (decided(gw, s).await, upstream_response()),
                    async |s, (mut ctx, mut response)| {
                        let filtered = gw.response_filter(s, &mut response, &mut ctx);
                        filtered.await.unwrap();
                        (ctx, response)
                    },
                ))
            })
        });
    }
    let case = cases
        .iter_mut()
        .find(|c| c.kind == Kind::JwtCached)
        .unwrap();
    let session = &mut case.session;
    let mut ctx = rt.block_on(decided(gw, session));
    let mut access_log = |g: &mut Group<'_>, name: &str| {
        g.bench_function(name, |bn| {
            bn.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        gw.logging(session, None, &mut ctx).await;
                    }
                    start.elapsed()
                })
            })
        });
    };
    // No subscriber takes `info`: the metrics, and a disabled log line.
    access_log(g, "access-log/off");
    // The line itself, in each format (src/admin/access_log.rs), written
    // into a reused buffer as into the thread's log buffer: the
    // formatting, not the write (the log writer thread does that).
    let record = AccessRecord {
        request_id: "f205ec09cf10-1",
        client: Some(IpAddr::from([192, 0, 2, 10])),
        method: "GET",
        path: "/api/items",
        route: "api",
        status: 200,
        denial: "-",
        user: "bench-user",
        auth: "jwt",
        identity_source: "bench",
        rule: "route api: role viewer",
        error: "-",
        duration: Duration::from_micros(1234),
        bytes_in: 0,
        bytes_out: 100,
    };
    for (name, format) in [("json", LogFormat::Json), ("human", LogFormat::Human)] {
        let mut line = Vec::with_capacity(512);
        g.bench_function(format!("access-log/{name}"), |bn| {
            bn.iter(|| {
                line.clear();
                record.write_line(format, SystemTime::now(), &mut line);
                std::hint::black_box(&line);
            })
        });
    }
}

/// All of `decide` (Pingora's `request_filter`, from a new context), and
/// the gateway's whole work for a proxied request: `decide`, the upstream
/// request, the response headers, the access log (off) and the context
/// dropped at the end.
fn whole(c: &mut Criterion, cases: &mut [Case], b: &Bench, rt: &Runtime) {
    let gw = &b.gateway;
    let mut g = c.benchmark_group("path");
    for case in cases.iter_mut() {
        let session = &mut case.session;
        g.bench_function(case.kind.name(), |bn| {
            bn.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        std::hint::black_box(decided(gw, session).await);
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("request");
    for case in cases.iter_mut() {
        let session = &mut case.session;
        g.bench_function(case.kind.name(), |bn| {
            bn.iter_custom(|iters| {
                rt.block_on(timed(
                    iters,
                    session,
                    // Pingora's copy of the request and its parsed
                    // upstream response, not measured.
                    async |s| (s.req_header().clone(), upstream_response()),
                    async |s, (mut upstream, mut response)| {
                        let mut ctx = decided(gw, s).await;
                        let prepared = gw.upstream_request_filter(s, &mut upstream, &mut ctx);
                        prepared.await.unwrap();
                        let filtered = gw.response_filter(s, &mut response, &mut ctx);
                        filtered.await.unwrap();
                        gw.logging(s, None, &mut ctx).await;
                        (upstream, response)
                    },
                ))
            })
        });
    }
    g.finish();
}

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

fn stages(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let b = fixture::bench_gateway();
    let mut cases: Vec<Case> = Kind::ALL
        .into_iter()
        .map(|kind| rt.block_on(Case::new(kind, &b)))
        .collect();
    let mut g = c.benchmark_group("stage");
    edge_stages(&mut g, &b, &jwt_case(&cases).session, &rt);
    caller_stages(&mut g, &b, &cases, &rt);
    g.finish();
    let mut g = c.benchmark_group("out");
    way_out(&mut g, &b, &mut cases, &rt);
    g.finish();
    whole(c, &mut cases, &b, &rt);
}

criterion_group!(benches, stages);
criterion_main!(benches);
