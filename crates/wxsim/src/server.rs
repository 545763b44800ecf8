//! The HTTP server: a hyper accept loop (not `axum::serve`) so that a fault can close one
//! connection without replying, as a dropped connection or a lost reply would.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

use crate::world::Sim;

/// Put in every request's extensions: notifying it closes the request's connection at once.
#[derive(Clone)]
pub(crate) struct ConnKiller(pub Arc<Notify>);

impl ConnKiller {
    /// Close the connection and never answer.
    pub async fn kill(&self) -> ! {
        self.0.notify_one();
        std::future::pending().await
    }
}

/// The socket peer of a request.
#[derive(Clone, Copy)]
pub(crate) struct Peer(pub SocketAddr);

/// The client IP WeChat would see: the socket peer, or the first `X-Forwarded-For` hop when
/// `trust_forwarded_for` is on.
pub(crate) struct ClientIp(pub IpAddr);

impl FromRequestParts<Arc<Sim>> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, sim: &Arc<Sim>) -> Result<Self, Infallible> {
        Ok(ClientIp(client_ip(sim, &parts.extensions, &parts.headers)))
    }
}

/// See [`ClientIp`]; also used by the fault layer, which words WeCom errors with the IP.
pub(crate) fn client_ip(sim: &Sim, extensions: &Extensions, headers: &HeaderMap) -> IpAddr {
    let peer = extensions
        .get::<Peer>()
        .map(|p| p.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    if sim.settings().trust_forwarded_for
        && let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return ip;
    }
    peer
}

/// Serve `router` on `listener` until `stop` changes. Each connection runs in its own task,
/// which ends when the client closes, a fault kills it, or `stop` fires.
pub(crate) async fn serve(listener: TcpListener, router: Router, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "wxsim accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let killer = ConnKiller(Arc::new(Notify::new()));
        let k = killer.clone();
        let svc = router
            .clone()
            .map_request(move |mut req: axum::http::Request<Incoming>| {
                req.extensions_mut().insert(k.clone());
                req.extensions_mut().insert(Peer(peer));
                req
            });
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                // Replies are small: copying head and body into one buffer for one `write` is
                // cheaper than a vectored write (bench/README.md, sim_template_send).
                .writev(false)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
            // Dropping `conn` closes the socket without a reply.
            tokio::select! {
                _ = conn => {}
                _ = killer.0.notified() => {}
                _ = stop.changed() => {}
            }
        });
    }
}
