//! Secrets come only from `secret_dirs`, read beneath them; `check`
//! reports every unreadable env value at once with its line and column,
//! and says what each job weakens.

use std::os::unix::fs::symlink;
use std::process::Command;
use std::time::Duration;

use gatehouse_tests::binaries;
use gatehouse_tests::scheduler::job;
use gatehouse_tests::SchedulerUnderTest;

fn check(stack: &SchedulerUnderTest) -> (bool, String, String) {
    let out = Command::new(binaries::scheduler())
        .args(["check", "--policy"])
        .arg(&stack.policy_path)
        .output()
        .expect("check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn env_job(name: &str, var: &str, file: &str) -> String {
    job(
        name,
        &format!(
            "env = {{ {var} = {{ file = \"{{dir}}/secrets/{file}\", sensitive = true }} }}\ncommand = [\"true\"]"
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_read_beneath_their_directory_and_check_reports_every_env_problem() {
    let extra = "secret_dirs = [\"{dir}/secrets\"]";
    let stack = SchedulerUnderTest::start_on(
        &gatehouse_tests::scheduler::shared_docker().host(),
        extra,
        &job("idle", "command = [\"true\"]"),
    )
    .await;
    let secrets = stack.dir().join("secrets");
    std::fs::create_dir(&secrets).expect("mkdir");
    std::fs::write(secrets.join("token"), "t0ken\n").expect("token");
    std::fs::write(secrets.join("leak"), "harmless\n").expect("leak");
    std::fs::write(secrets.join("nope"), "soon gone\n").expect("nope");

    let jobs = format!(
        "{}{}{}",
        env_job("fine", "TOKEN", "token"),
        env_job("leaky", "KEY", "leak"),
        env_job("missing", "GONE", "nope"),
    );
    stack.write_policy(extra, &jobs);
    stack.wait_job("leaky").await;
    // After the reload (which reads every env value too), one secret is
    // replaced by a link to a file the scheduler can read but no job
    // should (a private key), and another disappears.
    let key = stack.dir().join("private-key.pem");
    std::fs::write(&key, "PRIVATE KEY\n").expect("key");
    std::fs::remove_file(secrets.join("leak")).expect("rm");
    symlink(&key, secrets.join("leak")).expect("symlink");
    std::fs::remove_file(secrets.join("nope")).expect("rm");

    let (ok, _, err) = check(&stack);
    assert!(!ok, "{err}");
    let text = std::fs::read_to_string(&stack.policy_path).expect("policy");
    let line = |needle: &str| text.lines().position(|l| l.contains(needle)).expect(needle) + 1;
    let file = stack.policy_path.display().to_string();
    assert!(err.contains("2 env values cannot be read"), "{err}");
    for (job, var, why) in [
        ("leaky", "KEY", "a symlink may not lead out of"),
        ("missing", "GONE", "not found"),
    ] {
        let at = format!("{file}:{}:", line(&format!("{var} = {{")));
        let found = err
            .lines()
            .find(|l| l.contains(&format!("job `{job}`: env {var}: cannot read")))
            .unwrap_or_else(|| panic!("{job} in {err}"));
        assert!(found.contains(&at), "{job} at {at}: {found}");
        assert!(found.contains(why), "{job}: {found}");
    }
    assert!(!err.contains("PRIVATE KEY"), "{err}");

    let id = stack.run_now("leaky").await;
    let run = stack.wait_run(id, None, Duration::from_secs(30)).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("env KEY: cannot read"),
        "{run}"
    );
    assert!(run["container_id"].is_null(), "{run}");
    let id = stack.run_now("fine").await;
    let run = stack.wait_run(id, None, Duration::from_secs(30)).await;
    assert_eq!(run["status"], "succeeded", "{run}");

    stack.write_policy(extra, &env_job("fine", "TOKEN", "token"));
    let (ok, out, err) = check(&stack);
    assert!(ok, "{err}");
    assert!(
        out.contains("job fine weakens: env TOKEN reads the file"),
        "{out}"
    );
}
