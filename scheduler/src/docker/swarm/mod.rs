//! `executor = "swarm"`: each run is a Docker Swarm service in
//! replicated-job mode (one task, never restarted), created through the
//! manager the scheduler talks to, under the hardening of `spec.rs`.
//!
//! - A job without a network gets an internal overlay network of its own
//!   (Swarm services have no `none`): no egress, and no other job on it.
//!   It is removed with the service.
//! - Cancel and timeout remove the service: Swarm stops the task with
//!   SIGTERM and, after `stop_grace`, SIGKILL. The logs are read first,
//!   since they go with the service.
//! - Services carry the same labels as containers, so a restarted
//!   scheduler finds its runs (`list_ours`) and reconciles them.
//!
//! No job runs unless the manager is a Swarm manager and no-new-privileges
//! holds: per service from API 1.44, before that only when the policy says
//! the nodes' daemons enforce it.

mod spec;
mod tasks;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bollard::models::{NetworkCreateRequest, Task};
use bollard::query_parameters::{
    InspectContainerOptions, InspectNetworkOptions, InspectServiceOptions, ListNetworksOptions,
    ListServicesOptions, ListTasksOptions,
};
use gatehouse_policy::scheduler::Network;

use super::error::{server_message, status_code};
use super::logs::{all_output, capture, masked_tail};
use super::spec::validate;
use super::{
    job_and_run, ours_filter, CapturedLogs, ContainerSpec, ContainerState, DockerClient,
    DockerError, Exit, OurContainer, LABEL_JOB, LABEL_RUN, LABEL_SCHEDULER,
};
pub use spec::{service_name, service_spec};

/// How often a running service's task is looked at.
const POLL: Duration = Duration::from_millis(250);
/// How long `start` waits for Swarm to run the task.
const START_WAIT: Duration = Duration::from_secs(10);
/// Kept beyond the cap when logs are read before a stop, so that masking
/// (after the read) never sees half a secret at the cut.
const MASK_MARGIN: usize = 64 * 1024;
/// How long a run's network may take to lose its last endpoint after the
/// service is gone.
const NETWORK_REMOVAL: Duration = Duration::from_secs(30);
/// The first Docker API that takes no-new-privileges per service.
const NO_NEW_PRIVILEGES_API: (u32, u32) = (1, 44);

/// The Swarm executor: the daemon client plus what a run needs that a
/// container does not.
pub struct Swarm {
    docker: DockerClient,
    stop_grace: Duration,
    log_cap: usize,
    nodes_enforce_no_new_privileges: bool,
    /// Logs read just before a stop removed the service, by service id.
    stopped_logs: Mutex<HashMap<String, Vec<u8>>>,
    /// Each run's own network, by service id, removed after the service.
    networks: Mutex<HashMap<String, String>>,
}

impl Swarm {
    pub fn new(
        docker: DockerClient,
        stop_grace: Duration,
        log_cap: usize,
        nodes_enforce_no_new_privileges: bool,
    ) -> Swarm {
        Swarm {
            docker,
            stop_grace,
            log_cap,
            nodes_enforce_no_new_privileges,
            stopped_logs: Mutex::default(),
            networks: Mutex::default(),
        }
    }

    pub fn docker(&self) -> &DockerClient {
        &self.docker
    }

    /// Creates the run's service (and its network), which Swarm starts at
    /// once.
    pub async fn create(&self, spec: &ContainerSpec<'_>) -> Result<String, DockerError> {
        validate(spec)?;
        self.check_ready().await?;
        let (network, ours) = match &spec.settings.network {
            Network::None => (self.create_network(spec).await?, true),
            Network::Named(name) => (name.clone(), false),
        };
        let created = self
            .docker
            .client()?
            .create_service(service_spec(spec, &network, self.stop_grace), None)
            .await
            .map_err(|err| match status_code(&err) {
                Some(409) => DockerError::NameInUse {
                    name: service_name(spec),
                },
                Some(400) => DockerError::InvalidSpec(server_message(&err)),
                _ => DockerError::from_bollard(err),
            });
        let id = match created.map(|c| c.id) {
            Ok(Some(id)) => id,
            Ok(None) => {
                return Err(DockerError::Protocol(
                    "a service created without an id".into(),
                ))
            }
            Err(e) => {
                if ours {
                    self.remove_network_later(network);
                }
                return Err(e);
            }
        };
        if ours {
            lock(&self.networks).insert(id.clone(), network);
        }
        Ok(id)
    }

    /// Refuses to run anything where the hardening would not hold.
    async fn check_ready(&self) -> Result<(), DockerError> {
        let info = self
            .docker
            .client()?
            .info()
            .await
            .map_err(DockerError::from_bollard)?;
        let manager = info
            .swarm
            .and_then(|s| s.control_available)
            .unwrap_or(false);
        if !manager {
            return Err(DockerError::InvalidSpec(
                "executor = \"swarm\" needs a Swarm manager: this daemon is not one (docker swarm init)"
                    .into(),
            ));
        }
        let api = api_version(&self.docker.api_version());
        if api < Some(NO_NEW_PRIVILEGES_API) && !self.nodes_enforce_no_new_privileges {
            return Err(DockerError::InvalidSpec(format!(
                "Docker API {} cannot set no-new-privileges on a service (1.44 can): run every \
                 node's dockerd with --no-new-privileges and set \
                 swarm_nodes_enforce_no_new_privileges = true in [scheduler]",
                self.docker.api_version()
            )));
        }
        Ok(())
    }

    /// The run's own internal overlay network: no egress, no other job.
    async fn create_network(&self, spec: &ContainerSpec<'_>) -> Result<String, DockerError> {
        let name = service_name(spec);
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("overlay".to_owned()),
            internal: Some(true),
            attachable: Some(false),
            labels: Some(HashMap::from([
                (LABEL_JOB.to_owned(), spec.job.clone()),
                (LABEL_RUN.to_owned(), spec.run.to_string()),
                (LABEL_SCHEDULER.to_owned(), spec.instance.clone()),
            ])),
            ..Default::default()
        };
        match self.docker.client()?.create_network(request).await {
            Ok(_) => Ok(name),
            // Left by an attempt that crashed: it is this run's.
            Err(err) if status_code(&err) == Some(409) => Ok(name),
            Err(err) => Err(DockerError::from_bollard(err)),
        }
    }

    /// The run's task as a container state; `NotFound` once the service
    /// is gone.
    pub async fn inspect_state(&self, id: &str) -> Result<ContainerState, DockerError> {
        let tasks = self.tasks(id).await?;
        let state = tasks::run_state(&tasks)
            .map_err(|e| DockerError::Protocol(format!("service {id}: {e}")))?;
        match state {
            ContainerState::Ended {
                exit,
                started_at,
                finished_at,
            } => Ok(ContainerState::Ended {
                exit: Exit {
                    oom_killed: self.oom_killed(&tasks).await,
                    ..exit
                },
                started_at,
                finished_at,
            }),
            other => Ok(other),
        }
    }

    async fn tasks(&self, id: &str) -> Result<Vec<Task>, DockerError> {
        let client = self.docker.client()?;
        // Listing tasks of a missing service is an empty list, not 404.
        client
            .inspect_service(id, None::<InspectServiceOptions>)
            .await
            .map_err(|err| DockerError::for_container(err, id))?;
        client
            .list_tasks(Some(ListTasksOptions {
                filters: Some(HashMap::from([("service".to_owned(), vec![id.to_owned()])])),
            }))
            .await
            .map_err(DockerError::from_bollard)
    }

    /// Whether the task's container was OOM-killed, when its node is this
    /// daemon (other nodes' containers cannot be inspected from here).
    async fn oom_killed(&self, tasks: &[Task]) -> bool {
        let Some(container) = tasks::container_id(tasks) else {
            return false;
        };
        let Ok(client) = self.docker.client() else {
            return false;
        };
        client
            .inspect_container(&container, None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|c| c.state?.oom_killed)
            .unwrap_or(false)
    }

    /// A service starts when it is created; this waits (a bounded time)
    /// until Swarm has its task running or ended, so that the run is
    /// recorded running when it is. A task still pending after
    /// [`START_WAIT`] (no node can take it yet) is left to supervision,
    /// where the run's timeout and cancel apply.
    pub async fn start(&self, id: &str) -> Result<(), DockerError> {
        let deadline = tokio::time::Instant::now() + START_WAIT;
        loop {
            let tasks = self.tasks(id).await?;
            let started = tasks.iter().any(|t| {
                t.status
                    .as_ref()
                    .and_then(|s| s.state)
                    .is_some_and(|state| !tasks::is_pending(state))
            });
            if started || tokio::time::Instant::now() >= deadline {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for the task to end, as `DockerClient::wait` does for a
    /// container.
    pub async fn wait(&self, id: &str) -> Result<Exit, DockerError> {
        loop {
            match self.inspect_state(id).await? {
                ContainerState::Ended { exit, .. } => return Ok(exit),
                ContainerState::Running { .. } => tokio::time::sleep(POLL).await,
                ContainerState::Removing => {
                    return Err(DockerError::NotFound { id: id.to_owned() })
                }
                state @ ContainerState::NeverStarted { .. } => {
                    return Err(DockerError::NotEnded {
                        id: id.to_owned(),
                        state: format!("{state:?}"),
                    })
                }
            }
        }
    }

    /// How the task ended; `None` while it has not, or once the service is
    /// gone (a stop removes it).
    pub async fn inspect_exit(&self, id: &str) -> Result<Option<Exit>, DockerError> {
        match self.inspect_state(id).await {
            Ok(state) => Ok(state.exit()),
            Err(DockerError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Cancel or timeout: the logs are read, then the service is removed
    /// (Swarm sends SIGTERM, then SIGKILL after `stop_grace`).
    pub async fn stop(&self, id: &str) -> Result<(), DockerError> {
        if let Ok(raw) = self
            .read_logs(
                id,
                self.log_cap + MASK_MARGIN,
                &crate::mask::Masker::default(),
            )
            .await
        {
            lock(&self.stopped_logs).insert(id.to_owned(), raw.bytes);
        }
        self.remember_network(id).await;
        self.delete_service(id).await
    }

    /// The last `cap` bytes of the task's output, masked.
    pub async fn logs_masked(
        &self,
        id: &str,
        cap: usize,
        mask: &crate::mask::Masker,
    ) -> Result<CapturedLogs, DockerError> {
        let kept = lock(&self.stopped_logs).remove(id);
        if let Some(raw) = kept {
            return Ok(masked_tail(&raw, cap, mask));
        }
        self.read_logs(id, cap, mask).await
    }

    async fn read_logs(
        &self,
        id: &str,
        cap: usize,
        mask: &crate::mask::Masker,
    ) -> Result<CapturedLogs, DockerError> {
        let stream = self.docker.client()?.service_logs(id, Some(all_output()));
        capture(stream, id, cap, mask).await
    }

    /// Removes the service and, once its task has let go, its network.
    pub async fn remove(&self, id: &str) -> Result<(), DockerError> {
        lock(&self.stopped_logs).remove(id);
        self.remember_network(id).await;
        let result = self.delete_service(id).await;
        let network = lock(&self.networks).remove(id);
        if let Some(network) = network {
            self.remove_network_later(network);
        }
        result
    }

    /// For a service this process did not create (adopted after a
    /// restart): its own network, named like it and carrying our labels,
    /// noted for removal with it.
    async fn remember_network(&self, id: &str) {
        if lock(&self.networks).contains_key(id) {
            return;
        }
        let Ok(client) = self.docker.client() else {
            return;
        };
        let Some(name) = client
            .inspect_service(id, None::<InspectServiceOptions>)
            .await
            .ok()
            .and_then(|s| s.spec?.name)
        else {
            return;
        };
        if self.is_our_network(&name).await {
            lock(&self.networks).insert(id.to_owned(), name);
        }
    }

    async fn is_our_network(&self, name: &str) -> bool {
        let Ok(client) = self.docker.client() else {
            return false;
        };
        client
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
            .ok()
            .and_then(|n| n.labels)
            .is_some_and(|labels| labels.contains_key(LABEL_SCHEDULER))
    }

    /// After a restart: the networks of `instance`'s runs whose service is
    /// gone (removed just before a crash) are removed, except those of the
    /// runs in `keep`: another scheduler sharing the database may have just
    /// made one for a service it is about to create.
    pub async fn sweep_networks(&self, instance: &str, keep: &[i64]) -> Result<(), DockerError> {
        let client = self.docker.client()?;
        let networks = client
            .list_networks(Some(ListNetworksOptions {
                filters: Some(HashMap::from([(
                    "label".to_owned(),
                    vec![format!("{LABEL_SCHEDULER}={instance}")],
                )])),
            }))
            .await
            .map_err(DockerError::from_bollard)?;
        let kept = |labels: &Option<HashMap<String, String>>| {
            labels
                .as_ref()
                .and_then(super::job_and_run)
                .is_some_and(|(_, run)| keep.contains(&run))
        };
        let swept = networks.into_iter().filter(|n| !kept(&n.labels));
        for name in swept.filter_map(|n| n.name) {
            let service = client
                .inspect_service(&name, None::<InspectServiceOptions>)
                .await;
            if service.is_err_and(|err| status_code(&err) == Some(404)) {
                self.remove_network_later(name);
            }
        }
        Ok(())
    }

    async fn delete_service(&self, id: &str) -> Result<(), DockerError> {
        match self.docker.client()?.delete_service(id).await {
            Ok(()) => Ok(()),
            Err(err) if status_code(&err) == Some(404) => Ok(()),
            Err(err) => Err(DockerError::from_bollard(err)),
        }
    }

    /// A network cannot go while the task's endpoint is still on it, which
    /// lasts until the task has stopped: retried in the background.
    fn remove_network_later(&self, network: String) {
        let docker = self.docker.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + NETWORK_REMOVAL;
            loop {
                let removed = match docker.client() {
                    Ok(client) => match client.remove_network(&network).await {
                        Ok(()) => true,
                        Err(err) => status_code(&err) == Some(404),
                    },
                    Err(_) => false,
                };
                if removed {
                    return;
                }
                if tokio::time::Instant::now() >= deadline {
                    tracing::warn!(%network, "a run's network could not be removed");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    /// Every service carrying our labels and `instance`.
    pub async fn list_ours(&self, instance: &str) -> Result<Vec<OurContainer>, DockerError> {
        let options = ListServicesOptions {
            filters: Some(ours_filter(instance)),
            ..Default::default()
        };
        let services = self
            .docker
            .client()?
            .list_services(Some(options))
            .await
            .map_err(DockerError::from_bollard)?;
        let mut ours = Vec::with_capacity(services.len());
        for service in services {
            let labels = service
                .spec
                .as_ref()
                .and_then(|s| s.labels.clone())
                .unwrap_or_default();
            let (Some(id), Some((job, run))) = (service.id, job_and_run(&labels)) else {
                continue;
            };
            let running = matches!(
                self.inspect_state(&id).await,
                Ok(ContainerState::Running { .. })
            );
            ours.push(OurContainer {
                id,
                job,
                run,
                running,
            });
        }
        Ok(ours)
    }
}

/// "1.41" → (1, 41).
fn api_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_compare_as_numbers() {
        assert_eq!(api_version("1.41"), Some((1, 41)));
        assert!(api_version("1.41") < Some(NO_NEW_PRIVILEGES_API));
        assert!(api_version("1.44") >= Some(NO_NEW_PRIVILEGES_API));
        assert!(api_version("1.100") > Some(NO_NEW_PRIVILEGES_API));
        // Unknown (before negotiation) counts as too old.
        assert!(api_version("") < Some(NO_NEW_PRIVILEGES_API));
    }
}
