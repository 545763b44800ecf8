//! Counts every request that arrives naming an app, by path (`calls_by_path` in the stats), so a
//! test can say "this call reached WeChat N times". It sits outside fault injection: a request
//! counts when it arrives, whatever is then done to it or answered.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::stats::bump_path;
use crate::world::{App, Sim};

/// The raw (not percent-decoded) value of `key` in a query string. Tokens and appids are
/// URL-safe, so no decoding is needed to look them up.
pub(crate) fn raw_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        kv.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix('='))
            .filter(|v| !v.is_empty())
    })
}

/// The app a request names: by an access token it minted (in any state), a user OAuth token it
/// issued, or, on the two login exchanges, by appid.
fn app_named(sim: &Sim, path: &str, query: &str) -> Option<Arc<App>> {
    if let Some(token) = raw_param(query, "access_token") {
        let app = sim
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .map(|r| r.app.clone());
        return app.or_else(|| {
            sim.oauth_tokens
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(token)
                .map(|g| g.app.clone())
        });
    }
    if matches!(path, "/sns/jscode2session" | "/sns/oauth2/access_token") {
        return raw_param(query, "appid").and_then(|a| sim.app_by_appid(a));
    }
    None
}

pub(crate) async fn count(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let uri = req.uri();
    if let Some(q) = uri.query()
        && let Some(app) = app_named(&sim, uri.path(), q)
    {
        bump_path(&app.counters.calls_by_path, uri.path());
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::raw_param;

    #[test]
    fn raw_param_finds_whole_keys_only() {
        let q = "x_access_token=no&access_token=83_abc&type=image";
        assert_eq!(raw_param(q, "access_token"), Some("83_abc"));
        assert_eq!(raw_param(q, "type"), Some("image"));
        assert_eq!(raw_param("access_token=&a=1", "access_token"), None);
        assert_eq!(raw_param("access_tokenx=1", "access_token"), None);
        assert_eq!(raw_param("", "appid"), None);
    }
}
