//! JWT attacks against the real token check: `alg: none` in every case,
//! alg confusion (HS256 keyed with the issuer's public key), `kid` tricks
//! (unknown, path traversal, SQL-ish), `jku` / `x5u` / `jwk` pointing at
//! the attacker's key (never fetched, never trusted), `crit`, expiry and
//! `nbf`, wrong `aud` / `iss`, another key, a tampered payload. Each is 401
//! and reaches nothing. Also the identity details: subjects are namespaced
//! by source (`jwt:<issuer>:<sub>`, `api_key:<name>`, `basic:<user>`), and
//! `X-Gatehouse-Email` is sent only for `email_verified: true`.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};

use super::*;

const RSA_PRIVATE: &[u8] = include_bytes!("../../../../gateway/tests/it/fixtures/rsa-test-key.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../../../../gateway/tests/it/fixtures/rsa-test-pub.pem");
const RSA_OTHER: &[u8] = include_bytes!("../../../../gateway/tests/it/fixtures/rsa-other-key.pem");
const API_KEY: &str = "gh_jwt-topic-api-key-0123456789abcdef01234567";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(iss: &str) -> Value {
    json!({"iss": iss, "aud": "gatehouse", "sub": "user-1", "exp": now() + 300, "iat": now()})
}

/// A token with exactly this header, signed as `alg` with `key` (no key:
/// an empty signature).
fn token(header: &Value, claims: &Value, key: Option<(&EncodingKey, Algorithm)>) -> String {
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = match key {
        Some((key, alg)) => jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap(),
        None => String::new(),
    };
    format!("{message}.{signature}")
}

struct Keys {
    rs: EncodingKey,
    other_rs: EncodingKey,
    ed: EncodingKey,
    ed_public: Vec<u8>,
    attacker: EncodingKey,
    attacker_public: Vec<u8>,
}

fn ed25519() -> (EncodingKey, Vec<u8>) {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let public = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec();
    (EncodingKey::from_ed_der(pkcs8.as_ref()), public)
}

fn jwks(kid: &str, public: &[u8]) -> String {
    json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": kid, "x": b64(public)}]})
        .to_string()
}

fn policy(jwks_url: &str) -> String {
    let rsa_pub = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../gateway/tests/it/fixtures/rsa-test-pub.pem"
    );
    format!(
        r#"{NO_RATE_LIMITS}
[roles]
viewer = ["site:view"]

[[jwt]]
name = "rs"
issuer = "rs-issuer"
audience = ["gatehouse"]
algorithms = ["RS256"]
public_keys = ["{rsa_pub}"]
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
{}{}{}"#,
        api_key("ci", API_KEY, &["viewer"]),
        basic_user("admin", &["viewer"]),
        route("api", "/api", "roles = [\"viewer\"]"),
    )
}

fn bearer(name: impl Into<String>, token: &str) -> Vector {
    vector(
        name,
        req("GET", "/api").h("Authorization", &format!("Bearer {token}")),
    )
}

fn refused(name: &str, token: &str) -> Vector {
    bearer(name, token).status(401).nothing()
}

fn signature_attacks(k: &Keys) -> Vec<Vector> {
    let rs = |h: Value, c: Value| token(&h, &c, Some((&k.rs, Algorithm::RS256)));
    let c = claims("rs-issuer");
    let mut out: Vec<Vector> = ["none", "None", "NONE", "nOnE"]
        .iter()
        .map(|alg| {
            refused(
                &format!("alg: {alg}"),
                &token(&json!({"alg": alg, "typ": "JWT"}), &c, None),
            )
        })
        .collect();
    let good = rs(json!({"alg": "RS256"}), c.clone());
    let signature = good.rsplit('.').next().unwrap().to_owned();
    let none_signed = token(&json!({"alg": "none"}), &c, None) + &signature;
    let hs = |secret: &[u8], iss: &str| {
        token(
            &json!({"alg": "HS256"}),
            &claims(iss),
            Some((&EncodingKey::from_secret(secret), Algorithm::HS256)),
        )
    };
    let trimmed = String::from_utf8_lossy(RSA_PUBLIC).trim().to_owned();
    let other = token(
        &json!({"alg": "RS256"}),
        &c,
        Some((&k.other_rs, Algorithm::RS256)),
    );
    let attacker_ed = token(
        &json!({"alg": "EdDSA"}),
        &c,
        Some((&k.attacker, Algorithm::EdDSA)),
    );
    out.extend([
        refused("alg: none keeping a real signature", &none_signed),
        refused(
            "alg confusion: HS256 keyed with the RSA public key PEM",
            &hs(RSA_PUBLIC, "rs-issuer"),
        ),
        refused(
            "alg confusion: HS256 keyed with the PEM, trimmed",
            &hs(trimmed.as_bytes(), "rs-issuer"),
        ),
        refused(
            "alg confusion: HS256 keyed with the JWKS public key",
            &hs(&k.ed_public, "jwks-issuer"),
        ),
        refused("EdDSA token to an RS256-only issuer", &attacker_ed),
        refused("signed by a different RSA key", &other),
        refused(
            "stripped signature",
            &format!("{}.", good.rsplit_once('.').unwrap().0),
        ),
        refused("tampered payload", &{
            let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
            let mut escalated = c.clone();
            escalated["sub"] = json!("admin");
            parts[1] = b64(escalated.to_string().as_bytes());
            parts.join(".")
        }),
    ]);
    out
}

fn header_attacks(k: &Keys, attacker_url: &str) -> Vec<Vector> {
    let c = claims("jwks-issuer");
    let real = |h: Value| token(&h, &c, Some((&k.ed, Algorithm::EdDSA)));
    let evil = |h: Value| token(&h, &c, Some((&k.attacker, Algorithm::EdDSA)));
    let hs = |h: Value, secret: &[u8]| {
        token(
            &h,
            &c,
            Some((&EncodingKey::from_secret(secret), Algorithm::HS256)),
        )
    };
    let attacker_jwk =
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "attacker", "x": b64(&k.attacker_public)});
    let rs_claims = claims("rs-issuer");
    let rs = |h: Value| token(&h, &rs_claims, Some((&k.rs, Algorithm::RS256)));
    vec![
        refused(
            "unknown kid",
            &real(json!({"alg": "EdDSA", "kid": "not-in-the-jwks"})),
        ),
        refused(
            "kid path traversal, real key",
            &real(json!({"alg": "EdDSA", "kid": "../../../../../../dev/null"})),
        ),
        refused(
            "kid /dev/null, HS256 with an empty secret",
            &hs(
                json!({"alg": "HS256", "kid": "../../../../../../dev/null"}),
                b"",
            ),
        ),
        refused(
            "kid SQL injection, HS256 with the injected secret",
            &hs(
                json!({"alg": "HS256", "kid": "x' UNION SELECT 'secret' -- "}),
                b"secret",
            ),
        ),
        refused(
            "kid SQL-ish, attacker key",
            &evil(json!({"alg": "EdDSA", "kid": "a' OR '1'='1"})),
        ),
        refused(
            "known kid, attacker key",
            &evil(json!({"alg": "EdDSA", "kid": "a"})),
        ),
        refused(
            "jku to the attacker's JWKS",
            &evil(json!({"alg": "EdDSA", "kid": "attacker", "jku": attacker_url})),
        ),
        refused(
            "x5u to the attacker's URL",
            &evil(json!({"alg": "EdDSA", "kid": "attacker", "x5u": attacker_url})),
        ),
        refused(
            "embedded jwk of the attacker",
            &evil(json!({"alg": "EdDSA", "jwk": attacker_jwk})),
        ),
        refused("crit: [exp]", &rs(json!({"alg": "RS256", "crit": ["exp"]}))),
        refused(
            "crit: [x-unknown] with the extension",
            &rs(json!({"alg": "RS256", "crit": ["x-unknown"], "x-unknown": true})),
        ),
    ]
}

fn claim_attacks(k: &Keys) -> Vec<Vector> {
    let rs = |c: Value| {
        token(
            &json!({"alg": "RS256"}),
            &c,
            Some((&k.rs, Algorithm::RS256)),
        )
    };
    let with = |key: &str, value: Value| {
        let mut c = claims("rs-issuer");
        c[key] = value;
        rs(c)
    };
    vec![
        refused("expired an hour ago", &with("exp", json!(now() - 3600))),
        refused("nbf an hour ahead", &with("nbf", json!(now() + 3600))),
        refused("wrong aud", &with("aud", json!("another-service"))),
        refused("wrong iss", &with("iss", json!("someone-else"))),
        refused("no exp", &{
            let mut c = claims("rs-issuer");
            c.as_object_mut().unwrap().remove("exp");
            rs(c)
        }),
    ]
}

fn identity_details(k: &Keys) -> Vec<Vector> {
    let rs = |c: Value| {
        token(
            &json!({"alg": "RS256"}),
            &c,
            Some((&k.rs, Algorithm::RS256)),
        )
    };
    let with = |pairs: &[(&str, Value)]| {
        let mut c = claims("rs-issuer");
        for (key, value) in pairs {
            c[*key] = value.clone();
        }
        rs(c)
    };
    let user = |name: &str, request: Vec<u8>, want: &str| {
        vector(name, request).status(200).reaches(
            seen("GET", "/api")
                .with("x-gatehouse-user", want)
                .without(&["authorization", "x-api-key"]),
        )
    };
    let email = json!("u1@example.com");
    vec![
        user(
            "JWT subject is jwt:rs:user-1",
            bearer("", &with(&[])).request,
            "jwt:rs:user-1",
        ),
        user(
            "JWT sub admin is not the basic user admin",
            bearer("", &with(&[("sub", json!("admin"))])).request,
            "jwt:rs:admin",
        ),
        user(
            "API key subject is api_key:ci",
            req("GET", "/api").h("X-API-Key", API_KEY).bytes(),
            "api_key:ci",
        ),
        user(
            "basic subject is basic:admin",
            req("GET", "/api")
                .h("Authorization", &basic("admin", CORRECT_HORSE))
                .bytes(),
            "basic:admin",
        ),
        bearer(
            "email without email_verified is not sent",
            &with(&[("email", email.clone())]),
        )
        .status(200)
        .reaches(seen("GET", "/api").without(&["x-gatehouse-email"])),
        bearer(
            "email with email_verified: false is not sent",
            &with(&[("email", email.clone()), ("email_verified", json!(false))]),
        )
        .status(200)
        .reaches(seen("GET", "/api").without(&["x-gatehouse-email"])),
        bearer(
            "email with email_verified: true is sent",
            &with(&[("email", email), ("email_verified", json!(true))]),
        )
        .status(200)
        .reaches(seen("GET", "/api").with("x-gatehouse-email", "u1@example.com")),
    ]
}

#[tokio::test]
async fn jwt_attacks() {
    let _shared = shared().await;
    let (ed, ed_public) = ed25519();
    let (attacker, attacker_public) = ed25519();
    let keys = Keys {
        rs: EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        other_rs: EncodingKey::from_rsa_pem(RSA_OTHER).unwrap(),
        ed,
        ed_public,
        attacker,
        attacker_public,
    };
    let issuer_jwks = gatehouse_tests::DocumentServer::start(jwks("a", &keys.ed_public))
        .await
        .unwrap();
    let attacker_jwks =
        gatehouse_tests::DocumentServer::start(jwks("attacker", &keys.attacker_public))
            .await
            .unwrap();
    let attacker_url = attacker_jwks.url("/jwks.json");
    let mut vectors = vec![bearer(
        "control: a valid RS256 token",
        &token(
            &json!({"alg": "RS256"}),
            &claims("rs-issuer"),
            Some((&keys.rs, Algorithm::RS256)),
        ),
    )
    .status(200)
    .reaches(seen("GET", "/api").without(&["authorization"]))];
    vectors.extend(signature_attacks(&keys));
    vectors.extend(header_attacks(&keys, &attacker_url));
    vectors.extend(claim_attacks(&keys));
    vectors.extend(identity_details(&keys));
    let mut report = run_groups(
        "jwt",
        vec![(policy(&issuer_jwks.url("/jwks.json")), vectors)],
    )
    .await;
    report.record(
        "jku and x5u URLs are never fetched",
        match attacker_jwks.hits() {
            0 => Ok(()),
            n => Err(format!("the attacker's URL was fetched {n} times")),
        },
    );
    report.finish();
}
