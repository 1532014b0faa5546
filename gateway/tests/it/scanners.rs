//! Real external scanners against the running gateway: sslyze checks the
//! TLS configuration against Mozilla's profiles, and the MDN HTTP
//! Observatory grades the headers and the redirect.

use std::path::PathBuf;
use std::process::Command;

use gatehouse_tests::gateway::BASE_POLICY;
use gatehouse_tests::GatewayUnderTest;

fn tool(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/tools")).join(name)
}

/// Runs a scanner off the async runtime: the echo upstream lives on this
/// test's runtime and must keep serving while the scanner waits.
async fn run(mut command: Command) -> (bool, String) {
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("scanner task")
        .expect("scanner wrapper runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn sslyze(profile: &str, gateway: &GatewayUnderTest) -> (bool, String) {
    let mut command = Command::new(tool("sslyze"));
    command
        .arg(profile)
        .arg(format!("localhost:{}", gateway.https.port()))
        .arg(gateway.pki.ca_path());
    run(command).await
}

#[tokio::test]
async fn default_tls_is_mozilla_intermediate_compliant() {
    let gateway = GatewayUnderTest::start("").await;
    let (compliant, report) = sslyze("intermediate", &gateway).await;
    assert!(compliant, "{report}");
}

#[tokio::test]
async fn tls13_only_is_mozilla_modern_compliant_and_default_is_not() {
    let default = GatewayUnderTest::start("").await;
    let (compliant, report) = sslyze("modern", &default).await;
    assert!(!compliant, "TLS 1.2 on means not modern:\n{report}");
    assert!(report.contains("tls_versions"), "{report}");

    let template = BASE_POLICY.replace(
        "[[tls.cert]]",
        "[tls]\nmin_version = \"1.3\"\n\n[[tls.cert]]",
    );
    let modern = GatewayUnderTest::start_with(&template, "").await;
    let (compliant, report) = sslyze("modern", &modern).await;
    assert!(compliant, "{report}");
}

#[tokio::test]
async fn mdn_observatory_grades_the_gateway_a_plus() {
    let gateway = GatewayUnderTest::start_on_standard_ports("").await;
    let mut command = Command::new(tool("observatory"));
    command
        .arg("localhost")
        .arg(gateway.pki.ca_path())
        .arg("A+");
    let (passed, report) = run(command).await;
    assert!(passed, "{report}");
    let json_start = report.find('{').expect("JSON result");
    let result: serde_json::Value = serde_json::Deserializer::from_str(&report[json_start..])
        .into_iter()
        .next()
        .expect("one JSON document")
        .expect("valid JSON");
    assert_eq!(result["scan"]["grade"], "A+");
    // A+ tolerates some failed tests; we want none, and a real redirect.
    assert_eq!(result["scan"]["testsFailed"], 0, "{report}");
    assert_eq!(
        result["tests"]["redirection"]["result"],
        "redirection-to-https"
    );
}
