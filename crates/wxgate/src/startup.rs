//! Builds a running gateway from a `Config`: master key, store, the app registry (the file's
//! apps and the store's), token manager, delivery workers and the HTTP server, as the
//! instance's roles say. Tests start it on port 0 exactly as `main` does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState, auth::KeyCache};
use crate::apps::AppRegistry;
use crate::clock::Clock;
use crate::config::Config;
use crate::coord::{CoordError, RedisCoord};
use crate::crypto::{KeySource, MasterKey};
use crate::proxy::{self, Placeholders, ProxyState};
use crate::push::{PushSettings, Pusher};
use crate::store::Store;
use crate::token::TokenManager;
use crate::wechat::{Client, http_client};

/// A running gateway. `shutdown` stops it gracefully; dropping it stops it too.
pub struct Gateway {
    addr: SocketAddr,
    pub tokens: TokenManager,
    /// Cancelled to stop the server, the metrics upkeep and the token refreshers.
    stop: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    /// The delivery workers (`worker` role); end after `stop`.
    push: Option<JoinHandle<()>>,
    /// The proxy listener (`proxy_listen`) and its server; ends with `stop`.
    proxy: Option<(SocketAddr, JoinHandle<std::io::Result<()>>)>,
}

impl Gateway {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The proxy listener's base URL, when `proxy_listen` is set.
    pub fn proxy_url(&self) -> Option<String> {
        self.proxy.as_ref().map(|(a, _)| format!("http://{a}"))
    }

    /// Stop accepting, finish requests under way, stop refreshers.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        self.tokens.shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.server).await;
        if let Some((_, proxy)) = &mut self.proxy {
            let _ = tokio::time::timeout(Duration::from_secs(10), proxy).await;
        }
        // Sends under way finish and their results are recorded.
        if let Some(push) = &mut self.push {
            let _ = tokio::time::timeout(Duration::from_secs(15), push).await;
        }
    }

    /// Wait until the server ends (it ends only on `shutdown` or an I/O error).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        match (&mut self.server).await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
        self.tokens.shutdown();
    }
}

/// Redis for fleet mode. Unreachable is not fatal: the instance starts degraded (serving and
/// fetching on its own) and joins the fleet when Redis answers, so a restart during a Redis
/// outage does not take it down. A bad URL or a refused password is fatal.
async fn connect_redis(url: &str, prefix: &str) -> anyhow::Result<RedisCoord> {
    match RedisCoord::connect(url, prefix).await {
        Ok(c) => Ok(c),
        Err(CoordError::Unavailable(why)) => {
            tracing::warn!(%why, key = "WXGATE_REDIS_URL", "redis unreachable at start: starting degraded; the fleet is joined when it answers");
            RedisCoord::connect_lazily(url, prefix)
                .await
                .context("connecting to Redis (WXGATE_REDIS_URL)")
        }
        Err(e) => Err(e).context("connecting to Redis (WXGATE_REDIS_URL)"),
    }
}

/// `check-config --connect`: connects to the database and Redis `cfg` names and reports each
/// on stderr by its key; exit code 3 when one refuses. Never prints a URL (it may hold a
/// password).
pub async fn check_servers(cfg: &Config) -> anyhow::Result<std::process::ExitCode> {
    let mut ok = true;
    match Store::check(&cfg.database_url, &cfg.store_options()).await {
        Ok(()) => eprintln!("database_url (WXGATE_DATABASE_URL): ok"),
        Err(e) => {
            ok = false;
            eprintln!("database_url (WXGATE_DATABASE_URL): {e}");
        }
    }
    if let Some(url) = &cfg.redis_url {
        let answered = match RedisCoord::connect(url.expose_secret(), &cfg.redis_prefix).await {
            Ok(c) => c.ping().await,
            Err(e) => Err(e),
        };
        match answered {
            Ok(()) => eprintln!("redis_url (WXGATE_REDIS_URL): ok"),
            Err(e) => {
                ok = false;
                eprintln!("redis_url (WXGATE_REDIS_URL): {e}");
            }
        }
    }
    Ok(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(3)
    })
}

/// Start a gateway for `cfg` reading time from `clock`.
pub async fn start(cfg: Config, clock: Clock) -> anyhow::Result<Gateway> {
    let metrics = crate::metrics::prometheus();
    let (master_key, source) = MasterKey::from_config(&cfg).context("loading the master key")?;
    match &source {
        KeySource::Generated(path) => tracing::warn!(
            path = %path.display(),
            "generated a new master key for secrets at rest; back this file up (losing it loses every stored secret) or set WXGATE_MASTER_KEY"
        ),
        other => tracing::info!(source = %other, "master key loaded"),
    }
    let store = Store::connect_with(&cfg.database_url, &cfg.store_options())
        .await
        .context("opening the store (WXGATE_DATABASE_URL)")?;
    let push_settings = PushSettings::from_config(&cfg.push);
    // One pool for every call to WeChat: token fetches, sends, the proxy. It keeps an idle
    // connection per concurrent send, or every send beyond the pool would open a new one;
    // each kind of call sets its own timeout.
    let client = Client::new(
        http_client(push_settings.max_in_flight.max(64)),
        cfg.wechat_api_base.clone(),
        cfg.wecom_api_base.clone(),
    );
    let coord = match &cfg.redis_url {
        Some(url) => Some(
            connect_redis(url.expose_secret(), &cfg.redis_prefix)
                .await?
                .with_clock(clock.clone()),
        ),
        None => None,
    };
    match (coord.is_some(), store.is_shared()) {
        (true, false) => tracing::warn!(
            "tokens are shared through Redis but the store is this instance's SQLite file: apps, keys and messages are not shared; run a fleet on a postgres:// WXGATE_DATABASE_URL"
        ),
        (false, true) => tracing::info!(
            "PostgreSQL store without Redis: tokens, send limits and pauses are this instance's own; set WXGATE_REDIS_URL before running a second instance"
        ),
        _ => {}
    }
    let master_key = Arc::new(master_key);
    let apps = AppRegistry::load(cfg.apps.clone(), store.clone(), master_key.clone())
        .await
        .context("loading the apps (wxgate.toml and the store)")?;
    let tokens = TokenManager::with_refresher(
        client.clone(),
        clock,
        cfg.token.clone(),
        coord,
        cfg.roles.refresher,
    );
    // The token manager keeps a slot per app, added, changed and removed with the registry.
    apps.subscribe(Arc::new(tokens.clone()));
    if cfg.admin_token.is_none() && cfg.roles.api {
        tracing::warn!(
            "WXGATE_ADMIN_TOKEN is not set: apps and API keys cannot be managed over HTTP"
        );
    }
    let stop = CancellationToken::new();
    // Keeps the registry and the key cache current with every instance's changes; both end
    // with `stop`.
    apps.spawn_follower(stop.clone());
    let keys = Arc::new(KeyCache::default());
    keys.spawn_follower(&store, stop.clone());
    let push_task = cfg.roles.worker.then(|| {
        let pusher = Pusher::new(
            store.clone(),
            tokens.clone(),
            apps.clone(),
            client.clone(),
            push_settings,
        );
        // The delivery workers; they stop with `stop`, recording the sends under way first.
        pusher.spawn(stop.clone())
    });
    let proxy = match cfg.proxy_listen {
        Some(at) => {
            let listener = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("cannot listen on {at} (WXGATE_PROXY_LISTEN)"))?;
            let addr = listener.local_addr()?;
            let state = ProxyState {
                apps: apps.clone(),
                tokens: tokens.clone(),
                client: client.clone(),
                store: store.clone(),
                keys: keys.clone(),
                placeholders: Arc::new(Placeholders::new(&master_key)),
                settings: cfg.proxy.clone(),
            };
            tracing::info!(%addr, "wxgate proxy listening (WeChat-compatible paths for existing SDKs)");
            Some((
                addr,
                tokio::spawn(proxy::serve(listener, state, stop.clone())),
            ))
        }
        None => None,
    };
    let state = AppState {
        apps: apps.clone(),
        tokens: tokens.clone(),
        store: store.clone(),
        admin_token: cfg.admin_token.clone(),
        keys,
        token_settings: cfg.token.clone(),
        metrics: metrics.clone(),
        mode: if cfg.is_fleet() { "fleet" } else { "embedded" },
        roles: cfg.roles,
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {} (WXGATE_LISTEN)", cfg.listen))?;
    let addr = listener.local_addr()?;
    // Drains histogram buckets every 10 s, as the exporter requires; ends with `stop`.
    let upkeep_stop = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = upkeep_stop.cancelled() => return,
                _ = tick.tick() => metrics.run_upkeep(),
            }
        }
    });
    let server_stop = stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, api::router(state))
            .with_graceful_shutdown(async move { server_stop.cancelled().await })
            .await
    });
    tracing::info!(%addr, apps = apps.len(), store = store.kind(), roles = %cfg.roles, "wxgate listening");
    Ok(Gateway {
        addr,
        tokens,
        stop,
        server,
        push: push_task,
        proxy,
    })
}
