//! What both compose tests share: a private dockerd with our images
//! seeded, docker-compose 1.29 alone on the PATH, the environment every
//! compose script gets, and the checked teardown.

use std::path::{Path, PathBuf};
use std::process::Command;

use gatehouse_tests::docker::PrivateDocker;
use gatehouse_tests::free_port;

use super::compose::{check, path_with_compose_only, seed_images, which};

pub(crate) struct ComposeStack {
    /// The stack's directory (`compose/` or `compose/cluster/`).
    pub(crate) dir: PathBuf,
    pub(crate) compose_bin: PathBuf,
    pub(crate) project: String,
    pub(crate) https_port: u16,
    pub(crate) http_port: u16,
    /// Where compose/up exports the development CA.
    pub(crate) ca_file: PathBuf,
    path: String,
    // Dropped after the test's `DownOnDrop`, which is declared later.
    pub(crate) work: tempfile::TempDir,
    pub(crate) docker: PrivateDocker,
}

impl ComposeStack {
    /// A private dockerd with our images seeded, for the stack in `dir`.
    pub(crate) fn new(dir: &str, project_prefix: &str) -> ComposeStack {
        let dir = Path::new(dir)
            .canonicalize()
            .expect("the compose directory");
        let compose_bin = which("docker-compose")
            .expect("docker-compose not found: install Debian's docker-compose (tests/run does)");
        let docker = PrivateDocker::start().expect("a private dockerd");
        let work = tempfile::tempdir().expect("temp dir");
        seed_images(&docker, work.path());
        ComposeStack {
            dir,
            // compose/up prefers the v2 plugin; these tests are about 1.29.
            path: path_with_compose_only(&compose_bin, work.path()),
            compose_bin,
            project: format!("{project_prefix}{}", std::process::id()),
            https_port: free_port(),
            http_port: free_port(),
            ca_file: work.path().join("dev-ca.pem"),
            work,
            docker,
        }
    }

    /// The environment of every compose command and script.
    pub(crate) fn env(&self, command: &mut Command) {
        command
            .env("DOCKER_HOST", self.docker.host())
            .env("COMPOSE_PROJECT_NAME", &self.project)
            .env("GATEHOUSE_NO_BUILD", "1")
            .env("GATEHOUSE_HTTPS_PORT", self.https_port.to_string())
            .env("GATEHOUSE_HTTP_PORT", self.http_port.to_string())
            .env("GATEHOUSE_CA_OUT", &self.ca_file)
            .env("PATH", &self.path);
    }

    /// The stack's `down`, checked: nothing of it is left on the daemon.
    pub(crate) fn down(&self, env: &dyn Fn(&mut Command)) {
        let mut down = Command::new(self.dir.join("down"));
        env(&mut down);
        check(&mut down);
        let left = check(self.docker.docker_cli().args(["ps", "-aq"]));
        assert!(
            left.stdout.is_empty(),
            "containers left after {}/down: {}",
            self.dir.display(),
            String::from_utf8_lossy(&left.stdout)
        );
    }
}
