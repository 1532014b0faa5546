//! IPv6 clients, from a network namespace of the test's own: one host
//! usually holds a whole /64, so per-address limits count IPv6 clients per
//! `ipv6_prefix` (a /64 by default). Everything runs inside the namespace:
//! the gateway, a plain upstream (Python's http.server) and curl, each
//! request from a chosen source address.

use std::time::{Duration, Instant};

use gatehouse_tests::{ChildProcess, NetNs, TestPki};

use gatehouse_tests::binaries;

const GATEWAY: &str = "2001:db8:0:9::1";
/// Three addresses in one /64, and one in another.
const SAME_64: [&str; 3] = ["2001:db8:0:1::a", "2001:db8:0:1::b", "2001:db8:0:1:ffff::c"];
const OTHER_64: &str = "2001:db8:0:2::a";
/// Polls for readiness from a /64 of its own, so it uses no one's allowance.
const PROBE: &str = "2001:db8:0:3::a";

struct Host {
    ns: NetNs,
    pki: TestPki,
    _upstream: ChildProcess,
    _gateway: ChildProcess,
}

impl Host {
    fn start(label: &str, rate_limit: &str) -> Host {
        let ns = NetNs::new(label).expect("a network namespace (needs root)");
        for address in [GATEWAY, SAME_64[0], SAME_64[1], SAME_64[2], OTHER_64, PROBE] {
            let prefix = if address == GATEWAY { 128 } else { 64 };
            ns.add_address(&format!("{address}/{prefix}")).unwrap();
        }
        let pki = TestPki::new().unwrap();
        let leaf = pki.issue("server", &["localhost"], 1).unwrap();
        let dir = pki.dir.path();
        let policy = format!(
            r#"
[listen]
https = "[{GATEWAY}]:8443"
public_origin = "https://localhost:8443"
[[tls.cert]]
hosts = ["localhost"]
cert = "{cert}"
key = "{key}"
[rate_limit]
{rate_limit}
[[route]]
name = "app"
path = "/"
upstream = "http://127.0.0.1:9000"
public = true
"#,
            cert = leaf.cert.display(),
            key = leaf.key.display(),
        );
        std::fs::write(dir.join("policy.toml"), policy).unwrap();
        let mut upstream = ns.command("python3");
        upstream.args(["-m", "http.server", "--bind", "127.0.0.1", "9000"]);
        let upstream = ChildProcess::spawn(upstream, &dir.join("upstream.log")).unwrap();
        let mut gateway = ns.command(binaries::gateway());
        gateway
            .args(["run", "--policy"])
            .arg(dir.join("policy.toml"))
            .args(["--threads", "1"]);
        let gateway = ChildProcess::spawn(gateway, &dir.join("gateway.log")).unwrap();
        let host = Host {
            ns,
            pki,
            _upstream: upstream,
            _gateway: gateway,
        };
        host.wait_ready();
        host
    }

    /// The status of `GET /` from `source`, with curl over TLS.
    fn get_from(&self, source: &str) -> u16 {
        let ca = self.pki.dir.path().join("ca.pem");
        self.curl(&[
            "--cacert",
            &ca.display().to_string(),
            "--resolve",
            &format!("localhost:8443:[{GATEWAY}]"),
            "--interface",
            source,
            "https://localhost:8443/",
        ])
    }

    /// curl inside the namespace: the status, or 0 when nothing answered.
    fn curl(&self, args: &[&str]) -> u16 {
        let out = self
            .ns
            .command("curl")
            .args(["--silent", "--output", "/dev/null", "--max-time", "5"])
            .args(["--write-out", "%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// Who the gateway saw and what it answered, for failure messages.
    fn access_log(&self) -> String {
        std::fs::read_to_string(self.pki.dir.path().join("gateway.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("gatehouse::access"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits for the upstream, then for the gateway, polling the gateway
    /// from a /64 of its own so that no one else's allowance is used.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.curl(&["http://127.0.0.1:9000/"]) == 200 && self.get_from(PROBE) == 200 {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = |name: &str| {
            std::fs::read_to_string(self.pki.dir.path().join(name)).unwrap_or_default()
        };
        panic!(
            "the gateway in the namespace never answered 200\n--- gateway ---\n{}\n--- upstream ---\n{}",
            log("gateway.log"),
            log("upstream.log")
        );
    }
}

#[test]
fn ipv6_clients_are_counted_per_64_by_default() {
    let host = Host::start("v6-64", "client = \"2/h\"");
    assert_eq!(host.get_from(SAME_64[0]), 200);
    assert_eq!(host.get_from(SAME_64[1]), 200);
    assert_eq!(
        host.get_from(SAME_64[2]),
        429,
        "a third address of the same /64 shares its allowance"
    );
    assert_eq!(
        host.get_from(OTHER_64),
        200,
        "another /64 has its own\n{}",
        host.access_log()
    );
}

#[test]
fn the_ipv6_prefix_is_configurable() {
    let host = Host::start("v6-128", "client = \"1/h\"\nipv6_prefix = 128");
    for source in SAME_64 {
        assert_eq!(host.get_from(source), 200, "{source} counts on its own");
    }
}
