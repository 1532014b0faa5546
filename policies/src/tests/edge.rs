//! The edge keys the adversarial review added: where the client address
//! comes from, per-address bounds, route matching, passed headers and
//! methods. Each test names the behaviour it proves.

use std::path::Path;
use std::time::Duration;

use crate::*;

const BASE: &str = crate::tests::policy_head!();

const ROLES: &str = "[roles]\nadmin = [\"*\"]\n[[api_key]]\nname = \"ci\"\nsha256 = \"abababababababababababababababababababababababababababababababab\"\nroles = [\"admin\"]\n";

fn route(name: &str, path: &str, extra: &str) -> String {
    format!(
        "\n[[route]]\nname = \"{name}\"\npath = \"{path}\"\nupstream = \"http://127.0.0.1:9000\"\n{extra}\n"
    )
}

fn parse_ok(text: &str) -> Policy {
    parse(Path::new("p.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(Path::new("p.toml"), text) {
        Ok(_) => panic!("expected the policy to be rejected:\n{text}"),
        Err(e) => e.problems().to_vec(),
    }
}

/// The 1-based line of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn safe_defaults_for_the_new_keys() {
    let policy = parse_ok(&format!("{BASE}{}", route("app", "/", "public = true")));
    assert_eq!(policy.client_ip_header, ClientIpHeader::XForwardedFor);
    assert_eq!(policy.limits.request_head_timeout, Duration::from_secs(10));
    assert_eq!(policy.limits.max_connections_per_address, 256);
    assert_eq!(policy.rate_limits.ipv6_prefix, 64);
    assert_eq!(policy.rate_limits.password_checks_per_address, 2);
    let app = &policy.routes[0];
    assert!(!app.case_sensitive);
    assert!(app.pass_headers.is_empty() && app.extension_methods.is_empty());
}

#[test]
fn the_client_address_header_is_one_of_two() {
    let text = format!(
        "{BASE}[network]\nclient_ip_header = \"Forwarded\"\n{}",
        route("app", "/", "public = true")
    );
    assert_eq!(parse_ok(&text).client_ip_header, ClientIpHeader::Forwarded);
    let text = text.replace("\"Forwarded\"", "\"x-real-ip\"");
    let found = problems(&text);
    assert_eq!(found.len(), 1);
    assert!(found[0].message.contains("x-real-ip"), "{found:?}");
    assert_eq!(found[0].line, line_of(&text, "client_ip_header"));
}

#[test]
fn a_trailing_slash_does_not_make_another_route() {
    let text = format!("{BASE}{}", route("admin", "/admin/", "public = true"));
    assert_eq!(parse_ok(&text).routes[0].path.as_str(), "/admin");
    let text = format!(
        "{BASE}{}{}",
        route("a", "/admin/", "public = true"),
        route("b", "/Admin", "public = true")
    );
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].message.contains("already serves"));
}

#[test]
fn only_strippable_headers_can_be_passed_and_never_identity_headers() {
    let text = format!(
        "{BASE}{}",
        route("app", "/", "public = true\npass_headers = [\"X-Real-IP\"]")
    );
    assert_eq!(parse_ok(&text).routes[0].pass_headers, vec!["x-real-ip"]);
    for (name, says) in [
        ("X-Gatehouse-User", "identity header"),
        ("x-auth-request-email", "identity header"),
        ("x-custom", "not a header the gateway strips"),
    ] {
        let text = format!(
            "{BASE}{}",
            route(
                "app",
                "/",
                &format!("public = true\npass_headers = [\"{name}\"]")
            )
        );
        let found = problems(&text);
        assert!(found[0].message.contains(says), "{name}: {found:?}");
        assert_eq!(found[0].line, line_of(&text, "pass_headers"));
    }
}

#[test]
fn extension_methods_are_upper_case_and_head_follows_get() {
    let text = format!(
        "{BASE}{ROLES}{}",
        route(
            "dav",
            "/dav",
            "roles = [\"admin\"]\nextension_methods = [\"PROPFIND\"]\n[route.methods.MKCOL]\nroles = [\"admin\"]"
        )
    );
    let methods = &parse_ok(&text).routes[0].extension_methods;
    assert!(
        methods.contains("PROPFIND") && methods.contains("MKCOL"),
        "{methods:?}"
    );
    for (extra, says) in [
        ("extension_methods = [\"propfind\"]", "upper-case"),
        ("extension_methods = [\"TRACE\"]", "never passes"),
        ("extension_methods = [\"GET\"]", "standard method"),
        (
            "[route.methods.HEAD]\nroles = [\"admin\"]",
            "HEAD follows GET",
        ),
        ("[route.methods.post]\nroles = [\"admin\"]", "upper-case"),
    ] {
        let text = format!(
            "{BASE}{ROLES}{}",
            route("dav", "/dav", &format!("roles = [\"admin\"]\n{extra}"))
        );
        let found = problems(&text);
        assert!(found[0].message.contains(says), "{extra}: {found:?}");
    }
}

#[test]
fn per_address_bounds_are_checked() {
    for (section, key) in [
        ("[rate_limit]", "ipv6_prefix = 16"),
        ("[rate_limit]", "password_checks_per_address = 0"),
        ("[limits]", "max_connections_per_address = 0"),
        ("[limits]", "request_head_timeout = \"0s\""),
        ("[limits]", "request_head_timeout = \"1h\""),
    ] {
        let text = format!(
            "{BASE}{section}\n{key}\n{}",
            route("app", "/", "public = true")
        );
        let found = problems(&text);
        assert_eq!(found.len(), 1, "{key}: {found:?}");
        assert_eq!(found[0].line, line_of(&text, key), "{key}");
    }
}

#[test]
fn an_assertion_key_is_per_upstream_and_at_least_32_bytes() {
    let key = "k".repeat(32);
    let keyed = |name: &str, path: &str, upstream: &str, key: &str| {
        route(
            name,
            path,
            &format!("roles = [\"admin\"]\nassertion_key = \"{key}\""),
        )
        .replace("http://127.0.0.1:9000", upstream)
    };
    // Two routes to one upstream may share its key; an unkeyed route has none.
    let text = format!(
        "{BASE}{ROLES}{}{}{}",
        keyed("api", "/api", "http://127.0.0.1:9000", &key),
        keyed("ui", "/ui", "http://127.0.0.1:9000", &key),
        route("app", "/", "public = true"),
    );
    let policy = parse_ok(&text);
    assert_eq!(
        policy.routes[0].assertion_key.as_ref().map(|k| k.expose()),
        Some(key.as_bytes())
    );
    assert_eq!(
        policy.routes[1].assertion_key,
        policy.routes[0].assertion_key
    );
    assert!(policy.routes[2].assertion_key.is_none());

    // The same key for another upstream: either could sign for the other.
    let text = format!(
        "{BASE}{ROLES}{}{}",
        keyed("api", "/api", "http://127.0.0.1:9000", &key),
        keyed("other", "/other", "http://127.0.0.1:9001", &key),
    );
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .message
            .contains("route `other` has the same assertion key as route `api`"),
        "{}",
        found[0].message
    );
    let second = text.match_indices("assertion_key").nth(1).unwrap().0;
    assert_eq!(found[0].line, text[..second].matches('\n').count() + 1);

    let text = format!(
        "{BASE}{ROLES}{}",
        keyed("api", "/api", "http://127.0.0.1:9000", &"k".repeat(31))
    );
    let found = problems(&text);
    assert!(found[0].message.contains("at least 32"), "{found:?}");
    assert_eq!(found[0].line, line_of(&text, "assertion_key"));
}
