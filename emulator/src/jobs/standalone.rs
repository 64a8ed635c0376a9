//! `emu job run NAME`: one execution outside `emu up`. The job reaches the backends of the emu
//! running in the same folder (from `.emu/backends.json`), or, with none running, backends of
//! its own for the length of the execution; and a metadata server of its own, as a Cloud Run
//! job's tasks have one.

use crate::backends::{self, BackendError, Backends, BackendsPlan};
use crate::secrets::{SecretError, SecretStore};
use crate::spec::{Config, JobSpec};
use crate::state::BackendsState;

use super::Execution;

/// Why a job could not run, or ran and failed. [`JobRunError::exit_code`]: 2 for what the user
/// must change, 1 for what failed at run time.
#[derive(Debug, thiserror::Error)]
pub enum JobRunError {
    #[error("no job {wanted} in {config} (jobs: {known})")]
    NoSuchJob {
        wanted: String,
        config: String,
        known: String,
    },
    #[error(transparent)]
    Secrets(SecretError),
    #[error(transparent)]
    SecretFiles(SecretError),
    #[error(transparent)]
    Backends(#[from] BackendError),
    #[error("{}", .0.describe())]
    Failed(Box<Execution>),
    #[error(transparent)]
    Metadata(#[from] crate::metadata::MetadataError),
}

impl JobRunError {
    pub fn exit_code(&self) -> u8 {
        match self {
            JobRunError::NoSuchJob { .. } | JobRunError::Secrets(_) => 2,
            JobRunError::SecretFiles(_)
            | JobRunError::Backends(_)
            | JobRunError::Failed(_)
            | JobRunError::Metadata(_) => 1,
        }
    }
}

/// The job `name` (or the config's only job).
fn find<'a>(cfg: &'a Config, name: Option<&str>) -> Result<&'a JobSpec, JobRunError> {
    let job = match (name, cfg.jobs.len()) {
        (Some(n), _) => cfg.jobs.iter().find(|j| j.name == n),
        (None, 1) => cfg.jobs.first(),
        (None, _) => None,
    };
    job.ok_or_else(|| {
        let names: Vec<&str> = cfg.jobs.iter().map(|j| j.name.as_str()).collect();
        JobRunError::NoSuchJob {
            wanted: name.map_or_else(|| "named".into(), |n| format!("{n:?}")),
            config: cfg.source.display().to_string(),
            known: if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            },
        }
    })
}

/// The running emu's backend URLs, under the names the job chose.
fn running_env(running: &BackendsState, job: &JobSpec) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(url) = &running.database_url {
        let url = match &job.database {
            Some(d) => backends::with_database(url, d),
            None => url.clone(),
        };
        env.push((job.database_env.clone(), url));
    }
    if let Some(url) = &running.redis_url {
        env.push((job.redis_env.clone(), url.clone()));
    }
    env
}

/// Runs one execution of the job `name` of `cfg` to completion.
pub async fn run_outside_up(cfg: &Config, name: Option<&str>) -> Result<Execution, JobRunError> {
    let job = find(cfg, name)?;
    let store = SecretStore::load(&cfg.secrets, &cfg.project_dir).map_err(JobRunError::Secrets)?;
    // Before the backends, so that a failure here leaves nothing started.
    let metadata = crate::metadata::start(&cfg.project).await?;
    let (backends_env, own): (_, Option<Backends>) =
        match BackendsState::read_live(&cfg.project_dir) {
            Some(running) => (running_env(&running, job), None),
            None => {
                let plan = BackendsPlan::for_config(cfg, job.database.iter().cloned().collect());
                let b = backends::start(plan).await?;
                (
                    b.env(job.database.as_deref(), &job.database_env, &job.redis_env),
                    Some(b),
                )
            }
        };
    let mut env = metadata.env();
    env.extend(backends_env);
    let secrets = store
        .check(&job.name, &job.secrets)
        .map_err(JobRunError::Secrets)
        .and_then(|()| {
            store
                .materialize(&job.name, &job.secrets, &cfg.project_dir)
                .map_err(JobRunError::SecretFiles)
        });
    let exec = match secrets {
        Ok(m) => {
            env.extend(m.env);
            Ok(super::run(job, &env).await)
        }
        Err(e) => Err(e),
    };
    if let Some(b) = own {
        b.stop().await;
    }
    metadata.stop().await;
    let exec = exec?;
    if exec.succeeded {
        Ok(exec)
    } else {
        Err(JobRunError::Failed(Box::new(exec)))
    }
}
