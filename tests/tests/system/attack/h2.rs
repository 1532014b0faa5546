//! Malformed HTTP/2 (RFC 9113 §8.1.1, §8.2, §8.3): `transfer-encoding`,
//! a `content-length` that disagrees with the DATA frames, connection-
//! specific headers, uppercase names, CR, LF or NUL in values, pseudo-header
//! tricks, and an `:authority` that disagrees with `host`. Each is refused
//! (400, a stream reset, or a connection error) and never reaches the
//! HTTP/1.1 upstream, where it could become a smuggled or injected header.
//! Well-formed requests through the same client are the control.

use super::h2wire::{self, get, request, H2Outcome, H2Request};
use super::*;

const ADMIN_KEY: &str = "gh_h2-topic-admin-key-0123456789abcdef012345";
const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";

fn policy() -> String {
    format!(
        "{NO_RATE_LIMITS}\n[roles]\nadmin = [\"*\"]\n{}{}{}",
        api_key("root", ADMIN_KEY, &["admin"]),
        route("site", "/", "public = true"),
        route("admin", "/admin", "roles = [\"admin\"]"),
    )
}

enum Want {
    /// 400, RST_STREAM, GOAWAY or a close; nothing upstream.
    Refused,
    /// Refused, or a complete request never reached the upstream.
    RefusedNoComplete,
    /// This status, and the upstream outcome.
    Status(u16, Upstream),
}

struct H2Vector {
    name: &'static str,
    request: H2Request,
    want: Want,
}

fn v(name: &'static str, request: H2Request, want: Want) -> H2Vector {
    H2Vector {
        name,
        request,
        want,
    }
}

fn post(path: &str) -> H2Request {
    request(&[
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", path),
    ])
}

fn controls() -> Vec<H2Vector> {
    use Want::Status;
    vec![
        v(
            "control: GET /",
            get("/"),
            Status(200, Upstream::Exactly(seen("GET", "/"))),
        ),
        v(
            "control: POST with a matching content-length",
            post("/").field(b"content-length", b"5").data(b"hello"),
            Status(200, Upstream::Exactly(seen("POST", "/"))),
        ),
        v(
            "forged x-gatehouse-user next to a real API key",
            get("/admin")
                .field(b"x-api-key", ADMIN_KEY.as_bytes())
                .field(b"x-gatehouse-user", b"admin"),
            Status(
                200,
                Upstream::Exactly(seen("GET", "/admin").rule(|r| {
                    let users = r.header_values("x-gatehouse-user");
                    (users.len() == 1 && users[0] != "admin")
                        .then_some(())
                        .ok_or_else(|| format!("x-gatehouse-user {users:?}"))
                })),
            ),
        ),
        v(
            "dot segments in :path reach the admin route",
            get("/x/../admin"),
            Status(401, Upstream::Nothing),
        ),
        v(
            "case in :path reaches the admin route",
            get("/ADMIN"),
            Status(401, Upstream::Nothing),
        ),
        v(
            "encoded slash in :path",
            get("/admin%2Fx"),
            Status(400, Upstream::Nothing),
        ),
    ]
}

fn framing() -> Vec<H2Vector> {
    use Want::{Refused, RefusedNoComplete};
    let mut long = b"hello".to_vec();
    long.extend_from_slice(SMUGGLED);
    vec![
        v(
            "transfer-encoding: chunked",
            post("/")
                .field(b"transfer-encoding", b"chunked")
                .data(b"0\r\n\r\n"),
            Refused,
        ),
        v(
            "transfer-encoding on a GET",
            get("/").field(b"transfer-encoding", b"chunked"),
            Refused,
        ),
        v(
            "content-length 5, DATA longer (a request)",
            post("/").field(b"content-length", b"5").data(&long),
            RefusedNoComplete,
        ),
        v(
            "content-length 50, DATA shorter",
            post("/").field(b"content-length", b"50").data(b"hello"),
            RefusedNoComplete,
        ),
        v(
            "content-length 5, no DATA",
            get("/").field(b"content-length", b"5"),
            RefusedNoComplete,
        ),
        v(
            "two content-length values",
            post("/")
                .field(b"content-length", b"5")
                .field(b"content-length", b"6")
                .data(b"hello"),
            RefusedNoComplete,
        ),
        v(
            "connection: keep-alive",
            get("/").field(b"connection", b"keep-alive"),
            Refused,
        ),
        v(
            "keep-alive",
            get("/").field(b"keep-alive", b"timeout=5"),
            Refused,
        ),
        v(
            "proxy-connection",
            get("/").field(b"proxy-connection", b"keep-alive"),
            Refused,
        ),
        v(
            "upgrade: websocket",
            get("/").field(b"upgrade", b"websocket"),
            Refused,
        ),
        v("te: gzip", get("/").field(b"te", b"gzip"), Refused),
    ]
}

fn fields() -> Vec<H2Vector> {
    use Want::Refused;
    vec![
        v(
            "uppercase name X-Gatehouse-User",
            get("/").field(b"X-Gatehouse-User", b"admin"),
            Refused,
        ),
        v(
            "uppercase name Content-Length",
            post("/").field(b"Content-Length", b"5").data(b"hello"),
            Refused,
        ),
        v(
            "CRLF in a value injects a header",
            get("/").field(b"x-a", b"b\r\nx-gatehouse-user: admin"),
            Refused,
        ),
        v(
            "LF in a value",
            get("/").field(b"x-a", b"b\nx-gatehouse-user: admin"),
            Refused,
        ),
        v("CR in a value", get("/").field(b"x-a", b"b\rx"), Refused),
        v("NUL in a value", get("/").field(b"x-a", b"b\0c"), Refused),
        v("colon in a name", get("/").field(b"x:a", b"b"), Refused),
        v("space in a name", get("/").field(b"x a", b"b"), Refused),
        v(
            "underscore name x_gatehouse_user",
            get("/").field(b"x_gatehouse_user", b"admin"),
            Refused,
        ),
    ]
}

/// Pseudo-header tricks on an otherwise normal GET: the fields after
/// `:method`, `:scheme` and `:authority`.
const PSEUDO: [(&str, &[(&str, &str)]); 8] = [
    ("duplicate :path", &[(":path", "/"), (":path", "/admin")]),
    ("missing :path", &[]),
    (
        "pseudo-header after a regular one",
        &[("x-a", "1"), (":path", "/")],
    ),
    (
        "unknown pseudo-header :foo",
        &[(":path", "/"), (":foo", "bar")],
    ),
    (
        ":status in a request",
        &[(":path", "/"), (":status", "200")],
    ),
    ("empty :path", &[(":path", "")]),
    (":path without a leading slash", &[(":path", "admin")]),
    (":path * on a GET", &[(":path", "*")]),
];

/// Whole requests with a bad pseudo-header value (path `/admin` or `/`).
const WHOLE: [(&str, [(&str, &str); 4]); 4] = [
    (
        "missing :method",
        [
            (":scheme", "https"),
            (":authority", "localhost"),
            (":path", "/"),
            ("x-a", "1"),
        ],
    ),
    (
        ":authority with userinfo",
        [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "user@localhost"),
            (":path", "/"),
        ],
    ),
    (
        "lowercase :method post",
        [
            (":method", "post"),
            (":scheme", "https"),
            (":authority", "localhost"),
            (":path", "/admin"),
        ],
    ),
    (
        ":method with a space",
        [
            (":method", "GET "),
            (":scheme", "https"),
            (":authority", "localhost"),
            (":path", "/"),
        ],
    ),
];

fn pseudo() -> Vec<H2Vector> {
    let base = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "localhost"),
    ];
    let mut out: Vec<H2Vector> = PSEUDO
        .iter()
        .map(|(name, extra)| {
            let mut fields = base.to_vec();
            fields.extend_from_slice(extra);
            v(name, request(&fields), Want::Refused)
        })
        .collect();
    out.extend(
        WHOLE
            .iter()
            .map(|(name, fields)| v(name, request(fields), Want::Refused)),
    );
    out.push(v(
        ":authority disagrees with host",
        get("/").field(b"host", b"other.test"),
        Want::Refused,
    ));
    out.push(v(
        ":protocol on a GET",
        request(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "localhost"),
            (":path", "/"),
            (":protocol", "websocket"),
        ]),
        Want::Refused,
    ));
    out
}

async fn check(target: &Target, vector: &H2Vector) -> Result<(), String> {
    target.upstream.take();
    let stream = target.connect_h2("localhost").await?;
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err("the gateway did not negotiate h2".to_owned());
    }
    let outcome = h2wire::send(stream, &vector.request).await;
    let received = target.upstream.settle(SETTLE).await;
    let (status_ok, upstream) = match &vector.want {
        Want::Refused => (outcome.refused(), Upstream::Nothing.check(&received)),
        Want::RefusedNoComplete => (outcome.refused(), Upstream::NoComplete.check(&received)),
        Want::Status(status, upstream) => (
            outcome == H2Outcome::Response(*status),
            upstream.check(&received),
        ),
    };
    let mut problems = Vec::new();
    if !status_ok {
        problems.push(format!("client got {outcome:?}"));
    }
    if let Err(e) = upstream {
        problems.push(e);
    }
    verdict(problems, &format!("{outcome:?}"))
}

#[tokio::test]
async fn malformed_http2() {
    let _shared = shared().await;
    let mut report = Report::new("h2");
    let mut vectors = controls();
    vectors.extend(framing());
    vectors.extend(fields());
    vectors.extend(pseudo());
    match Target::start(&policy()).await {
        Ok(target) => {
            for vector in &vectors {
                report.record(vector.name, check(&target, vector).await);
            }
        }
        Err(e) => {
            for vector in &vectors {
                report.record(vector.name, Err(e.clone()));
            }
        }
    }
    report.finish();
}
