//! A Knative `Service` (what `gcloud run services describe SVC --format export` prints) →
//! [`RawService`] → validated [`ServiceSpec`]. Every error names the line of the field at fault.

use std::collections::BTreeMap;
use std::time::Duration;

use super::super::project::ProjectSettings;
use super::super::validate::{validate_service, Field, RawService};
use super::super::{parse_duration, ColdStartDelay, ServiceSpec, SpecError};
use super::container::{self, ContainerLines};
use super::node::Node;
use super::unknown::{
    annotation_is_modelled, collect_unknown, service_annotation, unmodelled_warning,
    ServiceAnnotation,
};
use super::Place;

/// A revision annotation's value and the line of its key.
#[derive(Debug, Clone)]
struct Annotation {
    value: String,
    line: usize,
}

/// What a service YAML gives besides the spec: warnings, and whether it uses Cloud SQL.
pub(super) struct ServiceRead {
    pub service: ServiceSpec,
    pub warnings: Vec<String>,
    pub cloudsql: bool,
    /// Its env or secrets name Redis (Memorystore): it gets a local one.
    pub redis: bool,
    /// The project, region and service account it names.
    pub project: ProjectSettings,
}

/// The nodes a service's fields are found in, for the lines of errors.
struct Nodes<'a> {
    root: &'a Node,
    metadata: Option<&'a Node>,
    template: &'a Node,
    tspec: &'a Node,
    container: &'a Node,
    annotations: BTreeMap<String, Annotation>,
    container_lines: ContainerLines,
}

impl Nodes<'_> {
    /// The line of an annotation (either spelling Knative accepts), else of the template's
    /// `annotations:`, else of its `metadata:`, else of `template:`.
    fn annotation_line(&self, key: &str) -> usize {
        let camel = match key {
            "autoscaling.knative.dev/min-scale" => Some("autoscaling.knative.dev/minScale"),
            "autoscaling.knative.dev/max-scale" => Some("autoscaling.knative.dev/maxScale"),
            "autoscaling.knative.dev/initial-scale" => Some("autoscaling.knative.dev/initialScale"),
            _ => None,
        };
        if let Some(a) = [Some(key), camel]
            .into_iter()
            .flatten()
            .find_map(|k| self.annotations.get(k))
        {
            return a.line;
        }
        match self.template.get("metadata") {
            Some(m) => m.line_of("annotations"),
            None => self.template.line,
        }
    }

    fn field_line(&self, field: Field<'_>) -> usize {
        match field {
            Field::Name => self
                .metadata
                .map_or(self.root.line_of("metadata"), |m| m.line_of("name")),
            Field::Env(name) => self
                .container_lines
                .env
                .get(name)
                .copied()
                .unwrap_or_else(|| self.container.line_of("env")),
            Field::Concurrency => self.tspec.line_of("containerConcurrency"),
            Field::Timeout => self.tspec.line_of("timeoutSeconds"),
            Field::MinInstances => self.annotation_line("autoscaling.knative.dev/minScale"),
            Field::MaxInstances => self.annotation_line("autoscaling.knative.dev/maxScale"),
            Field::ContainerPort => match self.container.get("ports").and_then(Node::as_seq) {
                Some([first, ..]) => first.line_of("containerPort"),
                _ => self.container.line_of("ports"),
            },
            Field::Protocol => match self.container.get("ports").and_then(Node::as_seq) {
                Some([first, ..]) => first.line_of("name"),
                _ => self.container.line_of("ports"),
            },
            Field::Port => self.annotation_line("emu.dev/port"),
            Field::StartupProbe => self.container.line_of("startupProbe"),
            Field::LivenessProbe => self.container.line_of("livenessProbe"),
            Field::ReadinessProbe => self.container.line_of("readinessProbe"),
            Field::ColdStart => self.annotation_line("emu.dev/cold-start"),
            Field::QueueTimeout => self.annotation_line("emu.dev/queue-timeout"),
            Field::Profile => self.annotation_line("emu.dev/autoscaling-profile"),
            Field::Autoscaling(key) => self.annotation_line(key),
            Field::Database => self.annotation_line("emu.dev/database"),
            Field::DependsOn => self.annotation_line("emu.dev/depends-on"),
            Field::Secret(target) => self
                .container_lines
                .secrets
                .get(target)
                .copied()
                .unwrap_or(self.container.line),
            // Not written in a YAML (a command comes after `--`): the container.
            Field::Upstream | Field::Command | Field::DatabaseEnv | Field::RedisEnv => {
                self.container.line
            }
        }
    }
}

/// Reads and validates the service in `root` (its kind already checked).
pub(super) fn read(
    root: &Node,
    command: &[String],
    place: &Place<'_>,
) -> Result<ServiceRead, SpecError> {
    let mut unmodelled: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    collect_unknown(root, "", &mut unmodelled);

    let Template {
        metadata,
        name,
        spec,
        template,
        tmeta,
        tspec,
    } = template(root, place)?;
    let mut raw = RawService {
        name: name.to_string(),
        revision: tmeta
            .and_then(|m| m.get("name"))
            .and_then(Node::as_str)
            .map(str::to_string),
        ..RawService::default()
    };
    let mut annotations = revision_annotations(tmeta, &mut unmodelled);
    add_service_annotations(metadata, &mut annotations, &mut unmodelled);
    apply_annotations(&annotations, &mut raw, place)?;
    let project_id = annotations
        .get("emu.dev/project-id")
        .map(|a| (a.value.as_str(), a.line));
    let project = super::identity::read(root, Some(tspec), project_id, place)?;
    raw.concurrency = tspec.get("containerConcurrency").and_then(Node::int);
    if raw.concurrency == Some(0) {
        // In Cloud Run's Knative API, 0 means Cloud Run's default: 80, or 1 below one vCPU.
        raw.concurrency = Some(default_concurrency(tspec));
    }
    raw.timeout = tspec
        .get("timeoutSeconds")
        .and_then(Node::int)
        .map(|s| Duration::from_secs(s.max(0) as u64));

    let containers = tspec
        .get("containers")
        .and_then(Node::as_seq)
        .ok_or_else(|| {
            place.err(
                tspec
                    .key_line("containers")
                    .unwrap_or(template.line_of("spec")),
                "spec.template.spec.containers is missing: a service needs a container".into(),
            )
        })?;
    let c = container::ingress(
        containers,
        &mut warnings,
        place,
        tspec.line_of("containers"),
    )?;
    raw.image = c.get("image").and_then(Node::as_str).map(str::to_string);
    if command.is_empty() && raw.image.is_none() {
        return Err(place.err(c.line, "the container has no image and no command was given: run `emu up -f FILE -- CMD ARGS…`".into()));
    }
    raw.command = (!command.is_empty()).then(|| command.to_vec());
    let container_lines = container::read(c, tspec, &mut raw, &mut unmodelled, place)?;
    let redis = container::local_redis(&mut raw, &mut warnings);

    if let Some(traffic) = spec.get("traffic").and_then(Node::as_seq) {
        let simple =
            traffic.len() == 1 && traffic[0].get("percent").and_then(Node::as_i64) == Some(100);
        if !simple {
            warnings.push("spec.traffic splits traffic between revisions: emu runs the template revision only".into());
        }
    }
    if let Some(w) = unmodelled_warning(unmodelled) {
        warnings.insert(0, w);
    }
    let cloudsql = annotations.contains_key(super::unknown::CLOUDSQL);
    let nodes = Nodes {
        root,
        metadata,
        template,
        tspec,
        container: c,
        annotations,
        container_lines,
    };
    let service = validate_service(raw, place.file, &|f| Some(nodes.field_line(f)), command)?;
    Ok(ServiceRead {
        service,
        warnings,
        cloudsql,
        redis,
        project,
    })
}

/// The parts of a Knative Service that hold what emu reads.
struct Template<'a> {
    metadata: Option<&'a Node>,
    name: &'a str,
    spec: &'a Node,
    template: &'a Node,
    /// The revision template's metadata (its name, annotations).
    tmeta: Option<&'a Node>,
    /// The revision template's pod spec.
    tspec: &'a Node,
}

/// Finds the service's name and revision template; a missing part is reported at the line of
/// its parent's key.
fn template<'a>(root: &'a Node, place: &Place<'_>) -> Result<Template<'a>, SpecError> {
    let metadata = root.map_at("metadata");
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str)
        .ok_or_else(|| {
            place.err(
                root.line_of("metadata"),
                "metadata.name is missing: the service needs a name".into(),
            )
        })?;
    let spec = root
        .map_at("spec")
        .ok_or_else(|| place.err(root.line_of("spec"), "spec is missing".into()))?;
    let template = spec
        .map_at("template")
        .ok_or_else(|| place.err(root.line_of("spec"), "spec.template is missing".into()))?;
    let tmeta = template.map_at("metadata");
    let tspec = template.map_at("spec").ok_or_else(|| {
        place.err(
            spec.line_of("template"),
            "spec.template.spec is missing".into(),
        )
    })?;
    Ok(Template {
        metadata,
        name,
        spec,
        template,
        tmeta,
        tspec,
    })
}

/// The revision template's annotations that emu models; the rest are listed as not modelled.
fn revision_annotations(
    tmeta: Option<&Node>,
    unmodelled: &mut Vec<String>,
) -> BTreeMap<String, Annotation> {
    let mut annotations = BTreeMap::new();
    let entries = tmeta
        .and_then(|m| m.map_at("annotations"))
        .and_then(Node::as_map)
        .unwrap_or(&[]);
    for (k, v) in entries {
        let (Some(key), Some(value)) = (k.as_str(), v.text()) else {
            continue;
        };
        if annotation_is_modelled(key) {
            annotations.insert(
                key.to_string(),
                Annotation {
                    value,
                    line: k.line,
                },
            );
        } else {
            unmodelled.push(format!("spec.template.metadata.annotations[{key}]"));
        }
    }
    annotations
}

/// The Service's own annotations (`metadata.annotations`), read as the revision template's:
/// a setting both give is the template's, as the revision is what runs. What emu does not model
/// is listed as `metadata.annotations[KEY]`.
fn add_service_annotations(
    metadata: Option<&Node>,
    annotations: &mut BTreeMap<String, Annotation>,
    unmodelled: &mut Vec<String>,
) {
    let entries = metadata
        .and_then(|m| m.map_at("annotations"))
        .and_then(Node::as_map)
        .unwrap_or(&[]);
    for (k, v) in entries {
        let (Some(key), Some(value)) = (k.as_str(), v.text()) else {
            continue;
        };
        match service_annotation(key, &value) {
            ServiceAnnotation::AsTemplate(as_key) => {
                let kebab = as_key.replace("Scale", "-scale").to_lowercase();
                if !annotations.contains_key(as_key) && !annotations.contains_key(&kebab) {
                    let line = k.line;
                    annotations.insert(as_key.to_string(), Annotation { value, line });
                }
            }
            ServiceAnnotation::Silent => {}
            ServiceAnnotation::Unmodelled => {
                unmodelled.push(format!("metadata.annotations[{key}]"));
            }
        }
    }
}

/// Cloud Run's concurrency when `containerConcurrency` is 0: 80, or 1 when the container's CPU
/// limit is below one vCPU (`500m`, `0.5`).
fn default_concurrency(tspec: &Node) -> i64 {
    let cpu = tspec
        .get("containers")
        .and_then(Node::as_seq)
        .and_then(|c| c.iter().find(|c| c.get("ports").is_some()).or(c.first()))
        .and_then(|c| c.get("resources")?.get("limits")?.get("cpu")?.text());
    let vcpus = cpu.and_then(|c| match c.strip_suffix('m') {
        Some(milli) => milli.trim().parse::<f64>().ok().map(|m| m / 1000.0),
        None => c.trim().parse::<f64>().ok(),
    });
    match vcpus {
        Some(v) if v < 1.0 => 1,
        _ => i64::from(crate::spec::limits::DEFAULT_CONCURRENCY),
    }
}

/// emu's own annotations whose values are not autoscaler settings.
const EMU_SETTINGS: [&str; 6] = [
    "emu.dev/project-id",
    "emu.dev/cold-start",
    "emu.dev/queue-timeout",
    "emu.dev/port",
    "emu.dev/database",
    "emu.dev/autoscaling-profile",
];

/// min/max instances, emu's own settings and the autoscaler's, from the annotations.
fn apply_annotations(
    annotations: &BTreeMap<String, Annotation>,
    raw: &mut RawService,
    place: &Place<'_>,
) -> Result<(), SpecError> {
    let ann_int = |keys: [&str; 2]| -> Result<Option<i64>, SpecError> {
        for k in keys {
            if let Some(a) = annotations.get(k) {
                return a.value.trim().parse::<i64>().map(Some).map_err(|_| {
                    place.err(
                        a.line,
                        format!("annotation {k}: {:?} is not a whole number", a.value),
                    )
                });
            }
        }
        Ok(None)
    };
    raw.min_instances = ann_int([
        "autoscaling.knative.dev/minScale",
        "autoscaling.knative.dev/min-scale",
    ])?;
    raw.max_instances = ann_int([
        "autoscaling.knative.dev/maxScale",
        "autoscaling.knative.dev/max-scale",
    ])?;
    if let Some(a) = annotations.get("emu.dev/queue-timeout") {
        raw.queue_timeout =
            Some(parse_duration(&a.value).map_err(|m| {
                place.err(a.line, format!("annotation emu.dev/queue-timeout: {m}"))
            })?);
    }
    if let Some(a) = annotations.get("emu.dev/cold-start") {
        raw.cold_start = parse_cold_start(&a.value).map_err(|m| place.err(a.line, m))?;
    }
    if let Some(a) = annotations.get("emu.dev/port") {
        raw.port = Some(a.value.parse().map_err(|_| {
            place.err(a.line, format!("emu.dev/port: {:?} is not a port", a.value))
        })?);
    }
    let value = |k: &str| annotations.get(k).map(|a| a.value.clone());
    raw.database = value("emu.dev/database");
    raw.autoscaling_profile = value("emu.dev/autoscaling-profile");
    if let Some(d) = value("emu.dev/depends-on") {
        raw.depends_on = d
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    raw.autoscaling = annotations
        .iter()
        .filter(|(k, _)| k.starts_with("autoscaling.knative.dev/") || k.starts_with("emu.dev/"))
        .filter(|(k, _)| !EMU_SETTINGS.contains(&k.as_str()))
        .map(|(k, a)| (k.clone(), a.value.clone()))
        .collect();
    Ok(())
}

/// `"2s"` or `"p50=1s,p99=5s"`.
fn parse_cold_start(v: &str) -> Result<ColdStartDelay, String> {
    if !v.contains('=') {
        return Ok(ColdStartDelay::Fixed(parse_duration(v)?));
    }
    let mut p50 = None;
    let mut p99 = None;
    for part in v.split(',') {
        match part.trim().split_once('=') {
            Some(("p50", d)) => p50 = Some(parse_duration(d)?),
            Some(("p99", d)) => p99 = Some(parse_duration(d)?),
            _ => {
                return Err(format!(
                    "emu.dev/cold-start {v:?}: write \"2s\" or \"p50=1s,p99=5s\""
                ))
            }
        }
    }
    match (p50, p99) {
        (Some(p50), Some(p99)) => Ok(ColdStartDelay::LogNormal { p50, p99 }),
        _ => Err(format!(
            "emu.dev/cold-start {v:?}: give both p50 and p99, like \"p50=1s,p99=5s\""
        )),
    }
}
