//! The built-in demo: what `emu up` runs in a folder with no config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::stores::{PostgresConfig, RedisConfig};
use super::types::{Config, Origin, Probe, RunnerSpec, ServiceSpec};
use super::{limits, resolve_autoscaler, ColdStartDelay};
use crate::model::{AutoscalerConfig, Profile};

/// `emu demo-app` (run by `exe`) as service `demo` (concurrency 80, min 0, max 10).
pub fn demo_config(exe: &Path, project_dir: &Path) -> Config {
    let autoscaler = resolve_autoscaler("cloud-run", 80, 0, 10, &BTreeMap::new())
        .unwrap_or_else(|_| AutoscalerConfig::for_profile(Profile::CloudRun, 80));
    let source = PathBuf::from("(built-in demo)");
    let service = ServiceSpec {
        autoscaler,
        name: "demo".into(),
        revision: "demo-00001-emu".into(),
        runner: RunnerSpec::Process {
            command: vec![exe.display().to_string(), "demo-app".into()],
        },
        concurrency: 80,
        min_instances: 0,
        max_instances: 10,
        timeout: limits::DEFAULT_TIMEOUT,
        container_port: limits::DEFAULT_CONTAINER_PORT,
        protocol: super::Protocol::Http1,
        port: None,
        env: Vec::new(),
        startup_probe: Probe::default_startup(),
        liveness_probe: None,
        readiness_probe: None,
        cold_start: ColdStartDelay::None,
        queue_timeout: None,
        shutdown_grace: limits::SHUTDOWN_GRACE,
        autoscaling_profile: "cloud-run".into(),
        autoscaling: BTreeMap::new(),
        database: None,
        database_env: "DATABASE_URL".into(),
        redis_env: "REDIS_URL".into(),
        redis_host_env: None,
        workdir: None,
        secrets: Default::default(),
        depends_on: Vec::new(),
        origin: Origin {
            file: source.clone(),
            ..Origin::default()
        },
    };
    let mut cfg = Config::empty(source, project_dir.to_path_buf());
    cfg.services.push(service);
    // The demo stands for a service with Cloud SQL and Memorystore: real ones when they can be
    // had (Docker, or installed servers), else it runs without them.
    cfg.postgres = Some(PostgresConfig::default());
    cfg.redis = Some(RedisConfig::default());
    cfg
}
