//! Loosenings that need a `[scheduler]` allowance, and what `check`
//! reports about each job.

use std::path::Path;

use crate::tests::scheduler::{with_job, HEAD};
use crate::weakening::{mount_warnings, weakenings};
use crate::*;

fn problems(text: &str) -> Vec<Problem> {
    match parse(Path::new("policy.toml"), text) {
        Ok(_) => panic!("expected the policy to be rejected"),
        Err(e) => e.problems().to_vec(),
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect(needle) + 1
}

/// The three silent weakenings of issue 12, in one job: each is refused
/// at its own line and column, all in one report.
#[test]
fn weakening_a_default_or_reading_any_file_needs_an_allowance() {
    let text = with_job(concat!(
        "name = \"j\"\nimage = \"local/busybox:1\"\n",
        "container = { read_only = false, tmp_size = \"100GiB\" }\n",
        "env = { KEY = { file = \"/root/.ssh/id_ed25519\", sensitive = true } }",
    ));
    let found = problems(&text);
    let messages: Vec<&str> = found.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(found.len(), 3, "{messages:?}");
    let container = line_of(&text, "container = {");
    let env = line_of(&text, "env = {");
    let expect = [
        ("allow_writable_rootfs = true", container),
        ("above [scheduler] max_tmp_size", container),
        (
            "/root/.ssh/id_ed25519 is outside [scheduler] secret_dirs",
            env,
        ),
    ];
    for (message, line) in expect {
        let p = found
            .iter()
            .find(|p| p.message.contains(message))
            .unwrap_or_else(|| panic!("`{message}` in {messages:?}"));
        assert_eq!(p.line, line, "{message}");
        assert!(p.column > 1, "{message}: column {}", p.column);
    }
    // `..` cannot climb out of a secret directory.
    let text = with_job(
        "name = \"j\"\nimage = \"local/busybox:1\"\nenv = { K = { file = \"/run/secrets/../../etc/shadow\" } }",
    );
    assert!(problems(&text)[0].message.contains("not a plain file path"));
    // Nor can a secret directory be the whole file system.
    let text = HEAD.replace("secret_dirs = [\"/run/secrets\"]", "secret_dirs = [\"/\"]");
    assert!(problems(&text)[0]
        .message
        .contains("cannot be a secret directory"));
}

#[test]
fn with_the_allowances_the_job_loads_and_check_lists_what_it_weakens() {
    let head = HEAD.replace(
        "secret_dirs = [\"/run/secrets\"]",
        "secret_dirs = [\"/run/secrets\"]\nallow_writable_rootfs = true\nmax_tmp_size = \"1GiB\"",
    );
    let text = format!(
        "{head}\n[[job]]\nname = \"loose\"\nimage = \"local/busybox:1\"\n\
         env = {{ KEY = {{ file = \"/run/secrets/k8s/key\", sensitive = true }} }}\n\
         container = {{ read_only = false, tmp_size = \"512MiB\", mounts = [{{ source = \"/srv/scratch\", target = \"/out\", writable = true }}] }}\n\
         [[job]]\nname = \"tight\"\nimage = \"local/busybox:1\"\n\
         container = {{ mounts = [{{ source = \"/srv/scratch/nightly\", target = \"/in\" }}] }}\n"
    );
    let policy = match parse(Path::new("/etc/gatehouse/policy.toml"), &text) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    let loose = &policy.jobs[0];
    let env = &loose.env[0];
    assert_eq!(env.secret_dir.as_deref(), Some(Path::new("/run/secrets")));
    assert_eq!(env.at.line, line_of(&text, "KEY = {"));
    let said = weakenings(loose).join("; ");
    for expected in [
        "a writable root filesystem",
        "/tmp 512.0 MiB (default 64.0 MiB)",
        "mounts /srv/scratch at /out (writable)",
        "env KEY reads the file /run/secrets/k8s/key",
    ] {
        assert!(said.contains(expected), "`{expected}` in {said}");
    }
    assert!(
        weakenings(&policy.jobs[1])
            .iter()
            .all(|w| w.contains("read-only")),
        "tight only mounts read-only"
    );
    let warnings = mount_warnings(&policy.jobs);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("job `loose` may write /srv/scratch")
            && warnings[0].contains("that job `tight` mounts"),
        "{warnings:?}"
    );
    assert_eq!(
        policy.jobs[1].container.mounts[0].allowed_root,
        Path::new("/srv/scratch")
    );
}

#[test]
fn dev_shm_is_small_by_default_and_bounded_by_max_shm_size() {
    let policy = match parse(
        Path::new("policy.toml"),
        &with_job("name = \"j\"\nimage = \"local/busybox:1\""),
    ) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    let c = &policy.jobs[0].container;
    assert_eq!(c.shm_size, 16 * 1024 * 1024);
    assert_eq!(c.nofile, 1024);
    assert_eq!(c.nproc, 1024 * 4, "max_pids for each concurrent run");
    let text =
        with_job("name = \"j\"\nimage = \"local/busybox:1\"\ncontainer = { shm_size = \"1GiB\" }");
    let found = problems(&text);
    assert!(
        found[0].message.contains("above [scheduler] max_shm_size"),
        "{found:?}"
    );
    assert_eq!(found[0].line, line_of(&text, "shm_size"));
    let allowed = text.replace("secret_dirs =", "max_shm_size = \"1GiB\"\nsecret_dirs =");
    match parse(Path::new("policy.toml"), &allowed) {
        Ok(p) => assert!(weakenings(&p.jobs[0])
            .iter()
            .any(|w| w.contains("/dev/shm 1.0 GiB"))),
        Err(e) => panic!("{e}"),
    }
}
