//! Cookie tampering and replay against real sessions from the real
//! provider: the sealed `__Host-gatehouse` cookie with bits flipped or cut
//! short, the login flow cookie presented as a session (the cookie name is
//! the seal's associated data), a session under another name, and the same
//! cookie replayed after logout (sessions carry an id that logout revokes:
//! 401 for an API call, the login redirect for a browser). Nothing of it
//! reaches the upstream; the working cookie is the control.

use base64::Engine;

use super::login::Sessions;
use super::*;

fn policy() -> String {
    route("app", "/", "roles = [\"viewer\", \"operator\"]")
}

fn with_cookie(name: &str, cookie: &str) -> Vector {
    vector(name, req("GET", "/x").h("Cookie", cookie))
}

/// `value` with bit 0 of decoded byte `at` flipped, re-encoded.
fn flipped(value: &str, at: usize) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut bytes = engine.decode(value).expect("a sealed cookie is base64url");
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 1;
    engine.encode(bytes)
}

fn truncated(value: &str) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut bytes = engine.decode(value).expect("base64url");
    bytes.pop();
    engine.encode(bytes)
}

fn tampering(session: &str) -> Vec<Vector> {
    let no_session_upstream = |r: &gatehouse_tests::RecordedRequest| {
        let cookies = r.header_values("cookie").join("; ");
        (!cookies.contains("__Host-gatehouse"))
            .then_some(())
            .ok_or_else(|| format!("cookie reached the upstream: {cookies}"))
    };
    let mut out = vec![
        with_cookie(
            "control: the session works",
            &format!("__Host-gatehouse={session}"),
        )
        .status(200)
        .reaches(seen("GET", "/x").rule(no_session_upstream).rule(|r| {
            r.has_header("x-gatehouse-user")
                .then_some(())
                .ok_or_else(|| "no identity upstream".to_owned())
        })),
        with_cookie(
            "OIDC subject is oidc:test-idp:alice",
            &format!("__Host-gatehouse={session}"),
        )
        .status(200)
        .reaches(seen("GET", "/x").with("x-gatehouse-user", "oidc:test-idp:alice")),
    ];
    let len = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(session)
        .map(|b| b.len())
        .unwrap_or(1);
    for (what, at) in [
        ("first byte", 0),
        ("byte 12", 12),
        ("middle byte", len / 2),
        ("last byte", len - 1),
    ] {
        out.push(
            with_cookie(
                &format!("flipped bit in the {what}"),
                &format!("__Host-gatehouse={}", flipped(session, at)),
            )
            .status(401)
            .nothing(),
        );
    }
    out.push(
        vector(
            "flipped bit, browser navigation: to the login page",
            req("GET", "/x").h("Accept", "text/html").h(
                "Cookie",
                &format!("__Host-gatehouse={}", flipped(session, len / 2)),
            ),
        )
        .status(302)
        .nothing(),
    );
    out
}

/// Cookies that are not this session's own: cut short, empty, the flow
/// cookie, another name, the session presented as the flow cookie.
fn impostors(session: &str, flow: &str) -> Vec<Vector> {
    vec![
        with_cookie(
            "truncated by a byte",
            &format!("__Host-gatehouse={}", truncated(session)),
        )
        .status(401)
        .nothing(),
        with_cookie("empty session cookie", "__Host-gatehouse=")
            .status(401)
            .nothing(),
        with_cookie(
            "flow cookie as the session cookie",
            &format!("__Host-gatehouse={flow}"),
        )
        .status(401)
        .nothing(),
        with_cookie(
            "session under an unprefixed name",
            &format!("gatehouse={session}"),
        )
        .status(401)
        .nothing(),
        vector(
            "session cookie as the flow cookie at the callback",
            req("GET", "/.gatehouse/callback?code=forged&state=forged")
                .h("Cookie", &format!("__Host-gatehouse-flow={session}")),
        )
        .status_in(&[400, 401])
        .nothing(),
    ]
}

fn replay(revoked: &str, kept: &str) -> Vec<Vector> {
    vec![
        with_cookie(
            "replay after logout: API call",
            &format!("__Host-gatehouse={revoked}"),
        )
        .status(401)
        .nothing(),
        vector(
            "replay after logout: browser navigation",
            req("GET", "/x")
                .h("Accept", "text/html")
                .h("Cookie", &format!("__Host-gatehouse={revoked}")),
        )
        .status(302)
        .nothing(),
        vector(
            "replay after logout: POST with a same-origin proof",
            req("POST", "/x")
                .h("Sec-Fetch-Site", "same-origin")
                .h("Cookie", &format!("__Host-gatehouse={revoked}"))
                .body(b"x"),
        )
        .status(401)
        .nothing(),
        with_cookie(
            "another session of the same user still works",
            &format!("__Host-gatehouse={kept}"),
        )
        .status(200)
        .reaches(seen("GET", "/x")),
    ]
}

async fn attack(s: &Sessions, report: &mut Report) -> Result<(), String> {
    let session = s.session("alice").await?;
    let (_, flow) = s.begin("/").await?;
    let mut vectors = tampering(&session);
    vectors.extend(impostors(&session, &flow));
    s.target.run(report, vectors).await;
    let revoked = s.session("alice").await?;
    s.logout(&revoked).await?;
    s.target.run(report, replay(&revoked, &session)).await;
    Ok(())
}

#[tokio::test]
async fn cookie_tampering_and_replay() {
    let _shared = shared().await;
    let mut report = Report::new("cookies");
    match Sessions::start(&policy()).await {
        Ok(s) => {
            if let Err(e) = attack(&s, &mut report).await {
                report.record("session setup", Err(e));
            }
        }
        Err(e) => report.record("session setup", Err(e)),
    }
    report.finish();
}
