//! Email over SMTP submission with STARTTLS required: a server that does
//! not offer it, or whose certificate does not verify for the configured
//! name (against the system roots and the policy's `ca_file`), gets
//! nothing, not even the credentials.
//!
//! The server's name is resolved once by the guard and the checked address
//! is what lettre connects to; the name is still what TLS verifies.

use gatehouse_policy::notify::EmailChannel;
use lettre::message::{header::ContentType, Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::error::DeliveryError;
use super::guard::{Guard, ResolveError};
use super::RunNotice;

/// What start-up verifies: addresses parse, the CA file loads, the
/// password is readable.
pub fn check(mail: &EmailChannel) -> Result<(), DeliveryError> {
    mailboxes(mail)?;
    tls_parameters(mail)?;
    if let Some(password) = &mail.password {
        password
            .read()
            .map_err(|e| DeliveryError::Secret(e.to_string()))?;
    }
    Ok(())
}

fn mailboxes(mail: &EmailChannel) -> Result<(Mailbox, Vec<Mailbox>), DeliveryError> {
    let parse = |text: &str| {
        text.parse::<Mailbox>()
            .map_err(|e| DeliveryError::Invalid(format!("mail address {text}: {e}")))
    };
    let from = parse(&mail.from)?;
    let to = mail.to.iter().map(|t| parse(t)).collect::<Result<_, _>>()?;
    Ok((from, to))
}

fn tls_parameters(mail: &EmailChannel) -> Result<TlsParameters, DeliveryError> {
    let mut builder = TlsParameters::builder(mail.host.clone());
    if let Some(path) = &mail.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            DeliveryError::Invalid(format!("cannot read ca_file {}: {e}", path.display()))
        })?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| DeliveryError::Invalid(format!("ca_file {}: {e}", path.display())))?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build_rustls()
        .map_err(|e| DeliveryError::Invalid(format!("TLS settings: {e}")))
}

fn message(mail: &EmailChannel, notice: &RunNotice) -> Result<Message, DeliveryError> {
    let (from, to) = mailboxes(mail)?;
    let mut builder = Message::builder().from(from).subject(notice.summary());
    for to in to {
        builder = builder.to(to);
    }
    let mut body = notice.summary();
    body.push_str(&format!(
        "\n\njob: {}\nrun: {}\nstatus: {}\n",
        notice.job,
        notice.run,
        notice.status.as_str()
    ));
    if !notice.log_tail.is_empty() {
        body.push_str("\nThe end of its output:\n\n");
        body.push_str(&notice.log_tail);
        body.push('\n');
    }
    builder
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| DeliveryError::Invalid(e.to_string()))
}

pub async fn send(
    guard: &Guard,
    mail: &EmailChannel,
    notice: &RunNotice,
) -> Result<(), DeliveryError> {
    let host = match mail.host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => url::Host::Ipv4(ip),
        Ok(std::net::IpAddr::V6(ip)) => url::Host::Ipv6(ip),
        Err(_) => url::Host::Domain(mail.host.as_str()),
    };
    guard.check_host(&host)?;
    let addrs = guard
        .resolve(&mail.host, mail.port)
        .await
        .map_err(|e| match e {
            ResolveError::Refused(r) => DeliveryError::Refused(r),
            other => DeliveryError::Transport(other.to_string()),
        })?;
    let message = message(mail, notice)?;
    let credentials = match (&mail.username, &mail.password) {
        (Some(user), Some(password)) => {
            let password = password
                .read()
                .map_err(|e| DeliveryError::Secret(e.to_string()))?;
            let password = String::from_utf8(password.expose().to_vec())
                .map_err(|_| DeliveryError::Invalid("the SMTP password is not UTF-8".into()))?;
            Some(Credentials::new(user.clone(), password))
        }
        _ => None,
    };
    let mut last = DeliveryError::Invalid("no address".into());
    // Every checked address in turn (`localhost` is ::1 and 127.0.0.1),
    // moving on only when no SMTP conversation took place.
    for addr in addrs {
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
                .port(addr.port())
                .tls(Tls::Required(tls_parameters(mail)?))
                .timeout(Some(guard.settings().timeout));
        if let Some(credentials) = &credentials {
            builder = builder.credentials(credentials.clone());
        }
        match builder.build().send(message.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) => {
                let conversation =
                    e.is_response() || e.is_permanent() || e.is_transient() || e.is_tls();
                last = DeliveryError::Smtp {
                    message: e.to_string(),
                    transient: !(e.is_permanent() || e.is_tls() || e.is_client()),
                };
                if conversation {
                    break;
                }
            }
        }
    }
    Err(last)
}
