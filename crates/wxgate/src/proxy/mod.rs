//! Proxy mode: a WeChat-compatible listener (`proxy_listen`) for existing SDKs. An SDK whose
//! API host points here and whose "secret" is a wxgate API key gets placeholder tokens
//! (`tokens.rs`); its calls are forwarded to WeChat with the real token put in, token errors
//! handled once inside (`forward.rs`), and login calls sent with the real secret (`sns.rs`).
//! The real token and secret never leave the gateway.

mod bodies;
mod forward;
mod placeholder;
mod query;
mod sns;
mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

pub use placeholder::Placeholders;

use crate::api::auth::KeyCache;
use crate::apps::{App, AppRegistry};
use crate::config::{AppKind, ProxyConfig};
use secrecy::ExposeSecret;

use crate::store::{ApiKeyRecord, Store};
use crate::token::TokenManager;
use crate::wechat::Client;

/// What the proxy's handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ProxyState {
    pub apps: AppRegistry,
    pub tokens: TokenManager,
    pub client: Client,
    pub store: Store,
    pub keys: Arc<KeyCache>,
    pub placeholders: Arc<Placeholders>,
    pub settings: ProxyConfig,
}

/// The listener's routes: the three token endpoints, the login calls that need the app
/// secret, and everything else forwarded (within the allowlist).
pub fn router(state: ProxyState) -> Router {
    Router::new()
        .route("/cgi-bin/token", get(tokens::classic))
        .route("/cgi-bin/stable_token", post(tokens::stable))
        .route("/cgi-bin/gettoken", get(tokens::wecom))
        .route("/sns/jscode2session", get(sns::jscode2session))
        .route("/sns/oauth2/access_token", get(sns::oauth2_access_token))
        .fallback(forward::forward)
        .method_not_allowed_fallback(forward::wrong_method)
        .with_state(state)
}

/// Serves the proxy on `listener` until `stop`. Paths are normalised first (`//cgi-bin/token`
/// → `/cgi-bin/token`): an SDK host set with a trailing slash, as WxJava's sample has it,
/// sends doubled slashes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ProxyState,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    use axum::ServiceExt;
    use tower::Layer;
    let app = tower::util::MapRequestLayer::new(collapse_slashes).layer(router(state));
    axum::serve(listener, app.into_make_service())
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

fn collapse_slashes(mut req: axum::extract::Request) -> axum::extract::Request {
    let path = req.uri().path();
    if !path.contains("//") {
        return req;
    }
    let mut collapsed = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && collapsed.ends_with('/')) {
            collapsed.push(c);
        }
    }
    let rebuilt = match req.uri().query() {
        Some(q) => format!("{collapsed}?{q}"),
        None => collapsed,
    };
    if let Ok(pq) = rebuilt.parse::<axum::http::uri::PathAndQuery>() {
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = Some(pq);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// WeChat's content type for JSON answers; SDKs tell files from errors by it, so the proxy's
/// own answers use the same.
pub(crate) const WECHAT_JSON: &str = "application/json; encoding=utf-8";

/// An answer in WeChat's shape (`errcode`/`errmsg`) with HTTP 200, as WeChat answers errors:
/// SDKs treat any other status as a transport failure and retry it as one.
pub(crate) fn wechat_error(errcode: i64, errmsg: impl Into<String>) -> Response {
    wechat_json(
        StatusCode::OK,
        &json!({"errcode": errcode, "errmsg": errmsg.into()}),
    )
}

pub(crate) fn wechat_json(status: StatusCode, v: &serde_json::Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(WECHAT_JSON));
    r
}

impl ProxyState {
    /// The app whose WeChat id (appid or corpid) is `wechat_id`, when `key` is a key for it
    /// alone: a key that may use other apps too is refused in a secret slot, where a service
    /// keeps it beside one app's settings.
    fn apps_of(&self, wechat_id: &str, key: &ApiKeyRecord) -> Option<Arc<App>> {
        let crate::store::AppScope::Only(ids) = &key.apps else {
            return None;
        };
        let [only] = ids.as_slice() else {
            return None;
        };
        self.apps.get(only).filter(|a| a.wechat_id() == wechat_id)
    }

    /// Every app whose WeChat id (appid or corpid) is `wechat_id`.
    fn apps_with(&self, wechat_id: &str) -> impl Iterator<Item = Arc<App>> {
        self.apps
            .ids()
            .into_iter()
            .filter_map(|id| self.apps.get(&id))
            .filter(move |a| a.wechat_id() == wechat_id)
    }

    /// The app of `wechat_id` (and of a kind `kind` accepts) that `presented`, a `secret`
    /// slot, is a credential for, with the holder its placeholders name: a key for that app
    /// alone (its id), or the app's real secret where it opted in (a keyed digest of it). Else
    /// WeChat's answer: 40013 for an unknown appid/corpid (`id_name`), `wrong_secret` for the
    /// rest. Two apps of one account are refused by the registry, so there is never more than
    /// one.
    async fn credential_for(
        &self,
        (id_name, wechat_id): (&str, &str),
        presented: &str,
        kind: impl Fn(AppKind) -> bool,
        wrong_secret: fn() -> Response,
    ) -> Result<(Arc<App>, String), Response> {
        use subtle::ConstantTimeEq;
        let found = match self.key(presented).await? {
            Some(key) => self.apps_of(wechat_id, &key).map(|a| (a, key.id)),
            None => self
                .apps_with(wechat_id)
                .filter(|a| a.proxy_accepts_secret)
                .find(|a| {
                    let secret = a.secret.expose_secret().as_bytes();
                    bool::from(secret.ct_eq(presented.as_bytes()))
                })
                .map(|a| {
                    let holder = self
                        .placeholders
                        .secret_holder(&a.id, a.secret.expose_secret());
                    (a, holder)
                }),
        };
        match found.filter(|(a, _)| kind(a.kind())) {
            Some(found) => Ok(found),
            None if self.apps_with(wechat_id).next().is_none() => Err(wechat_error(
                40013,
                format!("invalid {id_name}: no app of this wxgate has it"),
            )),
            None => Err(wrong_secret()),
        }
    }

    /// The API key presented in a `secret` slot, if it is one.
    async fn key(&self, presented: &str) -> Result<Option<ApiKeyRecord>, Response> {
        if presented.is_empty() {
            return Ok(None);
        }
        self.keys
            .find(&self.store, presented)
            .await
            .map_err(|e| unavailable(&e))
    }

    /// The app behind a placeholder, if it is one of ours and what it was handed out for (an
    /// API key that may use the app, or the app's secret) still holds.
    async fn holder(&self, placeholder: &str) -> Result<Option<Arc<App>>, Response> {
        let Some(h) = self.placeholders.open(placeholder) else {
            return Ok(None);
        };
        if h.key_id.starts_with(placeholder::SECRET_HOLDER) {
            // Handed out for the real secret: good while the app takes it and has that secret.
            let app = self.apps.get(&h.app).filter(|a| a.proxy_accepts_secret);
            return Ok(app.filter(|a| {
                self.placeholders
                    .secret_holder(&a.id, a.secret.expose_secret())
                    == h.key_id
            }));
        }
        let key = self
            .keys
            .by_id(&self.store, &h.key_id)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(key
            .filter(|k| k.apps.allows(&h.app))
            .and_then(|_| self.apps.get(&h.app)))
    }
}

/// The store could not be asked: WeChat's "system busy", which SDKs retry a bounded number
/// of times (never a token error, which some retry without limit).
fn unavailable(e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "proxy: the store did not answer");
    wechat_error(
        -1,
        "system error: wxgate could not read its store; try again shortly",
    )
}

/// One proxied request, counted by app, path and WeChat's errcode (`none` for files and
/// answers without one).
pub(crate) fn count(app: &str, path: &str, errcode: Option<i64>) {
    let errcode = errcode.map_or_else(|| "none".to_string(), |e| e.to_string());
    metrics::counter!("wxgate_proxy_requests_total", "app" => app.to_string(), "path" => metric_path(path), "errcode" => errcode).increment(1);
}

/// The paths counted by name; any other is counted under its allowlist prefix (`/wxa/*`), so
/// callers cannot mint labels.
const COUNTED_PATHS: [&str; 16] = [
    "/cgi-bin/token",
    "/cgi-bin/stable_token",
    "/cgi-bin/gettoken",
    "/cgi-bin/message/template/send",
    "/cgi-bin/message/subscribe/send",
    "/cgi-bin/message/send",
    "/cgi-bin/message/custom/send",
    "/cgi-bin/media/upload",
    "/cgi-bin/media/get",
    "/cgi-bin/user/info",
    "/wxa/getwxacode",
    "/wxa/getwxacodeunlimit",
    "/wxa/msg_sec_check",
    "/sns/jscode2session",
    "/sns/oauth2/access_token",
    "/sns/userinfo",
];

fn metric_path(path: &str) -> &'static str {
    if let Some(known) = COUNTED_PATHS.iter().find(|p| **p == path) {
        return known;
    }
    match forward::PREFIXES.iter().find(|p| path.starts_with(**p)) {
        Some(prefix) => prefix_label(prefix),
        None => "other",
    }
}

fn prefix_label(prefix: &str) -> &'static str {
    match prefix {
        "/cgi-bin/" => "/cgi-bin/*",
        "/wxa/" => "/wxa/*",
        "/datacube/" => "/datacube/*",
        "/card/" => "/card/*",
        "/customservice/" => "/customservice/*",
        "/merchant/" => "/merchant/*",
        _ => "other",
    }
}
