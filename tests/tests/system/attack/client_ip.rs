//! Client-address spoofing. Without trusted proxies, `X-Forwarded-For`,
//! `Forwarded`, `X-Real-IP` and `True-Client-IP` from a client change
//! nothing: not the address the network rules and API-key CIDRs see, not
//! what the upstream gets (`X-Forwarded-For` is exactly the socket peer;
//! `Forwarded` and `X-Real-IP` are gone).
//!
//! With a trusted proxy (127.0.0.2 and 127.0.0.3; tests connect from them
//! with `local_address`), only the header named by `client_ip_header` counts
//! (default `x-forwarded-for`): a client's `Forwarded: for=10.0.0.5` must not
//! beat the address the proxy appended. The same attack through a real
//! nginx (`proxy_add_x_forwarded_for`, proxying to the gateway over TLS from
//! 127.0.0.3) must not open the route allowlisted for 10.0.0.0/8. A third
//! gateway sets `client_ip_header = "forwarded"`.

use gatehouse_tests::Nginx;

use super::client::{exchange, tcp_from};
use super::*;

const OFFICE_KEY: &str = "gh_client-ip-topic-office-key-0123456789abcd";

fn policy(network: &str) -> String {
    format!(
        "{NO_RATE_LIMITS}\n[network]\n{network}\n\n[roles]\nviewer = [\"site:view\"]\n\n[[api_key]]\nname = \"office\"\nsha256 = \"{}\"\nroles = [\"viewer\"]\nallow = [\"10.0.0.0/8\"]\n{}{}\n[route.network]\nallow = [\"10.0.0.0/8\"]\n{}",
        sha256_hex(OFFICE_KEY),
        route("site", "/", "public = true"),
        route("office", "/office", "public = true"),
        route("keyed", "/keyed", "roles = [\"viewer\"]"),
    )
}

const TRUSTED: &str =
    "trusted_proxies = [\"127.0.0.2/32\", \"127.0.0.3/32\"]\ndeny = [\"203.0.113.66/32\"]";

fn office(name: &str, headers: &[(&str, &str)]) -> Vector {
    let mut r = req("GET", "/office");
    for (k, v) in headers {
        r = r.h(k, v);
    }
    vector(name, r)
}

fn untrusted() -> Vec<Vector> {
    let forgeries = [
        ("X-Forwarded-For", "10.0.0.5"),
        ("Forwarded", "for=10.0.0.5"),
        ("X-Real-IP", "10.0.0.5"),
        ("True-Client-IP", "10.0.0.5"),
    ];
    let mut out = Vec::new();
    for (name, value) in forgeries {
        out.push(
            vector(
                format!("{name} from a client does not reach the upstream"),
                req("GET", "/").h(name, value),
            )
            .status(200)
            .reaches(
                seen("GET", "/")
                    .with("x-forwarded-for", "127.0.0.1")
                    .without(&["forwarded", "x-real-ip", "true-client-ip"]),
            ),
        );
        out.push(
            office(
                &format!("{name}: {value} does not open the 10/8 route"),
                &[(name, value)],
            )
            .status(403)
            .nothing(),
        );
        out.push(
            vector(
                format!("{name}: {value} does not satisfy a 10/8 API key"),
                req("GET", "/keyed")
                    .h("X-API-Key", OFFICE_KEY)
                    .h(name, value),
            )
            .status(401)
            .nothing(),
        );
    }
    out
}

fn trusted() -> Vec<Vector> {
    let proxy = lo(0, 0, 2);
    vec![
        office(
            "trusted proxy: X-Forwarded-For names the client",
            &[("X-Forwarded-For", "10.0.0.5")],
        )
        .from(proxy)
        .status(200)
        .reaches(
            seen("GET", "/office")
                .with("x-forwarded-for", "10.0.0.5")
                .without(&["forwarded"]),
        ),
        office(
            "trusted proxy: a client's Forwarded does not beat X-Forwarded-For",
            &[
                ("X-Forwarded-For", "198.51.100.7"),
                ("Forwarded", "for=10.0.0.5"),
            ],
        )
        .from(proxy)
        .status(403)
        .nothing(),
        office(
            "trusted proxy: Forwarded alone is ignored",
            &[("Forwarded", "for=10.0.0.5")],
        )
        .from(proxy)
        .status(403)
        .nothing(),
        office(
            "trusted proxy: a client-prepended entry is not the client",
            &[("X-Forwarded-For", "10.0.0.5, 198.51.100.7")],
        )
        .from(proxy)
        .status(403)
        .nothing(),
        vector(
            "trusted proxy: a denied address stays denied",
            req("GET", "/").h("X-Forwarded-For", "203.0.113.66"),
        )
        .from(proxy)
        .status(403)
        .nothing(),
        vector(
            "trusted proxy: the upstream gets exactly one X-Forwarded-For",
            req("GET", "/")
                .h("X-Forwarded-For", "10.0.0.9")
                .h("X-Forwarded-For", "198.51.100.7")
                .h("Forwarded", "for=10.0.0.5"),
        )
        .from(proxy)
        .status(200)
        .reaches(
            seen("GET", "/")
                .with("x-forwarded-for", "198.51.100.7")
                .without(&["forwarded"]),
        ),
        office(
            "untrusted peer: X-Forwarded-For is ignored",
            &[("X-Forwarded-For", "10.0.0.5")],
        )
        .status(403)
        .nothing(),
    ]
}

fn forwarded_mode() -> Vec<Vector> {
    let proxy = lo(0, 0, 2);
    vec![
        office(
            "client_ip_header = forwarded: Forwarded names the client",
            &[
                ("Forwarded", "for=10.0.0.5"),
                ("X-Forwarded-For", "198.51.100.7"),
            ],
        )
        .from(proxy)
        .status(200)
        .reaches(
            seen("GET", "/office")
                .with("x-forwarded-for", "10.0.0.5")
                .without(&["forwarded"]),
        ),
        office(
            "client_ip_header = forwarded: X-Forwarded-For is ignored",
            &[
                ("X-Forwarded-For", "10.0.0.5"),
                ("Forwarded", "for=198.51.100.7"),
            ],
        )
        .from(proxy)
        .status(403)
        .nothing(),
    ]
}

/// nginx in front of `target`, connecting to it from 127.0.0.3.
fn nginx_for(target: &Target) -> Result<Nginx, String> {
    let ca = target.gateway.pki.ca_path();
    Nginx::start(&format!(
        r#"        location / {{
            proxy_pass https://127.0.0.1:{port};
            proxy_bind 127.0.0.3;
            proxy_http_version 1.1;
            proxy_set_header Host localhost;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_ssl_server_name on;
            proxy_ssl_name localhost;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {ca};
        }}"#,
        port = target.gateway.https.port(),
        ca = ca.display(),
    ))
    .map_err(|e| format!("nginx: {e:#}"))
}

fn via_nginx() -> Vec<Vector> {
    vec![
        office(
            "nginx: a client's Forwarded: for=10.0.0.5 does not open the 10/8 route",
            &[("Forwarded", "for=10.0.0.5")],
        )
        .status(403)
        .nothing(),
        office(
            "nginx: a client's X-Forwarded-For: 10.0.0.5 does not either",
            &[("X-Forwarded-For", "10.0.0.5")],
        )
        .status(403)
        .nothing(),
        vector(
            "nginx: with a client's Forwarded, the upstream sees the real client",
            req("GET", "/").h("Forwarded", "for=10.0.0.5"),
        )
        .status(200)
        .reaches(
            seen("GET", "/")
                .with("x-forwarded-for", "127.0.0.1")
                .without(&["forwarded"]),
        ),
    ]
}

async fn run_via_nginx(target: &Target, report: &mut Report) {
    let nginx = match nginx_for(target) {
        Ok(nginx) => nginx,
        Err(e) => {
            return report.fail_all(
                &via_nginx()
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>(),
                &e,
            )
        }
    };
    for vector in via_nginx() {
        target.upstream.take();
        let outcome = async {
            let tcp = tcp_from(nginx.addr, None)
                .await
                .map_err(|e| e.to_string())?;
            let response = exchange(tcp, &vector.request, false).await?;
            target.judge(&vector.expect, &response).await
        }
        .await;
        report.record(vector.name, outcome);
    }
}

#[tokio::test]
async fn client_ip_spoofing() {
    let _shared = shared().await;
    let forwarded = format!("{TRUSTED}\nclient_ip_header = \"forwarded\"");
    let mut report = run_groups(
        "client_ip",
        vec![
            (policy(""), untrusted()),
            (policy(&forwarded), forwarded_mode()),
        ],
    )
    .await;
    if let Some(target) = run_on(&mut report, &policy(TRUSTED), trusted()).await {
        run_via_nginx(&target, &mut report).await;
    } else {
        let names: Vec<String> = via_nginx().into_iter().map(|v| v.name).collect();
        report.fail_all(
            &names.iter().map(String::as_str).collect::<Vec<_>>(),
            "gateway did not start",
        );
    }
    report.finish();
}
