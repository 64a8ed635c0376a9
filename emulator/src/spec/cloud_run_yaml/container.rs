//! The ingress container of a service YAML: image, port, env (values and secrets), secret
//! volumes and probes, into a [`RawService`], remembering the line of each env var and secret.

use std::collections::BTreeMap;
use std::time::Duration;

use super::super::types::{Probe, ProbeAction};
use super::super::validate::RawService;
use super::node::Node;
use super::Place;
use crate::secrets::SecretUse;

/// Lines of what the container declares, for errors found when the service is validated.
#[derive(Debug, Default)]
pub(super) struct ContainerLines {
    /// Each env var's entry, by name.
    pub env: BTreeMap<String, usize>,
    /// Each secret's declaration, by target (env name or file path).
    pub secrets: BTreeMap<String, usize>,
}

/// With sidecars, the ingress container is the one that declares a port. Cloud Run refuses a
/// multi-container service where more than one container declares ports (which one would get
/// the requests?), so emu does too rather than pick one.
pub(super) fn ingress<'a>(
    containers: &'a [Node],
    warnings: &mut Vec<String>,
    place: &Place<'_>,
    line: usize,
) -> Result<&'a Node, crate::spec::SpecError> {
    let Some(first) = containers.first() else {
        return Err(place.err(line, "spec.template.spec.containers is empty".into()));
    };
    let mut with_ports = containers.iter().filter(|c| c.get("ports").is_some());
    let c = with_ports.next().unwrap_or(first);
    if let Some(second) = with_ports.next() {
        return Err(place.err(
            second.line_of("ports"),
            format!(
                "{} containers declare ports: a multi-container service must have exactly one \
                 container with an exposed port (the ingress container); remove `ports` from \
                 the sidecars",
                containers
                    .iter()
                    .filter(|c| c.get("ports").is_some())
                    .count()
            ),
        ));
    }
    if containers.len() > 1 {
        warnings.push(format!(
            "{} containers: emu runs the ingress container only (sidecars are not modelled)",
            containers.len()
        ));
    }
    if c.as_map().is_none() {
        return Err(place.err(c.line, "a container must be a mapping".into()));
    }
    Ok(c)
}

/// Reads env, secret volumes and probes of container `c` (in the pod spec `tspec`).
pub(super) fn read(
    c: &Node,
    tspec: &Node,
    raw: &mut RawService,
    unmodelled: &mut Vec<String>,
    place: &Place<'_>,
) -> Result<ContainerLines, crate::spec::SpecError> {
    let mut lines = ContainerLines::default();
    let first_port = c
        .get("ports")
        .and_then(Node::as_seq)
        .and_then(|p| p.first());
    raw.container_port = first_port
        .and_then(|p| p.get("containerPort"))
        .and_then(Node::as_i64);
    raw.protocol = first_port
        .and_then(|p| p.get("name"))
        .and_then(Node::as_str)
        .map(str::to_string);
    // Kubernetes fields Cloud Run's API has but refuses: taking them as "not modelled" would run
    // a service without variables it expects, and Cloud Run would not run it at all.
    if c.get("envFrom").is_some() {
        return Err(place.err(
            c.line_of("envFrom"),
            "envFrom is not supported by Cloud Run: name each variable under env (a secret with \
             valueFrom.secretKeyRef)"
                .into(),
        ));
    }
    if let Some(env) = c.get("env").and_then(Node::as_seq) {
        for e in env {
            let Some(n) = e.get("name").and_then(Node::as_str) else {
                return Err(place.err(e.line, "an env entry has no name".into()));
            };
            let line = e.line_of("name");
            lines.env.entry(n.to_string()).or_insert(line);
            if let Some(v) = e.get("value") {
                raw.env.push((n.to_string(), v.text().unwrap_or_default()));
            } else if let Some(m) = e.get("valueFrom").and_then(|v| v.get("configMapKeyRef")) {
                return Err(place.err(
                    m.line,
                    format!("env {n}: configMapKeyRef is not supported by Cloud Run (use value or secretKeyRef)"),
                ));
            } else if let Some(r) = e.get("valueFrom").and_then(|v| v.get("secretKeyRef")) {
                let reference = secret_key_ref(r);
                raw.secrets
                    .add(n, &reference)
                    .map_err(|m| place.err(line, format!("env {n}: {m}")))?;
                lines.secrets.insert(n.to_string(), line);
            } else {
                raw.env.push((n.to_string(), String::new()));
            }
        }
    }
    if let Some(mounts) = c.get("volumeMounts").and_then(Node::as_seq) {
        secret_volumes(
            mounts,
            tspec,
            &mut raw.secrets,
            &mut lines,
            unmodelled,
            place,
        )?;
    }
    raw.startup_probe = probe(c, "startupProbe", true, place)?;
    raw.liveness_probe = probe(c, "livenessProbe", false, place)?;
    raw.readiness_probe = probe(c, "readinessProbe", false, place)?;
    Ok(lines)
}

/// `valueFrom.secretKeyRef` as `name:version` (`key` is the version; latest by default).
pub(super) fn secret_key_ref(r: &Node) -> String {
    let name = r.get("name").and_then(Node::as_str).unwrap_or("");
    let version = r
        .get("key")
        .and_then(Node::text)
        .unwrap_or_else(|| "latest".into());
    format!("{name}:{version}")
}

/// Secret volumes: `volumes[].secret` mounted by `volumeMounts[]` at a path. Mounts of other
/// volumes are listed as not modelled.
fn secret_volumes(
    mounts: &[Node],
    tspec: &Node,
    secrets: &mut SecretUse,
    lines: &mut ContainerLines,
    unmodelled: &mut Vec<String>,
    place: &Place<'_>,
) -> Result<(), crate::spec::SpecError> {
    let volumes = tspec.get("volumes").and_then(Node::as_seq).unwrap_or(&[]);
    for m in mounts {
        let vname = m.get("name").and_then(Node::as_str).unwrap_or("");
        let mount_path = m.get("mountPath").and_then(Node::as_str).unwrap_or("");
        let vol = volumes
            .iter()
            .find(|v| v.get("name").and_then(Node::as_str) == Some(vname));
        let Some(secret) = vol.and_then(|v| v.get("secret")) else {
            unmodelled.push(format!(
                "spec.template.spec.volumes[{vname}] (not a secret volume)"
            ));
            continue;
        };
        let secret_name = secret
            .get("secretName")
            .and_then(Node::as_str)
            .unwrap_or("");
        let items = secret.get("items").and_then(Node::as_seq).unwrap_or(&[]);
        let base = mount_path.trim_end_matches('/');
        let mut add = |file: &str, version: &str, line: usize| {
            let target = format!("{base}/{file}");
            secrets
                .add(&target, &format!("{secret_name}:{version}"))
                .map_err(|m| place.err(line, m))?;
            lines.secrets.insert(target, line);
            Ok::<(), crate::spec::SpecError>(())
        };
        if items.is_empty() {
            add(secret_name, "latest", m.line)?;
        }
        for it in items {
            let version = it
                .get("key")
                .and_then(Node::text)
                .unwrap_or_else(|| "latest".into());
            let file = it.get("path").and_then(Node::as_str).unwrap_or(secret_name);
            add(file, &version, it.line)?;
        }
    }
    Ok(())
}

/// The probe at `key` of container `c`.
fn probe(
    c: &Node,
    key: &str,
    startup: bool,
    place: &Place<'_>,
) -> Result<Option<Probe>, crate::spec::SpecError> {
    let Some((k, v)) = c.entry(key) else {
        return Ok(None);
    };
    let port = ["httpGet", "tcpSocket"]
        .iter()
        .find_map(|k| v.get(k)?.get("port")?.as_i64());
    let action = if let Some(h) = v.get("httpGet") {
        ProbeAction::Http {
            path: h
                .get("path")
                .and_then(Node::as_str)
                .unwrap_or("/")
                .to_string(),
        }
    } else if v.get("tcpSocket").is_some() {
        ProbeAction::Tcp
    } else if v.get("grpc").is_some() {
        return Err(place.err(
            v.line_of("grpc"),
            "gRPC probes are not supported by emu yet: use httpGet or tcpSocket".into(),
        ));
    } else {
        return Err(place.err(k.line, "a probe needs httpGet or tcpSocket".into()));
    };
    let mut p = if startup {
        Probe::explicit_startup(action)
    } else {
        Probe::explicit_liveness(action)
    };
    if let Some(n) = port {
        p.port = Some(u16::try_from(n).ok().filter(|n| *n != 0).ok_or_else(|| {
            place.err(
                v.line,
                format!("probe port {n} is out of range: use 1 to 65535"),
            )
        })?);
    }
    let secs = |k: &str| v.get(k).and_then(Node::as_i64);
    if let Some(s) = secs("initialDelaySeconds") {
        p.initial_delay = Duration::from_secs(s.max(0) as u64);
    }
    if let Some(s) = secs("periodSeconds") {
        p.period = Duration::from_secs(s.max(0) as u64);
    }
    if let Some(s) = secs("timeoutSeconds") {
        p.timeout = Duration::from_secs(s.max(0) as u64);
    }
    if let Some(s) = secs("failureThreshold") {
        p.failure_threshold = s.clamp(0, 1000) as u32;
    }
    Ok(Some(p))
}

/// Whether a container uses Redis (Memorystore), by its env and secrets: a name with `REDIS` or
/// `MEMORYSTORE` in it, or a `redis://` value. The production address it names cannot be
/// reached from here, so a `redis://` value and `REDIS_HOST` / `REDIS_PORT` are replaced by the
/// local Redis's (said once, in `warnings`; the values are not shown, they may hold a password).
pub(super) fn local_redis(raw: &mut RawService, warnings: &mut Vec<String>) -> bool {
    let names_redis = |n: &str| {
        let n = n.to_ascii_uppercase();
        n.contains("REDIS") || n.contains("MEMORYSTORE")
    };
    let is_url = |v: &str| v.starts_with("redis://") || v.starts_with("rediss://");
    let mentions = raw.env.iter().any(|(n, v)| names_redis(n) || is_url(v))
        || raw.secrets.env.iter().any(|(n, _)| names_redis(n));
    if !mentions {
        return false;
    }
    let mut replaced = Vec::new();
    if let Some((name, _)) = raw.env.iter().find(|(_, v)| is_url(v)) {
        raw.redis_env = Some(name.clone());
    }
    if let Some(host) = raw
        .env
        .iter()
        .map(|(n, _)| n)
        .find(|n| n.ends_with("REDIS_HOST"))
    {
        let port = format!("{}PORT", host.trim_end_matches("HOST"));
        raw.redis_host_env = Some((host.clone(), port));
    }
    let redis_env = raw.redis_env.clone();
    let host_port = raw.redis_host_env.clone();
    raw.env.retain(|(n, _)| {
        let ours = redis_env.as_deref() == Some(n.as_str())
            || host_port.as_ref().is_some_and(|(h, p)| h == n || p == n);
        if ours {
            replaced.push(n.clone());
        }
        !ours
    });
    if !replaced.is_empty() {
        warnings.push(format!(
            "env {} name(s) Memorystore's address: emu sets them to its local Redis",
            replaced.join(", ")
        ));
    }
    true
}
