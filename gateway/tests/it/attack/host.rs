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

fn vectors() -> Vec<Vector> {
    let internal = "internal.test";
    let local = "localhost";
    vec![
        host("control: localhost", local, "localhost")
            .status(200)
            .reaches(seen("GET", "/")),
        host(
            "control: internal.test is its route",
            internal,
            "internal.test",
        )
        .status(401)
        .nothing(),
        host("trailing dot: internal.test.", internal, "internal.test.")
            .status(401)
            .nothing(),
        host("upper case: INTERNAL.TEST", internal, "INTERNAL.TEST")
            .status(401)
            .nothing(),
        host("port: internal.test:443", internal, "internal.test:443")
            .status(401)
            .nothing(),
        host(
            "non-numeric port: internal.test:abc",
            internal,
            "internal.test:abc",
        )
        .status(400)
        .nothing(),
        host(
            "out-of-range port: internal.test:99999",
            internal,
            "internal.test:99999",
        )
        .status(400)
        .nothing(),
        host(
            "signed port: internal.test:+443",
            internal,
            "internal.test:+443",
        )
        .status(400)
        .nothing(),
        host(
            "userinfo: user@internal.test",
            internal,
            "user@internal.test",
        )
        .status(400)
        .nothing(),
        host(
            "userinfo: internal.test@localhost",
            local,
            "internal.test@localhost",
        )
        .status(400)
        .nothing(),
        host(
            "two trailing dots: internal.test..",
            internal,
            "internal.test..",
        )
        .status_in(&[400, 421])
        .nothing(),
        host("space in the Host", internal, "internal test")
            .status(400)
            .nothing(),
        host(
            "path in the Host: internal.test/x",
            internal,
            "internal.test/x",
        )
        .status(400)
        .nothing(),
        host(
            "Host internal.test on a localhost connection",
            local,
            "internal.test",
        )
        .status(421)
        .nothing(),
        host(
            "Host internal.test. on a localhost connection",
            local,
            "internal.test.",
        )
        .status(421)
        .nothing(),
        host(
            "Host evil.test on a localhost connection",
            local,
            "evil.test",
        )
        .status(421)
        .nothing(),
        host(
            "Host localhost on an internal.test connection",
            internal,
            "localhost",
        )
        .status(421)
        .nothing(),
        vector(
            "absolute form https://internal.test/ with Host localhost",
            b"GET https://internal.test/ HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        )
        .status_in(&[400, 421])
        .nothing(),
        host(
            "no SNI: the Host picks the route",
            "127.0.0.1",
            "internal.test",
        )
        .status(401)
        .nothing(),
    ]
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
