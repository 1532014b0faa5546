//! Two replicas sharing one Redis (issue 15): what an attacker gains by
//! spreading an attack over replicas, or by taking what one replica
//! ended to the other. Replica A runs with sessions in front of the real
//! provider ([`Sessions`]); replica B has the same policy. The login tier
//! allows three failures an hour.
//!
//! - password guesses spread over both replicas are counted together, and
//!   the lockout holds on both (also on A, which saw only two);
//! - a session cookie logged out on A is refused on B;
//! - a login callback (flow cookie and code) replayed on B after it
//!   completed on A is refused before the code reaches the provider.

use gatehouse_tests::idp::walk_provider;
use gatehouse_tests::redis::Redis;

use super::login::{cookie, sections, Sessions};
use super::*;

const KEY: &str = "gh_attack-suite-replica-key-0123456789";

/// `[shared_state]` with a timeout far above a round trip: with the
/// default 100 ms, a call that a loaded test machine delays (the first,
/// which also connects) counts as Redis down, and the replicas then
/// rightly fall back to their own limits for a second, which is not what
/// this topic attacks.
fn extra(redis: &Redis) -> String {
    format!(
        "{}{}\n[shared_state]\nredis = \"{}\"\ntimeout = \"2s\"\n",
        api_key("ci", KEY, &["viewer"]),
        route("site", "/", "roles = [\"viewer\"]"),
        redis.url()
    )
}

/// The login tier at three failures an hour, in a topic's sections.
fn strict_logins(sections: String) -> String {
    sections.replace("login = \"100000/s\"", "login = \"3/h\"")
}

async fn attack(a: &Sessions, b: &Target, report: &mut Report) -> Result<(), String> {
    // Guesses from one address, two on A and one on B.
    let guesser = lo(0, 0, 77);
    let wrong = || req("GET", "/").h("X-Api-Key", "gh_wrong-guess-000000000000000000");
    for (target, n) in [(&a.target, 1), (&a.target, 2), (b, 3)] {
        let response = target
            .send_h1(&wrong().bytes(), Some(guesser), "localhost")
            .await?;
        if response.status != 401 {
            return Err(format!("guess {n} answered {}", response.summary()));
        }
    }
    let right = || req("GET", "/").h("X-Api-Key", KEY);
    a.target
        .run(
            report,
            vec![vector(
                "guesses spread over replicas: the right key after them is refused on A",
                right(),
            )
            .from(guesser)
            .status(429)
            .nothing()],
        )
        .await;
    b.run(
        report,
        vec![vector("… and on B", right())
            .from(guesser)
            .status(429)
            .nothing()],
    )
    .await;

    // A session logged out on A, replayed on B.
    let session = a.session("alice").await?;
    a.logout(&session).await?;
    tokio::time::sleep(SETTLE).await;
    let replayed = req("GET", "/").h("Cookie", &format!("__Host-gatehouse={session}"));
    b.run(
        report,
        vec![vector("a session logged out on A, replayed on B", replayed)
            .status(401)
            .nothing()],
    )
    .await;

    // A login completed on A, its callback replayed on B.
    let browser = a.new_browser();
    let (authorize, flow) = a.begin_with(&browser, "/").await?;
    let callback = walk_provider(&browser, &a.idp.issuer, &a.origin(), &authorize, "alice").await;
    let done = browser
        .get(&callback)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if cookie(&done, "__Host-gatehouse").is_none() {
        return Err(format!("the login did not complete: {}", done.status()));
    }
    let path = callback
        .strip_prefix(&a.origin())
        .ok_or("a callback elsewhere")?
        .to_owned();
    let replay = req("GET", &path).h("Cookie", &format!("__Host-gatehouse-flow={flow}"));
    b.run(
        report,
        vec![vector("a completed login's callback replayed on B", replay)
            .status(400)
            .nothing()],
    )
    .await;
    Ok(())
}

#[tokio::test]
async fn attacks_spread_over_replicas() {
    let _shared = shared().await;
    let mut report = Report::new("replicas");
    let redis = Redis::start();
    let extra = extra(&redis);
    let a = match Sessions::start_adjusted(&extra, strict_logins).await {
        Ok(a) => a,
        Err(e) => {
            report.record("replica A starts", Err(e));
            return report.finish();
        }
    };
    let b_sections = format!("{}{extra}", strict_logins(sections(&a.idp.issuer)));
    match Target::start(&b_sections).await {
        Ok(b) => {
            if let Err(e) = attack(&a, &b, &mut report).await {
                report.record("replica setup", Err(e));
            }
        }
        Err(e) => report.record("replica B starts", Err(e)),
    }
    report.finish();
}
