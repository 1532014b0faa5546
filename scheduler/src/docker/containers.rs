//! A container's life through the daemon: create, start, wait, inspect,
//! stop, logs, remove, and finding ours after a restart.

use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
    StopContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;

use super::error::{server_message, status_code};
use super::logs::{all_output, capture};
use super::spec::validate;
use super::{
    container_config, job_and_run, ours_filter, CapturedLogs, ContainerSpec, ContainerState,
    DockerClient, DockerError, Exit, OurContainer,
};

/// Added to `docker stop`'s grace period for the HTTP request timeout: the
/// daemon answers only once the container is down.
const STOP_REQUEST_SLACK: Duration = Duration::from_secs(30);

impl DockerClient {
    /// Creates (does not start) the hardened container for `spec`.
    pub async fn create(&self, spec: &ContainerSpec<'_>) -> Result<String, DockerError> {
        validate(spec)?;
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let created = self
            .client()?
            .create_container(Some(options), container_config(spec))
            .await
            .map_err(|err| match status_code(&err) {
                Some(404) => DockerError::ImageMissing {
                    image: spec.image.clone(),
                },
                Some(409) => DockerError::NameInUse {
                    name: spec.name.clone(),
                },
                Some(400) => DockerError::InvalidSpec(server_message(&err)),
                _ => DockerError::from_bollard(err),
            })?;
        for warning in &created.warnings {
            tracing::warn!(container = %created.id, "Docker: {warning}");
        }
        Ok(created.id)
    }

    pub async fn start(&self, id: &str) -> Result<(), DockerError> {
        self.client()?
            .start_container(id, None)
            .await
            .map_err(|err| DockerError::for_container(err, id))
    }

    /// Waits for the container to stop and returns how it ended. The exit
    /// comes from inspect, and only once inspect says the container ran and
    /// ended: a wait on a container that was never started returns at once
    /// with status 0, which is no outcome at all ([`DockerError::NotEnded`]).
    pub async fn wait(&self, id: &str) -> Result<Exit, DockerError> {
        let options = WaitContainerOptions {
            condition: "not-running".to_owned(),
        };
        let mut stream = self.client()?.wait_container(id, Some(options));
        let exit_code = match stream.next().await {
            Some(Ok(response)) => response.status_code,
            // bollard reports a non-zero exit status as an error; for us it
            // is the outcome.
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => code,
            Some(Err(err)) => return Err(DockerError::for_container(err, id)),
            None => {
                return Err(DockerError::Protocol(format!(
                    "wait for container {id} ended without a status"
                )))
            }
        };
        // The wait response has no OOM flag and cannot say whether the
        // container ever ran; the container's state can.
        match self.inspect_state(id).await {
            Ok(ContainerState::Ended { exit, .. }) => Ok(exit),
            Ok(state) => Err(DockerError::NotEnded {
                id: id.to_owned(),
                state: format!("{state:?}"),
            }),
            // Removed by someone else since it ended: the wait's status is
            // the daemon's word for how it ended, without the OOM flag.
            Err(DockerError::NotFound { .. }) => Ok(Exit {
                exit_code,
                oom_killed: false,
            }),
            Err(err) => Err(err),
        }
    }

    /// What Docker says about the container now (see [`ContainerState`]).
    pub async fn inspect_state(&self, id: &str) -> Result<ContainerState, DockerError> {
        let inspect = self
            .client()?
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|err| DockerError::for_container(err, id))?;
        let state = inspect.state.ok_or_else(|| {
            DockerError::Protocol(format!("container {id} was inspected without a state"))
        })?;
        ContainerState::from_inspect(&state)
            .map_err(|e| DockerError::Protocol(format!("container {id}: {e}")))
    }

    /// How the container ended, or `None` while it has not (never started,
    /// running, paused, restarting, being removed).
    pub async fn inspect_exit(&self, id: &str) -> Result<Option<Exit>, DockerError> {
        Ok(self.inspect_state(id).await?.exit())
    }

    /// `docker stop`: SIGTERM, then SIGKILL after `grace`. Stopping a stopped
    /// container is fine.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        // Whole seconds only; round up so the job gets at least `grace`.
        let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let options = StopContainerOptions {
            t: Some(i32::try_from(secs).unwrap_or(i32::MAX)),
            signal: None,
        };
        // The daemon answers only after the container is down, which can
        // exceed the default request timeout for long grace periods.
        let docker = self
            .client()?
            .clone()
            .with_timeout(Duration::from_secs(secs) + STOP_REQUEST_SLACK);
        // 304 (already stopped) counts as success in bollard.
        docker
            .stop_container(id, Some(options))
            .await
            .map_err(|err| DockerError::for_container(err, id))
    }

    /// The last `cap` bytes of stdout and stderr, interleaved as written.
    pub async fn logs(&self, id: &str, cap: usize) -> Result<CapturedLogs, DockerError> {
        self.logs_masked(id, cap, &crate::mask::Masker::default())
            .await
    }

    /// [`DockerClient::logs`], masked as they stream (before the cut, so no
    /// value is half-kept).
    pub async fn logs_masked(
        &self,
        id: &str,
        cap: usize,
        mask: &crate::mask::Masker,
    ) -> Result<CapturedLogs, DockerError> {
        let stream = self.client()?.logs(id, Some(all_output()));
        capture(stream, id, cap, mask).await
    }

    /// Force-removes the container and its anonymous volumes; a missing
    /// container is fine.
    pub async fn remove(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        match self.client()?.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(err) if status_code(&err) == Some(404) => Ok(()),
            // Removal already in progress (e.g. a concurrent remove).
            Err(err)
                if status_code(&err) == Some(409)
                    && server_message(&err).contains("already in progress") =>
            {
                Ok(())
            }
            Err(err) => Err(DockerError::from_bollard(err)),
        }
    }

    /// Every container, running or not, that carries our labels and this
    /// scheduler `instance`.
    pub async fn list_ours(&self, instance: &str) -> Result<Vec<OurContainer>, DockerError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(ours_filter(instance)),
            ..Default::default()
        };
        let summaries = self
            .client()?
            .list_containers(Some(options))
            .await
            .map_err(DockerError::from_bollard)?;
        let mut ours = Vec::with_capacity(summaries.len());
        for summary in summaries {
            let labels = summary.labels.unwrap_or_default();
            let (Some(id), Some((job, run))) = (summary.id, job_and_run(&labels)) else {
                continue;
            };
            let running = matches!(
                summary.state,
                Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
                    | Some(bollard::models::ContainerSummaryStateEnum::RESTARTING)
                    | Some(bollard::models::ContainerSummaryStateEnum::PAUSED)
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
