//! Header spoofing: identity headers in every spelling, the design note's
//! list of headers that servers and frameworks trust (client address,
//! original URL, method override, remote user), and hop-by-hop tricks that
//! would make a proxy drop the headers the gateway sets.
//!
//! - `X-Gatehouse-*` and `X-Auth-Request-*` never reach the upstream from a
//!   client, in any case; the gateway's own values are the only ones.
//! - A header name with `_` is refused with 400 (CGI, WSGI and PHP read
//!   `X_Gatehouse_User` as `X-Gatehouse-User`).
//! - Every name of the stripped list is removed unless the route's
//!   `pass_headers` names it (a second gateway; the identity headers can
//!   never be named there, which `check` proves).
//! - `Connection: <name>` must not remove what the gateway sets, nor reach
//!   the upstream naming one of the gateway's headers (refusing such a
//!   request with 400 is as safe).

use super::*;

const KEY: &str = "gh_spoofing-topic-viewer-key-0123456789abcdef";

/// The stripped list of the design note, as the client spells it.
pub const STRIPPED: [&str; 25] = [
    "X-Real-IP",
    "True-Client-IP",
    "X-Client-IP",
    "Client-IP",
    "X-Cluster-Client-IP",
    "CF-Connecting-IP",
    "Fastly-Client-IP",
    "X-Original-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "X-Forwarded-Server",
    "X-Original-URL",
    "X-Rewrite-URL",
    "X-Original-Host",
    "X-HTTP-Method-Override",
    "X-Method-Override",
    "X-HTTP-Method",
    "Remote-User",
    "X-Remote-User",
    "X-Forwarded-User",
    "X-Forwarded-Email",
    "X-Forwarded-Preferred-Username",
    "X-Forwarded-Groups",
    "X-Forwarded-Access-Token",
];

fn policy(pass: bool) -> String {
    let site = if pass {
        "public = true\npass_headers = [\"x-real-ip\"]"
    } else {
        "public = true"
    };
    format!(
        "{NO_RATE_LIMITS}\n[roles]\nviewer = [\"site:view\"]\n{}{}{}",
        api_key("spoofer", KEY, &["viewer"]),
        route("site", "/", site),
        route("private", "/private", "roles = [\"viewer\"]"),
    )
}

/// Anonymous GET / with `name: value`: 200, the header never arrives.
fn stripped(name: &str, value: &str) -> Vector {
    vector(
        format!("{name} is stripped"),
        req("GET", "/").h(name, value),
    )
    .status(200)
    .reaches(seen("GET", "/").without(&[name]))
}

fn refused_name(name: &str) -> Vector {
    vector(
        format!("underscore name {name} is refused"),
        req("GET", "/").h(name, "admin"),
    )
    .status(400)
    .nothing()
}

fn identity_spellings() -> Vec<Vector> {
    let mut out: Vec<Vector> = [
        "X-Gatehouse-User",
        "x-gatehouse-user",
        "X-GATEHOUSE-USER",
        "X-Gatehouse-Roles",
        "X-Gatehouse-Email",
        "X-Gatehouse-Assertion",
        "X-Auth-Request-User",
        "X-Auth-Request-Email",
        "X-Auth-Request-Groups",
        "x-auth-request-preferred-username",
        "X-Auth-Request-Access-Token",
    ]
    .iter()
    .map(|name| stripped(name, "admin"))
    .collect();
    out.extend(
        [
            "X_Gatehouse_User",
            "x_gatehouse_user",
            "X_Gatehouse_Roles",
            "X-Gatehouse_User",
            "X_Auth_Request_User",
            "X_Auth_Request_Email",
            "X_Real_IP",
            "Foo_Bar",
        ]
        .iter()
        .map(|name| refused_name(name)),
    );
    out.push(
        vector(
            "forged identity next to a real API key",
            req("GET", "/private")
                .h("X-API-Key", KEY)
                .h("X-Gatehouse-User", "admin")
                .h("x-gatehouse-roles", "admin"),
        )
        .status(200)
        .reaches(
            seen("GET", "/private")
                .with("x-gatehouse-roles", "viewer")
                .rule(one_gateway_user),
        ),
    );
    out
}

/// Exactly one `X-Gatehouse-User`, and not a forged one.
fn one_gateway_user(r: &gatehouse_tests::RecordedRequest) -> Result<(), String> {
    let users = r.header_values("x-gatehouse-user");
    match users.as_slice() {
        [one] if one != "admin" => Ok(()),
        _ => Err(format!("x-gatehouse-user {users:?}")),
    }
}

/// The `Connection` header the upstream got names none of the headers
/// the gateway sets.
fn connection_names_nothing_of_ours(r: &gatehouse_tests::RecordedRequest) -> Result<(), String> {
    let ours = ["x-gatehouse-", "x-forwarded-", "x-request-id"];
    for value in r.header_values("connection") {
        for token in value.split(',').map(|t| t.trim().to_ascii_lowercase()) {
            if ours.iter().any(|o| token.starts_with(o)) {
                return Err(format!("upstream Connection: {value}"));
            }
        }
    }
    Ok(())
}

fn stripped_list() -> Vec<Vector> {
    let mut out: Vec<Vector> = STRIPPED
        .iter()
        .map(|name| stripped(name, "10.0.0.5"))
        .collect();
    for name in [
        "x-real-ip",
        "X-REAL-IP",
        "x-original-url",
        "X-HTTP-METHOD-OVERRIDE",
    ] {
        out.push(stripped(name, "/private"));
    }
    out
}

/// `Connection` asks every hop to delete the headers it names. Aimed at the
/// headers the gateway sets, it would strip the caller's identity or
/// address on the way upstream, so any nomination beyond `close`,
/// `keep-alive`, `upgrade` and `te` is refused (400, connection closed).
fn hop_by_hop() -> Vec<Vector> {
    let refused = |name: &str, value: &str| {
        vector(
            format!("Connection: {value} is refused"),
            req("GET", "/private")
                .h("X-API-Key", KEY)
                .h(name, "forged")
                .h("Connection", value),
        )
        .status(400)
        .nothing()
    };
    let mut out = vec![
        refused("X-Gatehouse-User", "X-Gatehouse-User"),
        refused("X-Gatehouse-Roles", "X-Gatehouse-Roles"),
        refused("X-Gatehouse-Assertion", "X-Gatehouse-Assertion"),
        refused("X-Real-IP", "close, X-Real-IP"),
        vector(
            "Connection: keep-alive still passes",
            req("GET", "/private")
                .h("X-API-Key", KEY)
                .h("Connection", "keep-alive"),
        )
        .status(200)
        .reaches(
            seen("GET", "/private")
                .rule(one_gateway_user)
                .rule(connection_names_nothing_of_ours),
        ),
    ];
    for (name, value) in [
        ("X-Forwarded-For", "127.0.0.1"),
        ("X-Forwarded-Proto", "https"),
    ] {
        out.push(
            vector(
                format!("Connection: {name} keeps the gateway's {name}"),
                req("GET", "/").h(name, "10.0.0.5").h("Connection", name),
            )
            .status_in(&[200, 400])
            .at_most(
                seen("GET", "/")
                    .with(name, value)
                    .rule(connection_names_nothing_of_ours),
            ),
        );
    }
    out
}

fn pass_headers() -> Vec<Vector> {
    vec![
        vector(
            "pass_headers lets X-Real-IP through",
            req("GET", "/").h("X-Real-IP", "10.0.0.5"),
        )
        .status(200)
        .reaches(seen("GET", "/").with("x-real-ip", "10.0.0.5")),
        stripped("X-Forwarded-Host", "evil.test"),
        refused_name("X_Real_IP"),
    ]
}

#[tokio::test]
async fn header_spoofing() {
    let _shared = shared().await;
    let mut vectors = identity_spellings();
    vectors.extend(stripped_list());
    vectors.extend(hop_by_hop());
    let mut passing = pass_headers();
    for v in &mut passing {
        v.name = format!("pass_headers route: {}", v.name);
    }
    let mut report = run_groups(
        "spoofing",
        vec![(policy(false), vectors), (policy(true), passing)],
    )
    .await;
    let forbidden = policy(false).replace(
        "public = true\n",
        "public = true\npass_headers = [\"x-gatehouse-user\"]\n",
    );
    report.record(
        "pass_headers cannot name x-gatehouse-user (policy error)",
        check_refuses(&forbidden, "x-gatehouse-user"),
    );
    report.finish();
}
