//! `[postgres]` / `[redis]` config: parsing refuses unknown keys, validation names the key.

use emulator::backends::{
    self, tier_max_connections, BackendError, BackendsPlan, Mode, PostgresConfig, RedisConfig,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    postgres: PostgresConfig,
    #[serde(default)]
    redis: RedisConfig,
}

fn parse(text: &str) -> File {
    toml::from_str(text).unwrap()
}

#[test]
fn parses_every_key() {
    let f = parse(
        r#"
        [postgres]
        mode = "native"
        version = 15
        tier = "db-custom-2-8192"
        port = 15432
        max_connections = 40
        [redis]
        mode = "docker"
        version = 7
        size_gb = 1.5
        port = 16379
        "#,
    );
    assert_eq!(f.postgres.mode, Mode::Native);
    assert_eq!(f.postgres.version, Some(15));
    assert_eq!(f.postgres.effective_max_connections(), 40);
    assert_eq!(f.redis.mode, Mode::Docker);
    assert_eq!(f.redis.maxmemory_bytes(), 1_610_612_736);
    f.postgres.validate().unwrap();
    f.redis.validate().unwrap();

    let empty = parse("");
    assert_eq!(empty.postgres.mode, Mode::Auto);
    assert_eq!(empty.redis.mode, Mode::Auto);
    assert_eq!(empty.postgres.effective_max_connections(), 100);
    for m in ["auto", "docker", "native", "external", "none"] {
        let f = parse(&format!("[redis]\nmode = \"{m}\"\nurl = \"redis://h\""));
        assert_eq!(f.redis.mode.as_str(), m);
    }
}

#[test]
fn unknown_keys_and_modes_are_refused() {
    assert!(toml::from_str::<File>("[postgres]\ntire = \"db-f1-micro\"").is_err());
    assert!(toml::from_str::<File>("[redis]\nmode = \"cluster\"").is_err());
}

#[test]
fn validation_names_the_key() {
    let key = |pg: Option<PostgresConfig>, r: Option<RedisConfig>| {
        pg.map(|p| p.validate())
            .or(r.map(|r| r.validate()))
            .unwrap()
            .unwrap_err()
    };
    let bad_tier = key(
        Some(PostgresConfig {
            tier: Some("db-huge".into()),
            ..Default::default()
        }),
        None,
    );
    assert_eq!(bad_tier.key, "postgres.tier");
    assert!(
        bad_tier.message.contains("db-f1-micro"),
        "{}",
        bad_tier.message
    );

    let bad_version = key(
        Some(PostgresConfig {
            version: Some(13),
            ..Default::default()
        }),
        None,
    );
    assert_eq!(bad_version.key, "postgres.version");

    let no_url = key(
        Some(PostgresConfig {
            mode: Mode::External,
            ..Default::default()
        }),
        None,
    );
    assert_eq!(no_url.key, "postgres.url");
    assert!(no_url.message.contains("postgres://"), "{}", no_url.message);

    let url_not_external = key(
        Some(PostgresConfig {
            mode: Mode::Native,
            url: Some("postgres://h/db".into()),
            ..Default::default()
        }),
        None,
    );
    assert_eq!(url_not_external.key, "postgres.url");

    let wrong_scheme = key(
        None,
        Some(RedisConfig {
            mode: Mode::External,
            url: Some("http://u:pw@h".into()),
            ..Default::default()
        }),
    );
    assert_eq!(wrong_scheme.key, "redis.url");
    assert!(
        !wrong_scheme.message.contains("pw@"),
        "{}",
        wrong_scheme.message
    );

    let redis_no_url = key(
        None,
        Some(RedisConfig {
            mode: Mode::External,
            ..Default::default()
        }),
    );
    assert_eq!(redis_no_url.key, "redis.url");

    let bad_size = key(
        None,
        Some(RedisConfig {
            size_gb: Some(-1.0),
            ..Default::default()
        }),
    );
    assert_eq!(bad_size.key, "redis.size_gb");

    let bad_redis_version = key(
        None,
        Some(RedisConfig {
            version: Some(5),
            ..Default::default()
        }),
    );
    assert_eq!(bad_redis_version.key, "redis.version");
}

#[test]
fn tier_presets() {
    assert_eq!(tier_max_connections("db-f1-micro"), Ok(25));
    assert_eq!(tier_max_connections("db-g1-small"), Ok(50));
    assert_eq!(tier_max_connections("db-custom-1-3840"), Ok(100));
    assert_eq!(tier_max_connections("db-custom-2-8192"), Ok(400));
    assert_eq!(tier_max_connections("db-custom-4-20480"), Ok(500));
    assert_eq!(tier_max_connections("db-custom-16-65536"), Ok(800));
    assert_eq!(tier_max_connections("db-custom-64-262144"), Ok(1000));
    assert!(tier_max_connections("db-custom-x-1").is_err());
    assert!(tier_max_connections("f1-micro").is_err());
}

#[tokio::test]
async fn start_refuses_bad_config_before_doing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let err = backends::start(BackendsPlan {
        postgres: PostgresConfig {
            mode: Mode::Native,
            tier: Some("db-nope".into()),
            ..Default::default()
        },
        redis: RedisConfig::default(),
        project_dir: dir.path().to_path_buf(),
        databases: vec![],
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&err, BackendError::Config(i) if i.key == "postgres.tier"),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("emu.toml: postgres.tier:"),
        "{err}"
    );
    assert!(!dir.path().join(".emu").exists(), "nothing was created");

    let none = backends::start(BackendsPlan {
        postgres: PostgresConfig {
            mode: Mode::None,
            ..Default::default()
        },
        redis: RedisConfig {
            mode: Mode::None,
            ..Default::default()
        },
        project_dir: dir.path().to_path_buf(),
        databases: vec![],
    })
    .await
    .unwrap();
    assert!(none.database_url(None).is_none() && none.redis_url().is_none());
    assert_eq!(none.status()["postgres"]["state"], "off");
    none.stop().await;
}
