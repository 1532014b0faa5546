//! Identity and authorization through the real gateway: API keys, basic
//! auth, JWTs of every supported algorithm, the classic JWT attacks, JWKS
//! caching, and what the upstream sees.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;
use sha2::{Digest, Sha256};

use gatehouse_tests::gateway::BASE_POLICY;
use gatehouse_tests::upstream::{echoed, upstream_header};
use gatehouse_tests::GatewayUnderTest;

const RSA_PRIVATE: &[u8] = include_bytes!("fixtures/rsa-test-key.pem");
const HS_SECRET: &str = "an-hs256-secret-of-more-than-32-bytes!";
const API_KEY: &str = "gh_test-key-for-the-ci-pipeline-0123456789abcdef";
const OLD_KEY: &str = "gh_an-expired-key-0123456789abcdef0123456789ab";
const OFFICE_KEY: &str = "gh_only-from-the-office-0123456789abcdef012345";
const NO_ROLE_KEY: &str = "gh_a-key-with-no-roles-0123456789abcdef0123456";

fn sha(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// Signing keys made for one test run, and their public halves as PEM.
struct Keys {
    es_private: Vec<u8>,
    es_public_pem: String,
    ed_private: Vec<u8>,
    ed_public: Vec<u8>,
}

impl Keys {
    fn new() -> Keys {
        let rng = ring::rand::SystemRandom::new();
        let es = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let es_pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, es.as_ref(), &rng).unwrap();
        // SubjectPublicKeyInfo for P-256: fixed prefix + the uncompressed point.
        let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
        spki.extend_from_slice(es_pair.public_key().as_ref());
        let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed_pair = Ed25519KeyPair::from_pkcs8(ed.as_ref()).unwrap();
        Keys {
            es_private: es.as_ref().to_vec(),
            es_public_pem: pem("PUBLIC KEY", &spki),
            ed_private: ed.as_ref().to_vec(),
            ed_public: ed_pair.public_key().as_ref().to_vec(),
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(iss: &str) -> serde_json::Value {
    json!({"iss": iss, "aud": "gatehouse", "sub": "user-1", "email": "u1@example.com",
           "email_verified": true, "groups": ["ops"], "exp": now() + 300, "iat": now()})
}

fn sign(
    alg: Algorithm,
    kid: Option<&str>,
    claims: &serde_json::Value,
    key: &EncodingKey,
) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn policy_extra(dir_keys: &str, jwks_url: &str) -> String {
    // argon2id of "correct horse", made with `gatehouse-gateway hash-password`.
    let argon = "$argon2id$v=19$m=19456,t=2,p=1$MC9NYUEdXllel7wdQnpKBw$pzZg16nxXQ3IBy3L6Xt2qUaV2YRndkIrKV3qK9m/N+E";
    format!(
        r#"
[roles]
admin = ["*"]
viewer = ["site:view"]

[[api_key]]
name = "ci"
sha256 = "{api}"
roles = ["viewer"]

[[api_key]]
name = "old"
sha256 = "{old}"
roles = ["viewer"]
expires = "2020-01-01T00:00:00Z"

[[api_key]]
name = "office"
sha256 = "{office}"
roles = ["viewer"]
allow = ["10.0.0.0/8"]

[[api_key]]
name = "norole"
sha256 = "{norole}"
roles = []

[[basic_user]]
name = "alice"
password_hash = "{argon}"
roles = ["admin"]

[[jwt]]
name = "rs"
issuer = "rs-issuer"
audience = ["gatehouse"]
algorithms = ["RS256"]
public_keys = ["{rsa_pub}"]
[jwt.claims]
role_map = {{ ops = ["viewer"] }}

[[jwt]]
name = "es"
issuer = "es-issuer"
audience = ["gatehouse"]
algorithms = ["ES256"]
public_keys = ["{dir_keys}/es.pem"]
[jwt.claims]
default_roles = ["viewer"]

[[jwt]]
name = "hs"
issuer = "hs-issuer"
audience = ["gatehouse"]
algorithms = ["HS256"]
hs256_secret = "{hs}"
[jwt.claims]
default_roles = ["viewer"]

[[jwt]]
name = "jwks"
issuer = "jwks-issuer"
audience = ["gatehouse"]
algorithms = ["EdDSA"]
jwks_url = "{jwks_url}"
jwks_refetch_cooldown = "1s"
[jwt.claims]
default_roles = ["viewer"]
"#,
        api = sha(API_KEY),
        old = sha(OLD_KEY),
        office = sha(OFFICE_KEY),
        norole = sha(NO_ROLE_KEY),
        rsa_pub = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/fixtures/rsa-test-pub.pem"
        ),
        hs = HS_SECRET,
    )
}

fn jwks(keys: &[(&str, &[u8])]) -> String {
    let entries: Vec<_> = keys
        .iter()
        .map(|(kid, public)| {
            json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": kid,
                   "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public)})
        })
        .collect();
    json!({ "keys": entries }).to_string()
}

struct Setup {
    gateway: GatewayUnderTest,
    keys: Keys,
    jwks_server: gatehouse_tests::DocumentServer,
}

async fn setup() -> Setup {
    setup_with_route("").await
}

async fn setup_with_route(route_extra: &str) -> Setup {
    let keys = Keys::new();
    let jwks_server = gatehouse_tests::DocumentServer::start(jwks(&[("a", &keys.ed_public)]))
        .await
        .unwrap();
    let template = BASE_POLICY.replace("public = true", "roles = [\"viewer\", \"admin\"]");
    let es_pem = keys.es_public_pem.clone();
    let extra = format!(
        "{route_extra}{}",
        policy_extra("{dir}", &jwks_server.url("/jwks.json"))
    );
    let gateway = GatewayUnderTest::start_custom(&template, &extra, move |pki| {
        std::fs::write(pki.dir.path().join("es.pem"), &es_pem).unwrap();
    })
    .await;
    Setup {
        gateway,
        keys,
        jwks_server,
    }
}

async fn get(gateway: &GatewayUnderTest, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = gateway
        .client()
        .get(format!("{}/resource", gateway.origin()));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.send().await.unwrap()
}

async fn bearer(gateway: &GatewayUnderTest, token: &str) -> u16 {
    get(gateway, &[("authorization", &format!("Bearer {token}"))])
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn api_keys_right_wrong_expired_and_outside_their_network() {
    let s = setup().await;
    let g = &s.gateway;
    let anonymous = get(g, &[]).await;
    assert_eq!(anonymous.status(), 401);
    // One challenge per header line, so browsers see the Basic one.
    let challenges: Vec<_> = anonymous
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        challenges,
        [
            "Basic realm=\"gatehouse\", charset=\"UTF-8\"",
            "Bearer realm=\"gatehouse\""
        ]
    );

    let ok = get(g, &[("x-api-key", API_KEY), ("x-gatehouse-user", "forged")]).await;
    assert_eq!(ok.status(), 200);
    let echo = echoed(ok).await;
    assert_eq!(
        upstream_header(&echo, "x-gatehouse-user"),
        vec!["api_key:ci"]
    );
    assert_eq!(upstream_header(&echo, "x-gatehouse-roles"), vec!["viewer"]);
    assert!(
        upstream_header(&echo, "x-api-key").is_empty(),
        "the credential stays at the gateway"
    );

    assert_eq!(bearer(g, API_KEY).await, 200);
    assert_eq!(
        bearer(g, "gh_not-a-key-we-know-0123456789abcdef0123456789").await,
        401
    );
    assert_eq!(bearer(g, OLD_KEY).await, 401);
    assert_eq!(bearer(g, OFFICE_KEY).await, 401);
}

#[tokio::test]
async fn basic_auth_checks_the_password_and_slows_failures() {
    let s = setup().await;
    let g = &s.gateway;
    let basic = |user: &str, password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    };
    let right = get(g, &[("authorization", &basic("alice", "correct horse"))]).await;
    assert_eq!(right.status(), 200);
    let echo = echoed(right).await;
    assert_eq!(upstream_header(&echo, "x-gatehouse-roles"), vec!["admin"]);
    assert!(upstream_header(&echo, "authorization").is_empty());

    let started = Instant::now();
    let wrong = get(g, &[("authorization", &basic("alice", "wrong"))]).await;
    assert_eq!(wrong.status(), 401);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert!(wrong.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("Basic"));
    assert_eq!(
        get(g, &[("authorization", &basic("mallory", "x"))])
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn a_jwt_email_reaches_the_upstream_only_when_verified() {
    let s = setup().await;
    let hs = EncodingKey::from_secret(HS_SECRET.as_bytes());
    for (verified, want) in [(json!(true), 1), (json!(false), 0), (json!(null), 0)] {
        let mut unverified = claims("hs-issuer");
        unverified["email_verified"] = verified.clone();
        let token = sign(Algorithm::HS256, None, &unverified, &hs);
        let response = get(&s.gateway, &[("authorization", &format!("Bearer {token}"))]).await;
        assert_eq!(response.status(), 200);
        let echo = echoed(response).await;
        assert_eq!(
            upstream_header(&echo, "x-gatehouse-email").len(),
            want,
            "email_verified = {verified}"
        );
    }
}

#[tokio::test]
async fn jwts_of_every_supported_algorithm_are_accepted() {
    let s = setup().await;
    let g = &s.gateway;
    let rs = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let es = EncodingKey::from_ec_der(&s.keys.es_private);
    let ed = EncodingKey::from_ed_der(&s.keys.ed_private);
    let hs = EncodingKey::from_secret(HS_SECRET.as_bytes());
    for (what, token) in [
        (
            "RS256",
            sign(Algorithm::RS256, None, &claims("rs-issuer"), &rs),
        ),
        (
            "ES256",
            sign(Algorithm::ES256, None, &claims("es-issuer"), &es),
        ),
        (
            "EdDSA via JWKS",
            sign(Algorithm::EdDSA, Some("a"), &claims("jwks-issuer"), &ed),
        ),
        (
            "HS256",
            sign(Algorithm::HS256, None, &claims("hs-issuer"), &hs),
        ),
    ] {
        let response = get(g, &[("authorization", &format!("Bearer {token}"))]).await;
        assert_eq!(response.status(), 200, "{what}");
        let echo = echoed(response).await;
        let user = upstream_header(&echo, "x-gatehouse-user");
        assert!(
            user.len() == 1 && user[0].starts_with("jwt:") && user[0].ends_with(":user-1"),
            "{what}: subjects are namespaced by issuer: {user:?}"
        );
        assert_eq!(
            upstream_header(&echo, "x-gatehouse-email"),
            vec!["u1@example.com"],
            "{what}"
        );
        assert_eq!(
            upstream_header(&echo, "x-gatehouse-roles"),
            vec!["viewer"],
            "{what}"
        );
    }
}

#[tokio::test]
async fn classic_jwt_attacks_are_refused() {
    let s = setup().await;
    let g = &s.gateway;
    let rs = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let good = sign(Algorithm::RS256, None, &claims("rs-issuer"), &rs);
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let parts: Vec<&str> = good.split('.').collect();

    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        parts[1]
    );
    // Alg confusion: HS256 keyed with the RSA *public* key the issuer trusts.
    let public_pem = include_bytes!("fixtures/rsa-test-pub.pem");
    let confused = sign(
        Algorithm::HS256,
        None,
        &claims("rs-issuer"),
        &EncodingKey::from_secret(public_pem),
    );
    let mut wrong_iss = claims("rs-issuer");
    wrong_iss["iss"] = json!("someone-else");
    let mut wrong_aud = claims("rs-issuer");
    wrong_aud["aud"] = json!("another-service");
    let mut expired = claims("rs-issuer");
    expired["exp"] = json!(now() - 3600);
    let mut not_yet = claims("rs-issuer");
    not_yet["nbf"] = json!(now() + 3600);
    let stripped = format!("{}.{}.", parts[0], parts[1]);
    let mut escalated = claims("rs-issuer");
    escalated["groups"] = json!(["ops", "platform"]);
    let tampered = format!("{}.{}.{}", parts[0], b64(&escalated), parts[2]);
    let unknown_kid = sign(
        Algorithm::EdDSA,
        Some("not-in-the-jwks"),
        &claims("jwks-issuer"),
        &EncodingKey::from_ed_der(&s.keys.ed_private),
    );

    for (what, token) in [
        ("alg none", alg_none),
        ("alg confusion", confused),
        ("wrong iss", sign(Algorithm::RS256, None, &wrong_iss, &rs)),
        ("wrong aud", sign(Algorithm::RS256, None, &wrong_aud, &rs)),
        ("expired", sign(Algorithm::RS256, None, &expired, &rs)),
        (
            "nbf in the future",
            sign(Algorithm::RS256, None, &not_yet, &rs),
        ),
        ("stripped signature", stripped),
        ("tampered payload", tampered),
        ("unknown kid", unknown_kid),
        ("garbage", "a.b.c".to_owned()),
        ("oversized", "a".repeat(20_000)),
    ] {
        let response = get(g, &[("authorization", &format!("Bearer {token}"))]).await;
        assert_eq!(response.status(), 401, "{what}");
        assert_eq!(
            response.text().await.unwrap(),
            "401 Unauthorized\n",
            "{what}: no detail leaks"
        );
    }
}

#[tokio::test]
async fn jwks_is_cached_refetched_for_new_keys_and_survives_downtime() {
    let s = setup().await;
    let g = &s.gateway;
    let ed = EncodingKey::from_ed_der(&s.keys.ed_private);
    let token_a = sign(Algorithm::EdDSA, Some("a"), &claims("jwks-issuer"), &ed);
    assert_eq!(bearer(g, &token_a).await, 200);
    assert_eq!(bearer(g, &token_a).await, 200);
    assert_eq!(s.jwks_server.hits(), 1, "the second token used the cache");

    // The issuer rotates: key b joins the set.
    let rng = ring::rand::SystemRandom::new();
    let b = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let b_public = Ed25519KeyPair::from_pkcs8(b.as_ref())
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec();
    s.jwks_server
        .set(200, jwks(&[("a", &s.keys.ed_public), ("b", &b_public)]));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let token_b = sign(
        Algorithm::EdDSA,
        Some("b"),
        &claims("jwks-issuer"),
        &EncodingKey::from_ed_der(b.as_ref()),
    );
    assert_eq!(bearer(g, &token_b).await, 200);
    assert_eq!(s.jwks_server.hits(), 2);

    // The endpoint goes down: cached keys keep working.
    s.jwks_server.set(503, "down".into());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let token_c = sign(Algorithm::EdDSA, Some("c"), &claims("jwks-issuer"), &ed);
    assert_eq!(bearer(g, &token_c).await, 401);
    assert_eq!(bearer(g, &token_a).await, 200);
    assert_eq!(bearer(g, &token_b).await, 200);
}

#[tokio::test]
async fn assertion_reaches_the_upstream_and_verifies_with_the_published_jwks() {
    let s = setup().await;
    let g = &s.gateway;
    let echo = echoed(get(g, &[("x-api-key", API_KEY)]).await).await;
    let assertion = upstream_header(&echo, "x-gatehouse-assertion")
        .pop()
        .expect("assertion");

    let jwks_text = g
        .client()
        .get(format!("{}/.well-known/gatehouse/jwks.json", g.origin()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let admin_jwks = reqwest::get(format!("http://{}/jwks.json", g.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(jwks_text, admin_jwks);
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&jwks_text).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&set.keys[0]).unwrap();
    let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["app"]);
    validation.set_issuer(&[g.origin()]);
    let data = jsonwebtoken::decode::<serde_json::Value>(&assertion, &key, &validation).unwrap();
    assert_eq!(data.claims["sub"], "api_key:ci");
    assert_eq!(data.claims["method"], "GET");
    assert_eq!(data.claims["path"], "/resource");
    assert_eq!(data.claims["auth"], "api_key");
    let lifetime = data.claims["exp"].as_u64().unwrap() - data.claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 60);
}

#[tokio::test]
async fn cors_preflight_and_responses_follow_the_route_rules() {
    let s = setup_with_route(
        "[route.cors]\nallow_origins = [\"https://app.test\"]\nallow_methods = [\"GET\", \"POST\"]\nallow_headers = [\"x-api-key\"]\nallow_credentials = true\n",
    )
    .await;
    let g = &s.gateway;
    let preflight = |origin: &'static str| {
        g.client()
            .request(reqwest::Method::OPTIONS, format!("{}/resource", g.origin()))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-api-key")
            .send()
    };
    let allowed = preflight("https://app.test").await.unwrap();
    assert_eq!(allowed.status(), 204, "preflights need no credentials");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.test"
    );
    assert_eq!(
        allowed.headers()["access-control-allow-credentials"],
        "true"
    );
    assert!(allowed.headers().contains_key("strict-transport-security"));
    assert_eq!(preflight("https://evil.test").await.unwrap().status(), 403);

    let actual = get(g, &[("x-api-key", API_KEY), ("origin", "https://app.test")]).await;
    assert_eq!(actual.status(), 200);
    assert_eq!(
        actual.headers()["access-control-allow-origin"],
        "https://app.test"
    );
    let foreign = get(
        g,
        &[("x-api-key", API_KEY), ("origin", "https://evil.test")],
    )
    .await;
    assert!(foreign
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

#[tokio::test]
async fn denials_name_their_rule_and_reason_in_the_access_log() {
    let s = setup().await;
    let g = &s.gateway;
    assert_eq!(get(g, &[("x-api-key", NO_ROLE_KEY)]).await.status(), 403);
    let denied: Vec<_> = g
        .access_log(1)
        .await
        .into_iter()
        .filter(|r| r["status"] == 403)
        .collect();
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["rule"], "route app");
    assert_eq!(denied[0]["denial"], "missing-role");
    assert_eq!(denied[0]["user"], "api_key:norole");
}
