//! What `emu up` does before the first instance starts: PostgreSQL and Redis up and healthy,
//! each service's env (backends' URLs, secrets, the metadata server) and secret files, and the
//! jobs services depend on (migrations) run to success.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::UpError;
use crate::backends::{Backends, BackendsPlan, Mode};
use crate::secrets::SecretStore;
use crate::spec::{Config, JobSpec};

/// Starts the backends every service of `cfg` needs, saying what it starts.
pub(super) async fn start_backends(cfg: &Config) -> Result<(Backends, bool), UpError> {
    let databases = cfg
        .services
        .iter()
        .filter_map(|s| s.database.clone())
        .collect();
    let plan = BackendsPlan::for_config(cfg, databases);
    let wanted = plan.postgres.mode != Mode::None || plan.redis.mode != Mode::None;
    if wanted {
        eprintln!(
            "emu: starting backends (postgres: {}, redis: {})",
            plan.postgres.mode, plan.redis.mode
        );
    }
    let backends = crate::backends::start(plan).await?;
    Ok((backends, wanted))
}

/// Prints where each store is, or why it is off.
pub(super) fn report_backends(status: &serde_json::Value) {
    for store in ["postgres", "redis"] {
        let st = &status[store];
        match st["url"].as_str() {
            Some(url) => eprintln!(
                "emu: {store} ({}) at {url}",
                st["mode"].as_str().unwrap_or("?")
            ),
            None => {
                if let Some(why) = st["reason"].as_str().or(st["state"].as_str()) {
                    eprintln!("emu: {store} off: {why}");
                }
            }
        }
    }
}

/// Env and secret files of each service's instances, by service name.
#[derive(Debug, Default)]
pub(super) struct ServiceInputs {
    pub env: HashMap<String, Vec<(String, String)>>,
    pub mounts: HashMap<String, Vec<(PathBuf, String)>>,
}

/// Every service's env: the backends' URLs under the names it chose, and its secrets.
pub(super) fn service_inputs(
    cfg: &Config,
    store: &SecretStore,
    backends: &Backends,
) -> Result<ServiceInputs, UpError> {
    let mut inputs = ServiceInputs::default();
    for s in &cfg.services {
        let mut env = backends.env(s.database.as_deref(), &s.database_env, &s.redis_env);
        if let Some((host_env, port_env)) = &s.redis_host_env {
            env.extend(backends.redis_host_port(host_env, port_env));
        }
        store.check(&s.name, &s.secrets)?;
        let m = store.materialize(&s.name, &s.secrets, &cfg.project_dir)?;
        env.extend(m.env);
        inputs.mounts.insert(s.name.clone(), m.mounts);
        inputs.env.insert(s.name.clone(), env);
    }
    Ok(inputs)
}

/// Says where the metadata server is and who it says instances are.
pub(super) fn report_metadata(m: &crate::metadata::MetadataServer) {
    let id = m.identity();
    eprintln!(
        "emu: metadata server on http://{} (project {}, region {}, service account {})",
        m.addr(),
        id.project_id,
        id.region,
        id.service_account
    );
}

/// The metadata server as `/_emu/status` shows it.
pub(super) fn metadata_status(m: &crate::metadata::MetadataServer) -> serde_json::Value {
    let id = m.identity();
    serde_json::json!({
        "address": m.addr().to_string(),
        "project_id": id.project_id,
        "region": id.region,
        "service_account": id.service_account,
    })
}

/// A job's env: the metadata server's, the backends' URLs and its secrets.
fn job_env(
    store: &SecretStore,
    backends: &Backends,
    job: &JobSpec,
    project_dir: &Path,
    metadata: &[(String, String)],
) -> Result<Vec<(String, String)>, UpError> {
    let mut env = metadata.to_vec();
    env.extend(backends.env(job.database.as_deref(), &job.database_env, &job.redis_env));
    store.check(&job.name, &job.secrets)?;
    env.extend(store.materialize(&job.name, &job.secrets, project_dir)?.env);
    Ok(env)
}

/// Runs the jobs services depend on (migrations), each to success, before any service starts.
pub(super) async fn run_needed_jobs(
    cfg: &Config,
    store: &SecretStore,
    backends: &Backends,
    metadata: &[(String, String)],
) -> Result<(), UpError> {
    let needed = cfg
        .jobs
        .iter()
        .filter(|j| cfg.services.iter().any(|s| s.depends_on.contains(&j.name)));
    for job in needed {
        eprintln!(
            "emu: running job {} before the services that depend on it",
            job.name
        );
        let env = job_env(store, backends, job, &cfg.project_dir, metadata)?;
        let exec = crate::jobs::run(job, &env).await;
        eprintln!("emu: {}", exec.describe());
        if !exec.succeeded {
            return Err(UpError::JobFailed {
                job: job.name.clone(),
            });
        }
    }
    Ok(())
}
