//! Credentials of every identity kind and the policy tables that accept
//! them, shared by the benches (`identity.rs`, `stages.rs`), which each
//! wrap them in a policy of their own.

// Each bench uses its own part of this module.
#![allow(dead_code)]

use std::path::Path;

use base64::Engine;
use gatehouse_gateway::identity::{self, new_api_key, session};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

const HS_SECRET: &str = "an-hs256-secret-of-more-than-32-bytes!";
const SESSION_KEY: &str = "a-session-key-for-benchmarks-long-enough-0123456789";

pub struct Fixture {
    pub policy: gatehouse_policy::Policy,
    pub api_key: String,
    /// An `Authorization` value for the basic user `alice`.
    pub basic: String,
    /// One token per JWT issuer, named by algorithm ("jwt ES256").
    pub tokens: Vec<(&'static str, String)>,
    /// A sealed session (the value of the session cookie).
    pub session_cookie: String,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn token(&self, name: &str) -> &str {
        &self.tokens.iter().find(|(n, _)| *n == name).unwrap().1
    }
}

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<String> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

/// Keys and credentials in a fresh directory. `policy_text` gets the
/// identity tables (`[roles]` with `viewer`, `[session]`, an API key, the
/// basic user `alice` and one `[[jwt]]` issuer per algorithm, all giving
/// `viewer`) and the directory, and returns the whole policy.
pub fn fixture(policy_text: impl FnOnce(&str, &Path) -> String) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let rng = ring::rand::SystemRandom::new();
    let es = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let es_pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, es.as_ref(), &rng).unwrap();
    let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    spki.extend_from_slice(es_pair.public_key().as_ref());
    std::fs::write(dir.path().join("es.pem"), pem(&spki)).unwrap();
    let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let ed_pair = Ed25519KeyPair::from_pkcs8(ed.as_ref()).unwrap();
    let mut ed_spki = hex::decode("302a300506032b6570032100").unwrap();
    ed_spki.extend_from_slice(ed_pair.public_key().as_ref());
    std::fs::write(dir.path().join("ed.pem"), pem(&ed_spki)).unwrap();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fixtures");

    let (api_key, api_hash) = new_api_key().unwrap();
    let password_hash = identity::hash_password("correct horse").unwrap();
    let jwt = |name: &str, issuer: &str, alg: &str, keys: String| {
        format!("[[jwt]]\nname = \"{name}\"\nissuer = \"{issuer}\"\naudience = [\"gatehouse\"]\nalgorithms = [\"{alg}\"]\n{keys}\n[jwt.claims]\ndefault_roles = [\"viewer\"]\n")
    };
    let identities = format!(
        r#"
[roles]
viewer = ["view"]
[session]
keys = ["{SESSION_KEY}"]
[[api_key]]
name = "ci"
sha256 = "{api_hash}"
roles = ["viewer"]
[[basic_user]]
name = "alice"
password_hash = "{password_hash}"
roles = ["viewer"]
{rs}{es}{ed}{hs}
"#,
        rs = jwt(
            "rs",
            "rs",
            "RS256",
            format!("public_keys = [\"{fixtures}/rsa-test-pub.pem\"]")
        ),
        es = jwt(
            "es",
            "es",
            "ES256",
            format!("public_keys = [\"{}/es.pem\"]", dir.path().display())
        ),
        ed = jwt(
            "ed",
            "ed",
            "EdDSA",
            format!("public_keys = [\"{}/ed.pem\"]", dir.path().display())
        ),
        hs = jwt(
            "hs",
            "hs",
            "HS256",
            format!("hs256_secret = \"{HS_SECRET}\"")
        ),
    );
    let text = policy_text(&identities, dir.path());
    let policy = gatehouse_policy::parse(Path::new("bench.toml"), &text).unwrap();

    let now = session::unix_now();
    let claims = |iss: &str| serde_json::json!({"iss": iss, "aud": "gatehouse", "sub": "user-1", "exp": now + 3600});
    let rsa = std::fs::read(format!("{fixtures}/rsa-test-key.pem")).unwrap();
    let sign = |alg: Algorithm, iss: &str, key: &EncodingKey| {
        jsonwebtoken::encode(&Header::new(alg), &claims(iss), key).unwrap()
    };
    let tokens = vec![
        (
            "jwt RS256",
            sign(
                Algorithm::RS256,
                "rs",
                &EncodingKey::from_rsa_pem(&rsa).unwrap(),
            ),
        ),
        (
            "jwt ES256",
            sign(
                Algorithm::ES256,
                "es",
                &EncodingKey::from_ec_der(es.as_ref()),
            ),
        ),
        (
            "jwt EdDSA",
            sign(
                Algorithm::EdDSA,
                "ed",
                &EncodingKey::from_ed_der(ed.as_ref()),
            ),
        ),
        (
            "jwt HS256",
            sign(
                Algorithm::HS256,
                "hs",
                &EncodingKey::from_secret(HS_SECRET.as_bytes()),
            ),
        ),
    ];
    let sealer = session::Sealer::new(&policy.identities.session.as_ref().unwrap().keys);
    let data = session::SessionData {
        sid: "session-1".into(),
        sub: "user-1".into(),
        email: Some("user-1@example.com".into()),
        roles: vec!["viewer".into()],
        idp: "corp".into(),
        iat: now,
        seen: now,
        idt: None,
    };
    let session_cookie = sealer
        .seal(session::SESSION_COOKIE, &serde_json::to_vec(&data).unwrap())
        .unwrap();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:correct horse")
    );
    Fixture {
        policy,
        api_key,
        basic,
        tokens,
        session_cookie,
        dir,
    }
}
