use std::borrow::Cow;

use super::logs::TailBuffer;
use super::spec::{log_max_size, validate, LOG_MIN_FILE_BYTES};
use super::*;
use bollard::errors::Error as BollardError;
use bollard::models::{MountType, RestartPolicyNameEnum};
use gatehouse_policy::scheduler::{ContainerSettings, User};

const MIB: u64 = 1024 * 1024;

/// The policy's hardened settings, with a 16 MiB /tmp and room for 4096
/// processes under the job's uid.
fn settings() -> ContainerSettings {
    ContainerSettings {
        tmp_size: 16 * MIB,
        cap_add: vec!["NET_BIND_SERVICE".into()],
        ..ContainerSettings::hardened(4096)
    }
}

fn spec() -> ContainerSpec<'static> {
    ContainerSpec {
        name: "gatehouse-job-7".into(),
        image: "img:1".into(),
        command: vec!["/bin/echo".into(), "a b".into(), "$HOME".into()],
        env: vec![("A".into(), "1=2".into())],
        job: "job".into(),
        run: 7,
        log_cap_bytes: 100_000,
        mounts: vec![BindMount {
            source: "/srv/in".into(),
            target: "/in".into(),
            read_only: true,
        }],
        settings: Cow::Owned(settings()),
        instance: String::new(),
    }
}

/// `spec()` with other container settings.
fn with_settings(settings: ContainerSettings) -> ContainerSpec<'static> {
    ContainerSpec {
        settings: Cow::Owned(settings),
        ..spec()
    }
}

#[test]
fn host_config_is_hardened() {
    let hc = host_config(&spec());
    assert_eq!(hc.privileged, Some(false));
    assert_eq!(hc.shm_size, Some(16 * 1024 * 1024));
    let ulimits: Vec<_> = hc
        .ulimits
        .iter()
        .flatten()
        .map(|u| (u.name.as_deref().unwrap_or_default(), u.soft, u.hard))
        .collect();
    assert_eq!(
        ulimits,
        [
            ("nofile", Some(1024), Some(1024)),
            ("nproc", Some(4096), Some(4096))
        ]
    );
    assert_eq!(hc.cap_drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(hc.cap_add, Some(vec!["NET_BIND_SERVICE".to_owned()]));
    assert_eq!(
        hc.security_opt,
        Some(vec!["no-new-privileges:true".to_owned()])
    );
    assert_eq!(hc.readonly_rootfs, Some(true));
    assert_eq!(hc.network_mode.as_deref(), Some("none"));
    assert_eq!(hc.memory, Some(256 * 1024 * 1024));
    assert_eq!(hc.memory_swap, hc.memory);
    assert_eq!(hc.nano_cpus, Some(1_000_000_000));
    assert_eq!(hc.pids_limit, Some(128));
    assert_eq!(hc.auto_remove, Some(false));
    assert_eq!(hc.init, Some(true));
    assert_eq!(
        hc.restart_policy.and_then(|r| r.name),
        Some(RestartPolicyNameEnum::NO)
    );
    let tmpfs = hc.tmpfs.expect("tmpfs");
    assert_eq!(
        tmpfs.get("/tmp").map(String::as_str),
        Some("rw,noexec,nosuid,nodev,size=16777216,uid=65534,gid=65534")
    );
}

#[test]
fn binds_use_the_mount_api_with_read_only_flag() {
    let mounts = host_config(&spec()).mounts.expect("mounts");
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].typ, Some(MountType::BIND));
    assert_eq!(mounts[0].source.as_deref(), Some("/srv/in"));
    assert_eq!(mounts[0].target.as_deref(), Some("/in"));
    assert_eq!(mounts[0].read_only, Some(true));
}

#[test]
fn log_driver_is_capped_json_file() {
    let log = host_config(&spec()).log_config.expect("log config");
    assert_eq!(log.typ.as_deref(), Some("json-file"));
    let config = log.config.expect("log options");
    assert_eq!(config.get("max-size").map(String::as_str), Some("200000"));
    assert_eq!(config.get("max-file").map(String::as_str), Some("2"));
    // Tiny caps get a floor for the driver's JSON overhead.
    assert_eq!(log_max_size(10), LOG_MIN_FILE_BYTES);
    assert_eq!(log_max_size(usize::MAX), usize::MAX);
}

#[test]
fn tmpfs_is_owned_by_the_jobs_user() {
    let other = with_settings(ContainerSettings {
        user: User { uid: 1000, gid: 50 },
        ..settings()
    });
    let tmpfs = host_config(&other).tmpfs.expect("tmpfs");
    assert!(tmpfs["/tmp"].ends_with(",uid=1000,gid=50"), "{tmpfs:?}");
    let config = container_config(&other);
    assert_eq!(config.user.as_deref(), Some("1000:50"));
}

#[test]
fn container_config_runs_argv_without_shell_and_labels() {
    let c = container_config(&spec());
    assert_eq!(c.image.as_deref(), Some("img:1"));
    assert_eq!(c.entrypoint, Some(vec!["/bin/echo".to_owned()]));
    assert_eq!(c.cmd, Some(vec!["a b".to_owned(), "$HOME".to_owned()]));
    assert_eq!(c.env, Some(vec!["A=1=2".to_owned()]));
    assert_eq!(c.user.as_deref(), Some("65534:65534"));
    assert_eq!(c.tty, Some(false));
    let labels = c.labels.expect("labels");
    assert_eq!(labels.get(LABEL_JOB).map(String::as_str), Some("job"));
    assert_eq!(labels.get(LABEL_RUN).map(String::as_str), Some("7"));
}

#[test]
fn empty_command_keeps_image_default() {
    let c = container_config(&ContainerSpec {
        command: vec![],
        ..spec()
    });
    assert_eq!(c.entrypoint, None);
    assert_eq!(c.cmd, None);
}

#[test]
fn serialized_request_uses_engine_field_names() {
    let json = serde_json::to_value(container_config(&spec())).expect("serializes");
    let hc = &json["HostConfig"];
    assert_eq!(hc["CapDrop"], serde_json::json!(["ALL"]));
    assert_eq!(
        hc["SecurityOpt"],
        serde_json::json!(["no-new-privileges:true"])
    );
    assert_eq!(hc["ReadonlyRootfs"], serde_json::json!(true));
    assert_eq!(hc["MemorySwap"], serde_json::json!(268435456));
    assert_eq!(hc["LogConfig"]["Type"], serde_json::json!("json-file"));
    assert_eq!(json["Labels"]["gatehouse.run"], serde_json::json!("7"));
}

#[test]
fn validation_rejects_weakening_specs() {
    let bad = [
        with_settings(ContainerSettings {
            memory: 0,
            ..settings()
        }),
        with_settings(ContainerSettings {
            pids: -1,
            ..settings()
        }),
        with_settings(ContainerSettings {
            cap_add: vec!["all".into()],
            ..settings()
        }),
        // Too big for the Engine API's signed sizes.
        with_settings(ContainerSettings {
            memory: u64::MAX,
            ..settings()
        }),
        ContainerSpec {
            env: vec![("A=B".into(), "c".into())],
            ..spec()
        },
        ContainerSpec {
            mounts: vec![BindMount {
                source: "rel".into(),
                target: "/x".into(),
                read_only: true,
            }],
            ..spec()
        },
    ];
    for spec in bad {
        assert!(
            matches!(validate(&spec), Err(DockerError::InvalidSpec(_))),
            "{spec:?}"
        );
    }
    assert!(validate(&spec()).is_ok());
}

#[test]
fn tail_buffer_keeps_last_bytes() {
    let mut t = TailBuffer::new(5);
    t.push(b"abc");
    t.push(b"de");
    let logs = t.finish();
    assert_eq!(logs.bytes, b"abcde");
    assert!(!logs.truncated);

    let mut t = TailBuffer::new(5);
    t.push(b"abc");
    t.push(b"defg");
    t.push(b"");
    let logs = t.finish();
    assert_eq!(logs.bytes, b"cdefg");
    assert!(logs.truncated);

    let mut t = TailBuffer::new(3);
    t.push(b"0123456789");
    let logs = t.finish();
    assert_eq!(logs.bytes, b"789");
    assert!(logs.truncated);

    let mut t = TailBuffer::new(0);
    t.push(b"x");
    assert_eq!(
        t.finish(),
        CapturedLogs {
            bytes: vec![],
            truncated: true
        }
    );
}

#[test]
fn only_transport_failures_are_connection_errors() {
    let unreachable = DockerError::from_bollard(BollardError::SocketNotFoundError("/x".into()));
    assert!(unreachable.is_connection_error());
    let api = DockerError::from_bollard(BollardError::DockerResponseServerError {
        status_code: 500,
        message: "boom".into(),
    });
    assert!(!api.is_connection_error());
    let gone = DockerError::for_container(
        BollardError::DockerResponseServerError {
            status_code: 404,
            message: "No such container: x".into(),
        },
        "x",
    );
    assert!(matches!(gone, DockerError::NotFound { id } if id == "x"));
}

#[test]
fn a_named_network_is_joined_and_none_disables_networking() {
    assert_eq!(container_config(&spec()).network_disabled, Some(true));
    let joined = with_settings(ContainerSettings {
        network: gatehouse_policy::scheduler::Network::Named("jobs-net".into()),
        ..settings()
    });
    let config = container_config(&joined);
    assert_eq!(config.network_disabled, Some(false));
    let mode = config.host_config.and_then(|hc| hc.network_mode);
    assert_eq!(mode.as_deref(), Some("jobs-net"));
}
