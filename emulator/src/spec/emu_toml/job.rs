//! A `[[job]]` table → validated [`JobSpec`].

use std::path::Path;

use super::super::types::{JobSpec, Origin};
use super::super::{is_dns_label, limits, SpecError};
use super::schema::{Command, JobToml};
use super::service::{secret_use, Table};

pub(super) fn job_spec(
    j: JobToml,
    table: &Table<'_>,
    project_dir: &Path,
) -> Result<JobSpec, SpecError> {
    if !is_dns_label(&j.name) {
        return Err(table.err(&["name"], format!("job name {:?} is not valid: lowercase letters, digits and '-', starting with a letter", j.name)));
    }
    let command = match &j.command {
        Command::Argv(v) if !v.is_empty() && !v[0].trim().is_empty() => v.clone(),
        Command::Shell(line) if !line.trim().is_empty() => j.command.argv(),
        _ => {
            return Err(table.err(
                &["command"],
                "command is empty: give the program and its arguments".into(),
            ))
        }
    };
    let tasks = j.tasks.unwrap_or(1);
    if !(1..=limits::MAX_TASKS).contains(&tasks) {
        return Err(table.err(
            &["tasks"],
            format!("tasks = {tasks} is out of range: Cloud Run allows 1 to 10000"),
        ));
    }
    let max_retries = j.max_retries.unwrap_or(3);
    if max_retries > limits::MAX_RETRIES {
        return Err(table.err(
            &["max_retries"],
            format!("max_retries = {max_retries} is out of range: Cloud Run allows 0 to 10"),
        ));
    }
    let timeout = table
        .duration(&["timeout"], j.timeout.as_ref())?
        .unwrap_or(limits::DEFAULT_TASK_TIMEOUT);
    if timeout.is_zero() || timeout > limits::MAX_TASK_TIMEOUT {
        return Err(table.err(
            &["timeout"],
            "task timeout is out of range: Cloud Run allows 1 s to 168 h".into(),
        ));
    }
    for k in j.env.keys() {
        if limits::RESERVED_ENV.contains(&k.as_str()) || k.starts_with("CLOUD_RUN_") {
            return Err(table.err(
                &["env", k],
                format!("{k} is set by Cloud Run for a job's tasks: remove it from env"),
            ));
        }
    }
    let secrets = secret_use(&j.secrets, table)?;
    let origin = Origin {
        file: table.file.to_path_buf(),
        name_line: table.line(&["name"]),
        port_line: None,
        depends_on_line: None,
        secret_lines: j
            .secrets
            .keys()
            .filter_map(|t| table.line(&["secrets", t]).map(|l| (t.clone(), l)))
            .collect(),
    };
    Ok(JobSpec {
        name: j.name,
        command,
        tasks,
        parallelism: j.parallelism.unwrap_or(0),
        max_retries,
        timeout,
        env: j.env.into_iter().collect(),
        secrets,
        database: j.database,
        database_env: j.database_env.unwrap_or_else(|| "DATABASE_URL".into()),
        redis_env: j.redis_env.unwrap_or_else(|| "REDIS_URL".into()),
        workdir: j.workdir.map(|w| project_dir.join(w)),
        origin,
    })
}
