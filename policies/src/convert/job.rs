//! Converting one `[[job]]`: its image, command, env and schedule, each
//! checked against the scheduler's allowlists, so a job that would loosen a
//! hardened default beyond what the operator allowed never reaches Docker.

use std::time::Duration;

use crate::convert::context::Converter;
use crate::cron::{default_timezone, Schedule};
use crate::identity::Roles;
use crate::raw::scheduler::*;
use crate::scheduler::*;
use toml::Spanned;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 86_400);
const DEFAULT_STARTING_DEADLINE: Duration = Duration::from_secs(3600);
const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(30);
const MAX_RETRIES: i64 = 10;
const MAX_ENV_VARS: usize = 256;
pub(crate) const MAX_JOB_NAME: usize = 48;

impl Converter<'_> {
    pub(crate) fn job(
        &mut self,
        r: &RawJob,
        scheduler: &SchedulerSettings,
        roles: &Roles,
    ) -> Option<Job> {
        let schedule = self.job_schedule(r);
        let image = self.image(&r.image, scheduler);
        let pull = self.pull_policy(r);
        let command = self.command(r);
        let env = self.job_env(r, scheduler);
        let timeout = self.duration(&r.timeout, DEFAULT_TIMEOUT);
        if timeout > MAX_TIMEOUT {
            self.problems.add(
                r.timeout.as_ref().map(Spanned::span),
                "timeout may be at most 7 days",
            );
        }
        let overlap = self.overlap(r);
        let catch_up = self.catch_up(r);
        let retries = self.retries(r);
        let container = self.container(&r.container, scheduler);
        Some(Job {
            name: r.name.get_ref().clone(),
            schedule: match (&r.schedule, schedule) {
                (Some(_), None) => return None,
                (_, s) => s,
            },
            image_pinned: image.as_deref().is_some_and(is_pinned),
            image: image?,
            pull,
            command: command?,
            env: env?,
            timeout,
            overlap,
            catch_up,
            retries,
            run_roles: self.role_refs(roles, &r.run_roles),
            view_roles: self.role_refs(roles, &r.view_roles),
            container: container?,
            notify: self.job_notify(&r.notify, &scheduler.notify),
        })
    }

    /// `schedule` in `timezone`; a problem points at the timezone when it
    /// is the unknown part.
    fn job_schedule(&mut self, r: &RawJob) -> Option<Schedule> {
        let timezone = r
            .timezone
            .as_ref()
            .map(|t| t.get_ref().as_str())
            .unwrap_or(default_timezone());
        match &r.schedule {
            None => None,
            Some(expr) => match Schedule::parse(expr.get_ref(), timezone) {
                Ok(s) => Some(s),
                Err(e) => {
                    let span = match (&e, &r.timezone) {
                        (crate::cron::ScheduleError::UnknownTimezone { .. }, Some(tz)) => tz.span(),
                        _ => expr.span(),
                    };
                    self.problems.add_hint(
                        Some(span),
                        e.to_string(),
                        "check it with `gatehouse-scheduler next 'EXPR' --timezone TZ`",
                    );
                    None
                }
            },
        }
    }

    fn pull_policy(&mut self, r: &RawJob) -> PullPolicy {
        match r.pull.as_ref().map(|p| p.get_ref().as_str()) {
            None | Some("if-missing") => PullPolicy::IfMissing,
            Some("never") => PullPolicy::Never,
            Some("always") => PullPolicy::Always,
            Some(other) => {
                self.problems.add_hint(
                    r.pull.as_ref().map(Spanned::span),
                    format!("`{other}` is not a pull policy"),
                    "\"never\", \"if-missing\" or \"always\"",
                );
                PullPolicy::IfMissing
            }
        }
    }

    fn overlap(&mut self, r: &RawJob) -> Overlap {
        match r.overlap.as_ref().map(|o| o.get_ref().as_str()) {
            None | Some("forbid") => Overlap::Forbid,
            Some("allow") => Overlap::Allow,
            Some("replace") => Overlap::Replace,
            Some(other) => {
                self.problems.add_hint(
                    r.overlap.as_ref().map(Spanned::span),
                    format!("`{other}` is not an overlap mode"),
                    "\"forbid\" (skip), \"allow\" or \"replace\" (cancel the running one)",
                );
                Overlap::Forbid
            }
        }
    }

    fn retries(&mut self, r: &RawJob) -> Retries {
        match &r.retries {
            None => Retries {
                max: 0,
                backoff: DEFAULT_RETRY_BACKOFF,
            },
            Some(spanned) => {
                let raw = spanned.get_ref();
                if !(0..=MAX_RETRIES).contains(&raw.max) {
                    self.problems
                        .add(Some(spanned.span()), "retries.max must be between 0 and 10");
                }
                let backoff = raw
                    .backoff
                    .as_ref()
                    .map(|b| Spanned::new(spanned.span(), b.clone()));
                Retries {
                    max: raw.max.clamp(0, MAX_RETRIES) as u32,
                    backoff: self.duration(&backoff, DEFAULT_RETRY_BACKOFF),
                }
            }
        }
    }

    fn image(&mut self, raw: &Spanned<String>, scheduler: &SchedulerSettings) -> Option<String> {
        let text = raw.get_ref().trim();
        if let Err(reason) = validate_image_reference(text) {
            self.problems.add_hint(
                Some(raw.span()),
                format!("`{text}` is not a valid image reference: {reason}"),
                "for example \"registry.example.com/ops/report@sha256:<64 hex digits>\"",
            );
            return None;
        }
        if !scheduler.allowed_images.iter().any(|p| p.matches(text)) {
            self.problems.add_hint(
                Some(raw.span()),
                format!("image `{text}` is not in [scheduler] allowed_images"),
                "add a matching pattern such as \"registry.example.com/ops/*\"",
            );
            return None;
        }
        Some(text.to_owned())
    }

    fn command(&mut self, r: &RawJob) -> Option<Vec<String>> {
        let mut argv = Vec::new();
        for arg in &r.command {
            if arg.get_ref().contains('\0') {
                self.problems
                    .add(Some(arg.span()), "command arguments cannot contain NUL");
                return None;
            }
            argv.push(arg.get_ref().clone());
        }
        if !r.shell {
            return Some(argv);
        }
        match argv.as_slice() {
            [script] => Some(vec!["/bin/sh".into(), "-c".into(), script.clone()]),
            _ => {
                self.problems.add_hint(
                    r.command.first().map(Spanned::span).or(Some(r.name.span())),
                    "with shell = true, command is one script string",
                    "command = [\"report --since 24h | gzip > /tmp/out\"]",
                );
                None
            }
        }
    }

    fn job_env(&mut self, r: &RawJob, scheduler: &SchedulerSettings) -> Option<Vec<JobEnv>> {
        if r.env.len() > MAX_ENV_VARS {
            self.problems
                .add(Some(r.name.span()), "a job may set at most 256 variables");
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (name, value) in &r.env {
            if !is_env_name(name.get_ref()) {
                self.problems.add_hint(
                    Some(name.span()),
                    format!(
                        "`{}` is not a valid environment variable name",
                        name.get_ref()
                    ),
                    "names match ^[A-Za-z_][A-Za-z0-9_]*$",
                );
                ok = false;
                continue;
            }
            let (source, sensitive) = match value.get_ref() {
                RawEnvValue::Plain(v) => (self.env_literal(v), false),
                RawEnvValue::Table(t) => match (&t.value, &t.file) {
                    (Some(v), None) => (self.env_literal(v), t.sensitive),
                    (None, Some(f)) => (
                        self.secret_file(&Spanned::new(value.span(), f.clone()), scheduler)
                            .map(EnvSource::File),
                        t.sensitive,
                    ),
                    _ => {
                        self.problems.add_hint(
                            Some(value.span()),
                            "set exactly one of `value` and `file`",
                            "API_TOKEN = { file = \"/run/secrets/api_token\", sensitive = true }",
                        );
                        (None, false)
                    }
                },
            };
            match source {
                Some(EnvSource::Literal(v)) if v.contains('\0') => {
                    self.problems
                        .add(Some(value.span()), "environment values cannot contain NUL");
                    ok = false;
                }
                Some(value) => {
                    let (line, column) = self.problems.locate(name.span().start);
                    out.push(JobEnv {
                        name: name.get_ref().clone(),
                        secret_dir: match &value {
                            EnvSource::File(path) => scheduler.secret_dir_of(path),
                            _ => None,
                        },
                        value,
                        sensitive,
                        at: Location { line, column },
                    })
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn env_literal(&self, value: &str) -> Option<EnvSource> {
        Some(
            match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
                Some(var) => EnvSource::Env(var.to_owned()),
                None => EnvSource::Literal(value.to_owned()),
            },
        )
    }

    fn catch_up(&mut self, r: &RawJob) -> CatchUp {
        let mode = r.catch_up.as_ref().map(|c| c.get_ref().as_str());
        match mode {
            None | Some("none") => {
                if let Some(d) = &r.starting_deadline {
                    self.problems.add_hint(
                        Some(d.span()),
                        "starting_deadline only applies to catch_up = \"latest\"",
                        "remove it, or set catch_up = \"latest\"",
                    );
                }
                CatchUp::None
            }
            Some("latest") => {
                if r.schedule.is_none() {
                    self.problems.add(
                        r.catch_up.as_ref().map(Spanned::span),
                        "catch_up needs a schedule",
                    );
                }
                CatchUp::Latest {
                    starting_deadline: self
                        .duration(&r.starting_deadline, DEFAULT_STARTING_DEADLINE),
                }
            }
            Some(other) => {
                self.problems.add_hint(
                    r.catch_up.as_ref().map(Spanned::span),
                    format!("`{other}` is not a catch-up mode"),
                    "\"none\", or \"latest\" with a starting_deadline",
                );
                CatchUp::None
            }
        }
    }
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`
pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub(crate) fn is_docker_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn is_pinned(image: &str) -> bool {
    image.contains("@sha256:")
}

/// Checks an image reference against the distribution grammar before it
/// can reach Docker.
pub fn validate_image_reference(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > 512 {
        return Err("it must be 1 to 512 characters".into());
    }
    super::image_ref::check(text)
}
