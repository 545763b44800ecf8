//! `wxsim`: a faithful, fast WeChat server-side API simulator.
//!
//! It speaks the endpoints wxgate uses — OA/MP `GET /cgi-bin/token` and
//! `POST /cgi-bin/stable_token`, WeCom `GET /cgi-bin/gettoken`, the three send APIs, quota
//! management and `get_api_domain_ip` — with WeChat's errcodes, limits and field rules
//! (`shared/wechat-api.md`), plus injected faults, a clock tests can move, and a control and
//! statistics API under `/_sim/`. Start one in a test with [`start`] on port 0; run one by hand
//! with `wxsim` or `wxgate sim`.
//!
//! Also served, behind the same faults:
//! - `POST /cgi-bin/media/upload?access_token=&type=image|voice|video|file` (multipart, file
//!   field `media`) and `GET /cgi-bin/media/get?access_token=&media_id=` (a single `Range` →
//!   206), in OA/MP or WeCom shape by the token's host;
//! - `GET /sns/jscode2session` (Mini Program login), `GET /sns/oauth2/access_token` and
//!   `GET /sns/userinfo` (OA web login), by appid and the current secret; a code works once, and
//!   its openid is [`openid_for_code`];
//! - an echo: any other `GET`/`POST` under `/cgi-bin/`, `/wxa/`, `/datacube/`, `/card/`,
//!   `/customservice/` or `/merchant/` passes the token check and answers
//!   `{"errcode":0,"errmsg":"ok","echo":{method, path, query, content_type, body_len,
//!   body_sha256}}`.
//!
//! Every request naming an app (by token, or by appid on the logins) is counted by path in
//! [`AppStats::calls_by_path`].

// Handlers return a finished `Response` as their error, the axum idiom; boxing it buys nothing.
#![allow(clippy::result_large_err)]

mod calls;
mod config;
mod control;
mod digest;
mod echo;
mod faults;
pub mod keywords;
mod media;
mod quota;
mod reply;
mod send_mp;
mod send_wecom;
mod server;
mod sns;
mod stats;
mod tokens;
mod world;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::sync::watch;
use tower::ServiceExt;

pub use config::*;
pub use control::{DeliveryFilter, SimStats};
pub use sns::openid_for_code;
pub use stats::{AppStats, FaultStats, TokenFetches, TokenUses};
pub use world::{Delivery, Follow, follow_by_convention};
pub use wxclock::{Clock, day_index};

use world::{Sim, lock};

/// The router: WeChat's endpoints behind fault injection (and, outside it, the per-path call
/// counter), `/_sim/` without either; other `GET`/`POST` under WeChat's prefixes go to the echo,
/// behind the same layers, and anything else answers 404.
fn router(sim: Arc<Sim>) -> Router {
    let wechat = Router::new()
        .route("/cgi-bin/token", get(tokens::classic))
        .route("/cgi-bin/stable_token", post(tokens::stable))
        .route("/cgi-bin/gettoken", get(tokens::gettoken))
        .route("/cgi-bin/get_api_domain_ip", get(tokens::api_domain_ip))
        .route(
            "/cgi-bin/message/template/send",
            post(send_mp::template_send),
        )
        .route(
            "/cgi-bin/message/subscribe/send",
            post(send_mp::subscribe_send),
        )
        .route("/cgi-bin/message/send", post(send_wecom::message_send))
        .route("/cgi-bin/clear_quota", post(quota::clear_quota))
        .route("/cgi-bin/clear_quota/v2", post(quota::clear_quota_v2))
        .route("/cgi-bin/openapi/quota/get", post(quota::quota_get))
        .route(
            "/cgi-bin/media/upload",
            post(media::upload).layer(axum::extract::DefaultBodyLimit::max(media::MAX_UPLOAD_BODY)),
        )
        .route("/cgi-bin/media/get", get(media::get))
        .route("/sns/jscode2session", get(sns::jscode2session))
        .route("/sns/oauth2/access_token", get(sns::oauth2_access_token))
        .route("/sns/userinfo", get(sns::userinfo));
    let echo: Router =
        wechat_layers(&sim, Router::new().fallback(echo::echo)).with_state(sim.clone());
    wechat_layers(&sim, wechat)
        .merge(control::routes())
        .with_state(sim)
        .fallback(move |req: Request| {
            let echo = echo.clone();
            async move {
                if echo::serves(req.method(), req.uri().path()) {
                    match echo.oneshot(req).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    }
                } else {
                    StatusCode::NOT_FOUND.into_response()
                }
            }
        })
}

/// Fault injection, with the per-path call counter outside it (a call counts when it arrives).
fn wechat_layers(sim: &Arc<Sim>, r: Router<Arc<Sim>>) -> Router<Arc<Sim>> {
    r.layer(axum::middleware::from_fn_with_state(
        sim.clone(),
        faults::inject,
    ))
    .layer(axum::middleware::from_fn_with_state(
        sim.clone(),
        calls::count,
    ))
}

/// Command-line options of `wxsim` and `wxgate sim`.
#[derive(Clone, Debug, clap::Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// A JSON file with a `SimConfig` (apps, limits, faults…); the demo world when absent.
    #[arg(long = "sim-config", value_name = "FILE")]
    pub sim_config: Option<std::path::PathBuf>,
}

/// Run a simulator in the foreground until Ctrl-C, printing how to talk to it.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut config = match &args.sim_config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str::<SimConfig>(&text)
                .with_context(|| format!("{} is not a valid wxsim config", path.display()))?
        }
        None => SimConfig::default(),
    };
    config.listen = args.listen;
    let apps = config.apps.clone();
    let sim = start(config)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let base = sim.base_url();
    println!("wxsim listening on {base}");
    for a in &apps {
        match a.kind {
            AppKind::Wecom => println!(
                "  wecom   corpid={} agentid={} secret={}\n    curl '{base}/cgi-bin/gettoken?corpid={}&corpsecret={}'",
                a.appid,
                a.agentid.unwrap_or_default(),
                a.secret,
                a.appid,
                a.secret
            ),
            kind => println!(
                "  {kind:?} appid={} secret={}\n    curl '{base}/cgi-bin/token?grant_type=client_credential&appid={}&secret={}'",
                a.appid, a.secret, a.appid, a.secret
            ),
        }
    }
    println!("  stats:  curl {base}/_sim/stats");
    tokio::signal::ctrl_c().await.ok();
    Ok(())
}

/// A running simulator. Dropping it stops the server.
pub struct SimHandle {
    addr: SocketAddr,
    sim: Arc<Sim>,
    /// Flipped by `Drop` to stop the accept loop and every connection task.
    stop: watch::Sender<bool>,
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Start a simulator on `config.listen` (port 0 = any free port) with its own clock.
pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
    start_with_clock(config, Clock::new()).await
}

/// Start a simulator that reads time from `clock`, shared with the code under test.
pub async fn start_with_clock(config: SimConfig, clock: Clock) -> std::io::Result<SimHandle> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let sim = Arc::new(Sim::new(config, clock).map_err(std::io::Error::other)?);
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(server::serve(listener, router(sim.clone()), stop_rx));
    Ok(SimHandle { addr, sim, stop })
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: what wxgate takes as `WXGATE_WECHAT_API_BASE` and
    /// `WXGATE_WECOM_API_BASE` (the simulator serves both hosts' paths).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn clock(&self) -> &Clock {
        &self.sim.clock
    }

    /// Counters of one app (its appid, or `corpid:agentid` for WeCom).
    pub fn stats(&self, app: &str) -> Option<AppStats> {
        self.sim.app(app).map(|a| a.counters.snapshot())
    }

    pub fn all_stats(&self) -> SimStats {
        control::stats(&self.sim)
    }

    pub fn deliveries(&self, filter: &DeliveryFilter) -> Vec<Delivery> {
        control::deliveries(&self.sim, filter)
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.sim.faults.write().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    pub fn add_app(&self, spec: AppSpec) -> Result<String, String> {
        self.sim.add_app(spec)
    }

    /// Change an app's spec in place (limits, whitelist, frozen, templates…).
    pub fn update_app(&self, app: &str, f: impl FnOnce(&mut AppSpec)) -> bool {
        let Some(a) = self.sim.app(app) else {
            return false;
        };
        let mut st = lock(&a.state);
        f(&mut st.spec);
        st.templates = st
            .spec
            .templates
            .iter()
            .map(|t| (t.id.clone(), t.clone()))
            .collect();
        true
    }

    /// Invalidate the app's current tokens at once, as another environment fetching a new
    /// token would. Returns how many were revoked.
    pub fn revoke_token(&self, app: &str) -> usize {
        self.sim
            .app(app)
            .map_or(0, |a| tokens::revoke(&self.sim, &a))
    }

    pub fn set_follower(&self, app: &str, openid: &str, state: Follow) -> bool {
        control::set_follower(&self.sim, app, openid, state)
    }

    pub fn set_credits(&self, app: &str, openid: &str, template_id: &str, credits: u32) -> bool {
        control::set_credits(&self.sim, app, openid, template_id, credits)
    }

    /// Move the simulator's clock forward.
    pub fn advance(&self, by: Duration) {
        self.sim.clock.advance(by)
    }

    /// Forget tokens, counters, windows and deliveries; keep apps and settings.
    pub fn reset(&self) {
        self.sim.reset()
    }
}
