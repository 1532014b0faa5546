use std::collections::BTreeSet;
use std::path::Path;

use super::*;

fn policy(rate_limit: &str, route_extra: &str) -> Policy {
    let text = format!(
        r#"{head}
[rate_limit]
{rate_limit}
[[route]]
name = "app"
path = "/"
upstream = "http://127.0.0.1:1"
public = true
[[route]]
name = "burst"
path = "/burst"
upstream = "http://127.0.0.1:1"
public = true
{route_extra}
"#,
        head = gatehouse_policy::testing::LISTEN_AND_TLS
    );
    gatehouse_policy::parse(Path::new("p.toml"), &text).unwrap()
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn route<'a>(policy: &'a Policy, name: &str) -> &'a Route {
    policy.routes.iter().find(|r| r.name == name).unwrap()
}

#[test]
fn a_client_gets_its_quota_then_a_retry_after_and_one_engagement() {
    let p = policy("client = \"3/min\"", "");
    let limits = RateLimits::new(&p);
    let app = route(&p, "app");
    let remaining: Vec<u32> = (0..3)
        .map(|_| limits.check_request(app, None, ip(1)).unwrap().remaining)
        .collect();
    assert_eq!(remaining, [2, 1, 0]);
    let first = limits.check_request(app, None, ip(1)).unwrap_err();
    assert_eq!(first.tier, Tier::Client);
    assert!(first.started);
    assert!(
        first.retry_after > Duration::from_secs(15) && first.retry_after <= Duration::from_secs(20)
    );
    let second = limits.check_request(app, None, ip(1)).unwrap_err();
    assert!(!second.started, "one engagement, not one per request");
    // Another address has its own allowance.
    assert!(limits.check_request(app, None, ip(2)).is_ok());
}

#[test]
fn identities_and_route_overrides_have_their_own_tiers() {
    let p = policy(
        "client = \"1/min\"\nidentity = \"2/min\"",
        "rate_limit = \"5/min\"",
    );
    let limits = RateLimits::new(&p);
    let alice = Principal::hypothetical(BTreeSet::new(), gatehouse_policy::IdentityKind::ApiKey);
    let app = route(&p, "app");
    assert!(limits.check_request(app, None, ip(1)).is_ok());
    assert!(limits.check_request(app, None, ip(1)).is_err());
    let allowed = limits.check_request(app, Some(&alice), ip(1)).unwrap();
    assert_eq!((allowed.tier, allowed.remaining), (Tier::Identity, 1));
    let burst = route(&p, "burst");
    let allowed = limits.check_request(burst, None, ip(1)).unwrap();
    assert_eq!((allowed.tier, allowed.remaining), (Tier::Route, 4));
}

#[test]
fn tracked_keys_stay_under_the_cap_and_overflow_shares_one_bucket() {
    let p = policy("client = \"2/min\"\nmax_tracked_keys = 100", "");
    let limits = RateLimits::new(&p);
    let app = route(&p, "app");
    let mut refused = 0;
    for n in 0..1000u32 {
        let addr = IpAddr::from([127, 1, (n >> 8) as u8, n as u8]);
        if limits.check_request(app, None, addr).is_err() {
            refused += 1;
        }
    }
    let client = limits.tracked_keys()[0];
    assert_eq!(client.0, Tier::Client);
    assert!(client.1 <= 101, "tracked {} keys", client.1);
    assert!(client.1 >= 100, "the table filled up first: {}", client.1);
    // 100 tracked keys each had room; the other 900 shared two requests.
    assert_eq!(refused, 898);
}

#[test]
fn login_failures_lock_out_one_address_only() {
    let p = policy("login = \"3/min\"", "");
    let limits = RateLimits::new(&p);
    assert!(limits.login_failed(ip(1)).is_none());
    assert!(limits.login_failed(ip(1)).is_none());
    assert!(limits.login_locked(ip(1)).is_none());
    let locked = limits.login_failed(ip(1)).expect("third failure locks");
    assert!(locked.started);
    assert_eq!(locked.retry_after, Duration::from_secs(60));
    let refused = limits.login_locked(ip(1)).expect("locked");
    assert!(refused.retry_after > Duration::from_secs(58));
    assert!(limits.login_locked(ip(2)).is_none());
}

#[test]
fn password_checks_count_as_they_start() {
    let p = policy("login = \"2/min\"", "");
    let limits = RateLimits::new(&p);
    assert!(matches!(limits.login_attempt(ip(1)), Ok(None)));
    let locked = limits
        .login_attempt(ip(1))
        .expect("the last allowed attempt still runs");
    assert!(locked.expect("and locks the address out").started);
    assert!(limits.login_locked(ip(1)).is_some());
    assert!(limits.login_attempt(ip(1)).is_err());
    assert!(matches!(limits.login_attempt(ip(2)), Ok(None)));
}

#[test]
fn the_overflow_bucket_is_never_locked_out() {
    let p = policy("login = \"1/min\"\nmax_tracked_keys = 10", "");
    let limits = RateLimits::new(&p);
    // Fill the login table with failing addresses.
    for n in 0..40u8 {
        let _ = limits.login_failed(IpAddr::from([127, 2, 0, n]));
    }
    // Fresh addresses share the overflow bucket, which is used up, yet
    // none of them is locked out for what others did.
    for n in 0..5u8 {
        let fresh = IpAddr::from([127, 3, 0, n]);
        assert!(limits.login_failed(fresh).is_none());
        assert!(limits.login_locked(fresh).is_none(), "{fresh}");
        assert!(
            matches!(limits.login_attempt(fresh), Ok(None)),
            "a password check from {fresh} is not refused for others' failures"
        );
    }
}

#[test]
fn ipv6_clients_share_their_64() {
    let p = policy("client = \"2/min\"", "");
    let limits = RateLimits::new(&p);
    let app = route(&p, "app");
    let a: IpAddr = "2001:db8:0:1::1".parse().unwrap();
    let b: IpAddr = "2001:db8:0:1:ffff::2".parse().unwrap();
    let other: IpAddr = "2001:db8:0:2::1".parse().unwrap();
    assert!(limits.check_request(app, None, a).is_ok());
    assert!(limits.check_request(app, None, b).is_ok());
    let refused = limits.check_request(app, None, a).unwrap_err();
    assert_eq!(refused.key.describe(), "2001:db8:0:1::/64");
    assert!(limits.check_request(app, None, other).is_ok());
}

#[test]
fn an_engagement_ends_once_with_a_summary() {
    let p = policy("client = \"1/200ms\"", "");
    let limits = RateLimits::new(&p);
    let app = route(&p, "app");
    assert!(limits.check_request(app, None, ip(1)).is_ok());
    assert!(limits.check_request(app, None, ip(1)).is_err());
    assert!(limits.check_request(app, None, ip(1)).is_err());
    std::thread::sleep(Duration::from_millis(250));
    let allowed = limits.check_request(app, None, ip(1)).unwrap();
    let ended = allowed.ended.expect("summary");
    assert_eq!((ended.tier, ended.refused), (Tier::Client, 2));
    assert!(limits.sweep().is_empty(), "already ended");
    // A key that just stops sending is ended by the sweep.
    assert!(limits.check_request(app, None, ip(1)).is_err());
    std::thread::sleep(Duration::from_millis(250));
    let swept = limits.sweep();
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].key, limits.client_key(ip(1)));
}

#[test]
fn headers_follow_the_ietf_draft() {
    let rate = gatehouse_policy::Rate {
        count: NonZeroU32::new(30).unwrap(),
        per: Duration::from_secs(60),
    };
    assert_eq!(policy_header(Tier::Client, rate), "\"client\";q=30;w=60");
    assert_eq!(
        state_header(Tier::Client, 7, Duration::from_millis(1500)),
        "\"client\";r=7;t=2"
    );
}

#[test]
fn unchanged_limits_are_recognised_for_reloads() {
    let a = policy("client = \"3/min\"", "");
    let b = policy("client = \"3/min\"", "");
    let c = policy("client = \"4/min\"", "");
    let limits = RateLimits::new(&a);
    assert!(limits.same_settings(&b));
    assert!(!limits.same_settings(&c));
}
