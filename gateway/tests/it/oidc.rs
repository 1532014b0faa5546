//! OpenID Connect login through the real gateway against a real provider
//! (oidc-provider on node), driven over HTTP the way a browser would: follow
//! redirects, submit the provider's login and consent forms.

use std::time::Duration;

use reqwest::header::SET_COOKIE;
use serde_json::json;

use gatehouse_tests::idp::{location, oidc_policy, walk_provider};
use gatehouse_tests::{free_port, Idp};

use gatehouse_tests::gateway::BASE_POLICY;
use gatehouse_tests::upstream::{echoed, upstream_header};
use gatehouse_tests::GatewayUnderTest;

const SESSION_KEY: &str = "a-session-key-for-tests-that-is-long-enough-0123456789";

struct Login {
    gateway: GatewayUnderTest,
    idp: Idp,
    client: reqwest::Client,
}

fn policy_extra(issuer: &str) -> String {
    format!(
        r#"
[roles]
operator = ["jobs:run", "jobs:view"]
viewer = ["jobs:view"]

[session]
keys = ["{SESSION_KEY}"]
idle_timeout = "10m"
lifetime = "1h"

{}"#,
        oidc_policy(
            issuer,
            r#"allowed_domains = ["example.com"]"#,
            r#"role_map = { ops = ["operator"] }
default_roles = ["viewer"]"#,
        )
    )
}

async fn setup() -> Login {
    let idp_port = free_port();
    let issuer = format!("http://127.0.0.1:{idp_port}");
    let template = BASE_POLICY.replace("public = true", "roles = [\"viewer\", \"operator\"]");
    let gateway = GatewayUnderTest::start_with(&template, &policy_extra(&issuer)).await;
    let origin = gateway.origin();
    let idp = Idp::start_for_gateway(
        idp_port,
        &origin,
        json!({
            "alice": {"email": "alice@example.com", "email_verified": true, "name": "Alice", "groups": ["ops"]},
            "mallory": {"email": "mallory@evil.test", "email_verified": true, "groups": ["ops"]},
            // An id_token far over the 4 KB a browser keeps in a cookie.
            "bigtoken": {"email": "big@example.com", "email_verified": true,
                         "groups": std::iter::once("ops".to_owned())
                             .chain((0..250).map(|n| format!("a-very-long-group-name-number-{n:04}")))
                             .collect::<Vec<_>>()},
        }),
    )
    .expect("the test IdP");
    let client = gateway.client_with_cookies();
    Login {
        gateway,
        idp,
        client,
    }
}

fn query_param(url: &str, name: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

/// Walks the provider's pages from an authorization URL to the redirect
/// back to the gateway, logging in as `user`. Returns the callback URL.
async fn through_provider(login: &Login, authorize_url: &str, user: &str) -> String {
    walk_provider(
        &login.client,
        &login.idp.issuer,
        &login.gateway.origin(),
        authorize_url,
        user,
    )
    .await
}

/// Starts a login at the gateway and returns (authorize URL, flow cookie).
async fn start_login(login: &Login, rd: &str) -> (String, String) {
    let response = login
        .client
        .get(format!(
            "{}/.gatehouse/login?rd={rd}",
            login.gateway.origin()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let flow = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(flow.starts_with("__Host-gatehouse-flow="), "{flow}");
    (location(response.headers()), flow)
}

async fn full_login(login: &Login, user: &str) -> reqwest::Response {
    let (authorize, _) = start_login(login, "/dashboard").await;
    let callback = through_provider(login, &authorize, user).await;
    login.client.get(callback).send().await.unwrap()
}

#[tokio::test]
async fn browser_login_sets_a_host_only_session_and_reaches_the_upstream() {
    let login = setup().await;
    let origin = login.gateway.origin();
    let first = login
        .client
        .get(format!("{origin}/dashboard"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 302);
    assert_eq!(
        location(first.headers()),
        "/.gatehouse/login?rd=%2Fdashboard"
    );

    let (authorize, _) = start_login(&login, "%2Fdashboard").await;
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    assert!(authorize.contains("nonce=") && authorize.contains("state="));
    let callback = through_provider(&login, &authorize, "alice").await;
    let done = login.client.get(callback).send().await.unwrap();
    assert_eq!(done.status(), 302);
    assert_eq!(location(done.headers()), "/dashboard");
    let session_cookie = done
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-gatehouse="))
        .expect("session cookie");
    for flag in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session_cookie.contains(flag), "{session_cookie}");
    }
    let value_len = session_cookie.split(';').next().unwrap().len();
    eprintln!("session cookie size: {value_len} bytes");
    assert!(value_len < 4096 / 2, "{value_len}");

    let page = login
        .client
        .get(format!("{origin}/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let echo = echoed(page).await;
    assert_eq!(
        upstream_header(&echo, "x-gatehouse-user"),
        vec!["oidc:test-idp:alice"]
    );
    assert_eq!(
        upstream_header(&echo, "x-gatehouse-email"),
        vec!["alice@example.com"]
    );
    assert_eq!(
        upstream_header(&echo, "x-gatehouse-roles"),
        vec!["operator,viewer"]
    );
    let cookies = upstream_header(&echo, "cookie").join(";");
    assert!(
        !cookies.contains("__Host-gatehouse"),
        "session cookie leaked upstream: {cookies}"
    );

    // The login is audited by who and how; the cookie never is.
    let logins = login.gateway.audit_events("login.success", 1).await;
    assert_eq!(logins[0]["actor"]["subject"], "oidc:test-idp:alice");
    assert_eq!(logins[0]["actor"]["method"], "oidc");
    assert_eq!(logins[0]["details"]["provider"], "test-idp");
    let audit = std::fs::read_to_string(login.gateway.audit_path()).unwrap();
    let sealed = session_cookie.split(';').next().unwrap();
    let sealed = sealed.trim_start_matches("__Host-gatehouse=");
    assert!(!audit.contains(sealed), "session cookie in the audit log");
}

/// The sealed value of the session cookie a response sets.
fn session_cookie_value(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("__Host-gatehouse="))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

#[tokio::test]
async fn logout_ends_the_session_and_continues_at_the_provider() {
    let login = setup().await;
    let origin = login.gateway.origin();
    let logged_in = full_login(&login, "alice").await;
    assert_eq!(logged_in.status(), 302);
    let copied = session_cookie_value(&logged_in);
    assert_eq!(
        login
            .client
            .get(format!("{origin}/x"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let out = login
        .client
        .get(format!("{origin}/.gatehouse/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 302);
    let logout = login.gateway.audit_events("logout", 1).await;
    assert_eq!(logout[0]["actor"]["subject"], "oidc:test-idp:alice");
    let to = location(out.headers());
    assert!(
        to.starts_with(&format!("{}/session/end", login.idp.issuer)),
        "{to}"
    );
    assert!(to.contains("id_token_hint="), "{to}");
    let cleared = out.headers()[SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.starts_with("__Host-gatehouse=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    assert_eq!(
        login
            .client
            .get(format!("{origin}/x"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // A copy of the cookie taken before logout is revoked with the session:
    // an API call gets 401, a browser navigation the login page.
    let replay = |accept: &'static str| {
        login
            .gateway
            .client()
            .get(format!("{origin}/x"))
            .header("cookie", format!("__Host-gatehouse={copied}"))
            .header("accept", accept)
            .send()
    };
    assert_eq!(replay("application/json").await.unwrap().status(), 401);
    let navigation = replay("text/html").await.unwrap();
    assert_eq!(navigation.status(), 302);
    assert!(location(navigation.headers()).starts_with("/.gatehouse/login?rd="));
}

#[tokio::test]
async fn a_huge_id_token_still_makes_a_session_browsers_keep() {
    let login = setup().await;
    let origin = login.gateway.origin();
    let logged_in = full_login(&login, "bigtoken").await;
    assert_eq!(logged_in.status(), 302);
    let cookie = logged_in
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("__Host-gatehouse="))
        .expect("a session cookie")
        .to_owned();
    assert!(cookie.len() < 4096, "{} bytes", cookie.len());
    let echo = echoed(
        login
            .client
            .get(format!("{origin}/x"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        upstream_header(&echo, "x-gatehouse-user"),
        vec!["oidc:test-idp:bigtoken"]
    );
    // Logout still reaches the provider, naming the client instead of
    // passing the token the cookie could not hold.
    let out = login
        .client
        .get(format!("{origin}/.gatehouse/logout"))
        .send()
        .await
        .unwrap();
    let to = location(out.headers());
    assert!(
        to.starts_with(&format!("{}/session/end", login.idp.issuer)),
        "{to}"
    );
    assert!(
        to.contains("client_id=gatehouse") && !to.contains("id_token_hint"),
        "{to}"
    );
}

#[tokio::test]
async fn replayed_code_and_wrong_state_are_refused() {
    let login = setup().await;
    let (authorize, flow) = start_login(&login, "/").await;
    let callback = through_provider(&login, &authorize, "alice").await;
    assert_eq!(
        login.client.get(&callback).send().await.unwrap().status(),
        302
    );

    // The same code again, with the same flow cookie: the gateway refuses
    // the flow before the code goes to the provider a second time.
    let flow_value = flow.split(';').next().unwrap();
    let plain = login.gateway.client();
    let replay = plain
        .get(&callback)
        .header("cookie", flow_value)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 400);
    let failure = login.gateway.audit_events("login.failure", 1).await;
    assert_eq!(failure[0]["details"]["reason"], "login-flow-reused");
    assert_eq!(failure[0]["actor"]["method"], "oidc");
    let no_session = replay
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .all(|c| !c.to_str().unwrap().starts_with("__Host-gatehouse="));
    assert!(no_session);

    // A state that is not the one sealed in the flow cookie.
    let (authorize, flow) = start_login(&login, "/").await;
    let callback = through_provider(&login, &authorize, "alice").await;
    let tampered = callback.replace("state=", "state=x");
    let flow_value = flow.split(';').next().unwrap();
    let wrong_state = plain
        .get(&tampered)
        .header("cookie", flow_value)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_state.status(), 400);
}

#[tokio::test]
async fn code_from_another_login_attempt_is_refused() {
    // Login A's flow cookie (its state, nonce and PKCE verifier) with the
    // code login B obtained: PKCE and nonce both belong to A, the code to B.
    let login = setup().await;
    let (authorize_a, flow_a) = start_login(&login, "/").await;
    let (authorize_b, _) = start_login(&login, "/").await;
    let callback_b = through_provider(&login, &authorize_b, "alice").await;
    let state_a = query_param(&authorize_a, "state");
    let code_b = query_param(&callback_b, "code");
    let mut mixed = url::Url::parse(&callback_b).unwrap();
    mixed
        .query_pairs_mut()
        .clear()
        .append_pair("code", &code_b)
        .append_pair("state", &state_a);
    let response = login
        .client
        .get(mixed.as_str())
        .header("cookie", flow_a.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn email_outside_the_allowed_domains_cannot_log_in() {
    let login = setup().await;
    let refused = full_login(&login, "mallory").await;
    assert_eq!(refused.status(), 403);
    assert!(refused
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .all(|c| !c.to_str().unwrap().starts_with("__Host-gatehouse=")));
}

#[tokio::test]
async fn provider_key_rotation_is_followed() {
    let login = setup().await;
    assert_eq!(full_login(&login, "alice").await.status(), 302);
    login.idp.process.signal("USR2").unwrap();
    for _ in 0..50 {
        if login.idp.process.log_text().contains("rotated kid=") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The new id_token is signed with a key the gateway has not seen yet.
    assert_eq!(full_login(&login, "alice").await.status(), 302);
}

#[tokio::test]
async fn cookie_session_needs_same_origin_for_unsafe_methods() {
    let login = setup().await;
    let origin = login.gateway.origin();
    assert_eq!(full_login(&login, "alice").await.status(), 302);
    let post = |origin_header: Option<&'static str>, fetch_site: Option<&'static str>| {
        let mut request = login.client.post(format!("{origin}/jobs/run")).body("x");
        if let Some(o) = origin_header {
            request = request.header("origin", o);
        }
        if let Some(s) = fetch_site {
            request = request.header("sec-fetch-site", s);
        }
        request.send()
    };
    assert_eq!(
        post(Some("https://evil.test"), None)
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(post(None, None).await.unwrap().status(), 403);
    assert_eq!(post(None, Some("cross-site")).await.unwrap().status(), 403);
    assert_eq!(post(None, Some("same-origin")).await.unwrap().status(), 200);
    // `Origin: null`: a same-origin form under `Referrer-Policy:
    // no-referrer` (browsers send exactly this), or an opaque origin.
    assert_eq!(
        post(Some("null"), Some("same-origin"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        post(Some("null"), Some("cross-site"))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(post(Some("null"), None).await.unwrap().status(), 403);
    let own = login
        .client
        .post(format!("{origin}/jobs/run"))
        .header("origin", origin.as_str())
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
}

#[tokio::test]
async fn a_stale_session_cookie_sends_browsers_to_login_and_apis_get_401() {
    let login = setup().await;
    let origin = login.gateway.origin();
    let stale = format!("__Host-gatehouse={}", "A".repeat(120));
    let browser = login
        .gateway
        .client()
        .get(format!("{origin}/dashboard"))
        .header("accept", "text/html")
        .header("cookie", &stale)
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), 302);
    assert_eq!(
        location(browser.headers()),
        "/.gatehouse/login?rd=%2Fdashboard"
    );
    let api = login
        .gateway
        .client()
        .get(format!("{origin}/dashboard"))
        .header("cookie", &stale)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
}
