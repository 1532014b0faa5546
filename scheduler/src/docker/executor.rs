//! Where runs execute: one container per run on the daemon
//! (`executor = "docker"`), or one service per run on its Swarm
//! (`executor = "swarm"`, see `swarm/`). The engine sees the same
//! operations either way; the id it keeps is a container's or a service's.

use std::time::Duration;

use gatehouse_policy::scheduler::{Executor as Kind, PullPolicy, SchedulerSettings};

use super::swarm::Swarm;
use super::{
    CapturedLogs, ContainerSpec, ContainerState, DockerClient, DockerError, Exit, OurContainer,
};
use crate::mask::Masker;

pub enum Executor {
    Containers(DockerClient),
    Swarm(Swarm),
}

impl Executor {
    pub fn new(docker: DockerClient, settings: &SchedulerSettings) -> Executor {
        match settings.executor {
            Kind::Docker => Executor::Containers(docker),
            Kind::Swarm {
                nodes_enforce_no_new_privileges,
            } => Executor::Swarm(Swarm::new(
                docker,
                settings.stop_grace,
                usize::try_from(settings.log_cap).unwrap_or(usize::MAX),
                nodes_enforce_no_new_privileges,
            )),
        }
    }

    /// The daemon (or Swarm manager) it talks to.
    pub fn docker(&self) -> &DockerClient {
        match self {
            Executor::Containers(docker) => docker,
            Executor::Swarm(swarm) => swarm.docker(),
        }
    }

    pub async fn negotiate(&self) -> Result<(), DockerError> {
        self.docker().negotiate().await
    }

    pub async fn ping(&self) -> Result<(), DockerError> {
        self.docker().ping().await
    }

    pub fn api_version(&self) -> String {
        self.docker().api_version()
    }

    /// On the manager: Swarm nodes pull what they lack themselves.
    pub async fn ensure_image(&self, image: &str, pull: PullPolicy) -> Result<(), DockerError> {
        self.docker().ensure_image(image, pull).await
    }

    pub async fn create(&self, spec: &ContainerSpec<'_>) -> Result<String, DockerError> {
        match self {
            Executor::Containers(docker) => docker.create(spec).await,
            Executor::Swarm(swarm) => swarm.create(spec).await,
        }
    }

    /// A service starts when it is created: this waits until it runs.
    pub async fn start(&self, id: &str) -> Result<(), DockerError> {
        match self {
            Executor::Containers(docker) => docker.start(id).await,
            Executor::Swarm(swarm) => swarm.start(id).await,
        }
    }

    pub async fn wait(&self, id: &str) -> Result<Exit, DockerError> {
        match self {
            Executor::Containers(docker) => docker.wait(id).await,
            Executor::Swarm(swarm) => swarm.wait(id).await,
        }
    }

    pub async fn inspect_state(&self, id: &str) -> Result<ContainerState, DockerError> {
        match self {
            Executor::Containers(docker) => docker.inspect_state(id).await,
            Executor::Swarm(swarm) => swarm.inspect_state(id).await,
        }
    }

    pub async fn inspect_exit(&self, id: &str) -> Result<Option<Exit>, DockerError> {
        match self {
            Executor::Containers(docker) => docker.inspect_exit(id).await,
            Executor::Swarm(swarm) => swarm.inspect_exit(id).await,
        }
    }

    /// SIGTERM, `grace`, SIGKILL (a service's grace is set when it is
    /// created).
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        match self {
            Executor::Containers(docker) => docker.stop(id, grace).await,
            Executor::Swarm(swarm) => swarm.stop(id).await,
        }
    }

    pub async fn logs_masked(
        &self,
        id: &str,
        cap: usize,
        mask: &Masker,
    ) -> Result<CapturedLogs, DockerError> {
        match self {
            Executor::Containers(docker) => docker.logs_masked(id, cap, mask).await,
            Executor::Swarm(swarm) => swarm.logs_masked(id, cap, mask).await,
        }
    }

    pub async fn remove(&self, id: &str) -> Result<(), DockerError> {
        match self {
            Executor::Containers(docker) => docker.remove(id).await,
            Executor::Swarm(swarm) => swarm.remove(id).await,
        }
    }

    /// After reconciling: what a crash left of `instance`'s runs besides
    /// their containers or services (a Swarm run's network), except for
    /// the runs in `keep` (other schedulers' unfinished runs).
    pub async fn sweep(&self, instance: &str, keep: &[i64]) -> Result<(), DockerError> {
        match self {
            Executor::Containers(_) => Ok(()),
            Executor::Swarm(swarm) => swarm.sweep_networks(instance, keep).await,
        }
    }

    pub async fn list_ours(&self, instance: &str) -> Result<Vec<OurContainer>, DockerError> {
        match self {
            Executor::Containers(docker) => docker.list_ours(instance).await,
            Executor::Swarm(swarm) => swarm.list_ours(instance).await,
        }
    }
}
