//! Host handling. A protected route on host `internal.test` (its own
//! certificate) and a host-less public route: spellings of the Host that
//! might skip the host route and fall to the public one. One trailing dot
//! is removed before routing; a bad port, userinfo or any character not
//! allowed in a host name is 400; a Host that is not the connection's SNI
//! name is 421 (no domain fronting between certificate hosts). Never the
//! public route's upstream.

use super::*;

fn policy() -> String {
    format!(
        r#"{NO_RATE_LIMITS}
[[tls.cert]]
hosts = ["internal.test"]
cert = "{{dir}}/internal.pem"
key = "{{dir}}/internal-key.pem"

[roles]
admin = ["*"]
{}

[[route]]
name = "internal"
host = "internal.test"
path = "/"
upstream = "{{upstream}}"
roles = ["admin"]
{}"#,
        api_key(
            "root",
            "gh_host-topic-admin-key-0123456789abcdef01234",
            &["admin"]
        ),
        route("site", "/", "public = true"),
    )
}

/// `GET /` with `Host: host` on a connection whose SNI is `sni`.
fn host(name: &str, sni: &str, host: &str) -> Vector {
    vector(name, req("GET", "/").host(Some(host))).sni(sni)
}

/// (name, SNI, Host, acceptable statuses): each is refused or reaches the
/// internal route, and never the upstream.
const TABLE: [(&str, &str, &str, &[u16]); 18] = [
    (
        "control: internal.test is its route",
        INTERNAL,
        "internal.test",
        &[401],
    ),
    (
        "trailing dot: internal.test.",
        INTERNAL,
        "internal.test.",
        &[401],
    ),
    (
        "upper case: INTERNAL.TEST",
        INTERNAL,
        "INTERNAL.TEST",
        &[401],
    ),
    (
        "port: internal.test:443",
        INTERNAL,
        "internal.test:443",
        &[401],
    ),
    (
        "non-numeric port: internal.test:abc",
        INTERNAL,
        "internal.test:abc",
        &[400],
    ),
    (
        "out-of-range port: internal.test:99999",
        INTERNAL,
        "internal.test:99999",
        &[400],
    ),
    (
        "signed port: internal.test:+443",
        INTERNAL,
        "internal.test:+443",
        &[400],
    ),
    (
        "userinfo: user@internal.test",
        INTERNAL,
        "user@internal.test",
        &[400],
    ),
    (
        "userinfo: internal.test@localhost",
        LOCAL,
        "internal.test@localhost",
        &[400],
    ),
    (
        "two trailing dots: internal.test..",
        INTERNAL,
        "internal.test..",
        &[400, 421],
    ),
    ("space in the Host", INTERNAL, "internal test", &[400]),
    (
        "path in the Host: internal.test/x",
        INTERNAL,
        "internal.test/x",
        &[400],
    ),
    (
        "Host internal.test on a localhost connection",
        LOCAL,
        "internal.test",
        &[421],
    ),
    (
        "Host internal.test. on a localhost connection",
        LOCAL,
        "internal.test.",
        &[421],
    ),
    (
        "Host evil.test on a localhost connection",
        LOCAL,
        "evil.test",
        &[421],
    ),
    (
        "Host localhost on an internal.test connection",
        INTERNAL,
        "localhost",
        &[421],
    ),
    (
        "no SNI: the Host picks the route",
        "127.0.0.1",
        "internal.test",
        &[401],
    ),
    (
        "no SNI: trailing dot",
        "127.0.0.1",
        "internal.test.",
        &[401],
    ),
];

const INTERNAL: &str = "internal.test";
const LOCAL: &str = "localhost";

fn vectors() -> Vec<Vector> {
    let mut out = vec![host("control: localhost", LOCAL, "localhost")
        .status(200)
        .reaches(seen("GET", "/"))];
    for (name, sni, value, statuses) in TABLE {
        out.push(host(name, sni, value).status_in(statuses).nothing());
    }
    out.push(
        vector(
            "absolute form https://internal.test/ with Host localhost",
            b"GET https://internal.test/ HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        )
        .status_in(&[400, 421])
        .nothing(),
    );
    out
}

#[tokio::test]
async fn host_handling() {
    let _shared = shared().await;
    let mut report = Report::new("host");
    let started = Target::start_with(&policy(), |pki| {
        pki.issue("internal", &["internal.test"], 30)
            .expect("internal.test certificate");
    })
    .await;
    match started {
        Ok(target) => target.run(&mut report, vectors()).await,
        Err(e) => {
            for v in vectors() {
                report.record(v.name, Err(e.clone()));
            }
        }
    }
    report.finish();
}
