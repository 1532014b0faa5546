//! Request smuggling and framing over HTTP/1.1: every request whose length
//! a server behind the gateway could read differently is refused (400, or
//! 431 for oversized heads) with the connection closed, and nothing of it,
//! least of all the request hidden in its body, reaches the upstream.
//! Bodies of refused requests are never read as the next request.
//!
//! The hidden request is always `GET /smuggled`; a vector holds only if the
//! upstream never sees it.

use super::*;

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";

fn policy() -> String {
    format!(
        "{NO_RATE_LIMITS}\n[roles]\nviewer = [\"site:view\"]\n{}{}{}",
        api_key(
            "ci",
            "gh_smuggling-topic-key-0123456789abcdef0123456",
            &["viewer"]
        ),
        route("site", "/", "public = true\nmax_body = \"1KiB\""),
        route("private", "/private", "roles = [\"viewer\"]"),
    )
}

/// `POST /` with `headers` (lines without CRLF) and `body`, as bytes.
fn post(headers: &[&str], body: &str) -> Vec<u8> {
    let mut out = String::from("POST / HTTP/1.1\r\nHost: localhost\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

/// Refused with 400, closed, nothing upstream.
fn refused(name: &str, request: Vec<u8>) -> Vector {
    vector(name, request).status(400).closes().nothing()
}

fn length_and_encoding() -> Vec<Vector> {
    let chunked_then_smuggled = format!("0\r\n\r\n{SMUGGLED}");
    let cl = format!("Content-Length: {}", chunked_then_smuggled.len());
    let te = "Transfer-Encoding: chunked";
    vec![
        refused(
            "CL.TE: Content-Length then Transfer-Encoding",
            post(&[&cl, te], &chunked_then_smuggled),
        ),
        refused(
            "TE.CL: Transfer-Encoding then Content-Length",
            post(&[te, &cl], &chunked_then_smuggled),
        ),
        refused(
            "duplicate Content-Length, same value",
            post(&["Content-Length: 5", "Content-Length: 5"], "hello"),
        ),
        refused(
            "conflicting Content-Length",
            post(
                &[
                    "Content-Length: 5",
                    &format!("Content-Length: {}", 5 + SMUGGLED.len()),
                ],
                &format!("hello{SMUGGLED}"),
            ),
        ),
        refused(
            "Content-Length list: 5, 5",
            post(&["Content-Length: 5, 5"], "hello"),
        ),
        refused("Content-Length: +5", post(&["Content-Length: +5"], "hello")),
        refused(
            "Content-Length: 0x5",
            post(&["Content-Length: 0x5"], "hello"),
        ),
        refused(
            "Content-Length: 5abc",
            post(&["Content-Length: 5abc"], "hello"),
        ),
        refused("Content-Length: -1", post(&["Content-Length: -1"], "")),
        refused(
            "Transfer-Encoding: chunked, identity",
            post(&["Transfer-Encoding: chunked, identity"], "0\r\n\r\n"),
        ),
        refused(
            "Transfer-Encoding: identity",
            post(
                &["Transfer-Encoding: identity", "Content-Length: 5"],
                "hello",
            ),
        ),
        refused(
            "Transfer-Encoding: xchunked",
            post(&["Transfer-Encoding: xchunked"], "0\r\n\r\n"),
        ),
        refused("Transfer-Encoding twice", post(&[te, te], "0\r\n\r\n")),
        refused("Transfer-Encoding in HTTP/1.0", {
            let mut r = b"POST / HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec();
            r.extend_from_slice(SMUGGLED.as_bytes());
            r
        }),
    ]
}

fn header_syntax() -> Vec<Vector> {
    let body = format!("0\r\n\r\n{SMUGGLED}");
    let cl = format!("Content-Length: {}", body.len());
    vec![
        refused(
            "space before colon: Transfer-Encoding : chunked",
            post(&[&cl, "Transfer-Encoding : chunked"], &body),
        ),
        refused(
            "space before colon: Content-Length : 5",
            post(&["Content-Length : 5"], "hello"),
        ),
        refused(
            "obs-fold hides Transfer-Encoding",
            post(&[&cl, "X-A: b", " Transfer-Encoding: chunked"], &body),
        ),
        refused(
            "obs-fold in a header",
            post(&["Content-Length: 5", "X-Folded: a", " b"], "hello"),
        ),
        refused(
            "bare LF ends a header before Transfer-Encoding",
            post(&[&cl, "X-A: b\nTransfer-Encoding: chunked"], &body),
        ),
        refused(
            "bare CR in a header value",
            post(&[&cl, "X-A: b\rTransfer-Encoding: chunked"], &body),
        ),
        refused(
            "NUL in a header value",
            post(&["Content-Length: 5", "X-A: a\0b"], "hello"),
        ),
        refused(
            "space in a header name",
            post(&["Content-Length: 5", "X Y: z"], "hello"),
        ),
        vector(
            "bare LF line endings throughout",
            b"GET /lf HTTP/1.1\nHost: localhost\n\n".to_vec(),
        )
        .status_in(&[200, 400])
        .at_most(seen("GET", "/lf")),
    ]
}

fn sizes() -> Vec<Vector> {
    let big = "a".repeat(64 * 1024);
    let many: Vec<String> = (0..1000).map(|i| format!("X-H{i}: v")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    vec![
        vector(
            "huge head: one 64 KiB header",
            req("GET", "/").h("X-Big", &big),
        )
        .status(431)
        .closes()
        .nothing(),
        vector(
            "huge request line: 64 KiB target",
            req("GET", &format!("/{big}")),
        )
        .status_in(&[400, 414, 431])
        .nothing(),
        vector("1000 headers", post(&many, ""))
            .status_in(&[400, 431])
            .nothing(),
    ]
}

/// Refused requests whose bodies are requests: the body must be
/// discarded (or the connection closed), never parsed as the next request.
fn pipelining() -> Vec<Vector> {
    let padded = format!("{SMUGGLED}{}", "x".repeat(2000 - SMUGGLED.len()));
    vec![
        vector(
            "401 with a request as its body",
            req("POST", "/private").body(SMUGGLED.as_bytes()),
        )
        .status(401)
        .nothing(),
        vector(
            "400 (bad path) with a request as its body",
            req("POST", "/a%2Fb").body(SMUGGLED.as_bytes()),
        )
        .status(400)
        .nothing(),
        vector(
            "413 (declared too large) with a request as its body",
            req("POST", "/").body(padded.as_bytes()),
        )
        .status(413)
        .closes()
        .nothing(),
        vector(
            "a GET's body is its body, not a second request",
            req("GET", "/get-with-body").body(SMUGGLED.as_bytes()),
        )
        .status(200)
        .reaches(seen("GET", "/get-with-body").rule(|r| {
            (r.body == SMUGGLED.as_bytes())
                .then_some(())
                .ok_or_else(|| format!("body {:?}", String::from_utf8_lossy(&r.body)))
        })),
        vector(
            "chunked trailer carrying X-Gatehouse-User",
            post(
                &["Transfer-Encoding: chunked"],
                "5\r\nhello\r\n0\r\nX-Gatehouse-User: admin\r\n\r\n",
            ),
        )
        .status_in(&[200, 400])
        .at_most(seen("POST", "/").without(&["x-gatehouse-user"]).rule(|r| {
            let raw = String::from_utf8_lossy(&r.raw).to_ascii_lowercase();
            (!raw.contains("x-gatehouse-user"))
                .then_some(())
                .ok_or_else(|| "the trailer reached the upstream".to_owned())
        })),
    ]
}

#[tokio::test]
async fn smuggling_over_http1() {
    let _shared = shared().await;
    let mut vectors = length_and_encoding();
    vectors.extend(header_syntax());
    vectors.extend(sizes());
    vectors.extend(pipelining());
    run_groups("smuggling", vec![(policy(), vectors)])
        .await
        .finish();
}
