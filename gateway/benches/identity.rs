//! Per-request cost of each identity kind and of the authorization decision.
//!
//! Run: `cargo bench -p gatehouse-gateway --bench identity`
//! Uncached JWT numbers build a fresh `Authenticator` per iteration (outside
//! the measurement), so they show the full signature check; "cached" is the
//! steady state for a client that reuses its token.

// A benchmark panics like a test when its fixture cannot be built.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use gatehouse_gateway::identity::{
    credential, new_api_key, session, Authenticator, IdentityState, LoginAttempts,
};
use gatehouse_gateway::{access::authz, identity};
use gatehouse_policy::IdentityKind;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

const HS_SECRET: &str = "an-hs256-secret-of-more-than-32-bytes!";
const SESSION_KEY: &str = "a-session-key-for-benchmarks-long-enough-0123456789";

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

struct Fixture {
    policy: gatehouse_policy::Policy,
    api_key: String,
    basic: String,
    tokens: Vec<(&'static str, String)>,
    session_cookie: String,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
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
    let text = format!(
        r#"{head}
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
[[route]]
name = "app"
path = "/"
upstream = "http://127.0.0.1:1"
roles = ["viewer"]
"#,
        head = gatehouse_policy::testing::LISTEN_AND_TLS,
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
    let policy = gatehouse_policy::parse(Path::new("bench.toml"), &text).unwrap();

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |iss: &str| serde_json::json!({"iss": iss, "aud": "gatehouse", "sub": "user-1", "exp": now + 3600});
    let rsa = std::fs::read(format!("{fixtures}/rsa-test-key.pem")).unwrap();
    let tokens = vec![
        (
            "jwt RS256",
            jsonwebtoken::encode(
                &Header::new(Algorithm::RS256),
                &claims("rs"),
                &EncodingKey::from_rsa_pem(&rsa).unwrap(),
            )
            .unwrap(),
        ),
        (
            "jwt ES256",
            jsonwebtoken::encode(
                &Header::new(Algorithm::ES256),
                &claims("es"),
                &EncodingKey::from_ec_der(es.as_ref()),
            )
            .unwrap(),
        ),
        (
            "jwt EdDSA",
            jsonwebtoken::encode(
                &Header::new(Algorithm::EdDSA),
                &claims("ed"),
                &EncodingKey::from_ed_der(ed.as_ref()),
            )
            .unwrap(),
        ),
        (
            "jwt HS256",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims("hs"),
                &EncodingKey::from_secret(HS_SECRET.as_bytes()),
            )
            .unwrap(),
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
        _dir: dir,
    }
}

fn headers(name: &'static str, value: &str) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    map.insert(name, value.parse().unwrap());
    map
}

/// The benchmarks measure verification, not the lockout.
struct Unlimited;

impl LoginAttempts for Unlimited {
    fn start(&self) -> bool {
        true
    }
}

fn bench(c: &mut Criterion) {
    let f = fixture();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let state = IdentityState::new().unwrap();
    let auth = Authenticator::new(&f.policy, &state).unwrap();
    let ip = "127.0.0.1".parse().unwrap();
    let all: std::collections::BTreeSet<IdentityKind> = IdentityKind::ALL.into_iter().collect();

    let mut group = c.benchmark_group("identity");
    let cases: Vec<(String, http::HeaderMap)> = [
        ("api key".to_owned(), headers("x-api-key", &f.api_key)),
        (
            "session cookie".to_owned(),
            headers(
                "cookie",
                &format!("{}={}", session::SESSION_COOKIE, f.session_cookie),
            ),
        ),
    ]
    .into_iter()
    .chain(f.tokens.iter().map(|(name, t)| {
        (
            format!("{name} cached"),
            headers("authorization", &format!("Bearer {t}")),
        )
    }))
    .collect();
    for (name, map) in &cases {
        group.bench_function(name.as_str(), |b| {
            b.to_async(&rt).iter(|| async {
                let cred = credential(map).unwrap().unwrap();
                auth.verify(cred, ip, &all, &Unlimited).await.unwrap()
            })
        });
    }
    for (name, token) in &f.tokens {
        let map = headers("authorization", &format!("Bearer {token}"));
        group.bench_function(format!("{name} uncached"), |b| {
            b.to_async(&rt).iter_batched(
                || Authenticator::new(&f.policy, &state).unwrap(),
                |fresh| {
                    let map = &map;
                    let all = &all;
                    async move {
                        let cred = credential(map).unwrap().unwrap();
                        let principal = fresh.verify(cred, ip, all, &Unlimited).await.unwrap();
                        // Returned so the verifier is dropped outside the measurement.
                        (principal, fresh)
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    let basic = headers("authorization", &f.basic);
    // A basic-auth client's steady state: its password was checked once.
    group.bench_function("basic remembered", |b| {
        b.to_async(&rt).iter(|| async {
            let cred = credential(&basic).unwrap().unwrap();
            auth.verify(cred, ip, &all, &Unlimited).await.unwrap()
        })
    });
    group.sample_size(10);
    group.bench_function("basic argon2id", |b| {
        b.to_async(&rt).iter_batched(
            || Authenticator::new(&f.policy, &state).unwrap(),
            |fresh| {
                let basic = &basic;
                let all = &all;
                async move {
                    let cred = credential(basic).unwrap().unwrap();
                    let principal = fresh.verify(cred, ip, all, &Unlimited).await.unwrap();
                    (principal, fresh)
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let principal =
        identity::Principal::hypothetical(["viewer".to_owned()].into(), IdentityKind::ApiKey);
    let route = &f.policy.routes[0];
    c.bench_function("authz decide", |b| {
        b.iter(|| authz::decide(route, &f.policy.roles, Some(&principal), "GET").unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
