//! Test helpers: a fresh SQLite file per test, master keys and sample apps.

use std::path::PathBuf;

use crate::config::{AppConfig, AppKind, Config, TokenApi};
use crate::crypto::{MasterKey, random_token};

use super::Store;

/// A unique database file under the system temp dir; the file and its WAL files are removed
/// on drop.
pub struct TempDb {
    pub path: PathBuf,
}

impl TempDb {
    pub fn new(tag: &str) -> TempDb {
        let name = format!(
            "wxgate-store-{tag}-{}-{}.db",
            std::process::id(),
            random_token("")
        );
        TempDb {
            path: std::env::temp_dir().join(name),
        }
    }

    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    pub async fn connect(&self) -> Store {
        Store::connect(&self.url())
            .await
            .expect("connect to temp db")
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A master key whose 32 bytes are all `byte`, built the way production builds one.
pub fn master_key(byte: u8) -> MasterKey {
    let config = Config {
        master_key: Some(hex::encode([byte; 32]).into()),
        ..Config::default()
    };
    MasterKey::from_config(&config).expect("valid master key").0
}

pub fn oa_app(id: &str) -> AppConfig {
    AppConfig {
        id: id.into(),
        kind: AppKind::OfficialAccount,
        appid: Some("wx0123456789abcdef".into()),
        corpid: None,
        secret: "oa-plain-secret-0123456789".into(),
        agentid: None,
        token_api: TokenApi::Stable,
        daily_fetch_budget: None,
        proxy_accepts_secret: false,
    }
}

pub fn wecom_app(id: &str) -> AppConfig {
    AppConfig {
        id: id.into(),
        kind: AppKind::Wecom,
        appid: None,
        corpid: Some("ww0123456789abcdef".into()),
        secret: "wecom-plain-secret-abcdef".into(),
        agentid: Some(1_000_002),
        token_api: TokenApi::Classic,
        daily_fetch_budget: Some(500),
        proxy_accepts_secret: false,
    }
}
