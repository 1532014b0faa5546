//! One run as a Swarm service: a replicated job (one task, never
//! restarted) whose container gets the hardening a local container gets,
//! as far as the service API can say it. `service_spec` is pure, so the
//! exact request is unit-tested.
//!
//! What a service cannot ask for on Docker before API 1.44 (20.10 speaks
//! 1.41), and what stands in for it:
//! - no-new-privileges: the nodes' daemons must enforce it
//!   (`--no-new-privileges`); the policy says they do, else no job runs
//!   (`SwarmSettings::no_new_privileges`);
//! - `noexec,nosuid,nodev` on the `/tmp` tmpfs (API 1.46), and its owner:
//!   it is mode 1777 instead;
//! - swap: `SwapBytes = 0` is sent, and ignored before API 1.47, where
//!   Swarm allows swap up to the memory limit again.

use std::collections::HashMap;

use bollard::models::{
    Limit, Mount, MountTmpfsOptions, MountType, NetworkAttachmentConfig, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicatedJob, TaskSpec, TaskSpecContainerSpec,
    TaskSpecContainerSpecPrivileges, TaskSpecLogDriver, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};

use super::super::spec::{bind_mounts, log_max_size, ulimits, Limits, LOG_MAX_FILES, TMP_PATH};
use super::super::{ContainerSpec, LABEL_JOB, LABEL_RUN, LABEL_SCHEDULER};

/// `/dev/shm`, mounted as a tmpfs of the job's size (a service has no
/// `ShmSize`).
const SHM_PATH: &str = "/dev/shm";

/// A run's service (and network) name: `gh-<instance>-<run>`. Swarm
/// takes only letters, digits and inner dashes, at most 63 of them; the
/// job's name is in the labels.
pub fn service_name(spec: &ContainerSpec) -> String {
    let instance: String = spec
        .instance
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect();
    format!("gh-{instance}-{}", spec.run)
}

/// The service for one run, attached to `network` (the run's own internal
/// overlay network, or the one the job names). `stop_grace` is between
/// SIGTERM and SIGKILL when the service is removed.
pub fn service_spec(
    spec: &ContainerSpec,
    network: &str,
    stop_grace: std::time::Duration,
) -> ServiceSpec {
    let labels = labels(spec);
    ServiceSpec {
        name: Some(service_name(spec)),
        labels: Some(labels.clone()),
        mode: Some(ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob {
                max_concurrent: Some(1),
                total_completions: Some(1),
            }),
            ..Default::default()
        }),
        task_template: Some(TaskSpec {
            container_spec: Some(container_spec(spec, labels, stop_grace)),
            resources: Some(resources(spec)),
            // A failed run is retried by the scheduler (with its record),
            // never by Swarm behind its back.
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                max_attempts: Some(0),
                ..Default::default()
            }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(network.to_owned()),
                ..Default::default()
            }]),
            log_driver: Some(TaskSpecLogDriver {
                name: Some("json-file".to_owned()),
                options: Some(HashMap::from([
                    (
                        "max-size".to_owned(),
                        log_max_size(spec.log_cap_bytes).to_string(),
                    ),
                    ("max-file".to_owned(), LOG_MAX_FILES.to_owned()),
                    ("compress".to_owned(), "false".to_owned()),
                ])),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn labels(spec: &ContainerSpec) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_JOB.to_owned(), spec.job.clone()),
        (LABEL_RUN.to_owned(), spec.run.to_string()),
        (LABEL_SCHEDULER.to_owned(), spec.instance.clone()),
    ])
}

fn container_spec(
    spec: &ContainerSpec,
    labels: HashMap<String, String>,
    stop_grace: std::time::Duration,
) -> TaskSpecContainerSpec {
    let settings = &spec.settings;
    let limits = Limits::of(settings);
    // As for a container: the argv runs as given, never through the
    // image's entrypoint (`Command` replaces the entrypoint).
    let (command, args) = match spec.command.split_first() {
        Some((program, args)) => (Some(vec![program.clone()]), Some(args.to_vec())),
        None => (None, None),
    };
    let mut mounts = bind_mounts(&spec.mounts);
    mounts.push(tmpfs(TMP_PATH, limits.tmpfs_bytes as i64));
    mounts.push(tmpfs(SHM_PATH, limits.shm_bytes));
    TaskSpecContainerSpec {
        image: Some(spec.image.clone()),
        labels: Some(labels),
        command,
        args,
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        user: Some(settings.user.to_string()),
        privileges: Some(TaskSpecContainerSpecPrivileges {
            // Honoured from API 1.44; before, the daemons' own flag is
            // what holds (see the module's note).
            no_new_privileges: Some(true),
            ..Default::default()
        }),
        tty: Some(false),
        open_stdin: Some(false),
        read_only: Some(settings.read_only_rootfs),
        mounts: Some(mounts),
        stop_grace_period: Some(i64::try_from(stop_grace.as_nanos()).unwrap_or(i64::MAX)),
        init: Some(true),
        capability_drop: Some(vec!["ALL".to_owned()]),
        capability_add: Some(settings.cap_add.clone()),
        ulimits: Some(ulimits(&limits)),
        ..Default::default()
    }
}

fn resources(spec: &ContainerSpec) -> TaskSpecResources {
    let limits = Limits::of(&spec.settings);
    TaskSpecResources {
        limits: Some(Limit {
            nano_cpus: Some(limits.nano_cpus),
            memory_bytes: Some(limits.memory_bytes),
            pids: Some(limits.pids),
        }),
        swap_bytes: Some(0),
        ..Default::default()
    }
}

/// A size-limited tmpfs, mode 1777 (a service's tmpfs cannot be given an
/// owner, and the job runs as a non-root user).
fn tmpfs(target: &str, size_bytes: i64) -> Mount {
    Mount {
        typ: Some(MountType::TMPFS),
        target: Some(target.to_owned()),
        tmpfs_options: Some(MountTmpfsOptions {
            size_bytes: Some(size_bytes),
            mode: Some(0o1777),
            // Honoured from API 1.46.
            options: Some(vec![
                vec!["noexec".to_owned()],
                vec!["nosuid".to_owned()],
                vec!["nodev".to_owned()],
            ]),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use gatehouse_policy::scheduler::{ContainerSettings, Network, User};

    use super::*;
    use crate::docker::BindMount;

    fn settings() -> ContainerSettings {
        ContainerSettings {
            user: User {
                uid: 65534,
                gid: 65534,
            },
            read_only_rootfs: true,
            cap_add: vec!["NET_BIND_SERVICE".to_owned()],
            network: Network::None,
            memory: 64 * 1024 * 1024,
            cpus: 0.5,
            pids: 50,
            tmp_size: 16 * 1024 * 1024,
            shm_size: 8 * 1024 * 1024,
            nofile: 1024,
            nproc: 64,
            mounts: Vec::new(),
        }
    }

    fn spec(settings: &ContainerSettings) -> ContainerSpec<'_> {
        ContainerSpec {
            name: "gatehouse-abc-backup-7".to_owned(),
            image: "busybox:latest".to_owned(),
            command: vec!["sh".to_owned(), "-c".to_owned(), "echo hi".to_owned()],
            env: vec![("A".to_owned(), "1".to_owned())],
            settings: Cow::Borrowed(settings),
            mounts: vec![BindMount {
                source: "/srv/data".into(),
                target: "/data".to_owned(),
                read_only: true,
            }],
            job: "backup".to_owned(),
            run: 7,
            instance: "abc".to_owned(),
            log_cap_bytes: 1024 * 1024,
        }
    }

    #[test]
    fn one_task_never_restarted_on_the_runs_network() {
        let settings = settings();
        let service = service_spec(&spec(&settings), "gh-abc-7", Duration::from_secs(10));
        assert_eq!(service.name.as_deref(), Some("gh-abc-7"));
        let job = service.mode.unwrap().replicated_job.unwrap();
        assert_eq!(
            (job.max_concurrent, job.total_completions),
            (Some(1), Some(1))
        );
        let task = service.task_template.unwrap();
        assert_eq!(
            task.restart_policy.unwrap().condition,
            Some(TaskSpecRestartPolicyConditionEnum::NONE)
        );
        assert_eq!(
            task.networks.unwrap()[0].target.as_deref(),
            Some("gh-abc-7")
        );
        assert_eq!(task.log_driver.unwrap().name.as_deref(), Some("json-file"));
        let labels = service.labels.unwrap();
        assert_eq!(labels[LABEL_JOB], "backup");
        assert_eq!(labels[LABEL_RUN], "7");
        assert_eq!(labels[LABEL_SCHEDULER], "abc");
    }

    #[test]
    fn the_container_gets_the_hardening() {
        let settings = settings();
        let service = service_spec(&spec(&settings), "net", Duration::from_secs(10));
        let task = service.task_template.unwrap();
        let c = task.container_spec.unwrap();
        assert_eq!(c.user.as_deref(), Some("65534:65534"));
        assert_eq!(c.read_only, Some(true));
        assert_eq!(c.capability_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(c.capability_add, Some(vec!["NET_BIND_SERVICE".to_owned()]));
        assert_eq!(c.privileges.unwrap().no_new_privileges, Some(true));
        assert_eq!(c.init, Some(true));
        assert_eq!(c.command, Some(vec!["sh".to_owned()]));
        assert_eq!(c.args, Some(vec!["-c".to_owned(), "echo hi".to_owned()]));
        assert_eq!(c.stop_grace_period, Some(10_000_000_000));
        let mounts = c.mounts.unwrap();
        let tmp = mounts
            .iter()
            .find(|m| m.target.as_deref() == Some("/tmp"))
            .unwrap();
        assert_eq!(tmp.typ, Some(MountType::TMPFS));
        assert_eq!(
            tmp.tmpfs_options.as_ref().unwrap().size_bytes,
            Some(16 * 1024 * 1024)
        );
        let shm = mounts
            .iter()
            .find(|m| m.target.as_deref() == Some("/dev/shm"))
            .unwrap();
        assert_eq!(
            shm.tmpfs_options.as_ref().unwrap().size_bytes,
            Some(8 * 1024 * 1024)
        );
        let data = mounts
            .iter()
            .find(|m| m.target.as_deref() == Some("/data"))
            .unwrap();
        assert_eq!(
            (data.typ, data.read_only),
            (Some(MountType::BIND), Some(true))
        );
        let limits = task.resources.unwrap();
        assert_eq!(limits.swap_bytes, Some(0));
        let limits = limits.limits.unwrap();
        assert_eq!(limits.memory_bytes, Some(64 * 1024 * 1024));
        assert_eq!(limits.nano_cpus, Some(500_000_000));
        assert_eq!(limits.pids, Some(50));
    }
}
