//! Table tests of parsing and validation. Each names the behaviour it proves.

use std::path::Path;

use super::*;

mod allowances;
mod edge;
mod notify;
mod scheduler;

/// `[listen]` and one `[[tls.cert]]`: the head of every test policy here.
/// A macro, so that constants can `concat!` it.
macro_rules! policy_head {
    () => {
        r#"
[listen]
https = "127.0.0.1:8443"
public_origin = "https://localhost:8443"

[[tls.cert]]
hosts = ["localhost"]
cert = "server.pem"
key = "server-key.pem"
"#
    };
}
pub(crate) use policy_head;

/// The head and one public route: the smallest valid policy.
const MINIMAL: &str = concat!(
    policy_head!(),
    r#"
[[route]]
name = "app"
path = "/"
upstream = "http://127.0.0.1:9000"
public = true
"#
);

fn parse_ok(text: &str) -> Policy {
    match parse(Path::new("/etc/gatehouse/policy.toml"), text) {
        Ok(p) => p,
        Err(e) => panic!("expected a valid policy, got: {e}"),
    }
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(Path::new("policy.toml"), text) {
        Ok(_) => panic!("expected the policy to be rejected"),
        Err(e) => e.problems().to_vec(),
    }
}

#[test]
fn minimal_policy_gets_safe_defaults() {
    let policy = parse_ok(MINIMAL);
    assert_eq!(policy.tls.min_version, TlsVersion::Tls12);
    assert_eq!(
        policy.limits.shutdown_grace,
        std::time::Duration::from_secs(10)
    );
    let route = &policy.routes[0];
    assert_eq!(route.max_body, 1024 * 1024);
    assert!(!route.websocket);
    assert_eq!(route.headers, SecurityHeaders::default());
    assert!(route
        .headers
        .iter()
        .any(|(n, _)| n == "strict-transport-security"));
}

#[test]
fn relative_cert_paths_resolve_against_the_policy_directory() {
    let policy = parse_ok(MINIMAL);
    assert_eq!(
        policy.tls.certs[0].cert,
        Path::new("/etc/gatehouse/server.pem")
    );
}

#[test]
fn unknown_key_is_reported_with_line_and_column() {
    let text = MINIMAL.replace("[[route]]\n", "[[route]]\nmax_bdy = \"1MiB\"\n");
    let found = problems(&text);
    assert_eq!(found.len(), 1);
    assert!(found[0].message.contains("max_bdy"), "{:?}", found[0]);
    let line = text.lines().position(|l| l.starts_with("max_bdy")).unwrap() + 1;
    assert_eq!((found[0].line, found[0].column), (line, 1));
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    let text = MINIMAL
        .replace("\"127.0.0.1:8443\"", "\"not-an-address\"")
        .replace("path = \"/\"", "path = \"/a/../b\"")
        .replace("http://127.0.0.1:9000", "ftp://127.0.0.1:9000");
    let found = problems(&text);
    assert_eq!(found.len(), 3, "{found:?}");
}

#[test]
fn cidr_with_host_bits_is_rejected_with_a_suggestion() {
    let text = format!("{MINIMAL}\n[network]\nallow = [\"10.1.2.3/8\"]\n");
    let found = problems(&text);
    assert_eq!(found[0].hint.as_deref(), Some("did you mean 10.0.0.0/8?"));
}

#[test]
fn bare_addresses_are_single_host_networks() {
    let text = format!("{MINIMAL}\n[network]\nallow = [\"127.0.0.1\", \"::1\"]\n");
    let policy = parse_ok(&text);
    assert_eq!(policy.network.allow[0].to_string(), "127.0.0.1/32");
    assert_eq!(policy.network.allow[1].to_string(), "::1/128");
}

#[test]
fn public_origin_must_be_https_without_a_path() {
    for bad in [
        "http://localhost:8443",
        "https://localhost/app",
        "https://u:p@localhost",
    ] {
        let text = MINIMAL.replace("https://localhost:8443", bad);
        assert_eq!(problems(&text).len(), 1, "{bad}");
    }
}

#[test]
fn upstream_with_a_path_is_rejected() {
    let text = MINIMAL.replace("http://127.0.0.1:9000", "http://127.0.0.1:9000/app");
    assert!(problems(&text)[0].message.contains("path"));
}

#[test]
fn duplicate_route_names_and_paths_are_rejected() {
    let text = format!(
        "{MINIMAL}\n[[route]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9001\"\npublic = true\n"
    );
    assert_eq!(problems(&text).len(), 2);
}

#[test]
fn overlapping_listeners_are_rejected() {
    let text = MINIMAL.replace("public_origin", "admin = \"0.0.0.0:8443\"\npublic_origin");
    assert!(problems(&text)[0].message.contains("overlaps"));
}

#[test]
fn header_can_be_overridden_per_route_and_turned_off() {
    let text = format!(
        "{MINIMAL}[route.headers]\ncsp = \"default-src 'none'\"\nx_frame_options = false\n"
    );
    let policy = parse_ok(&text);
    let headers = &policy.routes[0].headers;
    assert_eq!(
        headers
            .content_security_policy
            .as_ref()
            .map(HeaderText::as_str),
        Some("default-src 'none'")
    );
    assert!(headers.x_frame_options.is_none());
}

#[test]
fn header_value_with_a_newline_is_rejected() {
    let text = format!("{MINIMAL}\n[headers]\ncsp = \"default-src 'self'\\r\\nX-Evil: 1\"\n");
    assert_eq!(problems(&text).len(), 1);
}

#[test]
fn hsts_without_max_age_is_rejected() {
    let text = format!("{MINIMAL}\n[headers]\nhsts = \"includeSubDomains\"\n");
    assert!(problems(&text)[0].message.contains("max-age"));
}

#[test]
fn sizes_and_durations_are_human_readable() {
    let text =
        format!("{MINIMAL}\n[limits]\nmax_body = \"64KiB\"\nclient_read_timeout = \"1m 30s\"\n");
    let policy = parse_ok(&text);
    assert_eq!(policy.routes[0].max_body, 64 * 1024);
    assert_eq!(policy.limits.client_read_timeout.as_secs(), 90);
}

#[test]
fn tls_version_must_be_known() {
    let text = MINIMAL.replace("[[tls.cert]]", "[tls]\nmin_version = \"1.1\"\n[[tls.cert]]");
    assert!(problems(&text)[0].message.contains("1.1"));
}

#[test]
fn policy_digest_names_the_exact_bytes() {
    let a = parse_ok(MINIMAL);
    let b = parse_ok(&format!("{MINIMAL}\n"));
    assert_eq!(a.origin.sha256.len(), 64);
    assert_ne!(a.origin.sha256, b.origin.sha256);
}

#[test]
fn error_display_names_file_line_and_column() {
    let text = MINIMAL.replace("[[route]]\n", "[[route]]\nbogus = 1\n");
    let err = parse(Path::new("policy.toml"), &text).unwrap_err();
    let line = text.lines().position(|l| l.starts_with("bogus")).unwrap() + 1;
    assert!(
        err.to_string().contains(&format!("policy.toml:{line}:1:")),
        "{err}"
    );
}

#[test]
fn shipped_policies_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![dir.join("quickstart.toml")];
    for entry in std::fs::read_dir(dir.join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    assert!(files.len() > 1, "examples are missing");
    // Examples name secrets by ${VAR}; give every variable a strong value.
    let env = |_: &str| Some("x".repeat(48));
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        if let Err(e) = parse_with_env(&file, &text, &env) {
            panic!("{e}");
        }
    }
}

fn with_roles(extra: &str) -> String {
    format!(
        "{}\n[roles]\nadmin = [\"*\"]\nviewer = [\"jobs:view\"]\n\n[[api_key]]\nname = \"ci\"\nsha256 = \"{}\"\nroles = [\"viewer\"]\n{extra}",
        MINIMAL.replace("public = true\n", "roles = [\"viewer\"]\n"),
        "ab".repeat(32)
    )
}

fn env_key(var: &str) -> Option<String> {
    match var {
        "SHORT" => Some("too-short".into()),
        _ => Some("k".repeat(40)),
    }
}

fn problems_env(text: &str) -> Vec<Problem> {
    match parse_with_env(Path::new("policy.toml"), text, &env_key) {
        Ok(_) => panic!("expected the policy to be rejected"),
        Err(e) => e.problems().to_vec(),
    }
}

#[test]
fn restricted_route_with_api_keys_parses() {
    let policy = parse_with_env(Path::new("p.toml"), &with_roles(""), &env_key).unwrap();
    match &policy.routes[0].access {
        Access::Restricted {
            default, accept, ..
        } => {
            assert!(default.any_role.contains("viewer"));
            assert_eq!(
                accept.iter().copied().collect::<Vec<_>>(),
                vec![IdentityKind::ApiKey]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn route_that_is_neither_public_nor_restricted_is_rejected() {
    let text = MINIMAL.replace("public = true\n", "");
    assert!(problems(&text)[0].message.contains("neither public"));
}

#[test]
fn unknown_role_is_reported_where_it_is_named() {
    let text = with_roles("").replace("roles = [\"viewer\"]\n\"#", "roles = [\"viewr\"]\n\"#");
    let text = text.replacen("roles = [\"viewer\"]", "roles = [\"viewr\"]", 1);
    let found = problems_env(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].message.contains("unknown role `viewr`"));
    let line = text.lines().position(|l| l.contains("viewr")).unwrap() + 1;
    assert_eq!(found[0].line, line);
}

#[test]
fn short_session_key_is_refused() {
    let text = with_roles("\n[session]\nkeys = [\"${SHORT}\"]\n");
    assert!(problems_env(&text)[0].message.contains("at least 32"));
}

#[test]
fn hs256_cannot_share_an_issuer_with_public_key_algorithms() {
    let text = with_roles(
        "\n[[jwt]]\nname = \"x\"\nissuer = \"x\"\naudience = [\"a\"]\nalgorithms = [\"RS256\", \"HS256\"]\nhs256_secret = \"${K}\"\n",
    );
    let found = problems_env(&text);
    assert!(
        found
            .iter()
            .any(|p| p.message.contains("cannot be combined")),
        "{found:?}"
    );
}

#[test]
fn alg_none_is_not_an_algorithm() {
    let text = with_roles(
        "\n[[jwt]]\nname = \"x\"\nissuer = \"x\"\naudience = [\"a\"]\nalgorithms = [\"none\"]\njwks_url = \"https://x.test/jwks\"\n",
    );
    assert!(problems_env(&text)
        .iter()
        .any(|p| p.message.contains("unsupported JWT algorithm `none`")));
}

#[test]
fn wildcard_cors_with_credentials_is_impossible() {
    let route_cors = "[route.cors]\nallow_origins = [\"*\"]\nallow_credentials = true\n";
    let text = with_roles("").replacen("\n[roles]", &format!("{route_cors}\n[roles]"), 1);
    let found = problems_env(&text);
    assert!(
        found.iter().any(|p| p
            .message
            .contains("cannot be combined with allow_credentials")),
        "{found:?}"
    );
}

#[test]
fn weak_password_hashes_are_refused() {
    let weak = "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";
    let text = with_roles(&format!(
        "\n[[basic_user]]\nname = \"bob\"\npassword_hash = \"{weak}\"\nroles = [\"admin\"]\n"
    ));
    assert!(problems_env(&text)[0].message.contains("cost 12"));
}

#[test]
fn permission_no_role_grants_is_refused() {
    let text =
        with_roles("").replacen("roles = [\"viewer\"]", "permissions = [\"jobs:delete\"]", 1);
    let text = text.replace("admin = [\"*\"]\n", "");
    assert!(problems_env(&text).iter().any(|p| p
        .message
        .contains("no role grants permission `jobs:delete`")));
}

#[test]
fn route_accepting_an_unconfigured_kind_is_refused() {
    let text = with_roles("").replacen(
        "roles = [\"viewer\"]",
        "roles = [\"viewer\"]\naccept = [\"jwt\"]",
        1,
    );
    assert!(problems_env(&text)
        .iter()
        .any(|p| p.message.contains("no such identity source")));
}

const ARGON2ID: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFy";

fn basic_user(keys: &str) -> String {
    with_roles(&format!(
        "\n[[basic_user]]\nname = \"admin\"\n{keys}roles = [\"admin\"]\n"
    ))
}

#[test]
fn password_hash_is_read_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin.hash");
    std::fs::write(&file, format!("{ARGON2ID}\n")).unwrap();
    let text = basic_user(&format!(
        "password_hash_file = {:?}\n",
        file.display().to_string()
    ));
    let policy = parse_with_env(Path::new("p.toml"), &text, &env_key).unwrap();
    assert_eq!(policy.identities.basic_users[0].password_hash, ARGON2ID);

    let inline = basic_user(&format!("password_hash = \"{ARGON2ID}\"\n"));
    let policy = parse_with_env(Path::new("p.toml"), &inline, &env_key).unwrap();
    assert_eq!(policy.identities.basic_users[0].password_hash, ARGON2ID);
}

#[test]
fn password_hash_needs_exactly_one_source() {
    let both = basic_user(&format!(
        "password_hash = \"{ARGON2ID}\"\npassword_hash_file = \"/run/secrets/h\"\n"
    ));
    let found = problems_env(&both);
    assert!(
        found.iter().any(|p| p.message.contains("not both")),
        "{found:?}"
    );
    let neither = problems_env(&basic_user(""));
    assert!(
        neither
            .iter()
            .any(|p| p.message.contains("`password_hash` is required")),
        "{neither:?}"
    );
}

#[test]
fn missing_or_weak_password_hash_file_is_reported() {
    let missing = basic_user("password_hash_file = \"/nonexistent/admin.hash\"\n");
    let found = problems_env(&missing);
    assert!(
        found
            .iter()
            .any(|p| p.message.contains("/nonexistent/admin.hash")),
        "{found:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin.hash");
    std::fs::write(&file, "plaintext-password\n").unwrap();
    let weak = basic_user(&format!(
        "password_hash_file = {:?}\n",
        file.display().to_string()
    ));
    let found = problems_env(&weak);
    assert!(
        found.iter().any(|p| p.message.contains("argon2id")),
        "{found:?}"
    );
    assert!(
        !found
            .iter()
            .any(|p| p.message.contains("plaintext-password")),
        "{found:?}"
    );
}

/// compose/policy.toml names files that exist only inside the containers;
/// with its bootstrap files pointed at temp files it must be valid as is.
#[test]
fn compose_policy_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../compose/policy.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("admin-password.hash"),
        format!("{ARGON2ID}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("session.key"),
        format!("{}\n", "ab".repeat(32)),
    )
    .unwrap();
    let bootstrap = "/var/lib/gatehouse/bootstrap/";
    assert!(text.contains(bootstrap));
    let text = text.replace(bootstrap, &format!("{}/", dir.path().display()));
    let policy = match parse_with_env(&path, &text, &|_| None) {
        Ok(policy) => policy,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(policy.identities.basic_users[0].name, "admin");
    assert_eq!(policy.jobs.len(), 1);
    let scheduler = policy.scheduler.as_ref().unwrap();
    assert_eq!(
        scheduler.gateway_jwks.as_str(),
        "http://gateway:9090/jwks.json"
    );
}

#[test]
fn assertion_keys_to_publish_are_resolved_and_need_a_signing_key_file() {
    let text = format!(
        "{MINIMAL}\n[assertion]\nkey_file = \"keys/current.pem\"\npublish_key_files = [\"keys/next.pem\"]\n"
    );
    let policy = parse_ok(&text);
    assert_eq!(
        policy.identities.assertion.publish_key_files,
        [Path::new("/etc/gatehouse/keys/next.pem")]
    );

    let text = format!("{MINIMAL}\n[assertion]\npublish_key_files = [\"keys/next.pem\"]\n");
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].message.contains("needs key_file"), "{found:?}");
    let line = text
        .lines()
        .position(|l| l.starts_with("publish_key_files"))
        .unwrap()
        + 1;
    assert_eq!(found[0].line, line);
}

#[test]
fn shared_state_defaults_to_local_limits_and_a_short_timeout() {
    let policy = parse_ok(&format!(
        "{MINIMAL}\n[shared_state]\nredis = \"redis://10.0.0.7:6379\"\n"
    ));
    let shared = policy.shared_state.expect("shared state");
    assert_eq!(shared.redis_url, "redis://10.0.0.7:6379");
    assert_eq!(shared.when_unavailable, WhenUnavailable::LocalLimits);
    assert_eq!(shared.timeout, std::time::Duration::from_millis(100));
    assert!(shared.password.is_none());
    assert!(
        parse_ok(MINIMAL).shared_state.is_none(),
        "off unless asked for"
    );
}

#[test]
fn shared_state_mistakes_are_reported_where_they_are_written() {
    for (section, wanted, key) in [
        ("redis = \"http://10.0.0.7\"\n", "not a Redis URL", "redis"),
        (
            "redis = \"redis://:hunter2@10.0.0.7\"\n",
            "holds a password",
            "redis",
        ),
        (
            "redis = \"redis://10.0.0.7\"\nwhen_unavailable = \"ignore\"\n",
            "unknown when_unavailable",
            "when_unavailable",
        ),
        (
            "redis = \"redis://10.0.0.7\"\ntimeout = \"10s\"\n",
            "at most 5s",
            "timeout",
        ),
    ] {
        let text = format!("{MINIMAL}\n[shared_state]\n{section}");
        let found = problems(&text);
        assert_eq!(found.len(), 1, "{section}: {found:?}");
        assert!(found[0].message.contains(wanted), "{section}: {found:?}");
        let line = text.lines().position(|l| l.starts_with(key)).unwrap() + 1;
        assert_eq!(found[0].line, line, "{section}");
    }
}
