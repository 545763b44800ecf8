//! User logins: Mini Program `jscode2session`, OA web login `oauth2/access_token` and
//! `userinfo`. Appid and the current secret, one use per code, counted per app.

use serde_json::Value;
use wxsim::openid_for_code;

use crate::helpers::*;

const JSCODE: &str = "/sns/jscode2session";
const OAUTH: &str = "/sns/oauth2/access_token";
const USERINFO: &str = "/sns/userinfo";

async fn jscode2session(s: &Sim, appid: &str, secret: &str, code: &str) -> Value {
    s.get_query(
        JSCODE,
        &[
            ("appid", appid),
            ("secret", secret),
            ("js_code", code),
            ("grant_type", "authorization_code"),
        ],
    )
    .await
}

async fn oauth(s: &Sim, appid: &str, secret: &str, code: &str) -> Value {
    s.get_query(
        OAUTH,
        &[
            ("appid", appid),
            ("secret", secret),
            ("code", code),
            ("grant_type", "authorization_code"),
        ],
    )
    .await
}

async fn userinfo(s: &Sim, token: &str, openid: &str) -> Value {
    s.get_query(
        USERINFO,
        &[
            ("access_token", token),
            ("openid", openid),
            ("lang", "zh_CN"),
        ],
    )
    .await
}

#[tokio::test]
async fn jscode2session_good_code() {
    let s = Sim::demo().await;
    let r = jscode2session(&s, MP, MP_SECRET, "081abcDEF").await;
    let obj = r.as_object().unwrap();
    assert_eq!(obj.len(), 2, "{r}");
    assert_eq!(r["openid"], openid_for_code(MP, "081abcDEF"));
    let key = r["session_key"].as_str().unwrap();
    assert_eq!(key.len(), 24, "{key}");
    assert!(key.ends_with("=="), "{key}");
    // Another code is another user; the same code in another call gives the same openid.
    let r2 = jscode2session(&s, MP, MP_SECRET, "081other").await;
    assert_ne!(r2["openid"], r["openid"]);
    assert_ne!(r2["session_key"], r["session_key"]);
    let st = s.stats(MP);
    assert_eq!(st.jscode2session_calls, 2);
    assert_eq!(st.calls_by_path[JSCODE], 2);
    assert_eq!(st.token_fetches.total(), 0);
}

#[tokio::test]
async fn jscode2session_bad_secret_appid_code_and_reuse() {
    let s = Sim::demo().await;
    assert_err(&jscode2session(&s, MP, "wrong-secret", "c1").await, 40125);
    let r = jscode2session(&s, MP, "wrong-secret", "c1").await;
    assert!(errmsg(&r).starts_with("invalid appsecret"), "{r}");
    // An OA's appid is not a Mini Program's; an unknown one neither.
    assert_err(&jscode2session(&s, OA, OA_SECRET, "c1").await, 40013);
    assert_err(&jscode2session(&s, "wxnobody", "x", "c1").await, 40013);
    assert_err(&jscode2session(&s, MP, MP_SECRET, "").await, 41008);
    let r = s
        .get_query(
            JSCODE,
            &[("appid", MP), ("secret", MP_SECRET), ("js_code", "c1")],
        )
        .await;
    assert_err(&r, 40002);
    // A rejected secret did not use the code up; a good exchange does.
    assert!(jscode2session(&s, MP, MP_SECRET, "c1").await["openid"].is_string());
    let r = jscode2session(&s, MP, MP_SECRET, "c1").await;
    assert_err(&r, 40163);
    assert!(errmsg(&r).starts_with("code been used"), "{r}");
    let st = s.stats(MP);
    // Counted: every call that named the Mini Program with grant_type right.
    assert_eq!(st.jscode2session_calls, 5);
    assert_eq!(st.sends_rejected.get(&40125), Some(&2));
    assert_eq!(st.sends_rejected.get(&40163), Some(&1));
    assert_eq!(s.stats(OA).jscode2session_calls, 0);
}

#[tokio::test]
async fn jscode2session_takes_the_current_secret_only() {
    let s = Sim::demo().await;
    assert!(s.h.update_app(MP, |a| a.secret = "rotated".into()));
    assert_err(&jscode2session(&s, MP, MP_SECRET, "c1").await, 40125);
    assert!(jscode2session(&s, MP, "rotated", "c1").await["openid"].is_string());
}

#[tokio::test]
async fn oauth2_then_userinfo() {
    let s = Sim::demo().await;
    let r = oauth(&s, OA, OA_SECRET, "web-code-1").await;
    let openid = openid_for_code(OA, "web-code-1");
    assert_eq!(r["openid"], openid.as_str());
    assert_eq!(r["expires_in"], 7200);
    assert_eq!(r["scope"], "snsapi_userinfo");
    assert!(r["refresh_token"].as_str().is_some_and(|t| !t.is_empty()));
    let token = r["access_token"].as_str().unwrap().to_string();
    assert_ne!(r["refresh_token"], r["access_token"]);

    let u = userinfo(&s, &token, &openid).await;
    assert_eq!(u["openid"], openid.as_str());
    assert_eq!(u["nickname"], "sim user");
    assert_eq!(u["sex"], 0);
    assert!(u.get("errcode").is_none(), "{u}");

    // Unknown token 40001 (an app's access token is not a user's); another user's openid 40003.
    assert_err(&userinfo(&s, "83_not-a-user-token", &openid).await, 40001);
    let app_token = s.token(OA, OA_SECRET).await;
    assert_err(&userinfo(&s, &app_token, &openid).await, 40001);
    assert_err(&userinfo(&s, &token, "oSomeoneElse01").await, 40003);
    // Reuse of the code, an MP appid, a bad secret.
    assert_err(&oauth(&s, OA, OA_SECRET, "web-code-1").await, 40163);
    assert_err(&oauth(&s, MP, MP_SECRET, "web-code-2").await, 40013);
    assert_err(&oauth(&s, OA, "nope", "web-code-2").await, 40125);
    // The user token lives 2 hours.
    s.advance_secs(7200);
    assert_err(&userinfo(&s, &token, &openid).await, 42001);

    let st = s.stats(OA);
    assert_eq!(st.oauth2_access_token_calls, 3);
    assert_eq!(st.calls_by_path[OAUTH], 3);
    // Userinfo calls with a token the OA issued count under it (the 40001 ones name no app,
    // except the one carrying the OA's own access token).
    assert_eq!(st.calls_by_path[USERINFO], 4);
}
