//! Converting a job's `container` table: the hardened defaults, and each
//! loosening checked against what `[scheduler]` allows.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use crate::convert::context::Converter;
use crate::raw::scheduler::{RawContainer, RawMount};
use crate::scheduler::*;
use toml::Spanned;

/// Below this a container cannot start reliably.
const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// Mount targets that would expose or override the kernel's interfaces.
const FORBIDDEN_MOUNT_TARGETS: [&str; 5] = ["/", "/proc", "/sys", "/dev", "/etc"];

impl Converter<'_> {
    /// The job's container: the hardened defaults, with each loosening the
    /// job asks for checked against `[scheduler]`. Every problem is
    /// reported before `None` is returned.
    pub(crate) fn container(
        &mut self,
        r: &RawContainer,
        s: &SchedulerSettings,
    ) -> Option<ContainerSettings> {
        // Every run may use its pids limit at once without one run's fork
        // failing for another's processes under the same uid.
        let nproc = (s.max_pids as u64).saturating_mul(s.max_concurrent_runs as u64);
        let defaults = ContainerSettings::hardened(nproc);
        let user = self.container_user(r, defaults.user);
        let cap_add = self.cap_add(r, s);
        let network = self.container_network(r, s, defaults.network);
        let memory = self.container_memory(r, s, defaults.memory);
        let cpus = self.container_cpus(r, s, defaults.cpus);
        let pids = self.container_pids(r, s, defaults.pids);
        let tmp_size = self.size(&r.tmp_size, defaults.tmp_size);
        let tmp_ok = self.within_allowances(r, s, tmp_size);
        let shm_size = self.size(&r.shm_size, defaults.shm_size);
        let shm_ok = self.shm_within(r, s, shm_size);
        let mounts = self.container_mounts(r, s);
        if !(tmp_ok && shm_ok) {
            return None;
        }
        Some(ContainerSettings {
            user: user?,
            read_only_rootfs: r
                .read_only
                .as_ref()
                .map(|b| *b.get_ref())
                .unwrap_or(defaults.read_only_rootfs),
            cap_add: cap_add?,
            network: network?,
            memory: memory?,
            cpus: cpus?,
            pids: pids?,
            tmp_size,
            shm_size,
            mounts: mounts?,
            ..defaults
        })
    }

    /// `user`: a numeric `uid:gid`, never root.
    fn container_user(&mut self, r: &RawContainer, default: User) -> Option<User> {
        let Some(u) = &r.user else {
            return Some(default);
        };
        match parse_user(u.get_ref()) {
            Some(User { uid: 0, .. }) | Some(User { gid: 0, .. }) => {
                self.problems.add_hint(
                    Some(u.span()),
                    "jobs never run as root",
                    "use an unprivileged uid:gid such as \"1000:1000\"",
                );
                None
            }
            Some(user) => Some(user),
            None => {
                self.problems.add_hint(
                    Some(u.span()),
                    format!("`{}` is not a numeric uid:gid", u.get_ref()),
                    "for example \"65534:65534\"",
                );
                None
            }
        }
    }

    /// `cap_add`: each one a single capability `[scheduler]` allows.
    fn cap_add(&mut self, r: &RawContainer, s: &SchedulerSettings) -> Option<Vec<String>> {
        let mut ok = true;
        let mut cap_add = Vec::new();
        for c in &r.cap_add {
            let Some(cap) = self.capability(c) else {
                ok = false;
                continue;
            };
            if s.allowed_capabilities.contains(&cap) {
                cap_add.push(cap);
            } else {
                self.problems.add_hint(
                    Some(c.span()),
                    format!("capability {cap} is not in [scheduler] allowed_capabilities"),
                    "jobs start with no capabilities; the operator allows each one",
                );
                ok = false;
            }
        }
        ok.then_some(cap_add)
    }

    /// `network`: `none`, or one of `[scheduler] allowed_networks`.
    fn container_network(
        &mut self,
        r: &RawContainer,
        s: &SchedulerSettings,
        default: Network,
    ) -> Option<Network> {
        match &r.network {
            None => Some(default),
            Some(n) if n.get_ref() == "none" => Some(Network::None),
            Some(n) if s.allowed_networks.contains(n.get_ref()) => {
                Some(Network::Named(n.get_ref().clone()))
            }
            Some(n) => {
                self.problems.add_hint(
                    Some(n.span()),
                    format!(
                        "network `{}` is not in [scheduler] allowed_networks",
                        n.get_ref()
                    ),
                    "jobs have no network unless the operator allows one",
                );
                None
            }
        }
    }

    fn container_memory(
        &mut self,
        r: &RawContainer,
        s: &SchedulerSettings,
        default: u64,
    ) -> Option<u64> {
        let memory = self.size(&r.memory, default);
        if memory > s.max_memory || memory < MIN_MEMORY {
            self.problems.add_hint(
                r.memory.as_ref().map(Spanned::span),
                "memory is outside what [scheduler] allows",
                format!("between 6MiB and max_memory ({} bytes)", s.max_memory),
            );
            return None;
        }
        Some(memory)
    }

    fn container_cpus(
        &mut self,
        r: &RawContainer,
        s: &SchedulerSettings,
        default: f64,
    ) -> Option<f64> {
        let cpus = r.cpus.as_ref().map(|c| *c.get_ref()).unwrap_or(default);
        if !(cpus >= 0.01 && cpus <= s.max_cpus) {
            self.problems.add_hint(
                r.cpus.as_ref().map(Spanned::span),
                "cpus is outside what [scheduler] allows",
                format!("between 0.01 and max_cpus ({})", s.max_cpus),
            );
            return None;
        }
        Some(cpus)
    }

    fn container_pids(
        &mut self,
        r: &RawContainer,
        s: &SchedulerSettings,
        default: i64,
    ) -> Option<i64> {
        let pids = r.pids.as_ref().map(|p| *p.get_ref()).unwrap_or(default);
        if !(1..=s.max_pids).contains(&pids) {
            self.problems.add_hint(
                r.pids.as_ref().map(Spanned::span),
                "pids is outside what [scheduler] allows",
                format!("between 1 and max_pids ({})", s.max_pids),
            );
            return None;
        }
        Some(pids)
    }

    /// `mounts`: each allowed, no two on the same target.
    fn container_mounts(&mut self, r: &RawContainer, s: &SchedulerSettings) -> Option<Vec<Mount>> {
        let mut ok = true;
        let mut mounts = Vec::new();
        let mut targets = HashSet::new();
        for m in &r.mounts {
            match self.mount(m, s) {
                Some(mount) if targets.insert(mount.target.clone()) => mounts.push(mount),
                Some(mount) => {
                    self.problems.add(
                        Some(m.span()),
                        format!("two mounts target {}", mount.target),
                    );
                    ok = false;
                }
                None => ok = false,
            }
        }
        ok.then_some(mounts)
    }

    fn mount(&mut self, m: &Spanned<RawMount>, s: &SchedulerSettings) -> Option<Mount> {
        let raw = m.get_ref();
        let source = self.host_path(&raw.source)?;
        let target = raw.target.get_ref();
        let target_ok = Path::new(target).is_absolute()
            && Path::new(target)
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
            && !FORBIDDEN_MOUNT_TARGETS
                .iter()
                .any(|f| target == f || (*f != "/" && Path::new(target).starts_with(f)))
            && !target.contains(':');
        if !target_ok {
            self.problems.add_hint(
                Some(raw.target.span()),
                format!("`{target}` cannot be a mount target"),
                "an absolute path outside /, /proc, /sys, /dev and /etc, without `..`",
            );
            return None;
        }
        let Some(allowed) = s
            .allowed_mounts
            .iter()
            .find(|a| source.starts_with(&a.source))
        else {
            self.problems.add_hint(
                Some(raw.source.span()),
                format!(
                    "{} is not under any [scheduler] allowed_mounts",
                    source.display()
                ),
                "host paths are mounted only where the operator allows",
            );
            return None;
        };
        if raw.writable && !allowed.writable {
            self.problems.add_hint(
                Some(m.span()),
                format!("{} may only be mounted read-only", source.display()),
                "set writable = true on the allowed_mounts entry to permit writes",
            );
            return None;
        }
        let allowed_root = s
            .allowed_mounts
            .iter()
            .filter(|a| source.starts_with(&a.source))
            .map(|a| a.source.clone())
            .min_by_key(|root| root.components().count())
            .unwrap_or_else(|| allowed.source.clone());
        Some(Mount {
            source,
            target: target.clone(),
            writable: raw.writable,
            allowed_root,
        })
    }

    /// An absolute host path with no `..`, no `:` (Docker's bind syntax
    /// separator) and no symlink games resolved here: Docker resolves it.
    pub(crate) fn host_path(&mut self, raw: &Spanned<String>) -> Option<PathBuf> {
        let path = Path::new(raw.get_ref());
        let ok = path.is_absolute()
            && !raw.get_ref().contains(':')
            && path
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if ok && path != Path::new("/") {
            Some(path.to_path_buf())
        } else {
            self.problems.add_hint(
                Some(raw.span()),
                format!("`{}` is not an allowed host path", raw.get_ref()),
                "an absolute path other than /, without `..` or `:`",
            );
            None
        }
    }

    pub(crate) fn capability(&mut self, raw: &Spanned<String>) -> Option<String> {
        let upper = raw.get_ref().trim().to_ascii_uppercase();
        let name = upper.strip_prefix("CAP_").unwrap_or(&upper);
        if name == "ALL"
            || name == "SYS_ADMIN"
            || name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        {
            self.problems.add_hint(
                Some(raw.span()),
                format!("capability `{}` cannot be granted", raw.get_ref()),
                "name one capability such as \"NET_BIND_SERVICE\"; ALL and SYS_ADMIN are never granted",
            );
            return None;
        }
        Some(name.to_owned())
    }
}

fn parse_user(text: &str) -> Option<User> {
    let (uid, gid) = text.split_once(':')?;
    Some(User {
        uid: uid.parse().ok()?,
        gid: gid.parse().ok()?,
    })
}
