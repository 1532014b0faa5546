//! Path confusion: spellings of a protected path that a server behind the
//! gateway reads as that path, while the gateway might route them to a
//! less protected one. Encodings, case, dot segments, `;`, backslash,
//! overlong UTF-8, fullwidth dots, double encoding, the trailing slash of
//! a route prefix, NUL.
//!
//! The policy has a public `/` and a protected `/admin/` (declared with its
//! trailing slash). Every spelling must either reach the admin route (401
//! for an anonymous caller) or be refused (400); none may reach the public
//! route's upstream. With the admin key, a case variant reaches the
//! upstream in its own spelling. A second gateway declares the route
//! `case_sensitive = true`: case variants are then 404, never the public
//! route.

use super::*;

const ADMIN_KEY: &str = "gh_path-topic-admin-key-0123456789abcdef0123";

fn policy(case_sensitive: bool) -> String {
    let admin = if case_sensitive {
        route(
            "admin",
            "/admin",
            "roles = [\"admin\"]\ncase_sensitive = true",
        )
    } else {
        route("admin", "/admin/", "roles = [\"admin\"]")
    };
    format!(
        "{NO_RATE_LIMITS}\n[roles]\nadmin = [\"*\"]\n{}{}{admin}",
        api_key("root", ADMIN_KEY, &["admin"]),
        route("site", "/", "public = true"),
    )
}

/// An anonymous GET of `target`: the admin route's 401, or a 400
/// refusal, where `statuses` says which; never the upstream.
fn denied(name: &str, target: &[u8], statuses: &[u16]) -> Vector {
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\n\r\n");
    vector(name, request).status_in(statuses).nothing()
}

/// Spellings that must reach the admin route (401), or be refused (400)
/// where `either` is allowed.
const CASE_AND_DOTS: [(&str, &str, &[u16]); 16] = [
    (
        "trailing slash: /admin is the /admin/ route",
        "/admin",
        ADMIN,
    ),
    ("/admin/ itself", "/admin/", ADMIN),
    ("/admin/x", "/admin/x", ADMIN),
    ("case: /ADMIN", "/ADMIN", ADMIN),
    ("case: /Admin/x", "/Admin/x", ADMIN),
    ("case: /aDmIn/", "/aDmIn/", ADMIN),
    ("encoded letter: /%61dmin/x", "/%61dmin/x", ADMIN),
    ("encoded capitals: /%41DMIN", "/%41DMIN", ADMIN),
    ("dot segment: /x/../admin", "/x/../admin", ADMIN),
    ("dot segment: /./admin/", "/./admin/", ADMIN),
    ("dot segment: /admin/./x/..", "/admin/./x/..", ADMIN),
    ("encoded dots: /x/%2e%2e/admin", "/x/%2e%2e/admin", EITHER),
    ("mixed dots: /x/.%2E/admin", "/x/.%2E/admin", EITHER),
    ("dots above the root: /../admin", "/../admin", REFUSED),
    ("empty segment: //admin", "//admin", EITHER),
    ("empty segments: /x//..//admin", "/x//..//admin", EITHER),
];

/// Spellings no server may read differently from the gateway: refused.
const ENCODINGS: [(&str, &str); 16] = [
    ("semicolon: /admin;x", "/admin;x"),
    ("semicolon: /x/..;/admin", "/x/..;/admin"),
    ("encoded semicolon: /admin%3bx/", "/admin%3bx/"),
    ("backslash: /x\\..\\admin", "/x\\..\\admin"),
    ("backslash: /admin\\x", "/admin\\x"),
    ("encoded backslash: /x%5c..%5cadmin", "/x%5c..%5cadmin"),
    ("encoded slash: /x%2f..%2fadmin", "/x%2f..%2fadmin"),
    ("encoded slash: /admin%2Fx", "/admin%2Fx"),
    (
        "overlong UTF-8 dots: /x/%C0%AE%C0%AE/admin",
        "/x/%C0%AE%C0%AE/admin",
    ),
    (
        "overlong UTF-8 slash: /x%C0%AF..%C0%AFadmin",
        "/x%C0%AF..%C0%AFadmin",
    ),
    (
        "fullwidth dots: /x/%EF%BC%8E%EF%BC%8E/admin",
        "/x/%EF%BC%8E%EF%BC%8E/admin",
    ),
    ("fullwidth dots, raw UTF-8", "/x/\u{ff0e}\u{ff0e}/admin"),
    ("double encoding: /%2561dmin", "/%2561dmin"),
    (
        "double-encoded dots: /x/%252e%252e/admin",
        "/x/%252e%252e/admin",
    ),
    ("encoded NUL: /admin%00", "/admin%00"),
    ("encoded NUL: /x%00/../admin", "/x%00/../admin"),
];

const ADMIN: &[u16] = &[401];
const REFUSED: &[u16] = &[400];
const EITHER: &[u16] = &[400, 401];

fn spellings() -> Vec<Vector> {
    let mut out: Vec<Vector> = CASE_AND_DOTS
        .iter()
        .map(|(name, target, statuses)| denied(name, target.as_bytes(), statuses))
        .collect();
    out.extend(
        ENCODINGS
            .iter()
            .map(|(name, target)| denied(name, target.as_bytes(), REFUSED)),
    );
    out.extend([
        denied("raw NUL byte: /admin\\0", b"/admin\0", REFUSED),
        denied(
            "absolute form: https://localhost/admin",
            b"https://localhost/admin",
            EITHER,
        ),
        vector(
            "fragment: /x#/../admin never reaches the upstream",
            b"GET /x#/../admin HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        )
        .status_in(&[200, 400])
        .at_most(seen("GET", "/x")),
    ]);
    out
}

fn with_key(name: &str, target: &str, upstream_target: &str) -> Vector {
    vector(name, req("GET", target).h("X-API-Key", ADMIN_KEY))
        .status(200)
        .reaches(seen("GET", upstream_target).without(&["x-api-key"]))
}

fn controls() -> Vec<Vector> {
    vec![
        with_key(
            "admin key: /ADMIN/x reaches the upstream in its own spelling",
            "/ADMIN/x",
            "/ADMIN/x",
        ),
        with_key(
            "admin key: /admin reaches the upstream as /admin",
            "/admin",
            "/admin",
        ),
        vector("/adminx is not the admin route", req("GET", "/adminx"))
            .status(200)
            .reaches(seen("GET", "/adminx")),
        vector(
            "dot segments are resolved before the upstream",
            req("GET", "/x/./y/../z"),
        )
        .status(200)
        .reaches(seen("GET", "/x/z")),
    ]
}

fn case_sensitive() -> Vec<Vector> {
    vec![
        denied("case_sensitive route: /ADMIN/x is 404", b"/ADMIN/x", &[404]),
        denied("case_sensitive route: /Admin is 404", b"/Admin", &[404]),
        with_key(
            "case_sensitive route: /admin/x with the key passes",
            "/admin/x",
            "/admin/x",
        ),
    ]
}

#[tokio::test]
async fn path_confusion() {
    let _shared = shared().await;
    let mut vectors = spellings();
    vectors.extend(controls());
    run_groups(
        "path",
        vec![(policy(false), vectors), (policy(true), case_sensitive())],
    )
    .await
    .finish();
}
