//! The project, region and service account a Cloud Run YAML names, where an export writes them:
//! `metadata.namespace` (the project number, or an id), the `cloud.googleapis.com/location`
//! label, the revision's `serviceAccountName`; and `emu.dev/project-id`, since an export never
//! names the project id.

use super::super::project::{Field, ProjectSettings};
use super::super::SpecError;
use super::node::Node;
use super::Place;

/// The label Cloud Run writes the region in.
const LOCATION: &str = "cloud.googleapis.com/location";

/// Reads the identity from a service or job's `root`; `pod_spec` is the revision template's
/// spec (a service's), `project_id` the `emu.dev/project-id` annotation and its line.
pub(super) fn read(
    root: &Node,
    pod_spec: Option<&Node>,
    project_id: Option<(&str, usize)>,
    place: &Place<'_>,
) -> Result<ProjectSettings, SpecError> {
    let mut out = ProjectSettings::default();
    let mut set = |field, value: &str, line| out.set(field, value, place.file, line);
    let metadata = root.map_at("metadata");
    if let Some((k, v)) = metadata.and_then(|m| m.entry("namespace")) {
        let text = v.text().unwrap_or_default();
        // `gcloud run services describe --format export` writes the number; Knative's API
        // takes the id too.
        if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
            set(Field::Number, &text, k.line)?;
        } else if project_id.is_none() {
            set(Field::Id, &text, k.line)?;
        }
    }
    if let Some((value, line)) = project_id {
        set(Field::Id, value, line)?;
    }
    let labels = metadata.and_then(|m| m.map_at("labels"));
    if let Some((k, v)) = labels.and_then(|l| l.entry(LOCATION)) {
        set(Field::Region, &v.text().unwrap_or_default(), k.line)?;
    }
    if let Some((k, v)) = pod_spec.and_then(|s| s.entry("serviceAccountName")) {
        set(Field::ServiceAccount, &v.text().unwrap_or_default(), k.line)?;
    }
    Ok(out)
}
