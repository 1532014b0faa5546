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

fn spellings() -> Vec<Vector> {
    let admin = &[401];
    let refused = &[400];
    let either = &[400, 401];
    vec![
        denied(
            "trailing slash: /admin is the /admin/ route",
            b"/admin",
            admin,
        ),
        denied("/admin/ itself", b"/admin/", admin),
        denied("/admin/x", b"/admin/x", admin),
        denied("case: /ADMIN", b"/ADMIN", admin),
        denied("case: /Admin/x", b"/Admin/x", admin),
        denied("case: /aDmIn/", b"/aDmIn/", admin),
        denied("encoded letter: /%61dmin/x", b"/%61dmin/x", admin),
        denied("encoded capitals: /%41DMIN", b"/%41DMIN", admin),
        denied("dot segment: /x/../admin", b"/x/../admin", admin),
        denied("dot segment: /./admin/", b"/./admin/", admin),
        denied("dot segment: /admin/./x/..", b"/admin/./x/..", admin),
        denied("encoded dots: /x/%2e%2e/admin", b"/x/%2e%2e/admin", either),
        denied("mixed dots: /x/.%2E/admin", b"/x/.%2E/admin", either),
        denied("dots above the root: /../admin", b"/../admin", refused),
        denied("empty segment: //admin", b"//admin", either),
        denied("empty segments: /x//..//admin", b"/x//..//admin", either),
        denied("semicolon: /admin;x", b"/admin;x", refused),
        denied("semicolon: /x/..;/admin", b"/x/..;/admin", refused),
        denied("encoded semicolon: /admin%3bx/", b"/admin%3bx/", refused),
        denied("backslash: /x\\..\\admin", b"/x\\..\\admin", refused),
        denied("backslash: /admin\\x", b"/admin\\x", refused),
        denied(
            "encoded backslash: /x%5c..%5cadmin",
            b"/x%5c..%5cadmin",
            refused,
        ),
        denied(
            "encoded slash: /x%2f..%2fadmin",
            b"/x%2f..%2fadmin",
            refused,
        ),
        denied("encoded slash: /admin%2Fx", b"/admin%2Fx", refused),
        denied(
            "overlong UTF-8 dots: /x/%C0%AE%C0%AE/admin",
            b"/x/%C0%AE%C0%AE/admin",
            refused,
        ),
        denied(
            "overlong UTF-8 slash: /x%C0%AF..%C0%AFadmin",
            b"/x%C0%AF..%C0%AFadmin",
            refused,
        ),
        denied(
            "fullwidth dots: /x/%EF%BC%8E%EF%BC%8E/admin",
            b"/x/%EF%BC%8E%EF%BC%8E/admin",
            refused,
        ),
        denied(
            "fullwidth dots, raw UTF-8",
            "/x/\u{ff0e}\u{ff0e}/admin".as_bytes(),
            refused,
        ),
        denied("double encoding: /%2561dmin", b"/%2561dmin", refused),
        denied(
            "double-encoded dots: /x/%252e%252e/admin",
            b"/x/%252e%252e/admin",
            refused,
        ),
        denied("encoded NUL: /admin%00", b"/admin%00", refused),
        denied("encoded NUL: /x%00/../admin", b"/x%00/../admin", refused),
        denied("raw NUL byte: /admin\\0", b"/admin\0", refused),
        vector(
            "fragment: /x#/../admin never reaches the upstream",
            b"GET /x#/../admin HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        )
        .status_in(&[200, 400])
        .at_most(seen("GET", "/x")),
        denied(
            "absolute form: https://localhost/admin",
            b"https://localhost/admin",
            either,
        ),
    ]
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
