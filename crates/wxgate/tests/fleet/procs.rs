//! Real processes for fleet tests: `wxgate serve` instances configured through `WXGATE_*`, and
//! a private `redis-server` that a test may stop, restart empty or lose.

use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

pub const ADMIN: &str = "fleet-admin-token-0123456789";
pub const MASTER_KEY: &str = "5f2b9c0e3a7d41e6b8c92f0d1a3e5b7c9d0f2a4c6e8b1d3f5a7c9e0b2d4f6a81";

/// Held by tests that measure time across several processes (rates, wake-ups, a campaign
/// racing a SIGKILL), so that two of them never share this machine's cores at once.
pub static TIMED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wxgate-fleet-{tag}-{}-{}",
        std::process::id(),
        wxgate::crypto::random_token("")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The shared test Redis (`WXGATE_TEST_REDIS_URL`, as CI sets it).
pub fn test_redis_url() -> String {
    std::env::var("WXGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A `redis-server` of this test's own on a free port, keeping nothing on disk, so stopping and
/// restarting it loses everything (as a Redis without persistence does).
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub async fn start() -> PrivateRedis {
        let mut r = PrivateRedis {
            port: free_port(),
            child: None,
        };
        r.restart().await;
        r
    }

    /// A free port with no Redis on it yet (`restart` starts one there).
    pub fn not_started() -> PrivateRedis {
        PrivateRedis {
            port: free_port(),
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Start it (again, empty) on the same port and wait until it answers.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server must be installed (CI installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: gone at once, data and all.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }
}

/// One `wxgate serve` process.
pub struct Instance {
    pub base: String,
    /// The fleet's Redis key prefix.
    pub prefix: String,
    child: Option<Child>,
}

/// What every instance of one fleet shares.
#[derive(Clone)]
pub struct FleetSpec {
    pub sim_base: String,
    pub redis_url: String,
    pub prefix: String,
    /// `WXGATE_APPS`, a TOML array of app tables.
    pub apps: String,
    /// Extra `WXGATE_*` settings, e.g. ("WXGATE_TOKEN__LOCK_LEASE", "3s").
    pub env: Vec<(String, String)>,
}

impl FleetSpec {
    pub fn new(sim_base: &str, redis_url: &str, apps: &str) -> FleetSpec {
        FleetSpec {
            sim_base: sim_base.into(),
            redis_url: redis_url.into(),
            prefix: format!("wxgate-fleet-{}", wxgate::crypto::random_token("")),
            apps: apps.into(),
            env: Vec::new(),
        }
    }

    pub fn with(mut self, key: &str, value: &str) -> FleetSpec {
        self.env.push((key.into(), value.into()));
        self
    }

    pub async fn start(&self, n: usize) -> Vec<Instance> {
        let mut v = Vec::new();
        for i in 0..n {
            v.push(Instance::start(self, i).await);
        }
        v
    }
}

impl Instance {
    pub async fn start(spec: &FleetSpec, i: usize) -> Instance {
        let mut env = vec![
            ("WXGATE_REDIS_URL".to_string(), spec.redis_url.clone()),
            ("WXGATE_REDIS_PREFIX".to_string(), spec.prefix.clone()),
            ("WXGATE_APPS".to_string(), spec.apps.clone()),
        ];
        env.extend(spec.env.iter().cloned());
        let dir = temp_dir(&format!("i{i}"));
        let mut inst = Instance::serve(&dir, free_port(), &spec.sim_base, &env).await;
        inst.prefix = spec.prefix.clone();
        inst
    }

    /// `wxgate serve` in `dir` (its SQLite file and log live there) on `port`, against the
    /// simulator at `sim_base`, with `env` on top of the common settings; waits until it answers.
    pub async fn serve(
        dir: &std::path::Path,
        port: u16,
        sim_base: &str,
        env: &[(String, String)],
    ) -> Instance {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wxgate"));
        cmd.arg("serve")
            .current_dir(dir)
            .env_clear()
            .env("RUST_LOG", "wxgate=info")
            .env("WXGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "WXGATE_DATABASE_URL",
                format!("sqlite://{}", dir.join("wxgate.db").display()),
            )
            .env("WXGATE_MASTER_KEY", MASTER_KEY)
            .env("WXGATE_ADMIN_TOKEN", ADMIN)
            .env("WXGATE_WECHAT_API_BASE", sim_base)
            .env("WXGATE_WECOM_API_BASE", sim_base);
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Appended, so a restarted instance's log follows the first one's.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("wxgate.log"))
            .unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "wxgate serve did not start; log in {}",
                dir.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Instance {
            base,
            prefix: String::new(),
            child: Some(child),
        }
    }

    /// A handle on an instance already running at `base` (for use inside spawned tasks).
    pub fn attach(base: &str) -> Instance {
        Instance {
            base: base.into(),
            prefix: String::new(),
            child: None,
        }
    }

    /// SIGKILL, no goodbye.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }

    /// `GET /v1/apps/{app}/token` → (status, body).
    pub async fn get_token(&self, http: &reqwest::Client, app: &str) -> (StatusCode, Value) {
        let r = http
            .get(format!("{}/v1/apps/{app}/token", self.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("wxgate answers");
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// The token, asserting 200.
    pub async fn token(&self, http: &reqwest::Client, app: &str) -> String {
        let (s, v) = self.get_token(http, app).await;
        assert_eq!(s, StatusCode::OK, "{}: {v}", self.base);
        v["access_token"].as_str().unwrap().to_string()
    }

    /// Report `token` rejected → (result, token to use now).
    pub async fn report(&self, http: &reqwest::Client, app: &str, token: &str) -> (String, String) {
        let r = http
            .post(format!("{}/v1/apps/{app}/token/invalidate", self.base))
            .bearer_auth(ADMIN)
            .json(&json!({ "access_token": token }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        (
            v["result"].as_str().unwrap().to_string(),
            v["access_token"].as_str().unwrap().to_string(),
        )
    }

    /// `POST path` with a JSON body as the admin, optionally with an Idempotency-Key.
    pub async fn post(
        &self,
        http: &reqwest::Client,
        path: &str,
        body: &Value,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = http
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .json(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let r = req.send().await.expect("wxgate answers");
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET path` as `bearer` → (status, body).
    pub async fn get_as(
        &self,
        http: &reqwest::Client,
        path: &str,
        bearer: &str,
    ) -> (StatusCode, Value) {
        let r = http
            .get(format!("{}{path}", self.base))
            .bearer_auth(bearer)
            .send()
            .await
            .expect("wxgate answers");
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls the campaign on this instance until it is done (at most `within`).
    pub async fn campaign_done(&self, http: &reqwest::Client, id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (s, v) = self
                .get_as(http, &format!("/v1/campaigns/{id}"), ADMIN)
                .await;
            if s == StatusCode::OK && v["status"] == "done" {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "campaign {id} not done on {}: {s} {v}",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn readyz(&self, http: &reqwest::Client) -> Value {
        let r = http
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }
}

/// Use a token against the simulator; WeChat's errcode (0 = accepted).
pub async fn use_token(http: &reqwest::Client, sim_base: &str, token: &str) -> i64 {
    let v: Value = http
        .get(format!("{sim_base}/cgi-bin/get_api_domain_ip"))
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

/// Poll `f` until it returns true or `within` passes; returns whether it did.
pub async fn eventually<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
