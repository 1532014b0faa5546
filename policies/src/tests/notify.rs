//! Table tests of `[scheduler.notify]` and a job's `notify`: nothing is
//! sent by default, every destination must be allowed, secrets come from
//! the usual places, and every mistake is reported with its line.

use std::path::Path;

use crate::notify::*;
use crate::*;

// The gateway and `[scheduler]` part every scheduler test policy shares.
use crate::tests::scheduler::HEAD;

const JOB: &str = r#"
[[job]]
name = "nightly"
image = "local/busybox:1"
command = ["true"]
"#;

fn policy(notify: &str, job_extra: &str) -> String {
    format!("{HEAD}\n{notify}\n{JOB}{job_extra}\n")
}

fn parse_ok(text: &str) -> Policy {
    match parse(Path::new("/etc/gatehouse/policy.toml"), text) {
        Ok(p) => p,
        Err(e) => panic!("expected a valid policy, got: {e:?}"),
    }
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(Path::new("policy.toml"), text) {
        Ok(_) => panic!("expected the policy to be rejected"),
        Err(e) => e.problems().to_vec(),
    }
}

const CHANNELS: &str = r#"
[scheduler.notify]
to = ["ops"]
allow_hosts = ["hooks.example.com", "*.slack.com", "smtp.example.com"]

[[scheduler.notify.webhook]]
name = "ops"
url = "https://hooks.example.com/gatehouse"
secret = "${HOOK_SECRET}"

[[scheduler.notify.slack]]
name = "chat"
url_file = "/run/secrets/slack-url"

[[scheduler.notify.email]]
name = "mail"
server = "smtp.example.com"
from = "gatehouse@example.com"
to = ["ops@example.com"]
username = "gatehouse"
password_file = "smtp-password"
"#;

#[test]
fn without_a_notify_section_nothing_is_sent() {
    let p = parse_ok(&policy("", ""));
    assert!(p.jobs[0].notify.to.is_empty());
    assert_eq!(
        p.scheduler.expect("scheduler").notify,
        NotifySettings::default()
    );
}

#[test]
fn jobs_inherit_the_default_channels_and_events() {
    let p = parse_ok(&policy(CHANNELS, ""));
    let job = &p.jobs[0];
    assert_eq!(job.notify.to, vec!["ops".to_owned()]);
    assert_eq!(job.notify.on, NotifyEvent::DEFAULT.into_iter().collect());
    let settings = &p.scheduler.expect("scheduler").notify;
    assert_eq!(settings.guard.timeout, DEFAULT_TIMEOUT);
    assert!(settings.guard.insecure_allow_networks.is_empty());
    match &settings.channel("ops").expect("ops").kind {
        ChannelKind::Webhook { secret, .. } => {
            assert_eq!(secret, &SecretRef::Env("HOOK_SECRET".into()))
        }
        other => panic!("not a webhook: {other:?}"),
    }
    match &settings.channel("mail").expect("mail").kind {
        ChannelKind::Email(mail) => {
            assert_eq!((mail.host.as_str(), mail.port), ("smtp.example.com", 587));
            assert_eq!(
                mail.password,
                Some(SecretRef::File("/etc/gatehouse/smtp-password".into()))
            );
        }
        other => panic!("not email: {other:?}"),
    }
}

#[test]
fn a_job_chooses_its_own_channels_and_events() {
    let p = parse_ok(&policy(
        CHANNELS,
        "notify = { to = [\"mail\", \"chat\"], on = [\"failed\", \"succeeded\"] }",
    ));
    let job = &p.jobs[0];
    assert_eq!(job.notify.to, vec!["mail".to_owned(), "chat".to_owned()]);
    assert_eq!(
        job.notify.on,
        [NotifyEvent::Failed, NotifyEvent::Succeeded]
            .into_iter()
            .collect()
    );
    let silent = parse_ok(&policy(CHANNELS, "notify = { to = [] }"));
    assert!(silent.jobs[0].notify.to.is_empty());
}

#[test]
fn destinations_outside_allow_hosts_are_refused_with_their_line() {
    let text = policy(
        r#"
[scheduler.notify]
allow_hosts = ["hooks.example.com"]

[[scheduler.notify.webhook]]
name = "metadata"
url = "http://169.254.169.254/latest/meta-data"
secret = "s3cret"
"#,
        "",
    );
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0]
        .message
        .contains("not in [scheduler.notify] allow_hosts"));
    let line = text
        .lines()
        .position(|l| l.starts_with("url = \"http://169"))
        .expect("the url line")
        + 1;
    assert_eq!(found[0].line, line);
}

#[test]
fn every_mistake_is_reported_at_once() {
    let found = problems(&policy(
        r#"
[scheduler.notify]
to = ["nobody"]
on = ["exploded"]
allow_hosts = ["hooks.example.com", "bad host"]
insecure_allow_networks = ["127.0.0.1/8"]

[[scheduler.notify.webhook]]
name = "unsigned"
url = "https://hooks.example.com/x"

[[scheduler.notify.webhook]]
name = "both"
url = "ftp://hooks.example.com/x"
secret = "a"
secret_file = "b"

[[scheduler.notify.email]]
name = "mail"
server = "smtp.example.com:0"
from = "not an address"
to = []
"#,
        "",
    ));
    let messages: Vec<&str> = found.iter().map(|p| p.message.as_str()).collect();
    for expected in [
        "no notification channel is named `nobody`",
        "`exploded` is not a notification event",
        "`bad host` is not a host name",
        "has host bits set",
        "`secret` is missing",
        "not an http(s) URL",
        "set either `secret` or `secret_file`, not both",
        "has no valid port",
        "`not an address` is not a mail address",
        "needs at least one `to` address",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(expected)),
            "no problem says {expected:?} in {messages:#?}"
        );
    }
    assert!(found.iter().all(|p| p.line > 0));
}

#[test]
fn unknown_keys_are_refused() {
    let found = problems(&policy("[scheduler.notify]\nallow_redirects = true\n", ""));
    assert!(found[0].message.contains("unknown field"), "{found:?}");
}

#[test]
fn ip_literals_in_allow_hosts_match_their_mapped_forms() {
    let p = parse_ok(&policy(
        r#"
[scheduler.notify]
allow_hosts = ["127.0.0.1"]

[[scheduler.notify.webhook]]
name = "local"
url = "http://[::ffff:127.0.0.1]:8080/hook"
secret = "s3cret"
"#,
        "",
    ));
    assert_eq!(p.scheduler.expect("scheduler").notify.channels.len(), 1);
}
