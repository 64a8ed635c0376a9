use std::path::Path;
use std::time::Duration;

use super::*;

fn toml(src: &str) -> Result<Config, SpecError> {
    parse_toml(src, Path::new("emu.toml"))
}

fn yaml(src: &str) -> Result<Config, SpecError> {
    parse_yaml(src, Path::new("service.yaml"), &["./app".to_string()])
}

#[test]
fn toml_defaults_are_cloud_runs() {
    let cfg = toml("[[service]]\nname = \"api\"\ncommand = [\"./api\"]\n").unwrap();
    let s = &cfg.services[0];
    assert_eq!(s.concurrency, 80);
    assert_eq!(s.min_instances, 0);
    assert_eq!(s.max_instances, 100);
    assert_eq!(s.timeout, Duration::from_secs(300));
    assert_eq!(s.startup_probe, Probe::default_startup());
    assert_eq!(s.revision, "api-00001-emu");
    assert_eq!(cfg.frontdoor.port, 8080);
}

#[test]
fn toml_reads_everything() {
    let cfg = toml(
        r#"
[emu]
port = 9000

[[service]]
name = "api"
command = "python3 app.py"
concurrency = 2
min_instances = 1
max_instances = 3
timeout = "30s"
queue_timeout = 5
cold_start = { p50 = "500ms", p99 = "2s" }
env = { GREETING = "hi" }
port = 9001

[service.startup_probe]
http_path = "/ready"
period = "1s"
failure_threshold = 30

[service.autoscaling]
profile = "knative"
window = "6s"
initial_scale = 0

[[service]]
name = "up"
upstream = "http://127.0.0.1:3000"
cold_start = "2s"
"#,
    )
    .unwrap();
    assert_eq!(cfg.frontdoor.port, 9000);
    let s = &cfg.services[0];
    assert_eq!(s.concurrency, 2);
    assert_eq!(s.min_instances, 1);
    assert_eq!(s.max_instances, 3);
    assert_eq!(s.timeout, Duration::from_secs(30));
    assert_eq!(s.queue_timeout, Some(Duration::from_secs(5)));
    assert_eq!(s.port, Some(9001));
    assert_eq!(s.env, vec![("GREETING".to_string(), "hi".to_string())]);
    assert_eq!(
        s.runner,
        RunnerSpec::Process {
            command: vec!["/bin/sh".into(), "-c".into(), "exec python3 app.py".into()]
        }
    );
    assert_eq!(
        s.cold_start,
        ColdStartDelay::LogNormal {
            p50: Duration::from_millis(500),
            p99: Duration::from_secs(2)
        }
    );
    assert_eq!(
        s.startup_probe.action,
        ProbeAction::Http {
            path: "/ready".into()
        }
    );
    assert_eq!(s.startup_probe.failure_threshold, 30);
    assert_eq!(s.autoscaling_profile, "knative");
    assert_eq!(
        s.autoscaling
            .get("autoscaling.knative.dev/window")
            .map(String::as_str),
        Some("6s")
    );
    assert_eq!(
        s.autoscaling
            .get("autoscaling.knative.dev/initial-scale")
            .map(String::as_str),
        Some("0")
    );
    let u = &cfg.services[1];
    assert!(matches!(&u.runner, RunnerSpec::Upstream { url } if url.port_u16() == Some(3000)));
    assert_eq!(u.cold_start, ColdStartDelay::Fixed(Duration::from_secs(2)));
}

#[test]
fn toml_errors_name_the_line() {
    let e = toml("[[service]]\nname = \"api\"\ncommand = [\"x\"]\nconcurency = 3\n").unwrap_err();
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.to_string().starts_with("emu.toml:4: "), "{e}");
    assert!(e.message.contains("concurency"), "{e}");

    let e = toml("[[service]]\nname = \"api\"\ncommand = [\"x\"]\n\n[service.env]\nA = \"1\"\nPORT = \"9\"\n").unwrap_err();
    assert_eq!(e.line, Some(7), "{e}");
    assert!(
        e.message
            .contains("The following reserved env names were provided: PORT"),
        "{e}"
    );

    let e =
        toml("[[service]]\nname = \"api\"\ncommand = [\"x\"]\nconcurrency = 1001\n").unwrap_err();
    assert_eq!(e.line, Some(4));
    assert!(e.message.contains("1 to 1000"), "{e}");

    let e = toml("[[service]]\nname = \"api\"\ncommand = [\"x\"]\ntimeout = \"2h\"\n").unwrap_err();
    assert_eq!(e.line, Some(4));
    assert!(e.message.contains("3600"), "{e}");

    let e = toml(
        "[[service]]\nname = \"api\"\ncommand = [\"x\"]\nmin_instances = 5\nmax_instances = 2\n",
    )
    .unwrap_err();
    assert_eq!(e.line, Some(4));

    let e = toml("[[service]]\nname = \"Bad_Name\"\ncommand = [\"x\"]\n").unwrap_err();
    assert_eq!(e.line, Some(2));

    let e = toml("[[service]]\nname = \"api\"\n").unwrap_err();
    assert!(e.message.contains("nothing to run"), "{e}");

    let e = toml("[[service]]\nname = \"api\"\ncommand = [\"x\"]\n[service.startup_probe]\nperiod = \"100s\"\nfailure_threshold = 3\n").unwrap_err();
    assert_eq!(e.line, Some(4));
    assert!(e.message.contains("240"), "{e}");

    let e = toml("[[service]]\nname = \"a\"\ncommand = [\"x\"]\n[[service]]\nname = \"a\"\ncommand = [\"y\"]\n").unwrap_err();
    assert!(e.message.contains("unique"), "{e}");

    let e = toml("[[service]\nname = 1").unwrap_err();
    assert_eq!(e.line, Some(1), "{e}");
}

const EXPORT: &str = r#"apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  annotations:
    run.googleapis.com/ingress: all
  labels:
    cloud.googleapis.com/location: us-central1
  name: api
  namespace: '123456789'
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/maxScale: '100'
        autoscaling.knative.dev/minScale: '1'
        run.googleapis.com/execution-environment: gen2
        run.googleapis.com/startup-cpu-boost: 'true'
      labels:
        run.googleapis.com/startupProbeType: Default
    spec:
      containerConcurrency: 80
      serviceAccountName: 123-compute@developer.gserviceaccount.com
      timeoutSeconds: 300
      containers:
      - image: us-docker.pkg.dev/cloudrun/container/hello
        ports:
        - containerPort: 8080
          name: http1
        env:
        - name: MODE
          value: prod
        resources:
          limits:
            cpu: 1000m
            memory: 512Mi
        startupProbe:
          failureThreshold: 1
          periodSeconds: 240
          tcpSocket:
            port: 8080
          timeoutSeconds: 240
  traffic:
  - latestRevision: true
    percent: 100
"#;

#[test]
fn yaml_export_is_taken_unchanged() {
    let cfg = yaml(EXPORT).unwrap();
    let s = &cfg.services[0];
    assert_eq!(s.name, "api");
    assert_eq!(s.concurrency, 80);
    assert_eq!(s.min_instances, 1);
    assert_eq!(s.max_instances, 100);
    assert_eq!(s.timeout, Duration::from_secs(300));
    assert_eq!(s.container_port, 8080);
    assert_eq!(s.env, vec![("MODE".to_string(), "prod".to_string())]);
    assert_eq!(
        s.runner,
        RunnerSpec::Process {
            command: vec!["./app".into()]
        }
    );
    assert_eq!(s.startup_probe.action, ProbeAction::Tcp);
    assert_eq!(s.startup_probe.period, Duration::from_secs(240));
    // Listed once, all together; state-only fields are not.
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    let w = &cfg.warnings[0];
    for f in [
        "execution-environment",
        "startup-cpu-boost",
        "containers[].resources",
    ] {
        assert!(w.contains(f), "{f} missing from {w}");
    }
    assert!(!w.contains("namespace"), "{w}");
    // What the metadata server answers with, from where an export writes it.
    assert_eq!(cfg.project.number(), "123456789");
    assert_eq!(cfg.project.region(), "us-central1");
    assert_eq!(
        cfg.project.service_account(),
        "123-compute@developer.gserviceaccount.com"
    );
    assert_eq!(cfg.project.id(), "emu-local");
}

#[test]
fn yaml_errors_name_the_line() {
    let bad = EXPORT.replace("        - name: MODE\n          value: prod\n", "        - name: MODE\n          value: prod\n        - name: K_SERVICE\n          value: x\n");
    let e = yaml(&bad).unwrap_err();
    assert!(
        e.message
            .contains("The following reserved env names were provided: K_SERVICE"),
        "{e}"
    );
    let line = bad
        .lines()
        .position(|l| l.contains("name: K_SERVICE"))
        .unwrap()
        + 1;
    assert_eq!(e.line, Some(line), "{e}");

    let bad = EXPORT.replace("containerConcurrency: 80", "containerConcurrency: 5000");
    let e = yaml(&bad).unwrap_err();
    let line = bad
        .lines()
        .position(|l| l.contains("containerConcurrency"))
        .unwrap()
        + 1;
    assert_eq!(e.line, Some(line), "{e}");

    let bad = EXPORT.replace("timeoutSeconds: 300", "timeoutSeconds: 4000");
    let e = yaml(&bad).unwrap_err();
    assert!(e.message.contains("3600"), "{e}");

    let e = yaml("kind: Service\n  bad: [\n").unwrap_err();
    assert!(e.line.is_some(), "{e}");

    let e = yaml(&EXPORT.replace("kind: Service", "kind: Job")).unwrap_err();
    assert!(e.message.contains("kind Service"), "{e}");
}

/// The line of the first line of `src` containing `needle`.
fn line_of(src: &str, needle: &str) -> usize {
    src.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn whole_config_errors_name_the_line_of_the_second_thing() {
    let src = "[emu]\nport = 9000\n\n[[service]]\nname = \"a\"\ncommand = [\"x\"]\nport = 9001\n\n[[service]]\nname = \"a\"\ncommand = [\"y\"]\n";
    let e = toml(src).unwrap_err();
    assert_eq!(e.line, Some(10), "{e}");
    assert!(e.message.contains("the other at line 5"), "{e}");

    let src = "[emu]\nport = 9000\n\n[[service]]\nname = \"a\"\ncommand = [\"x\"]\nport = 9000\n";
    let e = toml(src).unwrap_err();
    assert_eq!(e.line, Some(7), "{e}");
    assert!(e.message.contains("[emu] port, line 2"), "{e}");

    let src = "[[service]]\nname = \"a\"\ncommand = [\"x\"]\nport = 9001\n[[service]]\nname = \"b\"\ncommand = [\"x\"]\nport = 9001\n";
    let e = toml(src).unwrap_err();
    assert_eq!(e.line, Some(8), "{e}");
    assert!(e.message.contains("service \"a\" (line 4)"), "{e}");

    let e = toml("# nothing yet\n[emu]\nport = 1\n").unwrap_err();
    assert_eq!(e.line, Some(1), "{e}");
    assert!(e.message.contains("no service defined"), "{e}");

    let src = "[[service]]\nname = \"a\"\ncommand = [\"x\"]\ndepends_on = [\"migrate\"]\n";
    assert_eq!(toml(src).unwrap_err().line, Some(4));

    let src = "[[job]]\nname = \"j\"\ncommand = [\"x\"]\n[[job]]\nname = \"j\"\ncommand = [\"y\"]\n[[service]]\nname = \"a\"\ncommand = [\"x\"]\n";
    let e = toml(src).unwrap_err();
    assert_eq!(e.line, Some(5), "{e}");

    let src = "[[service]]\nname = \"a\"\ncommand = [\"x\"]\nenv = { A = \"1\" }\nsecrets = { A_KEY = \"missing:latest\" }\n";
    let e = toml(src).unwrap_err();
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.message.contains("secret \"missing\""), "{e}");

    let src = "[[service]]\nname = \"a\"\ncommand = [\"x\"]\n\n[postgres]\nmode = \"native\"\ntier = \"db-huge\"\n";
    let e = toml(src).unwrap_err();
    assert_eq!(e.line, Some(7), "{e}");
}

#[test]
fn command_line_settings_are_checked_with_the_file() {
    let src = "[[service]]\nname = \"a\"\ncommand = [\"x\"]\nport = 9001\n\n[redis]\nmode = \"external\"\nurl = \"redis://h:1\"\n";
    let check = |o: Overrides| {
        let mut cfg = emu_toml::parse_unchecked_for_tests(src);
        o.apply(&mut cfg);
        check_config(&cfg)
    };
    check(Overrides::default()).unwrap();
    let e = check(Overrides {
        port: Some(9001),
        ..Overrides::default()
    })
    .unwrap_err();
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("--port 9001"), "{e}");
    // `--port 0` picks a free port: it clashes with nothing.
    check(Overrides {
        port: Some(0),
        ..Overrides::default()
    })
    .unwrap();
    let e = check(Overrides {
        backends: Some(stores::Mode::Docker),
        ..Overrides::default()
    })
    .unwrap_err();
    assert_eq!(e.line, Some(8), "the url's line: {e}");
}

#[test]
fn yaml_errors_name_the_line_of_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        ("  name: api\n", "  nombre: api\n", "metadata:"),
        (
            "autoscaling.knative.dev/minScale: '1'",
            "autoscaling.knative.dev/minScale: '500'",
            "minScale",
        ),
        (
            "containerConcurrency: 80",
            "containerConcurrency: 80\n      containerConcurrency: 5",
            "containerConcurrency: 5",
        ),
        (
            "        - containerPort: 8080",
            "        - containerPort: 70000",
            "containerPort",
        ),
        (
            "          periodSeconds: 240",
            "          periodSeconds: 0",
            "startupProbe:",
        ),
        (
            "          tcpSocket:\n            port: 8080\n",
            "          grpc:\n            port: 8080\n",
            "grpc",
        ),
    ];
    for (from, to, at) in cases {
        assert!(EXPORT.contains(from), "{from}");
        let bad = EXPORT.replacen(from, to, 1);
        let e = yaml(&bad).unwrap_err();
        assert_eq!(e.line, Some(line_of(&bad, at)), "{to}: {e}");
    }
    let e = yaml(&format!("{EXPORT}---\nkind: Service\n")).unwrap_err();
    assert_eq!(
        e.line,
        Some(line_of(&format!("{EXPORT}---\n"), "---")),
        "{e}"
    );
    let e = yaml("just text\n").unwrap_err();
    assert_eq!(e.line, Some(1), "{e}");
}

/// A Service whose own `metadata.annotations` set scaling, as `gcloud run services update
/// --max` / `--min` write them.
const SERVICE_LEVEL: &str = r#"apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: api
  annotations:
    run.googleapis.com/maxScale: '3'
    run.googleapis.com/minScale: '1'
    run.googleapis.com/ingress: internal
    run.googleapis.com/invoker-iam-disabled: 'true'
    serving.knative.dev/creator: someone@example.com
spec:
  template:
    metadata:
      annotations:
        run.googleapis.com/execution-environment: gen2
    spec:
      containerConcurrency: 0
      containers:
      - image: example/api
"#;

#[test]
fn service_level_annotations_are_read_like_the_templates() {
    let cfg = yaml(SERVICE_LEVEL).unwrap();
    let s = &cfg.services[0];
    assert_eq!((s.min_instances, s.max_instances), (1, 3));
    // containerConcurrency 0 is Cloud Run's default, not "unlimited".
    assert_eq!(s.concurrency, 80);
    // Every field emu does not model is listed, once, together; state is not.
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    let w = &cfg.warnings[0];
    for f in [
        "metadata.annotations[run.googleapis.com/ingress]",
        "metadata.annotations[run.googleapis.com/invoker-iam-disabled]",
        "execution-environment",
    ] {
        assert!(w.contains(f), "{f} missing from {w}");
    }
    assert!(!w.contains("creator") && !w.contains("maxScale"), "{w}");
}

#[test]
fn the_templates_annotation_wins_over_the_services() {
    let both = SERVICE_LEVEL.replace(
        "        run.googleapis.com/execution-environment: gen2\n",
        "        autoscaling.knative.dev/max-scale: '7'\n",
    );
    let s = &yaml(&both).unwrap().services[0];
    assert_eq!((s.min_instances, s.max_instances), (1, 7));
    // An error in a service-level value names its line.
    let bad = SERVICE_LEVEL.replace("maxScale: '3'", "maxScale: 'lots'");
    let e = yaml(&bad).unwrap_err();
    assert_eq!(e.line, Some(line_of(&bad, "maxScale")), "{e}");
}

#[test]
fn concurrency_zero_below_one_vcpu_is_one() {
    let small = SERVICE_LEVEL.replace(
        "      - image: example/api\n",
        "      - image: example/api\n        resources:\n          limits:\n            cpu: 500m\n",
    );
    assert_eq!(yaml(&small).unwrap().services[0].concurrency, 1);
}

/// A service YAML whose env (or secrets) names Memorystore.
fn redis_yaml(env: &str) -> String {
    format!(
        "apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: cache
spec:
  template:
    spec:
      containers:
      - image: example/cache
        env:
        - name: MODE
          value: prod
{env}"
    )
}

#[test]
fn a_yaml_that_names_redis_gets_a_local_redis_under_auto() {
    let url = "        - name: CACHE_URL\n          value: redis://10.0.0.3:6379/0\n";
    let cfg = yaml(&redis_yaml(url)).unwrap();
    assert_eq!(cfg.redis.as_ref().map(|r| r.mode), Some(stores::Mode::Auto));
    assert!(
        cfg.postgres.is_none(),
        "Redis alone does not bring PostgreSQL"
    );
    let s = &cfg.services[0];
    assert_eq!(
        s.redis_env, "CACHE_URL",
        "the local Redis's URL takes its place"
    );
    assert_eq!(s.env, vec![("MODE".to_string(), "prod".to_string())]);
    assert!(
        !cfg.warnings.iter().any(|w| w.contains("10.0.0.3")),
        "{:?}",
        cfg.warnings
    );

    let host = "        - name: REDIS_HOST\n          value: 10.0.0.3\n        - name: REDIS_PORT\n          value: '6379'\n";
    let cfg = yaml(&redis_yaml(host)).unwrap();
    assert!(cfg.redis.is_some());
    let s = &cfg.services[0];
    assert_eq!(
        s.redis_host_env,
        Some(("REDIS_HOST".to_string(), "REDIS_PORT".to_string()))
    );
    assert_eq!(s.env.len(), 1, "{:?}", s.env);

    let secret = "        - name: REDIS_PASSWORD\n          valueFrom:\n            secretKeyRef:\n              name: redis-pw\n              key: latest\n";
    assert!(yaml(&redis_yaml(secret)).unwrap().redis.is_some());
    assert!(yaml(&redis_yaml("")).unwrap().redis.is_none());
}

#[test]
fn postgres_and_redis_modes_are_set_one_by_one_over_backends() {
    let mut cfg = yaml(&redis_yaml("")).unwrap();
    Overrides {
        backends: Some(stores::Mode::Docker),
        redis: Some(stores::Mode::Native),
        ..Overrides::default()
    }
    .apply(&mut cfg);
    assert_eq!(cfg.postgres.map(|p| p.mode), Some(stores::Mode::Docker));
    assert_eq!(cfg.redis.map(|r| r.mode), Some(stores::Mode::Native));
}

#[test]
fn a_missing_secret_of_a_yaml_says_to_add_it_to_secrets_toml() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "        - name: DB_PASSWORD\n          valueFrom:\n            secretKeyRef:\n              name: db-password\n              key: latest\n";
    let file = dir.path().join("service.yaml");
    std::fs::write(&file, redis_yaml(secret)).unwrap();
    let source = ConfigSource::Yaml {
        files: vec![file],
        command: vec!["./app".into()],
    };
    let e = load(&source, &Overrides::default(), dir.path()).unwrap_err();
    assert!(e.message.contains("./secrets.toml"), "{e}");
    assert!(e.message.contains("db-password = \"VALUE\""), "{e}");
    assert!(e.line.is_some(), "{e}");
}

/// A sidecar without ports is fine (emu runs the ingress container); two containers that both
/// declare ports are refused as Cloud Run refuses them, at the second one's `ports`.
#[test]
fn only_one_container_may_declare_ports() {
    let two = |sidecar: &str| {
        format!(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: two\nspec:\n  template:\n    spec:\n      containers:\n      - image: web\n        ports:\n        - containerPort: 3000\n      - image: api\n{sidecar}"
        )
    };
    let ok = two("        env:\n        - name: A\n          value: b\n");
    assert_eq!(yaml(&ok).unwrap().services[0].name, "two");
    let bad = two("        ports:\n        - containerPort: 8000\n");
    let e = yaml(&bad).unwrap_err();
    assert!(
        e.message
            .contains("exactly one container with an exposed port"),
        "{e}"
    );
    assert_eq!(e.line, Some(13), "{e}");
}

/// `envFrom` and `configMapKeyRef` are in Cloud Run's API but not supported by it: refused at
/// their line rather than ignored (the service would run without the variables it expects).
#[test]
fn env_from_and_config_maps_are_refused() {
    let with = |extra: &str| EXPORT.replace("        - name: MODE\n          value: prod\n", extra);
    let bad = with("        - name: MODE\n          value: prod\n        envFrom:\n        - secretRef:\n            name: all\n");
    let e = yaml(&bad).unwrap_err();
    assert!(
        e.message.contains("envFrom is not supported by Cloud Run"),
        "{e}"
    );
    assert_eq!(e.line, Some(line_of(&bad, "envFrom:")), "{e}");
    let bad = with("        - name: MODE\n          valueFrom:\n            configMapKeyRef:\n              name: cfg\n              key: mode\n");
    let e = yaml(&bad).unwrap_err();
    assert!(
        e.message
            .contains("env MODE: configMapKeyRef is not supported"),
        "{e}"
    );
}
