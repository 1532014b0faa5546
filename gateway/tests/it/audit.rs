//! The audit log end to end: what the gateway records, `audit verify` on
//! tampered copies, a crash mid-write, and a full disk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::Digest as _;

use gatehouse_tests::gateway::{audit_verify, BASE_POLICY};
use gatehouse_tests::metrics::metric_value;
use gatehouse_tests::GatewayUnderTest;

/// This policy's route needs the admin role, so a caller without it is an
/// authorization denial. Use with [`keys`].
fn restricted() -> String {
    BASE_POLICY.replace("public = true", "roles = [\"admin\"]")
}

/// A key that authenticates but lacks the admin role: each request with it
/// is an `access.denied` record of its own. (Anonymous denials are
/// summarised per address and minute instead, so they cannot fill a disk.)
const VIEWER_KEY: &str = "gh_audit-tests-viewer-key-without-the-admin-role";

/// The identity sources for [`restricted`]: an admin key nobody here
/// presents, and [`VIEWER_KEY`].
fn keys() -> String {
    use sha2::Digest;
    format!(
        "[roles]\nadmin = [\"*\"]\nviewer = [\"read\"]\n\
         [[api_key]]\nname = \"ops\"\nsha256 = \"{}\"\nroles = [\"admin\"]\n\
         [[api_key]]\nname = \"viewer\"\nsha256 = \"{}\"\nroles = [\"viewer\"]\n",
        "0".repeat(63) + "1",
        hex::encode(sha2::Sha256::digest(VIEWER_KEY.as_bytes())),
    )
}

/// `count` requests refused for a missing role, one record each.
async fn denials(g: &GatewayUnderTest, count: usize) {
    let client = g.client();
    for _ in 0..count {
        let status = client
            .get(format!("{}/x", g.origin()))
            .header("x-api-key", VIEWER_KEY)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 403);
    }
}

/// `count` anonymous requests (401).
async fn anonymous(g: &GatewayUnderTest, count: usize) {
    let client = g.client();
    for _ in 0..count {
        let response = client
            .get(format!("{}/x", g.origin()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_copy(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn all_audit_files(g: &GatewayUnderTest) -> Vec<PathBuf> {
    let dir = g.audit_path().parent().unwrap().to_path_buf();
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit.jsonl"))
        })
        .collect()
}

#[tokio::test]
async fn denials_are_recorded_with_every_field() {
    let g = GatewayUnderTest::start_with(&restricted(), &keys()).await;
    let startup = g.audit_events("startup", 1).await;
    assert_eq!(startup[0]["seq"], 1);
    assert_eq!(startup[0]["prev"], "0".repeat(64));
    assert_eq!(startup[0]["actor"]["method"], "system");
    assert_eq!(
        startup[0]["details"]["policy_sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    anonymous(&g, 1).await;
    let denied = g.audit_events("access.denied", 1).await;
    let record = &denied[0];
    for field in [
        "ts",
        "seq",
        "prev",
        "event",
        "outcome",
        "actor",
        "client_ip",
        "request_id",
        "route",
        "details",
    ] {
        assert!(record.get(field).is_some(), "{field} missing from {record}");
    }
    assert_eq!(record["outcome"], "denied");
    assert_eq!(record["client_ip"], "127.0.0.1");
    assert_eq!(record["route"], "app");
    assert_eq!(record["details"]["reason"], "unauthenticated");
    assert!(
        record["details"]["rule"].as_str().unwrap().contains("app"),
        "{record}"
    );
    assert!(record["ts"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn anonymous_denials_are_one_record_and_a_summary_per_address_and_window() {
    let g = GatewayUnderTest::start_with(&restricted(), &keys()).await;
    anonymous(&g, 30).await;
    denials(&g, 2).await;
    let denied = g.audit_events("access.denied", 3).await;
    let anonymous_records: Vec<_> = denied
        .iter()
        .filter(|r| r["details"]["reason"] == "unauthenticated")
        .collect();
    assert_eq!(anonymous_records.len(), 1, "{denied:#?}");
    // The window's summary is written when it ends, or at shutdown.
    g.process.signal("TERM").unwrap();
    let summary = g.audit_events("access.denied.summary", 1).await;
    assert_eq!(summary[0]["details"]["denied"], 29, "{summary:?}");
    assert_eq!(summary[0]["details"]["client"], "127.0.0.1");
    assert_eq!(summary[0]["route"], "app");
    let (code, out) = audit_verify(&[g.audit_path()]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn audit_verify_names_the_line_of_each_kind_of_tampering() {
    let g = GatewayUnderTest::start_with(&restricted(), &keys()).await;
    denials(&g, 12).await;
    g.audit_events("access.denied", 12).await;
    let original = lines(&g.audit_path());
    let dir = tempfile::tempdir().unwrap();

    let intact = write_copy(dir.path(), "intact", &original);
    let (code, out) = audit_verify(&[intact]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("ok: {} records", original.len())),
        "{out}"
    );

    let mut edited = original.clone();
    edited[4] = edited[4].replacen("access.denied", "access.dEnied", 1);
    let (code, out) = audit_verify(&[write_copy(dir.path(), "edited", &edited)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("edited:5: record 5 was altered"), "{out}");

    let mut deleted = original.clone();
    deleted.remove(6);
    let (code, out) = audit_verify(&[write_copy(dir.path(), "deleted", &deleted)]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("deleted:7: records 7 to 7 are missing"),
        "{out}"
    );

    let mut swapped = original.clone();
    swapped.swap(2, 3);
    let (code, out) = audit_verify(&[write_copy(dir.path(), "swapped", &swapped)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("swapped:3: record 4 is out of order"), "{out}");

    let truncated = dir.path().join("truncated");
    let bytes = std::fs::read(g.audit_path()).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 20]).unwrap();
    let (code, out) = audit_verify(&[truncated]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "INCOMPLETE {}:{}:",
            dir.path().join("truncated").display(),
            original.len()
        )),
        "{out}"
    );
}

// Multi-threaded: the blocking waits for the process below must not stop
// the dropped clients' connections from closing, or the gateway would
// rightly wait for them before it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_heavy_logging_leaves_a_chain_that_verifies_and_continues() {
    let mut g = GatewayUnderTest::start_with(&restricted(), &keys()).await;
    let url = format!("{}/x", g.origin());
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = g.client();
        let url = url.clone();
        load.spawn(async move {
            // Until the gateway dies under us.
            while client
                .get(&url)
                .header("x-api-key", VIEWER_KEY)
                .send()
                .await
                .is_ok()
            {}
        });
    }
    // Let records pile up, then kill without warning.
    g.audit_events("access.denied", 200).await;
    g.process.signal("KILL").unwrap();
    load.join_all().await;
    assert!(g.process.wait_exit(Duration::from_secs(5)).is_some());

    let (code, out) = audit_verify(&all_audit_files(&g));
    assert!(code == 0 || code == 2, "{out}");
    assert!(!out.contains("BROKEN"), "{out}");
    let before = g.audit_records().len();
    assert!(before >= 200);

    // The next start continues the same chain.
    g.respawn();
    g.audit_events("startup", 2).await;
    denials(&g, 3).await;
    g.process.signal("TERM").unwrap();
    assert!(g.process.wait_exit(Duration::from_secs(10)).is_some());
    let (code, out) = audit_verify(&all_audit_files(&g));
    assert!(code == 0 || code == 2, "{out}");
    assert!(!out.contains("BROKEN"), "{out}");
    let shutdown: Vec<_> = g
        .audit_records()
        .into_iter()
        .filter(|r| r["event"] == "shutdown")
        .collect();
    assert_eq!(
        shutdown.len(),
        1,
        "the clean stop is recorded, the kill is not\n{}",
        g.process.log_text()
    );
}

#[tokio::test]
async fn reloads_are_recorded_with_the_policy_digest_before_and_after() {
    let g = GatewayUnderTest::start("").await;
    let first = g.audit_events("startup", 1).await[0]["details"]["policy_sha256"].clone();
    g.rewrite_policy(BASE_POLICY, "# a comment changes the digest\n");
    g.process.signal("HUP").unwrap();
    let reload = g.audit_events("policy.reload", 1).await;
    assert_eq!(reload[0]["outcome"], "success");
    assert_eq!(reload[0]["details"]["sha256_before"], first);
    assert_ne!(reload[0]["details"]["sha256_after"], first);
    g.rewrite_policy(BASE_POLICY, "bogus_key = true\n");
    g.process.signal("HUP").unwrap();
    for _ in 0..100 {
        if g.audit_records()
            .iter()
            .any(|r| r["event"] == "policy.reload" && r["outcome"] == "failure")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no failed reload recorded: {:?}", g.audit_records());
}

/// A tiny tmpfs, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(kib: u32) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (tests/run runs as root)"
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk up to `leave` bytes.
    fn fill(&self, leave: u64) {
        let free = fs_free(self.path());
        let filler = vec![0u8; free.saturating_sub(leave) as usize];
        std::fs::write(self.path().join("filler"), filler).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn fs_free(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

async fn disk_full_gateway(disk: &SmallDisk, mode: &str) -> GatewayUnderTest {
    let template = restricted().replace(
        "path = \"{dir}/audit.jsonl\"",
        &format!(
            "path = \"{}/audit.jsonl\"\non_audit_failure = \"{mode}\"\nfsync_interval = \"200ms\"",
            disk.path().display()
        ),
    );
    let g = GatewayUnderTest::start_with(&template, &keys()).await;
    disk.fill(4096);
    g
}

/// Sends denied requests until one gets `want`; returns how many it took.
async fn until_status(g: &GatewayUnderTest, want: u16, max: usize) -> Option<reqwest::Response> {
    let client = g.client();
    for _ in 0..max {
        let response = client
            .get(format!("{}/x", g.origin()))
            .header("x-api-key", VIEWER_KEY)
            .send()
            .await
            .unwrap();
        if response.status() == want {
            return Some(response);
        }
    }
    None
}

#[tokio::test]
async fn a_full_disk_fails_closed_with_503_and_recovers_when_space_returns() {
    let disk = SmallDisk::mount(64);
    let g = disk_full_gateway(&disk, "deny").await;
    let refused = until_status(&g, 503, 400)
        .await
        .expect("the audit log filled the disk");
    for name in ["strict-transport-security", "content-security-policy"] {
        assert!(refused.headers().contains_key(name));
    }
    let metrics = g.metrics().await;
    assert!(metric_value(&metrics, "gatehouse_audit_write_failures_total").unwrap() >= 1.0);
    assert_eq!(
        metric_value(&metrics, "gatehouse_audit_log_healthy"),
        Some(0.0)
    );
    let ready = reqwest::get(format!("http://{}/readyz", g.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    std::fs::remove_file(disk.path().join("filler")).unwrap();
    let mut recovered = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = g
            .client()
            .get(format!("{}/x", g.origin()))
            .header("x-api-key", VIEWER_KEY)
            .send()
            .await
            .unwrap()
            .status();
        if status == 403 {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "still refusing after space came back");
    let ready = reqwest::get(format!("http://{}/readyz", g.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    // The records held back while the disk was full were written, whole.
    let (code, out) = audit_verify(&[disk.path().join("audit.jsonl")]);
    assert_eq!(code, 0, "{out}");
    drop(g);
}

#[tokio::test]
async fn a_full_disk_with_continue_keeps_serving_and_counts_lost_records() {
    let disk = SmallDisk::mount(64);
    let g = disk_full_gateway(&disk, "continue").await;
    denials(&g, 150).await;
    let metrics = g.metrics().await;
    assert!(metric_value(&metrics, "gatehouse_audit_write_failures_total").unwrap() >= 1.0);
    assert!(metric_value(&metrics, "gatehouse_audit_records_dropped_total").unwrap() >= 1.0);
    let (code, out) = audit_verify(&[disk.path().join("audit.jsonl")]);
    assert_eq!(code, 0, "lost records leave no gap in the chain: {out}");
    drop(g);
}

/// Retention in the real gateway: with tiny files and a tiny total, the
/// oldest rotated files go as it runs; the active file stays, what is left
/// verifies, and `audit verify` says where the chain now starts.
#[tokio::test]
async fn retention_deletes_the_oldest_files_and_what_is_left_verifies() {
    // Authorization denials of a known caller: each writes a record.
    let key = "gh_test-retention-viewer-0123456789abcdef01234";
    let extra = format!(
        "[roles]\nadmin = [\"*\"]\nviewer = []\n[[api_key]]\nname = \"viewer\"\nsha256 = \"{}\"\nroles = [\"viewer\"]\n",
        hex::encode(sha2::Sha256::digest(key.as_bytes()))
    );
    let template = restricted().replace(
        "path = \"{dir}/audit.jsonl\"",
        "path = \"{dir}/audit.jsonl\"\nmax_file_size = \"2KiB\"\nmax_total_size = \"8KiB\"",
    );
    let g = GatewayUnderTest::start_with(&template, &extra).await;
    let client = g.client();
    for _ in 0..60 {
        let r = client
            .get(format!("{}/x", g.origin()))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = g.metrics().await;
        let written = metric_value(&metrics, "gatehouse_audit_records_total").unwrap_or(0.0);
        let deleted = metric_value(&metrics, "gatehouse_audit_files_deleted_total").unwrap_or(0.0);
        if written >= 61.0 && deleted > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        metric_value(&metrics, "gatehouse_audit_files_deleted_total").unwrap_or(0.0) > 0.0,
        "{metrics}"
    );

    let files = all_audit_files(&g);
    assert!(files.contains(&g.audit_path()), "the active file stays");
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(total <= 8 * 1024, "{total} bytes in {files:?}");
    let (code, out) = audit_verify(&files);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("the chain starts at seq "), "{out}");
    let log = g
        .process
        .log_once_it_has("deleted a rotated audit file", Duration::from_secs(5))
        .await;
    assert!(log.contains("deleted a rotated audit file"), "{log}");
}
