//! Method confusion. Per-method rules are matched on the method exactly as
//! RFC 9110 says (case-sensitive), so a method that is not all uppercase
//! (`post`, `PoSt`) is refused with 400 instead of skipping the POST rule
//! and reaching a framework that upper-cases it. CONNECT and TRACE are 405,
//! and so is an extension method the route does not list. HEAD is
//! authorised by GET's rule. Override headers (`X-HTTP-Method-Override`)
//! never reach the upstream, which gets the method that was authorised.
//!
//! A second gateway lists `extension_methods = ["PROPFIND"]` on a route.

use super::*;

const VIEWER: &str = "gh_methods-topic-viewer-key-0123456789abcdef0";
const OPERATOR: &str = "gh_methods-topic-operator-key-0123456789abcde";

fn policy() -> String {
    format!(
        "{NO_RATE_LIMITS}\n[roles]\nviewer = [\"jobs:view\"]\noperator = [\"jobs:view\", \"jobs:run\"]\n{}{}{}{}{}",
        api_key("viewer", VIEWER, &["viewer"]),
        api_key("operator", OPERATOR, &["operator"]),
        route("site", "/", "public = true"),
        route(
            "jobs",
            "/jobs",
            "roles = [\"viewer\", \"operator\"]\n[route.methods.POST]\nroles = [\"operator\"]"
        ),
        route(
            "reports",
            "/reports",
            "roles = [\"viewer\", \"operator\"]\n[route.methods.GET]\nroles = [\"operator\"]"
        ),
    )
}

fn extension_policy() -> String {
    format!(
        "{NO_RATE_LIMITS}{}",
        route(
            "dav",
            "/",
            "public = true\nextension_methods = [\"PROPFIND\"]"
        ),
    )
}

/// `method target` with the viewer's key.
fn as_viewer(method: &str, target: &str) -> Vec<u8> {
    req(method, target).h("X-API-Key", VIEWER).bytes()
}

fn case() -> Vec<Vector> {
    vec![
        vector("control: GET /jobs as viewer", as_viewer("GET", "/jobs"))
            .status(200)
            .reaches(seen("GET", "/jobs")),
        vector(
            "control: POST /jobs as viewer is 403",
            as_viewer("POST", "/jobs"),
        )
        .status(403)
        .nothing(),
        vector(
            "control: POST /jobs as operator",
            req("POST", "/jobs").h("X-API-Key", OPERATOR).body(b"x"),
        )
        .status(200)
        .reaches(seen("POST", "/jobs")),
        vector("post /jobs as viewer", as_viewer("post", "/jobs"))
            .status(400)
            .nothing(),
        vector("PoSt /jobs as viewer", as_viewer("PoSt", "/jobs"))
            .status(400)
            .nothing(),
        vector("Post /jobs as viewer", as_viewer("Post", "/jobs"))
            .status(400)
            .nothing(),
        vector("get /jobs", as_viewer("get", "/jobs"))
            .status(400)
            .nothing(),
        vector(
            "HEAD /jobs as viewer follows GET",
            as_viewer("HEAD", "/jobs"),
        )
        .status(200)
        .reaches(seen("HEAD", "/jobs")),
        vector(
            "HEAD /reports as viewer follows GET's operator rule",
            as_viewer("HEAD", "/reports"),
        )
        .status(403)
        .nothing(),
        vector("HEAD /jobs anonymous", req("HEAD", "/jobs"))
            .status(401)
            .nothing(),
    ]
}

fn extension() -> Vec<Vector> {
    vec![
        vector(
            "PROPFIND /jobs (not listed)",
            as_viewer("PROPFIND", "/jobs"),
        )
        .status(405)
        .nothing(),
        vector("FOO / on a public route", req("FOO", "/"))
            .status(405)
            .nothing(),
        vector("PURGE / on a public route", req("PURGE", "/"))
            .status(405)
            .nothing(),
        vector("TRACE /", req("TRACE", "/")).status(405).nothing(),
        vector("CONNECT localhost:443", req("CONNECT", "localhost:443"))
            .status(405)
            .nothing(),
        vector("NUL in the method", req("G\0T", "/"))
            .status(400)
            .nothing(),
        vector("slash in the method", req("GE/T", "/"))
            .status(400)
            .nothing(),
        vector("a 1000-byte method", req(&"A".repeat(1000), "/"))
            .status_in(&[400, 405])
            .nothing(),
    ]
}

fn overrides() -> Vec<Vector> {
    [
        "X-HTTP-Method-Override",
        "X-Method-Override",
        "X-HTTP-Method",
    ]
    .iter()
    .flat_map(|header| {
        ["DELETE", "POST"].map(|method| {
            vector(
                format!("{header}: {method} on a GET"),
                req("GET", "/jobs").h("X-API-Key", VIEWER).h(header, method),
            )
            .status(200)
            .reaches(seen("GET", "/jobs").without(&[header]))
        })
    })
    .collect()
}

fn listed() -> Vec<Vector> {
    vec![
        vector("extension_methods: PROPFIND / passes", req("PROPFIND", "/"))
            .status(200)
            .reaches(seen("PROPFIND", "/")),
        vector("extension_methods: propfind / is 400", req("propfind", "/"))
            .status(400)
            .nothing(),
        vector(
            "extension_methods: MKCOL / (not listed) is 405",
            req("MKCOL", "/"),
        )
        .status(405)
        .nothing(),
    ]
}

#[tokio::test]
async fn method_confusion() {
    let _shared = shared().await;
    let mut vectors = case();
    vectors.extend(extension());
    vectors.extend(overrides());
    let mut report = run_groups(
        "methods",
        vec![(policy(), vectors), (extension_policy(), listed())],
    )
    .await;
    let head_rule = policy().replace("[route.methods.GET]", "[route.methods.HEAD]");
    report.record(
        "[route.methods.HEAD] is a policy error",
        check_refuses(&head_rule, "HEAD"),
    );
    report.finish();
}
