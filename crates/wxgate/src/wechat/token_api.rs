//! The three token endpoints: OA/MP `GET /cgi-bin/token` (classic) and
//! `POST /cgi-bin/stable_token`, and WeCom `GET /cgi-bin/gettoken`. One call, no retries:
//! retry policy belongs to the token manager.
//!
//! Errors never carry the request URL: it holds the app secret in its query string.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::Client;
use crate::config::{AppKind, TokenApi};

/// What a token fetch needs to know about an app.
#[derive(Clone)]
pub struct Credentials {
    pub kind: AppKind,
    /// The appid (OA/MP) or corpid (WeCom).
    pub appid: String,
    pub secret: SecretString,
    pub agentid: Option<i64>,
    pub token_api: TokenApi,
}

#[derive(Clone)]
pub struct Fetched {
    pub access_token: String,
    pub expires_in: i64,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("WeChat answered errcode {errcode}: {errmsg}")]
    WeChat { errcode: i64, errmsg: String },
    /// Nothing came back: reset, timeout. May or may not have reached WeChat.
    #[error("no answer from WeChat: {0}")]
    Transport(String),
    /// The connection could not be made: the request never reached WeChat.
    #[error("cannot reach WeChat: {0}")]
    Connect(String),
    #[error("WeChat answered HTTP {0}")]
    Http(u16),
    #[error("WeChat's answer could not be read: {0}")]
    Decode(String),
}

impl FetchError {
    pub fn errcode(&self) -> Option<i64> {
        match self {
            FetchError::WeChat { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// Worth retrying soon: busy, transport, 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::WeChat { errcode, .. } => {
                crate::wechat::classify_fetch(*errcode) == crate::wechat::ErrClass::Backoff
            }
            FetchError::Transport(_) | FetchError::Connect(_) | FetchError::Decode(_) => true,
            FetchError::Http(s) => *s >= 500 || *s == 429,
        }
    }

    /// A short label for metrics.
    pub fn outcome(&self) -> String {
        match self {
            FetchError::WeChat { errcode, .. } => format!("errcode_{errcode}"),
            FetchError::Transport(_) => "transport".into(),
            FetchError::Connect(_) => "connect".into(),
            FetchError::Http(s) => format!("http_{s}"),
            FetchError::Decode(_) => "decode".into(),
        }
    }
}

#[derive(Deserialize)]
struct TokenReply {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    access_token: Option<String>,
    expires_in: Option<i64>,
}

impl Client {
    /// Fetch a token once, within `timeout`. `force` asks the stable API for a new token
    /// (`force_refresh`).
    pub async fn fetch(
        &self,
        c: &Credentials,
        force: bool,
        timeout: std::time::Duration,
    ) -> Result<Fetched, FetchError> {
        let secret = c.secret.expose_secret();
        let req = match (c.kind, c.token_api) {
            (AppKind::Wecom, _) => self
                .http()
                .get(self.url(c.kind, "/cgi-bin/gettoken"))
                .query(&[("corpid", c.appid.as_str()), ("corpsecret", secret)]),
            (_, TokenApi::Classic) => self.http().get(self.url(c.kind, "/cgi-bin/token")).query(&[
                ("grant_type", "client_credential"),
                ("appid", c.appid.as_str()),
                ("secret", secret),
            ]),
            (_, TokenApi::Stable) => self
                .http()
                .post(self.url(c.kind, "/cgi-bin/stable_token"))
                .json(&json!({
                    "grant_type": "client_credential",
                    "appid": c.appid,
                    "secret": secret,
                    "force_refresh": force,
                })),
        };
        let resp = req.timeout(timeout).send().await.map_err(|e| {
            let e = e.without_url();
            if e.is_connect() {
                FetchError::Connect(e.to_string())
            } else {
                FetchError::Transport(e.to_string())
            }
        })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(FetchError::Http(status.as_u16()));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| FetchError::Transport(e.without_url().to_string()))?;
        let reply: TokenReply =
            serde_json::from_slice(&bytes).map_err(|e| FetchError::Decode(e.to_string()))?;
        // A missing errcode counts as 0 (OA/MP token replies have none).
        if reply.errcode != 0 {
            return Err(FetchError::WeChat {
                errcode: reply.errcode,
                errmsg: reply.errmsg,
            });
        }
        match (reply.access_token, reply.expires_in) {
            // WeChat says "within 7200"; anything outside a day is not a lifetime we can trust.
            (Some(t), Some(e)) if !t.is_empty() && (0..=86_400).contains(&e) => Ok(Fetched {
                access_token: t,
                expires_in: e,
            }),
            _ => Err(FetchError::Decode(
                "no access_token/expires_in in a success reply".into(),
            )),
        }
    }
}
