use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// Counts attempts and allows the first `allow`.
struct Attempts {
    started: AtomicUsize,
    allow: usize,
}

impl Attempts {
    fn allowing(allow: usize) -> Self {
        Attempts {
            started: AtomicUsize::new(0),
            allow,
        }
    }

    fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }
}

impl LoginAttempts for Attempts {
    fn start(&self) -> bool {
        self.started.fetch_add(1, Ordering::SeqCst) < self.allow
    }
}

fn users(hash: String, per_address: usize) -> BasicUsers {
    let mut limits = gatehouse_policy::testing::rate_limits();
    limits.password_checks_per_address = per_address;
    BasicUsers::new(
        &[BasicUser {
            name: "alice".into(),
            password_hash: hash,
            roles: ["admin".into()].into(),
        }],
        PasswordPool::start(2).unwrap(),
        &limits,
    )
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

#[tokio::test]
async fn argon2id_password_is_checked() {
    let users = users(hash_password("correct horse").unwrap(), 2);
    let attempts = Attempts::allowing(100);
    let alice = users
        .verify("alice", "correct horse", ip(1), &attempts)
        .await
        .unwrap();
    assert_eq!(
        alice.subject, "basic:alice",
        "subjects say where they come from"
    );
    assert_eq!(
        users
            .verify("alice", "wrong", ip(1), &attempts)
            .await
            .unwrap_err(),
        IdentityError::WrongPassword
    );
    assert_eq!(
        users
            .verify("bob", "correct horse", ip(1), &attempts)
            .await
            .unwrap_err(),
        IdentityError::Unknown
    );
}

#[tokio::test]
async fn bcrypt_password_is_checked() {
    let users = users(bcrypt::hash("hunter2", 4).unwrap(), 2);
    let attempts = Attempts::allowing(100);
    assert!(users
        .verify("alice", "hunter2", ip(1), &attempts)
        .await
        .is_ok());
    assert!(users
        .verify("alice", "hunter3", ip(1), &attempts)
        .await
        .is_err());
}

#[tokio::test]
async fn a_correct_password_is_remembered_and_not_counted_again() {
    let users = users(hash_password("pw").unwrap(), 2);
    let attempts = Attempts::allowing(100);
    for _ in 0..5 {
        users.verify("alice", "pw", ip(1), &attempts).await.unwrap();
    }
    assert_eq!(attempts.started(), 1, "one check, then the cache");
}

#[tokio::test]
async fn concurrent_requests_with_one_credential_share_one_check() {
    let users = Arc::new(users(hash_password("pw").unwrap(), 1));
    let attempts = Arc::new(Attempts::allowing(100));
    let checks = (0..6).map(|_| {
        let (users, attempts) = (users.clone(), attempts.clone());
        tokio::spawn(async move { users.verify("alice", "pw", ip(1), &*attempts).await })
    });
    for check in checks {
        assert!(check.await.unwrap().is_ok());
    }
    assert_eq!(attempts.started(), 1);
}

#[tokio::test]
async fn attempts_beyond_the_allowance_are_refused_before_any_check() {
    let users = users(hash_password("pw").unwrap(), 2);
    let attempts = Attempts::allowing(1);
    assert_eq!(
        users
            .verify("alice", "guess-1", ip(1), &attempts)
            .await
            .unwrap_err(),
        IdentityError::WrongPassword
    );
    assert_eq!(
        users
            .verify("alice", "pw", ip(1), &attempts)
            .await
            .unwrap_err(),
        IdentityError::AttemptRefused,
        "even the right password once the allowance is used up"
    );
}

#[tokio::test]
async fn distinct_guesses_in_flight_per_address_are_bounded() {
    let users = Arc::new(users(hash_password("pw").unwrap(), 2));
    let attempts = Arc::new(Attempts::allowing(1000));
    let guesses: Vec<_> = (0..8)
        .map(|n| {
            let (users, attempts) = (users.clone(), attempts.clone());
            tokio::spawn(async move {
                users
                    .verify("alice", &format!("guess-{n}"), ip(1), &*attempts)
                    .await
            })
        })
        .collect();
    let mut busy = 0;
    for guess in guesses {
        if guess.await.unwrap().err() == Some(IdentityError::Busy) {
            busy += 1;
        }
    }
    assert!(busy >= 6, "{busy} of 8 refused as busy");
    assert!(attempts.started() <= 2);
    // Another address is not affected.
    assert!(users.verify("alice", "pw", ip(2), &*attempts).await.is_ok());
}

#[test]
fn dummy_hash_parses_so_unknown_users_cost_a_real_verification() {
    assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
}
