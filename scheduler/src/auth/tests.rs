use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use jsonwebtoken::{EncodingKey, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// A fixed Ed25519 key (PKCS#8) for signing test assertions.
fn signing_pair() -> (EncodingKey, JwkSet) {
    let pkcs8 = ring_free_test_key();
    let key = EncodingKey::from_ed_der(&pkcs8.0);
    (key, test_jwks(pkcs8.1))
}

fn test_jwks(x: &str) -> JwkSet {
    serde_json::from_value(serde_json::json!({
        "keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1", "alg": "EdDSA", "use": "sig"}]
    }))
    .expect("jwks")
}

/// RFC 8032 test vector 1, as PKCS#8 DER and the JWK `x`.
fn ring_free_test_key() -> (Vec<u8>, &'static str) {
    let seed = [
        0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c,
        0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae,
        0x7f, 0x60,
    ];
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&seed);
    (der, "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
}

fn token(key: &EncodingKey, claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("k1".into());
    jsonwebtoken::encode(&header, &claims, key).expect("sign")
}

/// A fresh jti per call, as the gateway signs one per request.
fn next_jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("test-jti-{:012}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn claims(method: &str, path: &str, aud: &str, exp_in: i64) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    serde_json::json!({
        "iss": "https://gw.test", "sub": "alice", "aud": aud, "iat": now, "exp": now + exp_in,
        "jti": next_jti(),
        "roles": ["operator"], "auth": "oidc", "method": method, "path": path
    })
}

fn verifier_with_capacity(capacity: usize) -> (EncodingKey, Verifier) {
    let (key, jwks) = signing_pair();
    let v = Verifier::with_replay_capacity("https://gw.test", &["jobs".to_owned()], capacity);
    v.set_keys(jwks);
    (key, v)
}

fn verifier() -> (EncodingKey, Verifier) {
    verifier_with_capacity(REPLAY_CACHE_CAPACITY)
}

#[test]
fn a_gateway_assertion_names_the_caller() {
    let (key, v) = verifier();
    let t = token(&key, claims("POST", "/api/jobs/a/run", "jobs", 60));
    let caller = v
        .verify(Some(&t), "POST", "/api/jobs/a/run")
        .expect("valid");
    assert_eq!(caller.subject, "alice");
    assert!(caller.roles.contains("operator"));
}

#[test]
fn assertions_are_refused_when_missing_expired_foreign_or_for_another_request() {
    let (key, v) = verifier();
    assert_eq!(v.verify(None, "GET", "/api/jobs"), Err(AuthError::Missing));
    let expired = token(&key, claims("GET", "/api/jobs", "jobs", -60));
    assert_eq!(
        v.verify(Some(&expired), "GET", "/api/jobs"),
        Err(AuthError::Invalid)
    );
    let other_route = token(&key, claims("GET", "/api/jobs", "app", 60));
    assert_eq!(
        v.verify(Some(&other_route), "GET", "/api/jobs"),
        Err(AuthError::Invalid)
    );
    let get = token(&key, claims("GET", "/api/jobs/a", "jobs", 60));
    assert_eq!(
        v.verify(Some(&get), "POST", "/api/jobs/a/run"),
        Err(AuthError::WrongRequest)
    );
    let mut tampered = token(&key, claims("GET", "/api/jobs", "jobs", 60));
    tampered.insert(tampered.len() - 3, 'A');
    assert!(v.verify(Some(&tampered), "GET", "/api/jobs").is_err());
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("GET", "/api/jobs", "jobs", 60),
        &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
    )
    .expect("hs");
    assert_eq!(
        v.verify(Some(&hs), "GET", "/api/jobs"),
        Err(AuthError::Invalid)
    );
}

#[test]
fn the_method_is_compared_exactly() {
    let (key, v) = verifier();
    // Signed for POST, presented as `post` (which Django and Flask treat
    // as POST), and the other way round: neither is the signed request.
    let post = token(&key, claims("POST", "/api/jobs/a/run", "jobs", 60));
    assert_eq!(
        v.verify(Some(&post), "post", "/api/jobs/a/run"),
        Err(AuthError::WrongRequest)
    );
    let lower = token(&key, claims("post", "/api/jobs/a/run", "jobs", 60));
    assert_eq!(
        v.verify(Some(&lower), "POST", "/api/jobs/a/run"),
        Err(AuthError::WrongRequest)
    );
    let get = token(&key, claims("GET", "/api/jobs", "jobs", 60));
    assert_eq!(
        v.verify(Some(&get), "Get", "/api/jobs"),
        Err(AuthError::WrongRequest)
    );
    assert!(v.verify(Some(&post), "POST", "/api/jobs/a/run").is_ok());
}

#[test]
fn a_replayed_assertion_is_refused() {
    let (key, v) = verifier();
    let t = token(&key, claims("POST", "/api/jobs/a/run", "jobs", 60));
    assert!(v.verify(Some(&t), "POST", "/api/jobs/a/run").is_ok());
    assert_eq!(
        v.verify(Some(&t), "POST", "/api/jobs/a/run"),
        Err(AuthError::Replayed)
    );
    assert_eq!(AuthError::Replayed.metric_reason(), "replayed");
    // The same request signed again by the gateway is a new assertion.
    let again = token(&key, claims("POST", "/api/jobs/a/run", "jobs", 60));
    assert!(v.verify(Some(&again), "POST", "/api/jobs/a/run").is_ok());
    assert_eq!(v.live_assertions(), 2);
}

#[test]
fn an_assertion_without_a_usable_jti_is_refused() {
    let (key, v) = verifier();
    let mut without = claims("GET", "/api/jobs", "jobs", 60);
    without
        .as_object_mut()
        .expect("object")
        .remove("jti")
        .expect("had a jti");
    let t = token(&key, without.clone());
    assert_eq!(
        v.verify(Some(&t), "GET", "/api/jobs"),
        Err(AuthError::Invalid)
    );
    for bad in [serde_json::json!(""), serde_json::json!("x".repeat(65))] {
        let mut c = without.clone();
        c["jti"] = bad;
        let t = token(&key, c);
        assert_eq!(
            v.verify(Some(&t), "GET", "/api/jobs"),
            Err(AuthError::Invalid)
        );
    }
    assert!(v.replays.is_empty());
}

#[test]
fn an_assertion_refused_for_another_request_does_not_use_up_its_jti() {
    let (key, v) = verifier();
    let t = token(&key, claims("GET", "/api/jobs/a", "jobs", 60));
    assert_eq!(
        v.verify(Some(&t), "GET", "/api/jobs/b"),
        Err(AuthError::WrongRequest)
    );
    assert!(v.verify(Some(&t), "GET", "/api/jobs/a").is_ok());
}

#[test]
fn a_full_replay_cache_refuses_new_assertions() {
    let (key, v) = verifier_with_capacity(2);
    let first = token(&key, claims("GET", "/api/jobs", "jobs", 60));
    for _ in 0..2 {
        let t = token(&key, claims("GET", "/api/jobs", "jobs", 60));
        assert!(v.verify(Some(&t), "GET", "/api/jobs").is_ok());
    }
    // Fail closed: a valid, unused assertion is refused rather than
    // forgetting a live one (which could then be replayed).
    assert_eq!(
        v.verify(Some(&first), "GET", "/api/jobs"),
        Err(AuthError::ReplayCacheFull)
    );
    assert_eq!(
        AuthError::ReplayCacheFull.metric_reason(),
        "replay_cache_full"
    );
}

#[test]
fn the_replay_cache_forgets_an_assertion_once_it_could_no_longer_verify() {
    let cache = ReplayCache::new(1);
    assert_eq!(cache.first_use("a", 100, 50), Ok(()));
    assert_eq!(cache.first_use("a", 100, 100), Err(ReplayError::Replayed));
    // Full until "a" is past its time, then there is room again.
    assert_eq!(cache.first_use("b", 160, 100), Err(ReplayError::Full));
    assert_eq!(cache.first_use("b", 160, 101), Ok(()));
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.first_use("a", 200, 150), Err(ReplayError::Full));
    assert_eq!(cache.first_use("b", 160, 160), Err(ReplayError::Replayed));
}

#[test]
fn an_assertion_issued_before_the_scheduler_started_is_refused() {
    let (key, v) = verifier();
    // Signed 30 s ago and still within its lifetime: the previous process
    // may have accepted it, and this one cannot know.
    let mut old = claims("GET", "/api/jobs", "jobs", 30);
    old["iat"] = serde_json::json!(chrono::Utc::now().timestamp() - 30);
    let t = token(&key, old);
    assert_eq!(
        v.verify(Some(&t), "GET", "/api/jobs"),
        Err(AuthError::IssuedBeforeStart)
    );
    // Within the clock leeway it is fine.
    let mut skewed = claims("GET", "/api/jobs", "jobs", 30);
    skewed["iat"] = serde_json::json!(chrono::Utc::now().timestamp() - 3);
    let t = token(&key, skewed);
    assert!(v.verify(Some(&t), "GET", "/api/jobs").is_ok());
}

#[test]
fn nothing_verifies_before_the_keys_are_loaded() {
    let (key, _) = verifier();
    let v = Verifier::new("https://gw.test", &["jobs".to_owned()]);
    let t = token(&key, claims("GET", "/api/jobs", "jobs", 60));
    assert_eq!(
        v.verify(Some(&t), "GET", "/api/jobs"),
        Err(AuthError::KeysUnavailable)
    );
}

/// A real HTTP server on loopback: `/keys.json` serves a key set,
/// `/moved` answers 302 to it. Returns its address and a count of the
/// requests for `/keys.json`.
async fn jwks_server() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = Arc::new(AtomicU64::new(0));
    let count = served.clone();
    let keys = serde_json::to_string(&test_jwks(ring_free_test_key().1)).expect("json");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let response = if head.starts_with(b"GET /keys.json ") {
                count.fetch_add(1, Ordering::Relaxed);
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{keys}",
                    keys.len()
                )
            } else {
                format!("HTTP/1.1 302 Found\r\nlocation: http://{addr}/keys.json\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            };
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    (addr, served)
}

#[tokio::test]
async fn the_jwks_fetch_does_not_follow_redirects() {
    let (addr, served) = jwks_server().await;
    let client = jwks_client(None).expect("client");
    // The server does serve keys where the redirect points...
    let direct = url::Url::parse(&format!("http://{addr}/keys.json")).expect("url");
    let keys = fetch_keys(&client, &direct).await.expect("keys");
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(served.load(Ordering::Relaxed), 1);
    // ...but a 302 is an error, and its target is never asked.
    let moved = url::Url::parse(&format!("http://{addr}/moved")).expect("url");
    match fetch_keys(&client, &moved).await {
        Err(JwksError::Redirected { status, location }) => {
            assert_eq!(status, 302);
            assert_eq!(location, format!("http://{addr}/keys.json"));
        }
        other => panic!("expected a refused redirect, got {other:?}"),
    }
    assert_eq!(served.load(Ordering::Relaxed), 1);
}

/// A token signed by the test key but naming key id `kid`.
fn token_with_kid(key: &EncodingKey, kid: &str, claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, key).expect("sign")
}

fn fetching_verifier(addr: std::net::SocketAddr) -> Verifier {
    let url = url::Url::parse(&format!("http://{addr}/keys.json")).expect("url");
    let source = JwksSource::new(url, Duration::from_secs(300), None).expect("source");
    Verifier::new("https://gw.test", &["jobs".to_owned()]).with_source(source)
}

#[test]
fn an_unknown_key_id_is_told_apart_from_a_bad_signature() {
    let (key, v) = verifier();
    let t = token_with_kid(&key, "k2", claims("GET", "/api/jobs", "jobs", 60));
    assert_eq!(
        v.verify(Some(&t), "GET", "/api/jobs"),
        Err(AuthError::UnknownKey)
    );
    assert_eq!(AuthError::UnknownKey.metric_reason(), "unauthenticated");
}

#[tokio::test]
async fn concurrent_requests_with_an_unknown_key_id_share_one_fetch() {
    let (addr, served) = jwks_server().await;
    let (key, _) = signing_pair();
    let v = Arc::new(fetching_verifier(addr));
    // Keys the gateway no longer signs with: the set has another kid.
    let mut old = test_jwks(ring_free_test_key().1);
    old.keys[0].common.key_id = Some("old".into());
    v.set_keys(old);
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let v = v.clone();
            let t = token(&key, claims("GET", "/api/jobs", "jobs", 60));
            tokio::spawn(async move { v.verify_or_refetch(Some(&t), "GET", "/api/jobs").await })
        })
        .collect();
    for call in calls {
        assert!(call.await.expect("task").is_ok());
    }
    assert_eq!(served.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn made_up_key_ids_fetch_at_most_once_per_interval() {
    let (addr, served) = jwks_server().await;
    let (key, _) = signing_pair();
    let v = fetching_verifier(addr);
    v.set_keys(test_jwks(ring_free_test_key().1));
    for i in 0..50 {
        let t = token_with_kid(
            &key,
            &format!("made-up-{i}"),
            claims("GET", "/api/jobs", "jobs", 60),
        );
        assert_eq!(
            v.verify_or_refetch(Some(&t), "GET", "/api/jobs").await,
            Err(AuthError::UnknownKey)
        );
    }
    assert_eq!(served.load(Ordering::Relaxed), 1);
    // The known key still verifies, without a fetch.
    let t = token(&key, claims("GET", "/api/jobs", "jobs", 60));
    assert!(v
        .verify_or_refetch(Some(&t), "GET", "/api/jobs")
        .await
        .is_ok());
    assert_eq!(served.load(Ordering::Relaxed), 1);
}

#[test]
fn readiness_reports_missing_then_stale_keys() {
    let refresh = Duration::from_secs(60);
    let start = Instant::now();
    let mut status = KeyStatus::default();
    let missing = status.readiness(refresh, start).unwrap_err();
    assert!(missing.contains("not loaded"), "{missing}");
    status.loaded_at = Some(start);
    assert_eq!(status.readiness(refresh, start + refresh * 3), Ok(()));
    status.failures_since_load = 7;
    status.last_error = Some("answered 503".into());
    let stale = status
        .readiness(refresh, start + refresh * 3 + Duration::from_secs(1))
        .unwrap_err();
    assert!(
        stale.contains("stale") && stale.contains("7 refresh") && stale.contains("answered 503"),
        "{stale}"
    );
}

const JOBS_KEY: &[u8] = b"jobs-route-key-of-at-least-32-bytes!";

/// Routes `jobs` (keyed) and `app` (not), as a scheduler reached by both.
fn keyed_verifier() -> (EncodingKey, Verifier) {
    let (key, jwks) = signing_pair();
    let mut v = Verifier::new("https://gw.test", &["jobs".to_owned(), "app".to_owned()]);
    v.set_keys(jwks);
    v.set_route_keys(vec![RouteKey {
        route: "jobs".into(),
        key: JOBS_KEY.to_vec(),
    }]);
    (key, v)
}

fn hs256(kid: Option<&str>, secret: &[u8], claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).expect("hs256")
}

#[test]
fn a_keyed_route_takes_hs256_under_its_key_once_and_for_its_request_only() {
    let (_, v) = keyed_verifier();
    let t = hs256(
        Some("jobs"),
        JOBS_KEY,
        claims("POST", "/api/jobs/a/run", "jobs", 60),
    );
    let caller = v
        .verify(Some(&t), "POST", "/api/jobs/a/run")
        .expect("valid");
    assert_eq!(caller.subject, "alice");
    assert_eq!(
        v.verify(Some(&t), "POST", "/api/jobs/a/run"),
        Err(AuthError::Replayed)
    );
    let get = hs256(
        Some("jobs"),
        JOBS_KEY,
        claims("GET", "/api/jobs", "jobs", 60),
    );
    assert_eq!(
        v.verify(Some(&get), "POST", "/api/jobs/a/run"),
        Err(AuthError::WrongRequest)
    );
    let expired = hs256(
        Some("jobs"),
        JOBS_KEY,
        claims("GET", "/api/jobs", "jobs", -60),
    );
    assert_eq!(
        v.verify(Some(&expired), "GET", "/api/jobs"),
        Err(AuthError::Invalid)
    );
}

/// Each route is checked one way only: the algorithm, key and audience
/// all follow from the route, never from what the assertion claims.
#[test]
fn an_assertion_cannot_choose_how_it_is_checked() {
    let (eddsa, v) = keyed_verifier();
    let refused = |token: &str| v.verify(Some(token), "GET", "/api/jobs");
    // EdDSA under the gateway's own key, for the keyed route.
    assert_eq!(
        refused(&token(&eddsa, claims("GET", "/api/jobs", "jobs", 60))),
        Err(AuthError::Invalid)
    );
    // The keyed route's key, for the other route, by audience or by kid.
    for (kid, aud) in [("jobs", "app"), ("app", "app"), ("app", "jobs")] {
        let t = hs256(Some(kid), JOBS_KEY, claims("GET", "/api/jobs", aud, 60));
        assert_eq!(refused(&t), Err(AuthError::Invalid), "kid {kid}, aud {aud}");
    }
    // No kid, another key, or the gateway's public key as an HMAC secret.
    let no_kid = hs256(None, JOBS_KEY, claims("GET", "/api/jobs", "jobs", 60));
    assert_eq!(refused(&no_kid), Err(AuthError::Invalid));
    let other = hs256(
        Some("jobs"),
        b"another-key-of-at-least-32-bytes-long",
        claims("GET", "/api/jobs", "jobs", 60),
    );
    assert_eq!(refused(&other), Err(AuthError::Invalid));
    // RFC 8032 test vector 1's public key: `ring_free_test_key`'s `x`.
    let public = hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        .expect("hex");
    let confused = hs256(
        Some("jobs"),
        &public,
        claims("GET", "/api/jobs", "jobs", 60),
    );
    assert_eq!(refused(&confused), Err(AuthError::Invalid));
    // The unkeyed route still takes EdDSA.
    let app = token(&eddsa, claims("GET", "/api/jobs", "app", 60));
    assert!(refused(&app).is_ok());
}

#[test]
fn with_every_route_keyed_the_gateway_keys_are_not_needed() {
    let mut v = Verifier::new("https://gw.test", &["jobs".to_owned()]);
    v.set_route_keys(vec![RouteKey {
        route: "jobs".into(),
        key: JOBS_KEY.to_vec(),
    }]);
    assert!(!v.uses_gateway_keys());
    assert_eq!(v.key_readiness(), Ok(()));
    let t = hs256(
        Some("jobs"),
        JOBS_KEY,
        claims("GET", "/api/jobs", "jobs", 60),
    );
    assert!(v.verify(Some(&t), "GET", "/api/jobs").is_ok());
    // A reload's new key replaces the old one.
    v.replace_route_keys(vec![RouteKey {
        route: "jobs".into(),
        key: b"the-rotated-key-of-at-least-32-bytes".to_vec(),
    }]);
    let old = hs256(
        Some("jobs"),
        JOBS_KEY,
        claims("GET", "/api/jobs", "jobs", 60),
    );
    assert_eq!(
        v.verify(Some(&old), "GET", "/api/jobs"),
        Err(AuthError::Invalid)
    );
}
