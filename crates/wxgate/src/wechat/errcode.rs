//! WeChat errcodes by class (`shared/wechat-api.md` §2): what wxgate does about each one, and
//! what an operator should check. Decisions are made on the errcode alone, never on errmsg.

use serde::Serialize;

/// What to do about an errcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrClass {
    /// The token is bad: compare-and-invalidate, refresh once, retry once.
    Refresh,
    /// Transient: retry with jittered exponential backoff, a bounded number of times.
    Backoff,
    /// A quota or frequency window: wait for it to reset without spending attempts.
    Window,
    /// The app or template is misconfigured: stop and say why; an operator must act.
    Config,
    /// Permanent for this recipient only.
    Recipient,
    /// The request itself is wrong: never retry the same body.
    Request,
}

/// Class of an errcode returned by a token endpoint (`/cgi-bin/token`, `stable_token`,
/// `gettoken`). Here 40001 means a wrong secret, not a stale token.
pub fn classify_fetch(errcode: i64) -> ErrClass {
    match errcode {
        -1 | 45033 => ErrClass::Backoff,
        45009 | 45011 | 89506 | 89507 => ErrClass::Window,
        40002 => ErrClass::Request,
        _ => ErrClass::Config,
    }
}

/// What an operator should check for an errcode met while fetching a token.
pub fn fetch_hint(errcode: i64) -> &'static str {
    match errcode {
        40001 | 40125 => {
            "the app secret is wrong or belongs to another account: copy it again from the \
             admin console and rotate it with PUT /v1/apps/{id}/secret"
        }
        40013 => "the appid/corpid is wrong: check it for stray characters and case",
        40091 => "the secret belongs to another corp or app",
        40164 => {
            "this server's egress IP is not in the account's IP allowlist: add it in the \
             WeChat admin console (Settings > Development > Basic configuration)"
        }
        60020 => "this server's IP is not in the WeCom app's trusted IP list (企业可信IP)",
        40243 => "the AppSecret is frozen: unfreeze it in the admin console",
        41002 | 41004 => "the appid/corpid or secret is empty",
        89501 | 89503 => "an admin must confirm this server's IP in the WeChat admin console",
        89506 | 89507 => "an admin refused this server's IP; WeChat blocks it for 1 to 24 hours",
        45009 => {
            "the daily token quota is used up: it resets at 00:00 Asia/Shanghai (or use clear_quota)"
        }
        45011 => "the per-minute token quota is used up: it resets within a minute",
        -1 => "WeChat is busy; wxgate retries with backoff",
        _ => "see the WeChat errcode table",
    }
}

/// Class of an errcode returned by a business API (send, etc.). 40001 here means the token is
/// stale (someone fetched a newer plain token) and is a `Refresh`.
pub fn classify_call(errcode: i64) -> ErrClass {
    match errcode {
        40001 | 40014 | 42001 => ErrClass::Refresh,
        -1 | 45033 => ErrClass::Backoff,
        45009 | 45011 | 48006 => ErrClass::Window,
        40003 | 43004 | 43101 | 45047 | 48002 | 50002 | 81013 | 82001 => ErrClass::Recipient,
        40002 | 40008 | 40031 | 40032 | 40036 | 41001 | 41011 | 41030 | 41033 | 44002 | 44004
        | 45002 | 47001 | 47003 | 76003 | 76021 | 76022 | 82002 | 82003 => ErrClass::Request,
        _ => ErrClass::Config,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forty_thousand_one_depends_on_context() {
        assert_eq!(classify_fetch(40001), ErrClass::Config);
        assert_eq!(classify_call(40001), ErrClass::Refresh);
    }

    #[test]
    fn token_fetch_classes() {
        for c in [40013, 40125, 40164, 40243, 41002, 41004, 89501, 89503] {
            assert_eq!(classify_fetch(c), ErrClass::Config, "{c}");
        }
        assert_eq!(classify_fetch(45009), ErrClass::Window);
        assert_eq!(classify_fetch(45011), ErrClass::Window);
        assert_eq!(classify_fetch(-1), ErrClass::Backoff);
    }

    #[test]
    fn call_classes() {
        assert_eq!(classify_call(42001), ErrClass::Refresh);
        assert_eq!(classify_call(43004), ErrClass::Recipient);
        assert_eq!(classify_call(47003), ErrClass::Request);
        assert_eq!(classify_call(40037), ErrClass::Config);
        assert_eq!(classify_call(301002), ErrClass::Config);
    }
}
