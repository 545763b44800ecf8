//! The upstream: WeChat's HTTP APIs as typed calls, errcode classes and field rules.

pub mod client;
pub mod errcode;
pub mod token_api;

pub use client::{Answer, Called, Client, TokenSource};
pub use errcode::{ErrClass, classify_call, classify_fetch, fetch_hint};
pub use token_api::{Credentials, FetchError, Fetched};

/// Build the process's one pooled HTTP client, keeping up to `idle_per_host` idle connections
/// (the push workers keep one per concurrent send, or every send beyond the pool would open a
/// new connection). It has no overall timeout: each kind of call sets its own (a token fetch
/// `token.fetch_timeout`, a send `push.send_timeout`, the proxy idle limits, since a media
/// download may take as long as it needs). Installs the ring TLS provider first, which
/// reqwest's `rustls-no-provider` feature requires in every process (tests included).
pub fn http_client(idle_per_host: usize) -> reqwest::Client {
    init_crypto();
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .pool_idle_timeout(std::time::Duration::from_secs(50))
        .pool_max_idle_per_host(idle_per_host)
        .tcp_nodelay(true)
        // A redirect would re-send the stable_token body, secret included, to another host.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a reqwest client with static settings always builds")
}

/// Install rustls' ring provider once per process; later calls are no-ops.
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
