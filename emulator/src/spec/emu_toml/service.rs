//! A `[[service]]` table → [`RawService`] → validated [`ServiceSpec`], errors at the key's line.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::super::duration::DurationField;
use super::super::types::{Probe, ProbeAction, ServiceSpec};
use super::super::validate::{validate_service, Field, RawService};
use super::super::{limits, ColdStartDelay, SpecError};
use super::positions::{Positions, Seg};
use super::schema::{AutoscalingToml, ColdStartToml, ProbeToml, ServiceToml};
use crate::secrets::SecretUse;

/// Lines of the keys of one `[[service]]` or `[[job]]` table.
pub(super) struct Table<'a> {
    pub file: &'a Path,
    pub positions: &'a Positions<'a>,
    /// `service` or `job`.
    pub array: &'static str,
    pub index: usize,
}

impl Table<'_> {
    /// The line of `path` within the table (or of the nearest enclosing key written).
    pub fn line(&self, path: &[&str]) -> Option<usize> {
        let mut full = vec![Seg::Key(self.array), Seg::Index(self.index)];
        full.extend(path.iter().map(|k| Seg::Key(k)));
        self.positions.line(&full)
    }

    pub fn err(&self, path: &[&str], message: String) -> SpecError {
        SpecError::new(self.file, self.line(path), message)
    }

    /// A duration key, read as seconds or text.
    pub fn duration(
        &self,
        path: &[&str],
        d: Option<&DurationField>,
    ) -> Result<Option<Duration>, SpecError> {
        d.map(|d| {
            d.to_duration()
                .map_err(|m| self.err(path, format!("{}: {m}", path.join("."))))
        })
        .transpose()
    }

    /// Where a field of a service is written in emu.toml.
    fn field_line(&self, field: Field<'_>) -> Option<usize> {
        let key = match field {
            Field::Name => "name",
            Field::Env(name) => return self.line(&["env", name]),
            Field::Concurrency => "concurrency",
            Field::MinInstances => "min_instances",
            Field::MaxInstances => "max_instances",
            Field::Timeout => "timeout",
            Field::ContainerPort => "container_port",
            Field::Protocol => "protocol",
            Field::Port => "port",
            Field::Upstream => "upstream",
            Field::Command => "command",
            Field::StartupProbe => "startup_probe",
            Field::LivenessProbe => "liveness_probe",
            Field::ReadinessProbe => "readiness_probe",
            Field::ColdStart => "cold_start",
            Field::QueueTimeout => "queue_timeout",
            Field::Profile => return self.line(&["autoscaling", "profile"]),
            // `autoscaling.knative.dev/scale-down-delay` is `scale_down_delay` in emu.toml.
            Field::Autoscaling(annotation) => {
                let short = annotation
                    .rsplit_once('/')
                    .map_or(annotation, |(_, name)| name)
                    .replace('-', "_");
                return self.line(&["autoscaling", &short]);
            }
            Field::Database => "database",
            Field::DatabaseEnv => "database_env",
            Field::RedisEnv => "redis_env",
            Field::Secret(target) => return self.line(&["secrets", target]),
            Field::DependsOn => "depends_on",
        };
        self.line(&[key])
    }
}

/// Validates the `index`-th `[[service]]`.
pub(super) fn service_spec(
    s: ServiceToml,
    table: &Table<'_>,
    project_dir: &Path,
) -> Result<ServiceSpec, SpecError> {
    let raw = RawService {
        revision: s.revision,
        command: s.command.as_ref().map(|c| c.argv()),
        upstream: s.upstream,
        image: s.image,
        concurrency: s.concurrency,
        min_instances: s.min_instances,
        max_instances: s.max_instances,
        timeout: table.duration(&["timeout"], s.timeout.as_ref())?,
        container_port: s.container_port,
        port: s.port,
        protocol: s.protocol,
        env: s.env.into_iter().collect(),
        startup_probe: probe(s.startup_probe.as_ref(), "startup_probe", table, true)?,
        liveness_probe: probe(s.liveness_probe.as_ref(), "liveness_probe", table, false)?,
        readiness_probe: probe(s.readiness_probe.as_ref(), "readiness_probe", table, false)?,
        cold_start: cold_start(s.cold_start.as_ref(), table)?,
        queue_timeout: table.duration(&["queue_timeout"], s.queue_timeout.as_ref())?,
        shutdown_grace: table.duration(&["shutdown_grace"], s.shutdown_grace.as_ref())?,
        autoscaling_profile: s.autoscaling.as_ref().and_then(|a| a.profile.clone()),
        autoscaling: match &s.autoscaling {
            None => BTreeMap::new(),
            Some(a) => autoscaling_annotations(a, table)?,
        },
        database: s.database,
        database_env: s.database_env,
        redis_env: s.redis_env,
        redis_host_env: None,
        workdir: s.workdir.as_ref().map(|w| project_dir.join(w)),
        secrets: secret_use(&s.secrets, table)?,
        depends_on: s.depends_on,
        name: s.name,
    };
    validate_service(raw, table.file, &|f| table.field_line(f), &[])
}

fn cold_start(c: Option<&ColdStartToml>, table: &Table<'_>) -> Result<ColdStartDelay, SpecError> {
    let d = |d: &DurationField| {
        d.to_duration()
            .map_err(|m| table.err(&["cold_start"], format!("cold_start: {m}")))
    };
    Ok(match c {
        None => ColdStartDelay::None,
        Some(ColdStartToml::Fixed(f)) => ColdStartDelay::Fixed(d(f)?),
        Some(ColdStartToml::Dist { p50, p99 }) => ColdStartDelay::LogNormal {
            p50: d(p50)?,
            p99: d(p99)?,
        },
    })
}

/// `secrets = { ENV = "name:version", "/path/file" = "name:version" }`.
pub(super) fn secret_use(
    map: &BTreeMap<String, String>,
    table: &Table<'_>,
) -> Result<SecretUse, SpecError> {
    let mut uses = SecretUse::default();
    for (target, reference) in map {
        if limits::RESERVED_ENV.contains(&target.as_str()) {
            return Err(table.err(
                &["secrets", target],
                format!("The following reserved env names were provided: {target}. These values are automatically set by the system."),
            ));
        }
        uses.add(target, reference)
            .map_err(|m| table.err(&["secrets", target], format!("secrets: {m}")))?;
    }
    Ok(uses)
}

fn probe(
    p: Option<&ProbeToml>,
    name: &str,
    table: &Table<'_>,
    startup: bool,
) -> Result<Option<Probe>, SpecError> {
    let Some(p) = p else { return Ok(None) };
    let action = match (&p.http_path, p.tcp) {
        (Some(_), Some(true)) => {
            return Err(table.err(
                &[name],
                format!("{name}: give either http_path or tcp = true, not both"),
            ))
        }
        (Some(path), _) => ProbeAction::Http { path: path.clone() },
        (None, _) => ProbeAction::Tcp,
    };
    let mut probe = if startup {
        Probe::explicit_startup(action)
    } else {
        Probe::explicit_liveness(action)
    };
    let d = |key: &str, x: &Option<DurationField>| table.duration(&[name, key], x.as_ref());
    if let Some(v) = d("initial_delay", &p.initial_delay)? {
        probe.initial_delay = v;
    }
    if let Some(v) = d("period", &p.period)? {
        probe.period = v;
    }
    if let Some(v) = d("timeout", &p.timeout)? {
        probe.timeout = v;
    }
    if let Some(v) = p.failure_threshold {
        probe.failure_threshold = v;
    }
    Ok(Some(probe))
}

/// `[service.autoscaling]` in Knative's annotation form (and emu's `emu.dev/` knobs).
fn autoscaling_annotations(
    a: &AutoscalingToml,
    table: &Table<'_>,
) -> Result<BTreeMap<String, String>, SpecError> {
    let knative = |s: &str| format!("autoscaling.knative.dev/{s}");
    let dur = |d: &Option<DurationField>, key: &str| -> Result<Option<String>, SpecError> {
        Ok(table
            .duration(&["autoscaling", key], d.as_ref())?
            .map(|d| format!("{}s", d.as_secs_f64())))
    };
    let number = |v: Option<f64>| v.map(|v| v.to_string());
    let settings = [
        (knative("window"), dur(&a.window, "window")?),
        (knative("target"), number(a.target)),
        (
            knative("target-utilization-percentage"),
            number(a.target_utilization_percentage),
        ),
        (
            knative("panic-window-percentage"),
            number(a.panic_window_percentage),
        ),
        (
            knative("panic-threshold-percentage"),
            number(a.panic_threshold_percentage),
        ),
        (
            "emu.dev/max-scale-up-rate".to_string(),
            number(a.max_scale_up_rate),
        ),
        (
            "emu.dev/max-scale-down-rate".to_string(),
            number(a.max_scale_down_rate),
        ),
        (
            "emu.dev/scale-to-zero-grace-period".to_string(),
            dur(&a.scale_to_zero_grace_period, "scale_to_zero_grace_period")?,
        ),
        (
            knative("scale-to-zero-pod-retention-period"),
            dur(
                &a.scale_to_zero_pod_retention_period,
                "scale_to_zero_pod_retention_period",
            )?,
        ),
        (
            knative("scale-down-delay"),
            dur(&a.scale_down_delay, "scale_down_delay")?,
        ),
        (
            knative("initial-scale"),
            a.initial_scale.map(|v| v.to_string()),
        ),
    ];
    Ok(settings
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect())
}
