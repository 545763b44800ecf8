//! The app registry: every app this gateway serves, from the configuration file and from the
//! store, kept current on every instance that shares the store.
//!
//! Writes through the API go to the store first, then apply here at once (so the response
//! already reflects them). Every instance on the store hears the change ([`Change::App`]) and
//! re-reads that app; a lost notification stream ([`Change::Resync`]) or the periodic resync
//! re-reads them all. Apps of the configuration file win over stored ones with the same id.
//!
//! Listeners (the token manager) are told of every change synchronously, outside the
//! registry's lock, so that when a write returns every part of this instance agrees.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{App, Source};
use crate::config::AppConfig;
use crate::crypto::MasterKey;
use crate::store::{Change, Store, StoreError};

/// Re-read every app this often, in case a notification was lost without the stream noticing.
const RESYNC_EVERY: Duration = Duration::from_secs(30);

/// Told when an app is added or changed, and when it is removed.
pub trait AppListener: Send + Sync {
    fn app_changed(&self, app: &Arc<App>);
    fn app_removed(&self, id: &str);
}

/// Why a registry write was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Invalid(String),
    /// The id or the account is taken, or the app is the configuration's.
    #[error("{0}")]
    Conflict(String),
    #[error("no app with id {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Cheap to clone.
#[derive(Clone)]
pub struct AppRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    master_key: Arc<MasterKey>,
    /// The configuration's apps, by id: fixed for the life of the process.
    configured: HashMap<String, Arc<App>>,
    /// Every app served, by id. Held only to read or swap entries, never across an `.await`
    /// or a listener call.
    apps: RwLock<HashMap<String, Arc<App>>>,
    /// Told of every change, in the order they happen. Appended at start-up, then read.
    listeners: RwLock<Vec<Arc<dyn AppListener>>>,
    /// Serialises applying re-reads, so two refreshes of one app cannot apply out of order.
    apply: tokio::sync::Mutex<()>,
}

impl AppRegistry {
    /// The configuration's apps and the store's (a stored app with the id of a configured one
    /// is skipped with a warning). Fails when a stored secret does not open.
    pub async fn load(
        configured: Vec<AppConfig>,
        store: Store,
        master_key: Arc<MasterKey>,
    ) -> Result<AppRegistry, RegistryError> {
        let mut from_config = HashMap::new();
        for c in configured {
            let app = App::new(c, Source::Config).map_err(RegistryError::Invalid)?;
            from_config.insert(app.id.clone(), Arc::new(app));
        }
        let registry = AppRegistry {
            inner: Arc::new(Inner {
                store,
                master_key,
                apps: RwLock::new(from_config.clone()),
                configured: from_config,
                listeners: RwLock::new(Vec::new()),
                apply: tokio::sync::Mutex::new(()),
            }),
        };
        registry.resync().await?;
        Ok(registry)
    }

    /// The app with this id.
    pub fn get(&self, id: &str) -> Option<Arc<App>> {
        self.read().get(id).cloned()
    }

    /// Every app's id, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.read().keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Tells `listener` of every app there is now, then of every change.
    pub fn subscribe(&self, listener: Arc<dyn AppListener>) {
        let apps: Vec<Arc<App>> = self.read().values().cloned().collect();
        for app in &apps {
            listener.app_changed(app);
        }
        self.inner
            .listeners
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(listener);
    }

    /// Registers a new app through the API: refused if the id is taken or another app holds
    /// the same WeChat account (two entries would fetch competing tokens).
    pub async fn create(&self, config: AppConfig) -> Result<Arc<App>, RegistryError> {
        let app = App::new(config, Source::Api).map_err(RegistryError::Invalid)?;
        if self.get(&app.id).is_some() {
            return Err(RegistryError::Conflict(format!(
                "an app with id {:?} already exists; rotate its secret with PUT \
                 /v1/apps/{}/secret or delete it first",
                app.id, app.id
            )));
        }
        if let Some(other) = self.read().values().find(|o| o.same_account(&app)) {
            return Err(RegistryError::Conflict(format!(
                "app {:?} already holds the credentials of this WeChat account; two entries \
                 would fetch two tokens and invalidate each other",
                other.id
            )));
        }
        self.write_through(app).await
    }

    /// Replaces an API app's secret (the token manager closes its breaker, so a fixed secret
    /// is tried at once).
    pub async fn rotate_secret(
        &self,
        id: &str,
        secret: secrecy::SecretString,
    ) -> Result<Arc<App>, RegistryError> {
        self.change(id, |c| c.secret = secret).await
    }

    /// Changes an API app's settings with `f`, checks the result and writes it through.
    pub async fn change(
        &self,
        id: &str,
        f: impl FnOnce(&mut AppConfig),
    ) -> Result<Arc<App>, RegistryError> {
        let current = self.api_managed(id)?;
        let mut config = current.to_config();
        f(&mut config);
        let app = App::new(config, Source::Api).map_err(RegistryError::Invalid)?;
        self.write_through(app).await
    }

    /// Deletes an API app, here and (through the store) on every instance.
    pub async fn delete(&self, id: &str) -> Result<(), RegistryError> {
        self.api_managed(id)?;
        self.inner.store.delete_app(id).await?;
        let _guard = self.inner.apply.lock().await;
        self.remove(id);
        Ok(())
    }

    /// Re-reads one app from the store and applies what it finds: added, changed, or removed.
    /// Returns the app as it is now. Configured apps are not affected.
    pub async fn refresh(&self, id: &str) -> Result<Option<Arc<App>>, RegistryError> {
        if let Some(app) = self.inner.configured.get(id) {
            return Ok(Some(app.clone()));
        }
        let _guard = self.inner.apply.lock().await;
        match self.inner.store.get_app(id, &self.inner.master_key).await? {
            Some(config) => {
                let app = App::new(config, Source::Api).map_err(|why| {
                    RegistryError::Invalid(format!("stored app {id:?} is not valid: {why}"))
                })?;
                Ok(Some(self.put(app)))
            }
            None => {
                self.remove(id);
                Ok(None)
            }
        }
    }

    /// Re-reads every app from the store.
    pub async fn resync(&self) -> Result<(), RegistryError> {
        let _guard = self.inner.apply.lock().await;
        let stored = self.inner.store.list_apps(&self.inner.master_key).await?;
        let mut seen = Vec::with_capacity(stored.len());
        for config in stored {
            if self.inner.configured.contains_key(&config.id) {
                tracing::warn!(app = %config.id, "an app registered through the API has the id of one in wxgate.toml; the file wins");
                continue;
            }
            match App::new(config, Source::Api) {
                Ok(app) => {
                    seen.push(app.id.clone());
                    self.put(app);
                }
                Err(why) => tracing::error!(%why, "a stored app is not valid; it is not served"),
            }
        }
        let gone: Vec<String> = self
            .read()
            .values()
            .filter(|a| a.source == Source::Api && !seen.contains(&a.id))
            .map(|a| a.id.clone())
            .collect();
        for id in gone {
            self.remove(&id);
        }
        Ok(())
    }

    /// Follows the store's changes until `stop`: re-reads an app when any instance changed
    /// it, everything after a lost stream, and everything every `RESYNC_EVERY`.
    pub fn spawn_follower(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let registry = self.clone();
        // Subscribed now, so nothing between start-up's load and the task's start is missed.
        let mut changes = self.inner.store.changes();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RESYNC_EVERY);
            tick.tick().await;
            loop {
                let result = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => registry.resync().await,
                    change = changes.recv() => match change {
                        Ok(Change::App(id)) => registry.refresh(&id).await.map(|_| ()),
                        Ok(Change::Resync) | Err(RecvError::Lagged(_)) => registry.resync().await,
                        Ok(_) => Ok(()),
                        Err(RecvError::Closed) => return,
                    },
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "could not re-read apps from the store; retrying at the next change or resync");
                }
            }
        })
    }

    /// Stores the app, then applies it here.
    async fn write_through(&self, app: App) -> Result<Arc<App>, RegistryError> {
        self.inner
            .store
            .put_app(&app.to_config(), &self.inner.master_key)
            .await?;
        let _guard = self.inner.apply.lock().await;
        Ok(self.put(app))
    }

    /// An app the API may change: it exists and is not the configuration's.
    fn api_managed(&self, id: &str) -> Result<Arc<App>, RegistryError> {
        match self.get(id) {
            Some(app) if app.source == Source::Config => Err(RegistryError::Conflict(format!(
                "app {id:?} is declared in wxgate.toml; change it there and restart"
            ))),
            Some(app) => Ok(app),
            None => Err(RegistryError::NotFound(id.to_owned())),
        }
    }

    /// Installs `app` and tells the listeners, unless it is unchanged.
    fn put(&self, app: App) -> Arc<App> {
        let app = Arc::new(app);
        {
            let mut apps = self.inner.apps.write().unwrap_or_else(|p| p.into_inner());
            if let Some(old) = apps.get(&app.id)
                && old.same_as(&app)
            {
                return old.clone();
            }
            apps.insert(app.id.clone(), app.clone());
        }
        for l in self.listeners() {
            l.app_changed(&app);
        }
        app
    }

    /// Removes an API app and tells the listeners (a configured app is never removed).
    fn remove(&self, id: &str) {
        let removed = {
            let mut apps = self.inner.apps.write().unwrap_or_else(|p| p.into_inner());
            match apps.get(id) {
                Some(a) if a.source == Source::Api => apps.remove(id),
                _ => None,
            }
        };
        if removed.is_some() {
            for l in self.listeners() {
                l.app_removed(id);
            }
        }
    }

    fn listeners(&self) -> Vec<Arc<dyn AppListener>> {
        self.inner
            .listeners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<App>>> {
        self.inner.apps.read().unwrap_or_else(|p| p.into_inner())
    }
}
