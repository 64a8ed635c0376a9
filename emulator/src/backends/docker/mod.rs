//! Docker: the backing stores as containers, created through the Docker Engine API (bollard),
//! and [`DockerInstance`], which runs a service image as one instance.
//!
//! emu talks to whatever engine `DOCKER_HOST` names (else `/var/run/docker.sock`): Docker
//! Desktop, colima, Rancher Desktop, Podman's socket, Debian's `docker.io`. It needs neither the
//! compose plugin nor the docker CLI for the stores. The client negotiates the API version, so
//! older engines (Debian's 20.10 speaks API 1.41) work.
//!
//! Every container and volume emu creates carries [`LABEL_PROJECT`] and [`LABEL_STORE`], so
//! `emu down` finds them by label. `docker/compose.yaml` describes the same containers for
//! people who want the stores by hand; a test keeps the two in step.

mod cleanup;
mod instance;
mod stores;

use std::path::Path;
use std::time::Duration;

use bollard::Docker;

use super::BackendError;

pub(crate) use cleanup::{remove_project, stop_project};
pub use instance::{run_args, DockerInstance, InstanceOptions};
pub(crate) use stores::StoreContainer;
pub use stores::{postgres_spec, redis_spec, StoreSpec};

/// Label naming the project (`emu-<folder>`) on every container and volume emu creates.
pub const LABEL_PROJECT: &str = "dev.emu.project";
/// Label naming the store (`postgres` or `redis`) of a container or volume.
pub const LABEL_STORE: &str = "dev.emu.store";

/// Bound on one answer from the engine (version negotiation, ping).
const ENGINE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the client looks for the engine: `DOCKER_HOST`, or the default socket.
pub fn engine_address() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// A client of the engine `DOCKER_HOST` names, with the API version negotiated, once the engine
/// answers a ping. The error says what to do.
pub async fn engine() -> Result<Docker, BackendError> {
    let no_engine = |detail: String| BackendError::NoEngine {
        host: engine_address(),
        detail,
    };
    let docker = Docker::connect_with_defaults().map_err(|e| no_engine(e.to_string()))?;
    let docker = match tokio::time::timeout(ENGINE_TIMEOUT, docker.negotiate_version()).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return Err(no_engine(e.to_string())),
        Err(_) => return Err(no_engine(format!("no answer within {ENGINE_TIMEOUT:?}"))),
    };
    match tokio::time::timeout(ENGINE_TIMEOUT, docker.ping()).await {
        Ok(Ok(_)) => Ok(docker),
        Ok(Err(e)) => Err(no_engine(e.to_string())),
        Err(_) => Err(no_engine(format!("no answer within {ENGINE_TIMEOUT:?}"))),
    }
}

/// True when a Docker engine answers within 5 s.
pub async fn docker_available() -> bool {
    engine().await.is_ok()
}

/// The project name for a project folder: `emu-<folder>`, lowercased, so containers are
/// `emu-<folder>-postgres` and `emu-<folder>-redis`.
pub fn compose_project(project_dir: &Path) -> String {
    let abs = std::fs::canonicalize(project_dir).unwrap_or_else(|_| project_dir.to_path_buf());
    let folder: String = abs
        .file_name()
        .map(|f| f.to_string_lossy().to_lowercase())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let folder = folder.trim_matches('-');
    if folder.is_empty() {
        "emu-project".into()
    } else {
        format!("emu-{folder}")
    }
}

/// The Docker network of `docker compose -f docker/compose.yaml` run by hand with
/// `EMU_PROJECT=emu-<folder>` (`<project>_default`): an instance container on it reaches the
/// stores as `postgres:5432` / `redis:6379`.
pub fn compose_network(project_dir: &Path) -> String {
    format!("{}_default", compose_project(project_dir))
}

/// True when `e` is the engine's 404 (no such container, volume or image).
fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// An engine error while doing `what`, as a [`BackendError`].
fn engine_error(what: impl std::fmt::Display, e: bollard::errors::Error) -> BackendError {
    BackendError::Docker(format!("{what}: {e}"))
}
