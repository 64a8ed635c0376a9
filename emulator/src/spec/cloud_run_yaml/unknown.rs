//! Which fields of a Cloud Run service YAML emu models, which it skips silently (state and
//! identity), and the list of the rest, given once as a warning.

use super::node::{Kind, Node};

/// Paths emu reads.
pub(super) const KNOWN: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata.name",
    "metadata.annotations",
    "spec.template.metadata.name",
    "spec.template.metadata.annotations",
    "spec.template.spec.containerConcurrency",
    "spec.template.spec.timeoutSeconds",
    "spec.template.spec.serviceAccountName",
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

/// Service-level annotations (the Service's own `metadata.annotations`) that say who deployed it
/// and how, not how it behaves: skipped without a warning.
const SILENT_SERVICE_ANNOTATIONS: &[&str] = &[
    "serving.knative.dev/creator",
    "serving.knative.dev/lastModifier",
    "run.googleapis.com/operation-id",
    "run.googleapis.com/client-name",
    "run.googleapis.com/client-version",
    "run.googleapis.com/launch-stage",
    "run.googleapis.com/urls",
    "run.googleapis.com/ingress-status",
    "client.knative.dev/user-image",
];

/// What a service-level annotation means to emu.
pub(super) enum ServiceAnnotation {
    /// The same setting as this revision-template annotation (the template's wins).
    AsTemplate(&'static str),
    /// State, or what emu does anyway (`ingress: all`): nothing to say.
    Silent,
    /// Not modelled: listed.
    Unmodelled,
}

/// Classifies a service-level annotation `key` with `value`.
pub(super) fn service_annotation(key: &str, value: &str) -> ServiceAnnotation {
    match key {
        "run.googleapis.com/minScale"
        | "autoscaling.knative.dev/minScale"
        | "autoscaling.knative.dev/min-scale" => {
            ServiceAnnotation::AsTemplate("autoscaling.knative.dev/minScale")
        }
        "run.googleapis.com/maxScale"
        | "autoscaling.knative.dev/maxScale"
        | "autoscaling.knative.dev/max-scale" => {
            ServiceAnnotation::AsTemplate("autoscaling.knative.dev/maxScale")
        }
        "emu.dev/project-id" => ServiceAnnotation::AsTemplate("emu.dev/project-id"),
        // emu's front door takes every local client: Cloud Run's `all`.
        "run.googleapis.com/ingress" if value == "all" => ServiceAnnotation::Silent,
        k if SILENT_SERVICE_ANNOTATIONS.contains(&k) => ServiceAnnotation::Silent,
        _ => ServiceAnnotation::Unmodelled,
    }
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
