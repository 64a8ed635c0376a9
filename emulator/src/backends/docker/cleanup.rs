//! `emu down`'s part in docker mode: the project's store containers and volumes, found by
//! their [`LABEL_PROJECT`] label.

use std::collections::HashMap;
use std::path::Path;

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder,
};
use bollard::Docker;

use super::super::BackendError;
use super::{compose_project, engine_error, stores::stop_container, LABEL_PROJECT};

fn project_filter(project_dir: &Path) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_PROJECT}={}", compose_project(project_dir))],
    )])
}

/// Names of the project's containers (running or not).
async fn project_containers(
    docker: &Docker,
    project_dir: &Path,
    all: bool,
) -> Result<Vec<String>, BackendError> {
    let opts = ListContainersOptionsBuilder::default()
        .all(all)
        .filters(&project_filter(project_dir))
        .build();
    let list = docker
        .list_containers(Some(opts))
        .await
        .map_err(|e| engine_error("listing containers", e))?;
    Ok(list
        .into_iter()
        .filter_map(|c| c.names?.into_iter().next())
        .map(|n| n.trim_start_matches('/').to_string())
        .collect())
}

/// Stops the project's running store containers (a killed emu leaves them running); they are
/// kept for the next `emu up`. One report line per container.
pub(crate) async fn stop_project(project_dir: &Path) -> Result<Vec<String>, BackendError> {
    let docker = super::engine().await?;
    let mut report = Vec::new();
    for name in project_containers(&docker, project_dir, false).await? {
        stop_container(&docker, &name).await;
        report.push(format!(
            "stopped docker container {name} (kept; `emu down --volumes` removes it)"
        ));
    }
    Ok(report)
}

/// Removes the project's containers and volumes (every PostgreSQL version's). One report line
/// per thing removed.
pub(crate) async fn remove_project(project_dir: &Path) -> Result<Vec<String>, BackendError> {
    let docker = super::engine().await?;
    let mut report = Vec::new();
    for name in project_containers(&docker, project_dir, true).await? {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match docker.remove_container(&name, Some(opts)).await {
            Ok(()) => report.push(format!("removed docker container {name}")),
            Err(e) => report.push(format!("could not remove docker container {name}: {e}")),
        }
    }
    let opts = ListVolumesOptionsBuilder::default()
        .filters(&project_filter(project_dir))
        .build();
    let volumes = docker
        .list_volumes(Some(opts))
        .await
        .map_err(|e| engine_error("listing volumes", e))?
        .volumes
        .unwrap_or_default();
    for v in volumes {
        let opts = RemoveVolumeOptionsBuilder::default().force(true).build();
        match docker.remove_volume(&v.name, Some(opts)).await {
            Ok(()) => report.push(format!("removed docker volume {}", v.name)),
            Err(e) => report.push(format!("could not remove docker volume {}: {e}", v.name)),
        }
    }
    Ok(report)
}
