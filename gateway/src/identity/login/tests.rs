use super::*;

fn provider(name: &str) -> OidcProvider {
    OidcProvider {
        name: name.into(),
        issuer: "https://idp.test".into(),
        client_id: "c".into(),
        client_secret: gatehouse_policy::secret::SecretSource::Inline("s")
            .resolve(|_| None)
            .unwrap(),
        scopes: vec!["openid".into()],
        allowed_domains: Default::default(),
        allowed_emails: Default::default(),
        claims: gatehouse_policy::ClaimMapping {
            roles_claim: "groups".into(),
            role_map: Default::default(),
            default_roles: Default::default(),
        },
    }
}

#[test]
fn chooser_links_every_provider_and_keeps_the_return_path() {
    let html = chooser(&[provider("corp"), provider("partners")], "/jobs?x=1");
    assert!(
        html.contains("href=\"/.gatehouse/login?idp=corp&amp;rd=%2Fjobs%3Fx%3D1\""),
        "{html}"
    );
    assert!(html.contains("idp=partners"));
    assert!(!html.contains("<script") && !html.contains("style="));
}

#[test]
fn allowed_emails_and_domains_need_a_verified_address() {
    let mut p = provider("corp");
    assert!(email_allowed(&p, None, None), "no restriction configured");
    p.allowed_domains.insert("example.com".into());
    assert!(email_allowed(&p, Some("a@example.com"), Some(true)));
    assert!(!email_allowed(&p, Some("a@example.com"), Some(false)));
    assert!(!email_allowed(&p, Some("a@evil.test"), Some(true)));
    p.allowed_emails.insert("boss@example.org".into());
    assert!(email_allowed(&p, Some("boss@example.org"), Some(true)));
    assert!(
        !email_allowed(&p, Some("a@example.com"), Some(true)),
        "emails win over domains"
    );
}

#[test]
fn return_path_is_same_origin_only() {
    assert_eq!(safe_return_path(Some("/jobs?x=1")), "/jobs?x=1");
    for bad in [
        "//evil.test/",
        "/\\evil.test",
        "https://evil.test/",
        "javascript:alert(1)",
        "/a b",
        "",
    ] {
        assert_eq!(safe_return_path(Some(bad)), "/", "{bad}");
    }
    assert_eq!(safe_return_path(None), "/");
}
