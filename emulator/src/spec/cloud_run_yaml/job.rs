//! A Cloud Run Job (`run.googleapis.com/v1`, kind `Job`): its tasks run the container's
//! `command` + `args` locally (or the words after `--`, when given).

use std::collections::BTreeMap;
use std::time::Duration;

use super::super::types::{JobSpec, Origin};
use super::super::{limits, SpecError};
use super::container::secret_key_ref;
use super::node::Node;
use super::Place;
use crate::secrets::SecretUse;

/// The nodes of a Job that emu reads.
struct JobNodes<'a> {
    name: &'a str,
    name_line: usize,
    /// The execution template's spec: `taskCount`, `parallelism`.
    exec: &'a Node,
    /// The task template's spec: `maxRetries`, `timeoutSeconds`, `containers`.
    task: &'a Node,
    container: &'a Node,
}

/// Finds the job's name, templates and container; a missing one is reported at the line of the
/// deepest key on the way that is written.
fn nodes<'a>(root: &'a Node, place: &Place<'_>) -> Result<JobNodes<'a>, SpecError> {
    let metadata = root.map_at("metadata");
    let (name, name_line) = metadata
        .and_then(|m| Some((m.get("name")?.as_str()?, m.line_of("name"))))
        .ok_or_else(|| {
            place.err(
                root.line_of("metadata"),
                "metadata.name is missing: the job needs a name".into(),
            )
        })?;
    let spec = root.map_at("spec");
    let template = spec.and_then(|s| s.map_at("template"));
    let exec = template.and_then(|t| t.map_at("spec")).ok_or_else(|| {
        let line = match (spec, template) {
            (Some(s), Some(_)) => s.line_of("template"),
            _ => root.line_of("spec"),
        };
        place.err(line, "spec.template.spec is missing".into())
    })?;
    let task_template = exec.map_at("template");
    let task = task_template
        .and_then(|t| t.map_at("spec"))
        .ok_or_else(|| {
            let line = match (template, task_template) {
                (_, Some(_)) => exec.line_of("template"),
                (Some(t), None) => t.line_of("spec"),
                (None, None) => root.line_of("spec"),
            };
            place.err(line, "spec.template.spec.template.spec is missing".into())
        })?;
    let container = task
        .get("containers")
        .and_then(Node::as_seq)
        .and_then(|c| c.first())
        .filter(|c| c.as_map().is_some())
        .ok_or_else(|| {
            place.err(
                task.key_line("containers")
                    .unwrap_or(exec.line_of("template")),
                "the job has no container".into(),
            )
        })?;
    Ok(JobNodes {
        name,
        name_line,
        exec,
        task,
        container,
    })
}

/// A job container's env: plain values, and secrets with the line of each.
#[derive(Default)]
struct JobEnv {
    values: Vec<(String, String)>,
    secrets: SecretUse,
    secret_lines: BTreeMap<String, usize>,
}

fn env(c: &Node, place: &Place<'_>) -> Result<JobEnv, SpecError> {
    let mut out = JobEnv::default();
    let (env, secrets, lines) = (&mut out.values, &mut out.secrets, &mut out.secret_lines);
    for e in c.get("env").and_then(Node::as_seq).unwrap_or(&[]) {
        let Some(n) = e.get("name").and_then(Node::as_str) else {
            continue;
        };
        if let Some(r) = e.get("valueFrom").and_then(|v| v.get("secretKeyRef")) {
            let line = e.line_of("name");
            secrets
                .add(n, &secret_key_ref(r))
                .map_err(|m| place.err(line, m))?;
            lines.insert(n.to_string(), line);
        } else {
            env.push((
                n.to_string(),
                e.get("value").and_then(Node::text).unwrap_or_default(),
            ));
        }
    }
    Ok(out)
}

pub(super) fn read(
    root: &Node,
    command: &[String],
    place: &Place<'_>,
) -> Result<JobSpec, SpecError> {
    let n = nodes(root, place)?;
    let mut argv: Vec<String> = command.to_vec();
    if argv.is_empty() {
        for k in ["command", "args"] {
            if let Some(seq) = n.container.get(k).and_then(Node::as_seq) {
                argv.extend(seq.iter().filter_map(Node::text));
            }
        }
    }
    if argv.is_empty() {
        return Err(place.err(n.container.line, format!("job {} has no command to run locally: give `command` in the YAML or run `emu job run -f FILE -- CMD ARGS…`", n.name)));
    }
    let JobEnv {
        values: env,
        secrets,
        secret_lines,
    } = env(n.container, place)?;
    let count = |m: &Node, k: &str, default: i64, range: std::ops::RangeInclusive<i64>, what| {
        let v = m.get(k).and_then(Node::int).unwrap_or(default);
        if range.contains(&v) {
            Ok(v)
        } else {
            let message = format!("{k} {v} is out of range: {what}");
            Err(place.err(m.line_of(k), message))
        }
    };
    let tasks = count(
        n.exec,
        "taskCount",
        1,
        1..=i64::from(limits::MAX_TASKS),
        "1 to 10000",
    )?;
    let retries = count(
        n.task,
        "maxRetries",
        3,
        0..=i64::from(limits::MAX_RETRIES),
        "0 to 10",
    )?;
    let max_timeout = limits::MAX_TASK_TIMEOUT.as_secs() as i64;
    let timeout = count(
        n.task,
        "timeoutSeconds",
        600,
        1..=max_timeout,
        "1 to 604800",
    )?;
    let parallelism = n.exec.get("parallelism").and_then(Node::int).unwrap_or(0);
    Ok(JobSpec {
        name: n.name.to_string(),
        command: argv,
        tasks: tasks as u32,
        parallelism: parallelism.clamp(0, i64::from(limits::MAX_TASKS)) as u32,
        max_retries: retries as u32,
        timeout: Duration::from_secs(timeout as u64),
        env,
        secrets,
        database: None,
        database_env: "DATABASE_URL".into(),
        redis_env: "REDIS_URL".into(),
        workdir: None,
        origin: Origin {
            file: place.file.to_path_buf(),
            name_line: Some(n.name_line),
            secret_lines,
            ..Origin::default()
        },
    })
}
