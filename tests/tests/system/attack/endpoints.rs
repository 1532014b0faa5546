//! The gateway's own endpoints under the network rules: the JWKS at
//! `/.well-known/gatehouse/jwks.json` and the OIDC `/.gatehouse/login`,
//! `callback` and `logout` answer nobody the global allow/deny lists
//! refuse (403), like every route. The policy allows 127.0.0.1 only (and
//! denies 127.0.0.3 explicitly); the real provider is there so that the
//! allowed address gets a real login redirect.

use super::login::Sessions;
use super::*;

fn policy() -> String {
    format!(
        "\n[network]\nallow = [\"127.0.0.1/32\", \"127.0.0.3/32\"]\ndeny = [\"127.0.0.3/32\"]\n{}",
        route("app", "/", "roles = [\"viewer\"]"),
    )
}

fn vectors() -> Vec<Vector> {
    let outside = lo(0, 0, 2);
    let denied = lo(0, 0, 3);
    let get = |path: &str| req("GET", path);
    let mut out = Vec::new();
    for (who, from) in [
        ("outside the allowlist", outside),
        ("on the deny list", denied),
    ] {
        for path in [
            "/.well-known/gatehouse/jwks.json",
            "/.gatehouse/login?rd=/",
            "/.gatehouse/callback?code=forged&state=forged",
            "/.gatehouse/logout",
        ] {
            out.push(
                vector(format!("GET {path} from {who}"), get(path))
                    .from(from)
                    .status(403)
                    .nothing(),
            );
        }
    }
    out.extend([
        vector(
            "POST /.gatehouse/logout from outside the allowlist",
            req("POST", "/.gatehouse/logout").body(b""),
        )
        .from(outside)
        .status(403)
        .nothing(),
        vector("control: a route from outside the allowlist", get("/"))
            .from(outside)
            .status(403)
            .nothing(),
        vector(
            "control: the JWKS from 127.0.0.1",
            get("/.well-known/gatehouse/jwks.json"),
        )
        .status(200)
        .nothing(),
        vector(
            "control: login from 127.0.0.1",
            get("/.gatehouse/login?rd=/"),
        )
        .status(302)
        .nothing(),
    ]);
    out
}

#[tokio::test]
async fn gateway_endpoints_obey_the_network_rules() {
    let _shared = shared().await;
    let mut report = Report::new("endpoints");
    match Sessions::start(&policy()).await {
        Ok(s) => s.target.run(&mut report, vectors()).await,
        Err(e) => {
            for v in vectors() {
                report.record(v.name, Err(e.clone()));
            }
        }
    }
    report.finish();
}
