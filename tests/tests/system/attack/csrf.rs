//! Cross-site requests, CORS and open redirects.
//!
//! - CSRF: an unsafe method authenticated by a credential the browser
//!   attaches by itself (the session cookie, or cached `Authorization:
//!   Basic`) needs `Origin` equal to the public origin, or, with no
//!   `Origin` or `Origin: null`, `Sec-Fetch-Site: same-origin`; otherwise
//!   403 and nothing upstream. API keys and bearer tokens are not subject.
//! - CORS: preflights from origins the route does not list are 403 and get
//!   no `Access-Control-Allow-Origin`; preflights never reach the upstream.
//! - Open redirects: the return path of a real login (`rd`) and of logout
//!   never leaves the gateway's origin (or, for logout, the provider's
//!   end-session page that comes back to it), however it is spelled.

use std::sync::Arc;

use super::login::Sessions;
use super::*;

const KEY: &str = "gh_csrf-topic-viewer-key-0123456789abcdef0123";

fn policy() -> String {
    format!(
        "{}{}{}\n[route.cors]\nallow_origins = [\"https://app.test\"]\nallow_methods = [\"GET\", \"POST\"]\nallow_headers = [\"x-api-key\"]\nallow_credentials = true\n",
        api_key("ci", KEY, &["viewer"]),
        basic_user("alice", &["operator"]),
        route("app", "/", "roles = [\"viewer\", \"operator\"]"),
    )
}

/// A request with `credential` (a header) and the given origin proofs.
fn post(name: String, method: &str, credential: (&str, &str), proofs: &[(&str, &str)]) -> Vector {
    let mut r = req(method, "/jobs/run").h(credential.0, credential.1);
    for (k, v) in proofs {
        r = r.h(k, v);
    }
    vector(name, r.body(b"x"))
}

/// Origin proofs that do not show a same-origin request. `{origin}` is ours.
const CROSS: [(&str, &[(&str, &str)]); 8] = [
    (
        "Origin: https://evil.test",
        &[("Origin", "https://evil.test")],
    ),
    ("Origin: null without Sec-Fetch-Site", &[("Origin", "null")]),
    (
        "Sec-Fetch-Site: cross-site",
        &[("Sec-Fetch-Site", "cross-site")],
    ),
    (
        "Sec-Fetch-Site: same-site",
        &[("Sec-Fetch-Site", "same-site")],
    ),
    ("no Origin, no Sec-Fetch-Site", &[]),
    (
        "Origin: null, Sec-Fetch-Site: cross-site",
        &[("Origin", "null"), ("Sec-Fetch-Site", "cross-site")],
    ),
    ("a look-alike Origin", &[("Origin", "{origin}.evil.test")]),
    ("our Origin over http", &[("Origin", "{http-origin}")]),
];

/// Proofs of a same-origin request.
const SAME: [(&str, &[(&str, &str)]); 3] = [
    ("our own Origin", &[("Origin", "{origin}")]),
    (
        "Origin: null, Sec-Fetch-Site: same-origin",
        &[("Origin", "null"), ("Sec-Fetch-Site", "same-origin")],
    ),
    (
        "no Origin, Sec-Fetch-Site: same-origin",
        &[("Sec-Fetch-Site", "same-origin")],
    ),
];

/// `proofs` with `{origin}` and `{http-origin}` filled in.
fn filled(proofs: &[(&str, &str)], origin: &str) -> Vec<(String, String)> {
    let http = origin.replace("https://", "http://");
    proofs
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_owned(),
                v.replace("{origin}", origin)
                    .replace("{http-origin}", &http),
            )
        })
        .collect()
}

/// Every cross-site and same-origin case for one credential.
fn for_credential(kind: &str, credential: (&str, &str), origin: &str) -> Vec<Vector> {
    let build = |what: &str, method: &str, proofs: &[(&str, &str)]| {
        let proofs = filled(proofs, origin);
        let proofs: Vec<(&str, &str)> = proofs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        post(
            format!("{kind}, {method}, {what}"),
            method,
            credential,
            &proofs,
        )
    };
    let mut out: Vec<Vector> = CROSS
        .iter()
        .map(|(what, proofs)| build(what, "POST", proofs).status(403).nothing())
        .collect();
    for method in ["PUT", "PATCH", "DELETE"] {
        out.push(build(CROSS[0].0, method, CROSS[0].1).status(403).nothing());
    }
    out.extend(SAME.iter().map(|(what, proofs)| {
        build(what, "POST", proofs)
            .status(200)
            .reaches(seen("POST", "/jobs/run"))
    }));
    out
}

fn cross_site(session: &str, origin: &str) -> Vec<Vector> {
    let cookie = format!("__Host-gatehouse={session}");
    let basic = basic("alice", CORRECT_HORSE);
    let mut out = for_credential("session", ("Cookie", &cookie), origin);
    out.extend(for_credential("basic", ("Authorization", &basic), origin));
    out.push(
        post(
            "API key, POST, Origin: https://evil.test (not subject)".into(),
            "POST",
            ("X-API-Key", KEY),
            &[("Origin", "https://evil.test")],
        )
        .status(200)
        .reaches(seen("POST", "/jobs/run")),
    );
    out
}

fn cors() -> Vec<Vector> {
    let preflight = |name: &str, origin: &str| {
        vector(
            name,
            req("OPTIONS", "/jobs/run")
                .h("Origin", origin)
                .h("Access-Control-Request-Method", "POST")
                .h("Access-Control-Request-Headers", "x-api-key"),
        )
    };
    let actual = |name: &str, origin: &str| {
        vector(
            name,
            req("GET", "/jobs").h("X-API-Key", KEY).h("Origin", origin),
        )
    };
    vec![
        preflight("preflight from https://evil.test", "https://evil.test")
            .status(403)
            .no_header("access-control-allow-origin")
            .nothing(),
        preflight(
            "preflight from https://app.test.evil.test",
            "https://app.test.evil.test",
        )
        .status(403)
        .no_header("access-control-allow-origin")
        .nothing(),
        preflight("preflight from Origin: null", "null")
            .status(403)
            .no_header("access-control-allow-origin")
            .nothing(),
        preflight(
            "control: preflight from https://app.test",
            "https://app.test",
        )
        .status(204)
        .header("access-control-allow-origin", "https://app.test")
        .nothing(),
        actual(
            "request from https://evil.test gets no CORS grant",
            "https://evil.test",
        )
        .status(200)
        .no_header("access-control-allow-origin")
        .reaches(seen("GET", "/jobs")),
        actual("control: request from https://app.test", "https://app.test")
            .status(200)
            .header("access-control-allow-origin", "https://app.test")
            .reaches(seen("GET", "/jobs")),
    ]
}

/// Return paths as raw query values, spelled to leave the origin.
const RETURN_PATHS: [&str; 12] = [
    "//evil.test",
    "/%5Cevil.test",
    "https://evil.test",
    "%2F%2Fevil.test",
    "%2F%5Cevil.test",
    "%5C%5Cevil.test",
    "/%09/evil.test",
    "///evil.test",
    "/%2F/evil.test",
    "https:evil.test",
    "%0D%0ALocation:%20https://evil.test",
    "javascript:alert(1)",
];

/// A redirect stays on our origin (or, for logout, goes to the provider's
/// end-session page, which must return to our origin).
fn stays_home(location: &str, origin: &str, issuer: &str) -> Result<(), String> {
    let base = url::Url::parse(&format!("{origin}/")).unwrap();
    if location.chars().any(|c| c.is_control()) {
        return Err(format!("control character in Location {location:?}"));
    }
    let to = base
        .join(location)
        .map_err(|e| format!("Location {location:?}: {e}"))?;
    if to.origin() == base.origin() {
        return Ok(());
    }
    let idp = url::Url::parse(issuer).unwrap();
    if to.origin() == idp.origin() && to.path().contains("session/end") {
        let back = to
            .query_pairs()
            .find(|(k, _)| k == "post_logout_redirect_uri");
        return match back {
            Some((_, uri)) if uri == format!("{origin}/") => Ok(()),
            other => Err(format!("end-session returns to {other:?}")),
        };
    }
    Err(format!("redirects to {to}"))
}

async fn login_return(s: &Sessions, rd: &str) -> Result<(), String> {
    let done = s.complete_with(&s.new_browser(), rd, "alice").await?;
    let location = done
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .ok_or_else(|| format!("callback answered {} without Location", done.status()))?
        .to_owned();
    stays_home(&location, &s.origin(), &s.idp.issuer)
}

async fn logout_return(s: &Sessions, rd: &str) -> Result<(), String> {
    let session = s.session_with(&s.new_browser(), "alice").await?;
    let query = format!("rd={rd}&post_logout_redirect_uri={rd}");
    let response = s
        .target
        .send_h1(
            &req("GET", &format!("/.gatehouse/logout?{query}"))
                .h("Cookie", &format!("__Host-gatehouse={session}"))
                .bytes(),
            None,
            "localhost",
        )
        .await?;
    let location = response
        .header("location")
        .ok_or_else(|| response.summary())?;
    stays_home(&location, &s.origin(), &s.idp.issuer)
}

async fn control_return(s: &Sessions) -> Result<(), String> {
    let done = s
        .complete_with(&s.new_browser(), "%2Fjobs%3Fx%3D1", "alice")
        .await?;
    match done.headers().get("location").and_then(|l| l.to_str().ok()) {
        Some("/jobs?x=1") => Ok(()),
        other => Err(format!("Location {other:?}")),
    }
}

const LOGOUT_PATHS: [&str; 4] = [
    "//evil.test",
    "/%5Cevil.test",
    "https://evil.test",
    "%2F%2Fevil.test",
];

/// Which redirect a run checks.
enum Return {
    Control,
    Login(&'static str),
    Logout(&'static str),
}

/// Every return path through a real login (and logout), each in its own
/// browser so they run side by side; the upstream sees none of it.
async fn redirects(s: Arc<Sessions>, report: &mut Report) {
    s.target.upstream.take();
    let limit = Arc::new(tokio::sync::Semaphore::new(4));
    let mut runs = Vec::new();
    let mut spawn = |name: String, way: Return| {
        let (s, limit) = (s.clone(), limit.clone());
        runs.push((
            name,
            tokio::spawn(async move {
                let _slot = limit.acquire().await.expect("semaphore");
                match way {
                    Return::Control => control_return(&s).await,
                    Return::Login(rd) => login_return(&s, rd).await,
                    Return::Logout(rd) => logout_return(&s, rd).await,
                }
            }),
        ));
    };
    spawn(
        "control: login returns to rd=%2Fjobs%3Fx%3D1".into(),
        Return::Control,
    );
    for rd in RETURN_PATHS {
        spawn(format!("login rd={rd}"), Return::Login(rd));
    }
    for rd in LOGOUT_PATHS {
        spawn(format!("logout rd={rd}"), Return::Logout(rd));
    }
    for (name, run) in runs {
        report.record(
            name,
            run.await.unwrap_or_else(|e| Err(format!("panicked: {e}"))),
        );
    }
    report.record(
        "login and logout never reach the upstream",
        Upstream::Nothing.check(&s.target.upstream.settle(SETTLE).await),
    );
}

#[tokio::test]
async fn csrf_cors_and_open_redirects() {
    let _shared = shared().await;
    let mut report = Report::new("csrf");
    match Sessions::start(&policy()).await {
        Ok(s) => match s.session("alice").await {
            Ok(session) => {
                let mut vectors = cross_site(&session, &s.origin());
                vectors.extend(cors());
                s.target.run(&mut report, vectors).await;
                redirects(Arc::new(s), &mut report).await;
            }
            Err(e) => report.record("session setup", Err(e)),
        },
        Err(e) => report.record("session setup", Err(e)),
    }
    report.finish();
}
