//! The test harness: a simulator and a gateway on port 0 sharing one virtual clock, a fresh
//! SQLite file per test, and a typed client that asserts status codes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use wxgate::clock::Clock;
use wxgate::config::{ApiBase, AppConfig, AppKind, Config, TokenApi};
use wxgate::startup::{Gateway, start};
use wxsim::{SimConfig, SimHandle};

pub const ADMIN: &str = "test-admin-token-0123456789";
pub const MASTER_KEY: &str = "5f2b9c0e3a7d41e6b8c92f0d1a3e5b7c9d0f2a4c6e8b1d3f5a7c9e0b2d4f6a81";

pub struct TestApp {
    pub sim: SimHandle,
    pub gw: Option<Gateway>,
    pub clock: Clock,
    pub http: reqwest::Client,
    pub base: String,
    pub cfg: Config,
}

static N: AtomicU64 = AtomicU64::new(0);

/// A unique temp directory for this test's database and key file.
pub fn temp_dir() -> std::path::PathBuf {
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("wxgate-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn app(id: &str, kind: AppKind, appid: &str, secret: &str, api: TokenApi) -> AppConfig {
    AppConfig {
        id: id.into(),
        kind,
        appid: (kind != AppKind::Wecom).then(|| appid.to_string()),
        corpid: (kind == AppKind::Wecom).then(|| appid.to_string()),
        secret: SecretString::from(secret.to_string()),
        agentid: (kind == AppKind::Wecom).then_some(1_000_002),
        token_api: api,
        daily_fetch_budget: None,
        proxy_accepts_secret: false,
    }
}

/// The simulator's demo OA as a gateway app `shop`, on the given token API.
pub fn shop(api: TokenApi) -> AppConfig {
    app(
        "shop",
        AppKind::OfficialAccount,
        "wxdemo_oa",
        "demo-oa-secret",
        api,
    )
}

pub fn test_config(sim: &SimHandle, apps: Vec<AppConfig>) -> Config {
    let dir = temp_dir();
    let base = ApiBase::try_from(sim.base_url()).unwrap();
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", dir.join("wxgate.db").display()),
        master_key: Some(SecretString::from(MASTER_KEY.to_string())),
        master_key_file: dir.join("wxgate.key"),
        admin_token: Some(SecretString::from(ADMIN.to_string())),
        wechat_api_base: base.clone(),
        wecom_api_base: base,
        apps,
        ..Config::default()
    }
}

pub async fn spawn_with(
    sim_cfg: SimConfig,
    apps: Vec<AppConfig>,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    wxgate::wechat::init_crypto();
    let clock = Clock::new();
    let sim = wxsim::start_with_clock(sim_cfg, clock.clone())
        .await
        .unwrap();
    let mut cfg = test_config(&sim, apps);
    tweak(&mut cfg);
    let gw = start(cfg.clone(), clock.clone()).await.unwrap();
    let base = gw.base_url();
    TestApp {
        sim,
        gw: Some(gw),
        clock,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()
            .unwrap(),
        base,
        cfg,
    }
}

/// The demo simulator and the gateway with app `shop` (stable API).
pub async fn spawn_app() -> TestApp {
    spawn_with(SimConfig::default(), vec![shop(TokenApi::Stable)], |_| {}).await
}

impl TestApp {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method.parse().unwrap(), url);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("gateway answers");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    /// `GET /v1/apps/{app}/token` as the admin; asserts 200 and returns the token.
    pub async fn token(&self, app: &str) -> String {
        let (s, v) = self
            .call("GET", &format!("/v1/apps/{app}/token"), Some(ADMIN), None)
            .await;
        assert_eq!(s, StatusCode::OK, "token for {app}: {v}");
        v["access_token"].as_str().unwrap().to_string()
    }

    pub async fn invalidate(&self, app: &str, token: &str) -> (StatusCode, Value) {
        self.call(
            "POST",
            &format!("/v1/apps/{app}/token/invalidate"),
            Some(ADMIN),
            Some(json!({"access_token": token})),
        )
        .await
    }

    /// Use a token against the simulator (a cheap authenticated call); returns WeChat's errcode.
    pub async fn use_token(&self, token: &str) -> i64 {
        let v: Value = self
            .http
            .get(format!("{}/cgi-bin/get_api_domain_ip", self.sim.base_url()))
            .query(&[("access_token", token)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // Success is `{"ip_list": [...]}` without an errcode; anything else must carry one.
        if v.get("ip_list").is_some() {
            return 0;
        }
        v["errcode"]
            .as_i64()
            .unwrap_or_else(|| panic!("no ip_list and no errcode: {v}"))
    }

    /// Move the shared clock to just after the next midnight in Shanghai, so a test that spans
    /// hours does not cross a daily quota reset by accident.
    pub fn skip_to_morning(&self) {
        let now = self.clock.now_ms();
        let midnight = wxgate::clock::next_shanghai_midnight_ms(now);
        self.clock
            .advance(Duration::from_millis((midnight - now + 60_000) as u64));
    }

    pub fn fetches(&self, sim_app: &str) -> u64 {
        self.sim.stats(sim_app).unwrap().token_fetches.total()
    }

    /// Stop the gateway and start a new one on the same database (a restart).
    pub async fn restart(&mut self) {
        if let Some(gw) = self.gw.take() {
            gw.shutdown().await;
        }
        let gw = start(self.cfg.clone(), self.clock.clone()).await.unwrap();
        self.base = gw.base_url();
        self.gw = Some(gw);
    }
}
