//! Table tests of parsing and validation. Each names the behaviour it proves.

use std::path::Path;

use super::*;

const MINIMAL: &str = r#"
[listen]
https = "127.0.0.1:8443"
public_origin = "https://localhost:8443"

[[tls.cert]]
hosts = ["localhost"]
cert = "server.pem"
key = "server-key.pem"

[[route]]
name = "app"
path = "/"
upstream = "http://127.0.0.1:9000"
"#;

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
        "{MINIMAL}\n[[route]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9001\"\n"
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
    for file in files {
        if let Err(e) = load(&file) {
            panic!("{e}");
        }
    }
}
