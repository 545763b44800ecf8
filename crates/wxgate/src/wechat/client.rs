//! The one WeChat call layer: the process's pooled HTTP client, both API hosts, and
//! [`Client::with_token`] — take the app's token, make the call, and when WeChat says the token
//! is bad (40001/40014/42001) report it once and replay the call once with the new token. Push,
//! the proxy and every later caller of a token-bearing API go through it.
//!
//! The token itself comes from a [`TokenSource`] (the token manager implements it), so this
//! module knows how to call WeChat but not how tokens are kept.

use std::future::Future;

use crate::config::{ApiBase, AppKind};

use super::{ErrClass, classify_call};

/// Where a call's token comes from, and where a refused token is reported.
pub trait TokenSource: Sync {
    type Token: Clone + Send + Sync;
    type Error: Send;

    /// The app's current token (fetched once for all callers if there is none).
    fn current(&self, app: &str) -> impl Future<Output = Result<Self::Token, Self::Error>> + Send;

    /// "WeChat refused this token": refreshes at most once per token generation, however many
    /// calls report the same token.
    fn refused(&self, app: &str, token: &Self::Token) -> impl Future<Output = ()> + Send;

    /// Whether two tokens are the same value (a replay with the refused token is pointless).
    fn same(a: &Self::Token, b: &Self::Token) -> bool;
}

/// What a call answered, as far as [`Client::with_token`] needs to know: WeChat's errcode, when
/// the answer was a WeChat JSON reply.
pub trait Answer {
    fn errcode(&self) -> Option<i64>;
}

/// The outcome of [`Client::with_token`].
pub struct Called<A, T> {
    /// The last answer: the replay's if there was one.
    pub answer: A,
    /// The token the last answer was given for.
    pub token: T,
    /// The first answer, when it refused its token and the call was replayed.
    pub refused: Option<A>,
}

/// The WeChat and WeCom hosts, and the pooled client that reaches them. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    wechat: ApiBase,
    wecom: ApiBase,
}

impl Client {
    pub fn new(http: reqwest::Client, wechat: ApiBase, wecom: ApiBase) -> Self {
        Client {
            http,
            wechat,
            wecom,
        }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The host that serves apps of `kind`: OA and MP apps call `wechat_api_base`, WeCom apps
    /// `wecom_api_base` (the two hosts share path names, so the app decides, never the path).
    pub fn base(&self, kind: AppKind) -> &ApiBase {
        match kind {
            AppKind::Wecom => &self.wecom,
            AppKind::OfficialAccount | AppKind::MiniProgram => &self.wechat,
        }
    }

    pub fn url(&self, kind: AppKind, path: &str) -> String {
        self.base(kind).url(path)
    }

    /// Makes `call` with the app's token. An answer that refuses the token (errcode class
    /// REFRESH) reports it to `tokens`, once, and — when `replay()` says so at that moment,
    /// and a different token is to be had — makes the call once more with the new token. A second refusal is
    /// reported too (still at most one refresh per generation) and returned as it is: the
    /// caller decides what comes next, never a loop here.
    pub async fn with_token<S, A, F, Fut>(
        &self,
        tokens: &S,
        app: &str,
        replay: impl Fn() -> bool,
        mut call: F,
    ) -> Result<Called<A, S::Token>, S::Error>
    where
        S: TokenSource,
        A: Answer,
        F: FnMut(S::Token) -> Fut,
        Fut: Future<Output = A>,
    {
        let token = tokens.current(app).await?;
        let answer = call(token.clone()).await;
        if !refuses_token(&answer) {
            return Ok(Called {
                answer,
                token,
                refused: None,
            });
        }
        tokens.refused(app, &token).await;
        let fresh = match replay() {
            true => tokens.current(app).await.ok(),
            false => None,
        };
        // Asked again: waiting for the new token may have changed the answer (a send whose
        // lease was taken over meanwhile must not be made again).
        let Some(fresh) = fresh.filter(|f| !S::same(f, &token) && replay()) else {
            return Ok(Called {
                answer,
                token,
                refused: None,
            });
        };
        let again = call(fresh.clone()).await;
        if refuses_token(&again) {
            tokens.refused(app, &fresh).await;
        }
        Ok(Called {
            answer: again,
            token: fresh,
            refused: Some(answer),
        })
    }
}

fn refuses_token(a: &impl Answer) -> bool {
    a.errcode()
        .is_some_and(|c| classify_call(c) == ErrClass::Refresh)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Tokens "t1", "t2", …: each refusal of the current one moves to the next, as a refresh.
    #[derive(Default)]
    struct Counter {
        generation: Mutex<u32>,
        refusals: Mutex<Vec<String>>,
        stuck: bool,
    }

    impl TokenSource for Counter {
        type Token = String;
        type Error = ();
        async fn current(&self, _app: &str) -> Result<String, ()> {
            Ok(format!("t{}", *self.generation.lock().unwrap() + 1))
        }
        async fn refused(&self, _app: &str, token: &String) {
            self.refusals.lock().unwrap().push(token.clone());
            let mut g = self.generation.lock().unwrap();
            if !self.stuck && *token == format!("t{}", *g + 1) {
                *g += 1;
            }
        }
        fn same(a: &String, b: &String) -> bool {
            a == b
        }
    }

    struct Reply(i64);
    impl Answer for Reply {
        fn errcode(&self) -> Option<i64> {
            Some(self.0)
        }
    }

    fn client() -> Client {
        let base = ApiBase::try_from("http://127.0.0.1:9".to_string()).unwrap();
        Client::new(super::super::http_client(1), base.clone(), base)
    }

    /// WeChat as seen through `with_token`: refuses every token but `good`.
    async fn run(src: &Counter, replay: bool, good: &str) -> (Called<Reply, String>, Vec<String>) {
        let mut seen = Vec::new();
        let called = client()
            .with_token(
                src,
                "app",
                || replay,
                |t| {
                    seen.push(t.clone());
                    let code = if t == good { 0 } else { 40001 };
                    async move { Reply(code) }
                },
            )
            .await
            .unwrap();
        (called, seen)
    }

    #[tokio::test]
    async fn a_good_token_is_one_call() {
        let src = Counter::default();
        let (c, seen) = run(&src, true, "t1").await;
        assert_eq!((c.answer.0, c.token.as_str(), seen.len()), (0, "t1", 1));
        assert!(c.refused.is_none() && src.refusals.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_refused_token_is_reported_once_and_the_call_replayed_once() {
        let src = Counter::default();
        let (c, seen) = run(&src, true, "t2").await;
        assert_eq!(seen, ["t1", "t2"]);
        assert_eq!((c.answer.0, c.token.as_str()), (0, "t2"));
        assert_eq!(c.refused.map(|r| r.0), Some(40001));
        assert_eq!(*src.refusals.lock().unwrap(), ["t1"]);
    }

    #[tokio::test]
    async fn a_second_refusal_is_reported_and_returned_without_a_third_call() {
        let src = Counter::default();
        let (c, seen) = run(&src, true, "none").await;
        assert_eq!(seen, ["t1", "t2"]);
        assert_eq!((c.answer.0, c.refused.is_some()), (40001, true));
        assert_eq!(*src.refusals.lock().unwrap(), ["t1", "t2"]);
    }

    #[tokio::test]
    async fn no_replay_when_not_allowed_or_when_no_new_token_comes() {
        let src = Counter::default();
        let (c, seen) = run(&src, false, "t2").await;
        assert_eq!(
            (seen.len(), c.answer.0, c.refused.is_none()),
            (1, 40001, true)
        );
        let stuck = Counter {
            stuck: true,
            ..Counter::default()
        };
        let (c, seen) = run(&stuck, true, "t2").await;
        assert_eq!((seen.len(), c.answer.0), (1, 40001));
    }
}
