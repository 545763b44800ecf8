//! Apps: the WeChat accounts wxgate acts for, and the registry every part of the gateway reads
//! them from.
//!
//! An [`App`] is a checked account with the credentials its kind needs (an Official Account or
//! Mini Program has an appid; a WeCom app a corpid and an agentid). [`AppConfig`] is its
//! outside form (the config file, the API body, a store row); `App::new` checks one and makes
//! the other. The [`AppRegistry`] holds every app — those of the configuration file, and those
//! registered through the API and kept in the store — and keeps them current on every instance
//! sharing the store, from the store's change notifications. The token manager and the
//! delivery workers read it; the token manager subscribes to its changes.

mod registry;

use secrecy::{ExposeSecret, SecretString};

pub use registry::{AppListener, AppRegistry, RegistryError};

use crate::config::{AppConfig, AppKind, TokenApi, TokenSettings};
use crate::wechat::Credentials;

/// Which account an app is, with the identifiers its kind has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Account {
    OfficialAccount {
        appid: String,
    },
    MiniProgram {
        appid: String,
    },
    /// One WeCom application: a corp and one of its agents (each has its own token).
    Wecom {
        corpid: String,
        agentid: i64,
    },
}

/// Where an app is declared: `wxgate.toml` (read-only through the API) or the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Config,
    Api,
}

/// A checked app. Its `Debug` never shows the secret.
#[derive(Clone, Debug)]
pub struct App {
    /// Our name for it, used in URLs: `[a-z0-9_-]{1,64}`.
    pub id: String,
    pub account: Account,
    pub secret: SecretString,
    /// Which OA/MP token endpoint (WeCom has one).
    pub token_api: TokenApi,
    /// Overrides `token.daily_fetch_budget` for this app.
    pub daily_fetch_budget: Option<u32>,
    /// Proxy mode: the token endpoints also take the real secret (see `AppConfig`).
    pub proxy_accepts_secret: bool,
    pub source: Source,
}

impl App {
    /// Checks `config` (every problem named, as `AppConfig::validate` does) and builds the app.
    pub fn new(config: AppConfig, source: Source) -> Result<App, String> {
        config.validate()?;
        let missing = |what: &str| format!("{what}: required for kind \"{}\"", config.kind);
        let account = match config.kind {
            AppKind::OfficialAccount => Account::OfficialAccount {
                appid: config.appid.ok_or_else(|| missing("appid"))?,
            },
            AppKind::MiniProgram => Account::MiniProgram {
                appid: config.appid.ok_or_else(|| missing("appid"))?,
            },
            AppKind::Wecom => Account::Wecom {
                corpid: config.corpid.ok_or_else(|| missing("corpid"))?,
                agentid: config.agentid.ok_or_else(|| missing("agentid"))?,
            },
        };
        Ok(App {
            id: config.id,
            account,
            secret: config.secret,
            token_api: config.token_api,
            daily_fetch_budget: config.daily_fetch_budget,
            proxy_accepts_secret: config.proxy_accepts_secret,
            source,
        })
    }

    pub fn kind(&self) -> AppKind {
        match self.account {
            Account::OfficialAccount { .. } => AppKind::OfficialAccount,
            Account::MiniProgram { .. } => AppKind::MiniProgram,
            Account::Wecom { .. } => AppKind::Wecom,
        }
    }

    /// The appid (OA/MP) or corpid (WeCom).
    pub fn wechat_id(&self) -> &str {
        match &self.account {
            Account::OfficialAccount { appid } | Account::MiniProgram { appid } => appid,
            Account::Wecom { corpid, .. } => corpid,
        }
    }

    pub fn agentid(&self) -> Option<i64> {
        match self.account {
            Account::Wecom { agentid, .. } => Some(agentid),
            _ => None,
        }
    }

    /// The outside form, secret included (to store it, or to change and check it again).
    pub fn to_config(&self) -> AppConfig {
        let wecom = self.kind() == AppKind::Wecom;
        AppConfig {
            id: self.id.clone(),
            kind: self.kind(),
            appid: (!wecom).then(|| self.wechat_id().to_owned()),
            corpid: wecom.then(|| self.wechat_id().to_owned()),
            secret: self.secret.clone(),
            agentid: self.agentid(),
            token_api: self.token_api,
            daily_fetch_budget: self.daily_fetch_budget,
            proxy_accepts_secret: self.proxy_accepts_secret,
        }
    }

    /// What a token fetch needs.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            kind: self.kind(),
            appid: self.wechat_id().to_owned(),
            secret: self.secret.clone(),
            agentid: self.agentid(),
            token_api: self.token_api,
        }
    }

    /// The daily upstream fetch budget.
    pub fn fetch_budget(&self, defaults: &TokenSettings) -> u32 {
        self.daily_fetch_budget
            .unwrap_or(defaults.daily_fetch_budget)
    }

    /// Whether `other` holds the credentials of the same WeChat account: two such apps would
    /// fetch competing tokens.
    pub fn same_account(&self, other: &App) -> bool {
        match (&self.account, &other.account) {
            (Account::Wecom { .. }, Account::Wecom { .. }) => self.account == other.account,
            (Account::Wecom { .. }, _) | (_, Account::Wecom { .. }) => false,
            _ => self.wechat_id() == other.wechat_id(),
        }
    }

    /// Every field equal, the secret included: a re-read that changes nothing is not a change.
    pub fn same_as(&self, other: &App) -> bool {
        self.id == other.id
            && self.account == other.account
            && self.secret.expose_secret() == other.secret.expose_secret()
            && self.token_api == other.token_api
            && self.daily_fetch_budget == other.daily_fetch_budget
            && self.proxy_accepts_secret == other.proxy_accepts_secret
            && self.source == other.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: AppKind) -> AppConfig {
        let wecom = kind == AppKind::Wecom;
        AppConfig {
            id: "shop".into(),
            kind,
            appid: (!wecom).then(|| "wx0123456789abcdef".into()),
            corpid: wecom.then(|| "ww0123456789abcdef".into()),
            secret: SecretString::from("s3cret"),
            agentid: wecom.then_some(1_000_002),
            token_api: TokenApi::Classic,
            daily_fetch_budget: Some(100),
            proxy_accepts_secret: false,
        }
    }

    #[test]
    fn apps_round_trip_through_their_outside_form() {
        for kind in [
            AppKind::OfficialAccount,
            AppKind::MiniProgram,
            AppKind::Wecom,
        ] {
            let app = App::new(config(kind), Source::Api).unwrap();
            assert_eq!(app.kind(), kind);
            let back = app.to_config();
            let json = |c: &AppConfig| serde_json::to_value(c).unwrap();
            assert_eq!(json(&back), json(&config(kind)));
            assert_eq!(back.secret.expose_secret(), "s3cret");
            assert!(App::new(back, Source::Api).unwrap().same_as(&app));
        }
        let wecom = App::new(config(AppKind::Wecom), Source::Config).unwrap();
        assert_eq!(
            (wecom.wechat_id(), wecom.agentid()),
            ("ww0123456789abcdef", Some(1_000_002))
        );
        assert!(!format!("{wecom:?}").contains("s3cret"));
    }

    #[test]
    fn a_bad_config_is_refused_naming_the_field() {
        let mut c = config(AppKind::Wecom);
        c.agentid = None;
        let err = App::new(c, Source::Api).unwrap_err();
        assert!(err.contains("agentid"), "{err}");
    }

    #[test]
    fn same_account_and_same_as() {
        let a = App::new(config(AppKind::OfficialAccount), Source::Api).unwrap();
        let mut other = config(AppKind::MiniProgram);
        other.id = "mini".into();
        let mp = App::new(other, Source::Api).unwrap();
        assert!(
            a.same_account(&mp),
            "one appid is one account, whatever the kind"
        );
        let w1 = App::new(config(AppKind::Wecom), Source::Api).unwrap();
        let mut c = config(AppKind::Wecom);
        c.agentid = Some(1_000_003);
        let w2 = App::new(c, Source::Api).unwrap();
        assert!(
            !w1.same_account(&w2),
            "another agent of the corp is another account"
        );
        assert!(!a.same_account(&w1));
        let mut rotated = a.clone();
        rotated.secret = SecretString::from("new");
        assert!(a.same_as(&a.clone()) && !a.same_as(&rotated));
    }
}
