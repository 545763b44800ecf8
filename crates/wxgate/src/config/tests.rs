//! Config tests. They build figments from strings and (name, value) pairs, never from the
//! process environment or the working directory, so they can run in parallel.

use super::*;
use crate::config::serde_util::redact_password;
use secrecy::ExposeSecret;

fn load_str(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    load_from(layers(
        Some(Toml::string(toml)),
        EnvVars::from_pairs(env.iter().copied()),
    ))
}

fn err_str(toml: &str, env: &[(&str, &str)]) -> String {
    match load_str(toml, env) {
        Ok(cfg) => panic!("expected an error, got {cfg:?}"),
        Err(e) => e.to_string(),
    }
}

const OA: &str = r#"
[[apps]]
id = "main"
kind = "official_account"
appid = "wx0123456789abcdef"
secret = "oa-secret-value"
"#;

#[test]
fn defaults() {
    let cfg = load_str("", &[]).unwrap();
    assert_eq!(cfg.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(cfg.database_url, "sqlite://wxgate.db");
    assert!(cfg.redis_url.is_none() && !cfg.is_fleet());
    assert_eq!(
        cfg.wechat_api_base.url("/cgi-bin/token"),
        "https://api.weixin.qq.com/cgi-bin/token"
    );
    assert_eq!(cfg.wecom_api_base.as_str(), "https://qyapi.weixin.qq.com");
    assert_eq!(cfg.master_key_file, PathBuf::from("wxgate.key"));
    assert_eq!(cfg.log_format, LogFormat::Text);
    assert_eq!(cfg.token, TokenSettings::default());
    assert_eq!(cfg.token.refresh_ahead, Duration::from_secs(600));
    assert_eq!(cfg.token.daily_fetch_budget, 1800);
    assert!(cfg.apps.is_empty());
    Config::default().validate().unwrap();
}

#[test]
fn env_wins_over_file_and_nested_keys_merge() {
    let toml =
        "listen = \"0.0.0.0:1000\"\nlog_format = \"json\"\n[token]\nrefresh_ahead = \"5m\"\n";
    let cfg = load_str(
        toml,
        &[
            ("WXGATE_LISTEN", "0.0.0.0:2000"),
            ("WXGATE_TOKEN__MIN_TTL", "30s"),
        ],
    )
    .unwrap();
    assert_eq!(cfg.listen.port(), 2000);
    assert_eq!(cfg.log_format, LogFormat::Json);
    assert_eq!(cfg.token.refresh_ahead, Duration::from_secs(300));
    assert_eq!(cfg.token.min_ttl, Duration::from_secs(30));
    assert_eq!(
        cfg.token.refresh_jitter,
        Duration::from_secs(60),
        "untouched default"
    );
}

#[test]
fn env_values_keep_their_exact_text() {
    let env = [
        ("WXGATE_ADMIN_TOKEN", "0012345"),
        ("WXGATE_TOKEN__DAILY_FETCH_BUDGET", "500"),
        ("wxgate_wecom_api_base", "http://127.0.0.1:9000/"),
        ("WXGATE_CONFIG", "elsewhere.toml"),
        ("WXGATE_TEST_REDIS_URL", "redis://x"),
        ("OTHER_LISTEN", "nope"),
    ];
    let cfg = load_str("", &env).unwrap();
    assert_eq!(cfg.admin_token.as_ref().unwrap().expose_secret(), "0012345");
    assert_eq!(cfg.token.daily_fetch_budget, 500);
    assert_eq!(cfg.wecom_api_base.as_str(), "http://127.0.0.1:9000");
}

#[test]
fn apps_from_file_and_from_env() {
    let cfg = load_str(OA, &[]).unwrap();
    assert_eq!(cfg.apps[0].kind, AppKind::OfficialAccount);
    assert_eq!(cfg.apps[0].token_api, TokenApi::Stable);
    assert_eq!(cfg.apps[0].fetch_budget(&cfg.token), 1800);
    let env = r#"[{id="w", kind="wecom", corpid="ww1", agentid=1000002, secret="s", daily_fetch_budget=10}]"#;
    let cfg = load_str(OA, &[("WXGATE_APPS", env)]).unwrap();
    assert_eq!(cfg.apps.len(), 1, "env replaces the file's list");
    assert_eq!(cfg.apps[0].agentid, Some(1000002));
    assert_eq!(cfg.apps[0].fetch_budget(&cfg.token), 10);
}

#[test]
fn bad_values_name_the_key_and_source() {
    let msg = err_str("", &[("WXGATE_LISTEN", "nope")]);
    assert!(
        msg.starts_with("invalid configuration: WXGATE_LISTEN / key `listen`: "),
        "{msg}"
    );
    let msg = err_str("", &[("WXGATE_TOKEN__REFRESH_AHEAD", "soon")]);
    assert!(
        msg.contains("WXGATE_TOKEN__REFRESH_AHEAD / key `token.refresh_ahead`"),
        "{msg}"
    );
    let msg = err_str("[token]\nrefresh_ahead = 600\n", &[]);
    assert!(
        msg.contains("key `token.refresh_ahead`") && msg.contains("\"600s\""),
        "{msg}"
    );
    let msg = err_str("log_format = \"xml\"\n", &[]);
    assert!(
        msg.contains("key `log_format`") && msg.contains("json"),
        "{msg}"
    );
    let msg = err_str("wechat_api_base = \"ftp://x\"\n", &[]);
    assert!(
        msg.contains("key `wechat_api_base`") && msg.contains("http or https"),
        "{msg}"
    );
    let msg = err_str("[[apps]]\nid = \"a\"\nkind = \"oa\"\nsecret = \"s\"\n", &[]);
    assert!(
        msg.contains("apps[0].kind") && msg.contains("official_account"),
        "{msg}"
    );
}

#[test]
fn fleet_settings_have_defaults_and_are_checked() {
    let cfg = load_str("", &[]).unwrap();
    assert_eq!(cfg.redis_prefix, "wxgate");
    assert_eq!(cfg.token.lock_lease, Duration::from_secs(15));
    assert_eq!(cfg.token.lock_wait, Duration::from_secs(30));
    let cfg = load_str("", &[("WXGATE_REDIS_PREFIX", "wxgate-staging")]).unwrap();
    assert_eq!(cfg.redis_prefix, "wxgate-staging");
    for bad in ["", "a{b}", "has space", "a:b"] {
        let msg = err_str("", &[("WXGATE_REDIS_PREFIX", bad)]);
        assert!(msg.contains("key `redis_prefix`"), "{bad:?}: {msg}");
    }
    let msg = err_str("[token]\nlock_lease = \"40s\"\n", &[]);
    assert!(
        msg.contains("key `token.lock_wait`") && msg.contains("at least token.lock_lease (40s)"),
        "{msg}"
    );
    let msg = err_str("[token]\nlock_lease = \"100ms\"\n", &[]);
    assert!(msg.contains("key `token.lock_lease`"), "{msg}");
}

#[test]
fn unknown_keys_in_the_file_are_errors() {
    let msg = err_str("[token]\nrefresh_ahed = \"5m\"\n", &[]);
    assert!(
        msg.contains("refresh_ahed") && msg.contains("refresh_ahead"),
        "{msg}"
    );
    let msg = err_str("listn = \"0.0.0.0:1\"\n", &[]);
    assert!(msg.contains("listn"), "{msg}");
}

#[test]
fn missing_explicit_file_is_an_error() {
    let path = Path::new("/nonexistent/wxgate-test.toml");
    let err = figment(Some(path), EnvVars::default()).unwrap_err();
    assert!(matches!(err, ConfigError::MissingFile(_)));
    assert!(
        err.to_string().contains("/nonexistent/wxgate-test.toml"),
        "{err}"
    );
}

#[test]
fn validation_names_the_key_and_the_fix() {
    let wecom = "[[apps]]\nid = \"w\"\nkind = \"wecom\"\ncorpid = \"ww1\"\nsecret = \"s\"\n";
    let msg = err_str(wecom, &[]);
    assert!(
        msg.contains("key `apps[0].agentid`: required for kind \"wecom\" (the integer AgentId"),
        "{msg}"
    );

    let msg = err_str("", &[("WXGATE_TOKEN__MIN_TTL", "20m")]);
    assert!(
        msg.contains("WXGATE_TOKEN__MIN_TTL / key `token.min_ttl`: must be less than"),
        "{msg}"
    );
    let msg = err_str("[token]\ndaily_fetch_budget = 0\n", &[]);
    assert!(
        msg.contains("key `token.daily_fetch_budget`: 0 is out of range"),
        "{msg}"
    );
    let msg = err_str("[token]\nrefresh_ahead = \"3h\"\n", &[]);
    assert!(msg.contains("key `token.refresh_ahead`"), "{msg}");

    let twice = format!("{OA}{}", OA.replace("main", "second"));
    let msg = err_str(&twice, &[]);
    assert!(
        msg.contains("apps[1].appid`: same account as apps[0]"),
        "{msg}"
    );
    let msg = err_str(&format!("{OA}{OA}"), &[]);
    assert!(
        msg.contains("apps[1].id`: \"main\" is already used by apps[0]"),
        "{msg}"
    );

    let msg = err_str("database_url = \"mysql://u:hunter2@h/db\"\n", &[]);
    assert!(
        msg.contains("key `database_url`") && !msg.contains("hunter2"),
        "{msg}"
    );
}

#[test]
fn app_validate_reports_every_field() {
    let app = AppConfig {
        id: "Bad Id".into(),
        kind: AppKind::MiniProgram,
        appid: None,
        corpid: Some("ww1".into()),
        secret: " padded ".into(),
        agentid: Some(1),
        token_api: TokenApi::Classic,
        daily_fetch_budget: Some(200_000),
        proxy_accepts_secret: false,
    };
    let msg = app.validate().unwrap_err();
    for field in [
        "id:",
        "appid: required for kind \"mini_program\"",
        "corpid:",
        "agentid:",
        "secret:",
        "daily_fetch_budget:",
    ] {
        assert!(msg.contains(field), "{field} missing in {msg}");
    }
    assert!(!msg.contains("padded"), "secret leaked: {msg}");
    let ok = AppConfig {
        id: "mp-1".into(),
        appid: Some("wx1".into()),
        corpid: None,
        agentid: None,
        secret: "s".into(),
        daily_fetch_budget: None,
        proxy_accepts_secret: false,
        ..app
    };
    ok.validate().unwrap();
}

#[test]
fn api_base_accepts_only_scheme_host_port() {
    let ok = |s: &str| ApiBase::try_from(s.to_owned()).map(|b| b.to_string());
    assert_eq!(
        ok("http://127.0.0.1:9000").unwrap(),
        "http://127.0.0.1:9000"
    );
    assert_eq!(
        ok("https://api.weixin.qq.com/").unwrap(),
        "https://api.weixin.qq.com"
    );
    assert_eq!(ok("http://[::1]:9000").unwrap(), "http://[::1]:9000");
    for bad in [
        "ftp://x",
        "http://x/cgi-bin",
        "http://x?a=1",
        "127.0.0.1:9000",
        "http://",
        "http://x:0",
        "http://x:99999",
        "http://u:p@x",
        "http://a b",
    ] {
        assert!(ok(bad).is_err(), "{bad} should be rejected");
    }
    let base = ApiBase::try_from("http://127.0.0.1:9000".to_owned()).unwrap();
    assert_eq!(
        base.url("/cgi-bin/token"),
        "http://127.0.0.1:9000/cgi-bin/token"
    );
    assert_eq!(
        base.url("cgi-bin/token"),
        "http://127.0.0.1:9000/cgi-bin/token"
    );
}

#[test]
fn redaction_hides_every_secret() {
    let toml = r#"
        admin_token = "admin-secret-1"
        master_key = "master-secret-2"
        redis_url = "redis://:redis-secret-3@cache:6379/0"
        database_url = "postgres://wx:db-secret-4@db/wxgate?sslmode=require&password=db-secret-5"
    "#;
    let cfg = load_str(&format!("{toml}{OA}"), &[]).unwrap();
    assert!(cfg.is_fleet());
    let shown = format!("{}\n{cfg:?}\n{:?}", cfg.redacted(), cfg.apps[0]);
    for secret in [
        "admin-secret-1",
        "master-secret-2",
        "redis-secret-3",
        "db-secret-4",
        "db-secret-5",
        "oa-secret-value",
    ] {
        assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
    }
    let json = cfg.redacted();
    assert_eq!(json["admin_token"], "[redacted]");
    assert_eq!(json["apps"][0]["secret"], "[redacted]");
    assert_eq!(json["redis_url"], "redis://:[redacted]@cache:6379/0");
    assert_eq!(json["token"]["refresh_ahead"], "10m");
    assert_eq!(json["master_key_file"], "wxgate.key");
}

#[test]
fn secret_values_stay_out_of_type_errors() {
    let msg = err_str("admin_token = 987654321\n", &[]);
    assert!(
        msg.contains("key `admin_token`") && !msg.contains("987654321"),
        "{msg}"
    );
}

#[test]
fn redact_password_handles_url_shapes() {
    assert_eq!(redact_password("redis://cache:6379"), "redis://cache:6379");
    assert_eq!(
        redact_password("redis://user:pw@h"),
        "redis://user:[redacted]@h"
    );
    assert_eq!(redact_password("redis://pw@h/1"), "redis://[redacted]@h/1");
    assert_eq!(redact_password("sqlite://wxgate.db"), "sqlite://wxgate.db");
    assert_eq!(redact_password("garbage@x"), "[redacted]");
}

#[test]
fn env_top_level_keys_match_config_fields() {
    let json = Config::default().redacted();
    let mut fields: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut known = env::TOP_LEVEL_KEYS.to_vec();
    fields.sort_unstable();
    known.sort_unstable();
    assert_eq!(fields, known);
}

#[test]
fn syntax_errors_do_not_quote_the_line() {
    let msg = err_str("secret = \"hunter2\nlisten = 1\n", &[]);
    assert!(msg.contains("line 1") && !msg.contains("hunter2"), "{msg}");
}
