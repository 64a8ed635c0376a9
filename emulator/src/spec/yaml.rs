//! A Cloud Run service YAML, taken unchanged: the Knative `serving.knative.dev/v1` `Service` that
//! `gcloud run services describe SVC --format export` prints. Fields emu does not model are
//! listed once as warnings; fields that only describe the service's state are skipped silently.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_yaml_ng::{Mapping, Value};

use super::locate::yaml_line;
use super::{
    parse_duration, validate_service, ColdStartDelay, Config, FrontdoorSettings, Probe,
    ProbeAction, RawService, SpecError,
};

/// Reads and validates a Cloud Run service YAML; `command` is what each instance runs (the words
/// after `--` on the command line), empty to run the image.
pub fn load_yaml(path: &Path, command: &[String]) -> Result<Config, SpecError> {
    let src = std::fs::read_to_string(path)
        .map_err(|e| SpecError::new(path, None, format!("cannot read the service YAML: {e}")))?;
    parse_yaml(&src, path, command)
}

/// Paths that describe state or identity, not behaviour: skipped without a warning.
const SILENT: &[&str] = &[
    "status",
    "metadata.namespace",
    "metadata.labels",
    "metadata.uid",
    "metadata.resourceVersion",
    "metadata.generation",
    "metadata.creationTimestamp",
    "metadata.selfLink",
    "metadata.annotations",
    "spec.template.metadata.labels",
    "spec.template.metadata.namespace",
    "spec.template.metadata.creationTimestamp",
    "spec.template.spec.containers[].name",
    "spec.template.spec.containers[].ports[].name",
];

/// Annotations on the revision template that emu models.
fn annotation_is_modelled(key: &str) -> bool {
    key.starts_with("autoscaling.knative.dev/") || key.starts_with("emu.dev/") || key == CLOUDSQL
}

/// A service that connects to Cloud SQL gets a local PostgreSQL.
const CLOUDSQL: &str = "run.googleapis.com/cloudsql-instances";

/// Validates the text of a service YAML read from `path`.
pub fn parse_yaml(src: &str, path: &Path, command: &[String]) -> Result<Config, SpecError> {
    let doc: Value = serde_yaml_ng::from_str(src).map_err(|e| {
        SpecError::new(
            path,
            e.location().map(|l| l.line()),
            format!("not valid YAML: {e}"),
        )
    })?;
    let at = |needles: &[&str]| yaml_line(src, needles);
    let err = |needles: &[&str], msg: String| SpecError::new(path, at(needles), msg);
    let root = doc.as_mapping().ok_or_else(|| {
        err(
            &[],
            "expected a Cloud Run service (a YAML mapping with apiVersion, kind, metadata, spec)"
                .into(),
        )
    })?;

    let api = str_at(root, "apiVersion").unwrap_or_default();
    let kind = str_at(root, "kind").unwrap_or_default();
    if kind == "Job" && api.starts_with("run.googleapis.com") {
        return parse_job(root, path, command, &at);
    }
    if kind != "Service" || !api.starts_with("serving.knative.dev/") {
        return Err(err(
            &["kind:"],
            format!(
                "expected apiVersion serving.knative.dev/v1 and kind Service (what `gcloud run services describe SVC --format export` prints), found {api:?} / {kind:?}"
            ),
        ));
    }

    let mut unmodelled: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let known: &[&str] = &[
        "apiVersion",
        "kind",
        "metadata.name",
        "spec.template.metadata.name",
        "spec.template.metadata.annotations",
        "spec.template.spec.containerConcurrency",
        "spec.template.spec.timeoutSeconds",
        "spec.template.spec.containers[].image",
        "spec.template.spec.containers[].ports[].containerPort",
        "spec.template.spec.containers[].env",
        "spec.template.spec.containers[].volumeMounts",
        "spec.template.spec.volumes",
        "spec.template.spec.containers[].startupProbe",
        "spec.template.spec.containers[].livenessProbe",
        "spec.template.spec.containers[].readinessProbe",
        "spec.traffic",
    ];
    collect_unknown(&doc, "", known, &mut unmodelled);

    let metadata = map_at(root, "metadata");
    let name = metadata.and_then(|m| str_at(m, "name")).ok_or_else(|| {
        err(
            &["metadata:"],
            "metadata.name is missing: the service needs a name".into(),
        )
    })?;
    let spec = map_at(root, "spec").ok_or_else(|| err(&["spec:"], "spec is missing".into()))?;
    let template = map_at(spec, "template")
        .ok_or_else(|| err(&["spec:", "template:"], "spec.template is missing".into()))?;
    let tmeta = map_at(template, "metadata");
    let tspec = map_at(template, "spec").ok_or_else(|| {
        err(
            &["template:", "spec:"],
            "spec.template.spec is missing".into(),
        )
    })?;

    let mut raw = RawService {
        name: name.to_string(),
        revision: tmeta.and_then(|m| str_at(m, "name")).map(str::to_string),
        ..RawService::default()
    };

    // Revision annotations: autoscaling and emu's own; the rest are listed as not modelled.
    let mut annotations = BTreeMap::new();
    if let Some(ann) = tmeta.and_then(|m| map_at(m, "annotations")) {
        for (k, v) in ann {
            let (Some(k), Some(v)) = (k.as_str(), scalar(v)) else {
                continue;
            };
            if annotation_is_modelled(k) {
                annotations.insert(k.to_string(), v);
            } else {
                unmodelled.push(format!("spec.template.metadata.annotations[{k}]"));
            }
        }
    }
    let ann_int = |keys: &[&str]| -> Result<Option<i64>, SpecError> {
        for k in keys {
            if let Some(v) = annotations.get(*k) {
                return v.trim().parse::<i64>().map(Some).map_err(|_| {
                    err(&[k], format!("annotation {k}: {v:?} is not a whole number"))
                });
            }
        }
        Ok(None)
    };
    raw.min_instances = ann_int(&[
        "autoscaling.knative.dev/minScale",
        "autoscaling.knative.dev/min-scale",
    ])?;
    raw.max_instances = ann_int(&[
        "autoscaling.knative.dev/maxScale",
        "autoscaling.knative.dev/max-scale",
    ])?;
    let ann_dur = |k: &str| -> Result<Option<Duration>, SpecError> {
        annotations
            .get(k)
            .map(|v| parse_duration(v).map_err(|m| err(&[k], format!("annotation {k}: {m}"))))
            .transpose()
    };
    raw.queue_timeout = ann_dur("emu.dev/queue-timeout")?;
    if let Some(v) = annotations.get("emu.dev/cold-start") {
        raw.cold_start = parse_cold_start(v).map_err(|m| err(&["emu.dev/cold-start"], m))?;
    }
    if let Some(v) = annotations.get("emu.dev/port") {
        raw.port = Some(v.parse().map_err(|_| {
            err(
                &["emu.dev/port"],
                format!("emu.dev/port: {v:?} is not a port"),
            )
        })?);
    }
    raw.database = annotations.get("emu.dev/database").cloned();
    raw.autoscaling_profile = annotations.get("emu.dev/autoscaling-profile").cloned();
    raw.autoscaling = annotations
        .iter()
        .filter(|(k, _)| k.starts_with("autoscaling.knative.dev/") || k.starts_with("emu.dev/"))
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "emu.dev/cold-start"
                    | "emu.dev/queue-timeout"
                    | "emu.dev/port"
                    | "emu.dev/database"
                    | "emu.dev/autoscaling-profile"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();

    raw.concurrency = int_at(tspec, "containerConcurrency");
    if raw.concurrency == Some(0) {
        // Knative's 0 means "unlimited"; Cloud Run caps at 1000.
        warnings
            .push("containerConcurrency 0 (unlimited) is run as 1000, Cloud Run's maximum".into());
        raw.concurrency = Some(1000);
    }
    raw.timeout = int_at(tspec, "timeoutSeconds").map(|s| Duration::from_secs(s.max(0) as u64));

    let containers = tspec
        .get("containers")
        .and_then(Value::as_sequence)
        .ok_or_else(|| {
            err(
                &["containers:"],
                "spec.template.spec.containers is missing: a service needs a container".into(),
            )
        })?;
    if containers.is_empty() {
        return Err(err(
            &["containers:"],
            "spec.template.spec.containers is empty".into(),
        ));
    }
    // With sidecars, the ingress container is the one that declares a port.
    let ingress = containers
        .iter()
        .position(|c| c.get("ports").is_some())
        .unwrap_or(0);
    if containers.len() > 1 {
        warnings.push(format!(
            "{} containers: emu runs the ingress container only (sidecars are not modelled)",
            containers.len()
        ));
    }
    let c = containers[ingress]
        .as_mapping()
        .ok_or_else(|| err(&["containers:"], "a container must be a mapping".into()))?;
    raw.image = str_at(c, "image").map(str::to_string);
    if command.is_empty() && raw.image.is_none() {
        return Err(err(&["containers:"], "the container has no image and no command was given: run `emu up -f FILE -- CMD ARGS…`".into()));
    }
    raw.command = (!command.is_empty()).then(|| command.to_vec());
    raw.container_port = c
        .get("ports")
        .and_then(Value::as_sequence)
        .and_then(|p| p.first())
        .and_then(|p| p.get("containerPort"))
        .and_then(Value::as_i64);

    if let Some(env) = c.get("env").and_then(Value::as_sequence) {
        for e in env {
            let Some(n) = e.get("name").and_then(Value::as_str) else {
                return Err(err(&["env:"], "an env entry has no name".into()));
            };
            if let Some(v) = e.get("value") {
                raw.env.push((n.to_string(), scalar(v).unwrap_or_default()));
            } else if let Some(r) = e.get("valueFrom").and_then(|v| v.get("secretKeyRef")) {
                let name = r.get("name").and_then(Value::as_str).unwrap_or("");
                let version = r
                    .get("key")
                    .and_then(scalar)
                    .unwrap_or_else(|| "latest".into());
                raw.secrets
                    .add(n, &format!("{name}:{version}"))
                    .map_err(|m| err(&["env:", &format!("name: {n}")], format!("env {n}: {m}")))?;
            } else {
                raw.env.push((n.to_string(), String::new()));
            }
        }
    }
    // Secret volumes: `volumes[].secret` mounted by `volumeMounts[]` at a path.
    if let Some(mounts) = c.get("volumeMounts").and_then(Value::as_sequence) {
        let volumes = tspec
            .get("volumes")
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        for m in mounts {
            let vname = m.get("name").and_then(Value::as_str).unwrap_or("");
            let mount_path = m.get("mountPath").and_then(Value::as_str).unwrap_or("");
            let vol = volumes
                .iter()
                .find(|v| v.get("name").and_then(Value::as_str) == Some(vname));
            let Some(secret) = vol.and_then(|v| v.get("secret")) else {
                unmodelled.push(format!(
                    "spec.template.spec.volumes[{vname}] (not a secret volume)"
                ));
                continue;
            };
            let secret_name = secret
                .get("secretName")
                .and_then(Value::as_str)
                .unwrap_or("");
            let items = secret
                .get("items")
                .and_then(Value::as_sequence)
                .cloned()
                .unwrap_or_default();
            let base = mount_path.trim_end_matches('/');
            if items.is_empty() {
                raw.secrets
                    .add(
                        &format!("{base}/{secret_name}"),
                        &format!("{secret_name}:latest"),
                    )
                    .map_err(|m| err(&["volumeMounts:"], m))?;
            }
            for it in items {
                let version = it
                    .get("key")
                    .and_then(scalar)
                    .unwrap_or_else(|| "latest".into());
                let file = it
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or(secret_name);
                raw.secrets
                    .add(
                        &format!("{base}/{file}"),
                        &format!("{secret_name}:{version}"),
                    )
                    .map_err(|m| err(&["volumeMounts:"], m))?;
            }
        }
    }
    if let Some(d) = annotations.get("emu.dev/depends-on") {
        raw.depends_on = d
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    raw.startup_probe = yaml_probe(c.get("startupProbe"), true, &|m| err(&["startupProbe:"], m))?;
    raw.liveness_probe = yaml_probe(c.get("livenessProbe"), false, &|m| {
        err(&["livenessProbe:"], m)
    })?;
    raw.readiness_probe = yaml_probe(c.get("readinessProbe"), false, &|m| {
        err(&["readinessProbe:"], m)
    })?;

    if let Some(traffic) = spec.get("traffic").and_then(Value::as_sequence) {
        let simple =
            traffic.len() == 1 && traffic[0].get("percent").and_then(Value::as_i64) == Some(100);
        if !simple {
            warnings.push("spec.traffic splits traffic between revisions: emu runs the template revision only".into());
        }
    }

    unmodelled.retain(|p| {
        !SILENT
            .iter()
            .any(|s| p == s || p.starts_with(&format!("{s}.")) || p.starts_with(&format!("{s}[")))
    });
    unmodelled.sort();
    unmodelled.dedup();
    if !unmodelled.is_empty() {
        warnings.insert(
            0,
            format!(
                "fields emu does not model (ignored): {}",
                unmodelled.join(", ")
            ),
        );
    }

    let locate_field = |field: &str| -> Option<usize> {
        match field {
            "concurrency" => at(&["containerConcurrency:"]),
            "timeout" => at(&["timeoutSeconds:"]),
            "min_instances" => at(&["autoscaling.knative.dev/minScale"])
                .or_else(|| at(&["autoscaling.knative.dev/min-scale"])),
            "max_instances" => at(&["autoscaling.knative.dev/maxScale"])
                .or_else(|| at(&["autoscaling.knative.dev/max-scale"])),
            "container_port" => at(&["containerPort:"]),
            "name" => at(&["metadata:", "name:"]),
            "startup_probe" => at(&["startupProbe:"]),
            "liveness_probe" => at(&["livenessProbe:"]),
            "cold_start" => at(&["emu.dev/cold-start"]),
            "port" => at(&["emu.dev/port"]),
            "database" => at(&["emu.dev/database"]),
            "profile" => at(&["emu.dev/autoscaling-profile"]),
            annotation if annotation.contains('/') => at(&[annotation]),
            env => at(&["env:", &format!("name: {env}")]),
        }
    };
    let service = validate_service(raw, path, &locate_field, command)?;
    let project_dir = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let cfg = Config {
        source: path.to_path_buf(),
        project_dir,
        frontdoor: FrontdoorSettings::default(),
        services: vec![service],
        postgres: annotations
            .contains_key(CLOUDSQL)
            .then(super::stores::PostgresConfig::default),
        redis: None,
        secrets: BTreeMap::new(),
        jobs: Vec::new(),
        warnings: warnings
            .into_iter()
            .map(|w| format!("{}: {w}", path.display()))
            .collect(),
    };
    Ok(cfg)
}

/// A Cloud Run Job (`run.googleapis.com/v1`, kind `Job`): its tasks run the container's
/// `command` + `args` locally (or `command`, the words after `--`, when given).
fn parse_job(
    root: &Mapping,
    path: &Path,
    command: &[String],
    at: &dyn Fn(&[&str]) -> Option<usize>,
) -> Result<Config, SpecError> {
    let err = |needles: &[&str], msg: String| SpecError::new(path, at(needles), msg);
    let name = map_at(root, "metadata")
        .and_then(|m| str_at(m, "name"))
        .ok_or_else(|| {
            err(
                &["metadata:"],
                "metadata.name is missing: the job needs a name".into(),
            )
        })?;
    let exec = map_at(root, "spec")
        .and_then(|s| map_at(s, "template"))
        .and_then(|t| map_at(t, "spec"))
        .ok_or_else(|| err(&["spec:"], "spec.template.spec is missing".into()))?;
    let task = map_at(exec, "template")
        .and_then(|t| map_at(t, "spec"))
        .ok_or_else(|| {
            err(
                &["template:"],
                "spec.template.spec.template.spec is missing".into(),
            )
        })?;
    let c = task
        .get("containers")
        .and_then(Value::as_sequence)
        .and_then(|c| c.first())
        .and_then(Value::as_mapping)
        .ok_or_else(|| err(&["containers:"], "the job has no container".into()))?;
    let mut argv: Vec<String> = command.to_vec();
    if argv.is_empty() {
        for k in ["command", "args"] {
            if let Some(seq) = c.get(k).and_then(Value::as_sequence) {
                argv.extend(seq.iter().filter_map(scalar));
            }
        }
    }
    if argv.is_empty() {
        return Err(err(&["containers:"], format!("job {name} has no command to run locally: give `command` in the YAML or run `emu job run -f FILE -- CMD ARGS…`")));
    }
    let mut env = Vec::new();
    let mut secrets = crate::secrets::SecretUse::default();
    if let Some(list) = c.get("env").and_then(Value::as_sequence) {
        for e in list {
            let Some(n) = e.get("name").and_then(Value::as_str) else {
                continue;
            };
            if let Some(r) = e.get("valueFrom").and_then(|v| v.get("secretKeyRef")) {
                let sname = r.get("name").and_then(Value::as_str).unwrap_or("");
                let version = r
                    .get("key")
                    .and_then(scalar)
                    .unwrap_or_else(|| "latest".into());
                secrets
                    .add(n, &format!("{sname}:{version}"))
                    .map_err(|m| err(&["env:"], m))?;
            } else {
                env.push((
                    n.to_string(),
                    e.get("value").and_then(scalar).unwrap_or_default(),
                ));
            }
        }
    }
    let int = |m: &Mapping, k: &str| match m.get(k) {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let tasks = int(exec, "taskCount").unwrap_or(1);
    if !(1..=10_000).contains(&tasks) {
        return Err(err(
            &["taskCount:"],
            format!("taskCount {tasks} is out of range: 1 to 10000"),
        ));
    }
    let max_retries = int(task, "maxRetries").unwrap_or(3);
    if !(0..=10).contains(&max_retries) {
        return Err(err(
            &["maxRetries:"],
            format!("maxRetries {max_retries} is out of range: 0 to 10"),
        ));
    }
    let timeout = int(task, "timeoutSeconds").unwrap_or(600);
    if !(1..=168 * 3600).contains(&timeout) {
        return Err(err(
            &["timeoutSeconds:"],
            format!("timeoutSeconds {timeout} is out of range: 1 to 604800"),
        ));
    }
    let job = super::JobSpec {
        name: name.to_string(),
        command: argv,
        tasks: tasks as u32,
        parallelism: int(exec, "parallelism").unwrap_or(0).clamp(0, 10_000) as u32,
        max_retries: max_retries as u32,
        timeout: Duration::from_secs(timeout as u64),
        env,
        secrets,
        database: None,
        database_env: "DATABASE_URL".into(),
        redis_env: "REDIS_URL".into(),
        workdir: None,
    };
    Ok(Config {
        source: path.to_path_buf(),
        project_dir: std::env::current_dir().unwrap_or_else(|_| ".".into()),
        frontdoor: FrontdoorSettings::default(),
        services: Vec::new(),
        postgres: None,
        redis: None,
        secrets: BTreeMap::new(),
        jobs: vec![job],
        warnings: Vec::new(),
    })
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

fn yaml_probe(
    v: Option<&Value>,
    startup: bool,
    err: &dyn Fn(String) -> SpecError,
) -> Result<Option<Probe>, SpecError> {
    let Some(v) = v else { return Ok(None) };
    let action = if let Some(h) = v.get("httpGet") {
        ProbeAction::Http {
            path: h
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or("/")
                .to_string(),
        }
    } else if v.get("tcpSocket").is_some() {
        ProbeAction::Tcp
    } else if v.get("grpc").is_some() {
        return Err(err(
            "gRPC probes are not supported by emu yet: use httpGet or tcpSocket".into(),
        ));
    } else {
        return Err(err("a probe needs httpGet or tcpSocket".into()));
    };
    let mut p = if startup {
        Probe::explicit_startup(action)
    } else {
        Probe::explicit_liveness(action)
    };
    let secs = |k: &str| v.get(k).and_then(Value::as_i64);
    if let Some(s) = secs("initialDelaySeconds") {
        p.initial_delay = Duration::from_secs(s.max(0) as u64);
    }
    if let Some(s) = secs("periodSeconds") {
        p.period = Duration::from_secs(s.max(0) as u64);
    }
    if let Some(s) = secs("timeoutSeconds") {
        p.timeout = Duration::from_secs(s.max(0) as u64);
    }
    if let Some(s) = secs("failureThreshold") {
        p.failure_threshold = s.clamp(0, 1000) as u32;
    }
    Ok(Some(p))
}

fn map_at<'a>(m: &'a Mapping, k: &str) -> Option<&'a Mapping> {
    m.get(k).and_then(Value::as_mapping)
}

fn str_at<'a>(m: &'a Mapping, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

fn int_at(m: &Mapping, k: &str) -> Option<i64> {
    match m.get(k)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// Lists every leaf path not under a known prefix.
fn collect_unknown(v: &Value, path: &str, known: &[&str], out: &mut Vec<String>) {
    if known.iter().any(|k| {
        path == *k || path.starts_with(&format!("{k}.")) || path.starts_with(&format!("{k}["))
    }) {
        return;
    }
    let is_prefix = path.is_empty()
        || known
            .iter()
            .any(|k| k.starts_with(&format!("{path}.")) || k.starts_with(&format!("{path}[")));
    match v {
        Value::Mapping(m) if is_prefix => {
            for (k, child) in m {
                let Some(k) = k.as_str() else { continue };
                let p = if path.is_empty() {
                    k.to_string()
                } else {
                    format!("{path}.{k}")
                };
                collect_unknown(child, &p, known, out);
            }
        }
        Value::Sequence(s) if is_prefix => {
            for child in s {
                collect_unknown(child, &format!("{path}[]"), known, out);
            }
        }
        _ => out.push(path.to_string()),
    }
}
