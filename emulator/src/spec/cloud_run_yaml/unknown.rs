//! Which fields of a Cloud Run service YAML emu models, which it skips silently (state and
//! identity), and the list of the rest, given once as a warning.

use super::node::{Kind, Node};

/// Paths emu reads.
pub(super) const KNOWN: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata.name",
    "spec.template.metadata.name",
    "spec.template.metadata.annotations",
    "spec.template.spec.containerConcurrency",
    "spec.template.spec.timeoutSeconds",
    "spec.template.spec.containers[].image",
    "spec.template.spec.containers[].ports[].containerPort",
    "spec.template.spec.containers[].ports[].name",
    "spec.template.spec.containers[].env",
    "spec.template.spec.containers[].volumeMounts",
    "spec.template.spec.volumes",
    "spec.template.spec.containers[].startupProbe",
    "spec.template.spec.containers[].livenessProbe",
    "spec.template.spec.containers[].readinessProbe",
    "spec.traffic",
];

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
];

/// A service that connects to Cloud SQL gets a local PostgreSQL.
pub(super) const CLOUDSQL: &str = "run.googleapis.com/cloudsql-instances";

/// Annotations on the revision template that emu models.
pub(super) fn annotation_is_modelled(key: &str) -> bool {
    key.starts_with("autoscaling.knative.dev/") || key.starts_with("emu.dev/") || key == CLOUDSQL
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// Lists every leaf path of `v` not under a [`KNOWN`] prefix.
pub(super) fn collect_unknown(v: &Node, path: &str, out: &mut Vec<String>) {
    if KNOWN.iter().any(|k| under(path, k)) {
        return;
    }
    let is_prefix = path.is_empty() || KNOWN.iter().any(|k| under(k, path) && *k != path);
    match &v.kind {
        Kind::Map(m) if is_prefix => {
            for (k, child) in m {
                let Some(k) = k.as_str() else { continue };
                let p = if path.is_empty() {
                    k.to_string()
                } else {
                    format!("{path}.{k}")
                };
                collect_unknown(child, &p, out);
            }
        }
        Kind::Seq(s) if is_prefix => {
            for child in s {
                collect_unknown(child, &format!("{path}[]"), out);
            }
        }
        _ => out.push(path.to_string()),
    }
}

/// The warning for what emu does not model, or None when it models everything written.
pub(super) fn unmodelled_warning(mut unmodelled: Vec<String>) -> Option<String> {
    unmodelled.retain(|p| !SILENT.iter().any(|s| under(p, s)));
    unmodelled.sort();
    unmodelled.dedup();
    (!unmodelled.is_empty()).then(|| {
        format!(
            "fields emu does not model (ignored): {}",
            unmodelled.join(", ")
        )
    })
}
