//! A bare Pingora proxy doing what Gatehouse's public route does at the
//! edge and nothing more: TLS (rustls, h2 ALPN), a client allowlist, the
//! security headers Gatehouse sends by default, and a keep-alive upstream.
//! `bench/compare` measures Gatehouse against it: the difference is the cost
//! of Gatehouse's own request path. It is built with the gateway's
//! allocator and Pingora runtime settings so that only that difference is
//! measured.

use std::net::IpAddr;

use async_trait::async_trait;
use clap::Parser;
use ipnet::IpNet;
use pingora::http::ResponseHeader;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Gatehouse's default security headers (`SecurityHeaders::default()`).
const SECURITY_HEADERS: [(&str, &str); 8] = [
    ("strict-transport-security", "max-age=31536000; includeSubDomains"),
    ("content-security-policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
];

#[derive(Parser)]
struct Args {
    #[arg(long)]
    listen: String,
    #[arg(long)]
    cert: String,
    #[arg(long)]
    key: String,
    /// The upstream's address, plain HTTP with keep-alive.
    #[arg(long)]
    upstream: String,
    /// Clients outside these networks get a 403.
    #[arg(long, required = true)]
    allow: Vec<IpNet>,
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

struct Baseline {
    upstream: String,
    allow: Vec<IpNet>,
}

fn add_security_headers(response: &mut ResponseHeader) -> Result<()> {
    for (name, value) in SECURITY_HEADERS {
        response.insert_header(name, value)?;
    }
    Ok(())
}

#[async_trait]
impl ProxyHttp for Baseline {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
        let client: Option<IpAddr> = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if client.is_some_and(|ip| self.allow.iter().any(|net| net.contains(&ip))) {
            return Ok(false);
        }
        // response_filter does not run for a response written here.
        let mut denied = ResponseHeader::build(403, Some(10))?;
        add_security_headers(&mut denied)?;
        denied.insert_header("content-length", "0")?;
        session
            .write_response_header(Box::new(denied), true)
            .await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        _ctx: &mut (),
    ) -> Result<()> {
        // As Gatehouse does: no upstream fingerprint.
        response.remove_header("server");
        add_security_headers(response)
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let conf = ServerConf {
        threads: args.threads,
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let baseline = Baseline {
        upstream: args.upstream,
        allow: args.allow,
    };
    let mut proxy = http_proxy_service(&server.configuration, baseline);
    let mut tls = TlsSettings::intermediate(&args.cert, &args.key)?;
    tls.enable_h2();
    proxy.add_tls_with_settings(&args.listen, None, tls);
    server.add_service(proxy);
    server.bootstrap();
    server.run_forever()
}
