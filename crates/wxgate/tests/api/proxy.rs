//! Proxy mode: an SDK pointed at `proxy_listen` with a wxgate key as its secret gets
//! placeholder tokens, its calls reach the simulator with the real token, a token rotation is
//! invisible, and a deleted key's placeholder stops working.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wxgate::config::{AppKind, TokenApi};
use wxsim::SimConfig;

use crate::helpers::*;

/// `shop` (OA, stable API), `mini` (MP) and `corp` (WeCom) behind a proxy.
async fn proxied() -> TestApp {
    let apps = vec![
        shop(TokenApi::Stable),
        mini(),
        app(
            "corp",
            AppKind::Wecom,
            "wwdemo_corp",
            "demo-wecom-secret",
            TokenApi::Stable,
        ),
    ];
    with_proxy(apps).await
}

/// The simulator's demo Mini Program as app `mini`.
pub(crate) fn mini() -> wxgate::config::AppConfig {
    let secret = "demo-mp-secret";
    app(
        "mini",
        AppKind::MiniProgram,
        "wxdemo_mp",
        secret,
        TokenApi::Stable,
    )
}

/// A gateway with a proxy listener, for `apps`.
pub(crate) async fn with_proxy(apps: Vec<wxgate::config::AppConfig>) -> TestApp {
    spawn_with(SimConfig::default(), apps, |c| {
        c.proxy_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
}

/// A key for `apps`: (id, key).
pub(crate) async fn key(app: &TestApp, apps: Value) -> (String, String) {
    let body = json!({"name": "sdk", "apps": apps});
    let (s, v) = app.call("POST", "/v1/keys", Some(ADMIN), Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    (
        v["id"].as_str().unwrap().into(),
        v["key"].as_str().unwrap().into(),
    )
}

pub(crate) fn proxy(app: &TestApp) -> String {
    app.gw
        .as_ref()
        .unwrap()
        .proxy_url()
        .expect("proxy_listen is set")
}

/// A request to the proxy: (HTTP status, content type, JSON or text).
async fn send(req: reqwest::RequestBuilder) -> (StatusCode, String, Value) {
    let resp = req.send().await.expect("the proxy answers");
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, ct, v)
}

async fn classic_token(app: &TestApp, appid: &str, secret: &str) -> Value {
    let url = format!("{}/cgi-bin/token", proxy(app));
    let q = [
        ("grant_type", "client_credential"),
        ("appid", appid),
        ("secret", secret),
    ];
    let (s, ct, v) = send(app.http.get(url).query(&q)).await;
    assert_eq!(s, StatusCode::OK, "token endpoints always answer 200: {v}");
    assert_eq!(ct, "application/json; encoding=utf-8");
    v
}

/// The placeholder the proxy hands out for `appid` and `secret` (asserted to be one).
async fn placeholder(app: &TestApp, appid: &str, secret: &str) -> String {
    let v = classic_token(app, appid, secret).await;
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string()
}

fn order(to: &str) -> Value {
    json!({"touser": to, "template_id": "TPL_ORDER", "data": {
        "thing1": {"value": "proxy"}, "amount2": {"value": "¥1.00"},
        "time3": {"value": "10:00"}, "character_string4": {"value": "P1"}}})
}

async fn template_send(app: &TestApp, token: &str, to: &str) -> Value {
    let url = format!("{}/cgi-bin/message/template/send", proxy(app));
    let (s, _, v) = send(
        app.http
            .post(url)
            .query(&[("access_token", token)])
            .json(&order(to)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoints_hand_out_placeholders_in_wechats_shape() {
    let app = proxied().await;
    let (_, shop_key) = key(&app, json!(["shop"])).await;
    let v = classic_token(&app, "wxdemo_oa", &shop_key).await;
    let placeholder = v["access_token"].as_str().unwrap().to_string();
    assert_eq!(v["expires_in"], 7200, "{v}");
    assert!(
        v.get("errcode").is_none(),
        "OA/MP token answers have no errcode: {v}"
    );
    assert!(placeholder.starts_with("wxgp.shop."), "{placeholder}");
    assert_ne!(placeholder, app.token("shop").await, "never the real token");

    // A stable_token call with force_refresh gets the same placeholder and never reaches
    // WeChat: the 20-a-day forced refreshes stay wxgate's.
    let before = app.sim.stats("wxdemo_oa").unwrap().token_fetches;
    let body = json!({"grant_type": "client_credential", "appid": "wxdemo_oa", "secret": shop_key, "force_refresh": true});
    let (s, _, v) = send(
        app.http
            .post(format!("{}/cgi-bin/stable_token", proxy(&app)))
            .json(&body),
    )
    .await;
    assert_eq!(
        (s, v["access_token"].as_str()),
        (StatusCode::OK, Some(placeholder.as_str())),
        "{v}"
    );
    assert_eq!(
        app.sim.stats("wxdemo_oa").unwrap().token_fetches.total(),
        before.total()
    );

    // Wrong appid, wrong key, the real secret, a key for another app: WeChat's errcodes, 200.
    assert_eq!(
        classic_token(&app, "wxnobody", &shop_key).await["errcode"],
        40013
    );
    assert_eq!(
        classic_token(&app, "wxdemo_oa", "not-a-key").await["errcode"],
        40125
    );
    assert_eq!(
        classic_token(&app, "wxdemo_oa", "demo-oa-secret").await["errcode"],
        40125
    );
    let (_, mini_key) = key(&app, json!(["mini"])).await;
    assert_eq!(
        classic_token(&app, "wxdemo_oa", &mini_key).await["errcode"],
        40125
    );
    let mini = classic_token(&app, "wxdemo_mp", &mini_key).await;
    assert!(
        mini["access_token"]
            .as_str()
            .unwrap()
            .starts_with("wxgp.mini."),
        "{mini}"
    );

    // WeCom: errcode 0 and "ok" beside the placeholder, as gettoken answers.
    let (_, corp_key) = key(&app, json!(["corp"])).await;
    let url = format!("{}/cgi-bin/gettoken", proxy(&app));
    let (s, _, v) = send(
        app.http
            .get(&url)
            .query(&[("corpid", "wwdemo_corp"), ("corpsecret", corp_key.as_str())]),
    )
    .await;
    assert_eq!(
        (s, &v["errcode"], &v["errmsg"], &v["expires_in"]),
        (StatusCode::OK, &json!(0), &json!("ok"), &json!(7200)),
        "{v}"
    );
    assert!(
        v["access_token"]
            .as_str()
            .unwrap()
            .starts_with("wxgp.corp."),
        "{v}"
    );
    let (_, _, v) = send(
        app.http
            .get(&url)
            .query(&[("corpid", "wwdemo_corp"), ("corpsecret", shop_key.as_str())]),
    )
    .await;
    assert_eq!(v["errcode"], 40001, "{v}");

    // An SDK host configured with a trailing slash sends `//cgi-bin/token`.
    let url = format!(
        "{}//cgi-bin/token?grant_type=client_credential&appid=wxdemo_oa&secret={shop_key}",
        proxy(&app)
    );
    let (s, _, v) = send(app.http.get(url)).await;
    assert_eq!(
        (s, v["access_token"].as_str()),
        (StatusCode::OK, Some(placeholder.as_str())),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_forwarded_with_the_real_token_and_a_rotation_costs_one_refresh() {
    let app = proxied().await;
    let (key_id, shop_key) = key(&app, json!(["shop"])).await;
    let placeholder = placeholder(&app, "wxdemo_oa", &shop_key).await;
    let v = template_send(&app, &placeholder, "oProxy0001").await;
    assert_eq!(v["errcode"], 0, "{v}");
    assert!(
        v["msgid"].as_u64().is_some(),
        "WeChat's answer, passed on: {v}"
    );

    // WeChat revokes the token: the next call is refused, refreshed once and replayed; the
    // SDK sees only the success.
    let fetches = app.fetches("wxdemo_oa");
    app.sim.revoke_token("wxdemo_oa");
    let to: Vec<String> = (0..8).map(|i| format!("oProxy1{i:03}")).collect();
    let sends: Vec<_> = to
        .iter()
        .map(|to| template_send(&app, &placeholder, to))
        .collect();
    for v in futures_util::future::join_all(sends).await {
        assert_eq!(v["errcode"], 0, "{v}");
    }
    assert_eq!(
        app.fetches("wxdemo_oa"),
        fetches + 1,
        "one refresh for all of them"
    );
    let stats = app.sim.stats("wxdemo_oa").unwrap();
    assert_eq!(
        (stats.deliveries, stats.duplicate_deliveries),
        (9, 0),
        "{stats:?}"
    );

    // A made-up placeholder or a raw token answers 40001 without reaching WeChat.
    let uses = |a: &TestApp| {
        let u = a.sim.stats("wxdemo_oa").unwrap().token_uses;
        u.valid + u.overlap + u.expired + u.superseded + u.revoked
    };
    let calls = uses(&app);
    let forged = placeholder.replacen("wxgp.shop.", "wxgp.mini.", 1);
    for bad in [
        forged.as_str(),
        "not-a-placeholder",
        app.token("shop").await.as_str(),
    ] {
        assert_eq!(
            template_send(&app, bad, "oProxy2001").await["errcode"],
            40001
        );
    }
    assert_eq!(uses(&app), calls, "no call reached WeChat");

    // Deleting the key revokes its placeholder.
    let (s, _) = app
        .call("DELETE", &format!("/v1/keys/{key_id}"), Some(ADMIN), None)
        .await;
    assert!(s.is_success());
    assert_eq!(
        template_send(&app, &placeholder, "oProxy3001").await["errcode"],
        40001
    );
    assert_eq!(
        classic_token(&app, "wxdemo_oa", &shop_key).await["errcode"],
        40125
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_outside_the_allowlist_and_calls_without_a_token_are_refused_clearly() {
    let app = proxied().await;
    let (s, ct, v) = send(app.http.get(format!("{}/admin/secrets", proxy(&app)))).await;
    assert_eq!(
        (s, ct.as_str(), &v["errcode"]),
        (
            StatusCode::NOT_FOUND,
            "application/json; encoding=utf-8",
            &json!(40066)
        ),
        "{v}"
    );
    assert!(v["errmsg"].as_str().unwrap().contains("/cgi-bin/"), "{v}");
    let (s, _, v) = send(
        app.http
            .post(format!("{}/cgi-bin/message/template/send", proxy(&app)))
            .json(&order("o1")),
    )
    .await;
    assert_eq!((s, &v["errcode"]), (StatusCode::OK, &json!(41001)), "{v}");
}

/// A `multipart/form-data` body with one file in field `media`, as SDKs upload media.
fn multipart(data: &[u8]) -> (String, Vec<u8>) {
    let boundary = "wxgateTestBoundary7MA4YWxk";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"media\"; filename=\"pic.jpg\"\r\n\
         Content-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_go_up_as_multipart_and_come_back_byte_for_byte_with_their_headers() {
    let app = proxied().await;
    let (_, k) = key(&app, json!(["shop"])).await;
    let t = placeholder(&app, "wxdemo_oa", &k).await;
    let image: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (ct, body) = multipart(&image);
    let url = format!("{}/cgi-bin/media/upload", proxy(&app));
    let req = app
        .http
        .post(&url)
        .query(&[("access_token", t.as_str()), ("type", "image")]);
    let (s, _, v) = send(req.header("content-type", ct).body(body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let media_id = v["media_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string();

    let get = format!("{}/cgi-bin/media/get", proxy(&app));
    let q = [
        ("access_token", t.as_str()),
        ("media_id", media_id.as_str()),
    ];
    let resp = app.http.get(&get).query(&q).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "image/jpeg");
    assert_eq!(h["content-disposition"], "attachment; filename=\"pic.jpg\"");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        image.as_slice(),
        "byte for byte"
    );

    // A range: 206 with WeChat's headers, the bytes asked for.
    let resp = app
        .http
        .get(&get)
        .query(&q)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 1000-1999/{}", image.len())
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &image[1000..2000]);

    // An unknown media id: WeChat's JSON error with its content type, passed on unchanged.
    let q = [("access_token", t.as_str()), ("media_id", "nope")];
    let (s, ct, v) = send(app.http.get(&get).query(&q)).await;
    assert_eq!(
        (s, ct.as_str(), &v["errcode"]),
        (
            StatusCode::OK,
            "application/json; encoding=utf-8",
            &json!(40007)
        ),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mini_program_logs_users_in_without_its_app_secret() {
    let app = proxied().await;
    let (_, k) = key(&app, json!(["mini"])).await;
    let url = format!("{}/sns/jscode2session", proxy(&app));
    let login = |secret: String, code: &'static str| {
        // WxJava appends its token to this call too (dropped: see proxy/query.rs's tests).
        let q = vec![
            ("appid", "wxdemo_mp".to_string()),
            ("secret", secret),
            ("js_code", code.to_string()),
            ("grant_type", "authorization_code".to_string()),
            ("access_token", "wxgp.x.y.z".to_string()),
        ];
        send(app.http.get(&url).query(&q))
    };
    let (s, _, v) = login(k.clone(), "code-1").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["openid"],
        wxsim::openid_for_code("wxdemo_mp", "code-1"),
        "{v}"
    );
    assert!(v["session_key"].as_str().is_some(), "{v}");
    assert_eq!(app.sim.stats("wxdemo_mp").unwrap().jscode2session_calls, 1);
    // WeChat's own answer to a reused code is passed on.
    assert_eq!(login(k.clone(), "code-1").await.2["errcode"], 40163);
    // Without a key for the app, nothing reaches WeChat.
    assert_eq!(
        login("demo-mp-secret".into(), "code-2").await.2["errcode"],
        40125
    );
    let (_, shop_key) = key(&app, json!(["shop"])).await;
    assert_eq!(login(shop_key, "code-2").await.2["errcode"], 40125);
    assert_eq!(app.sim.stats("wxdemo_mp").unwrap().jscode2session_calls, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_too_big_to_replay_is_not_replayed_and_says_so() {
    let apps = vec![shop(TokenApi::Stable)];
    let app = spawn_with(SimConfig::default(), apps, |c| {
        c.proxy_listen = Some("127.0.0.1:0".parse().unwrap());
        c.proxy.replay_body_limit = 1024;
    })
    .await;
    let (_, k) = key(&app, json!(["shop"])).await;
    let t = placeholder(&app, "wxdemo_oa", &k).await;
    let (ct, body) = multipart(&[7u8; 4096]);
    let upload = || {
        let url = format!("{}/cgi-bin/media/upload", proxy(&app));
        let req = app
            .http
            .post(url)
            .query(&[("access_token", t.as_str()), ("type", "image")]);
        send(req.header("content-type", ct.clone()).body(body.clone()))
    };
    assert!(upload().await.2["media_id"].is_string(), "streamed through");
    let fetches = app.fetches("wxdemo_oa");
    app.sim.revoke_token("wxdemo_oa");
    let (s, _, v) = upload().await;
    assert_eq!(
        (s, &v["errcode"]),
        (StatusCode::OK, &json!(-1)),
        "never a token error: {v}"
    );
    assert!(
        v["errmsg"].as_str().unwrap().contains("replay_body_limit"),
        "{v}"
    );
    assert_eq!(
        app.fetches("wxdemo_oa"),
        fetches + 1,
        "the refused token was still replaced"
    );
    assert!(
        upload().await.2["media_id"].is_string(),
        "the next try goes through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_secret_is_taken_only_by_apps_that_opt_in_and_only_while_they_do() {
    let app = spawn_with(SimConfig::default(), vec![], |c| {
        c.proxy_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let def = json!({"id": "oa", "kind": "official_account", "appid": "wxdemo_oa",
        "secret": "demo-oa-secret", "proxy_accepts_secret": true});
    let (s, v) = app.call("POST", "/v1/apps", Some(ADMIN), Some(def)).await;
    assert_eq!(
        (s, &v["proxy_accepts_secret"]),
        (StatusCode::CREATED, &json!(true)),
        "{v}"
    );
    let t = placeholder(&app, "wxdemo_oa", "demo-oa-secret").await;
    assert!(t.starts_with("wxgp.oa.secret-"), "{t}");
    assert_eq!(template_send(&app, &t, "oSecret0001").await["errcode"], 0);
    assert_eq!(
        classic_token(&app, "wxdemo_oa", "another-secret").await["errcode"],
        40125
    );

    // Turned off: the placeholders it handed out stop working, and the secret is refused.
    let off = json!({"proxy_accepts_secret": false});
    let (s, v) = app
        .call("PATCH", "/v1/apps/oa", Some(ADMIN), Some(off))
        .await;
    assert_eq!(
        (s, &v["proxy_accepts_secret"]),
        (StatusCode::OK, &json!(false)),
        "{v}"
    );
    assert_eq!(
        template_send(&app, &t, "oSecret0002").await["errcode"],
        40001
    );
    assert_eq!(
        classic_token(&app, "wxdemo_oa", "demo-oa-secret").await["errcode"],
        40125
    );

    // On again, then the secret is rotated: placeholders for the old secret are void.
    let on = json!({"proxy_accepts_secret": true});
    app.call("PATCH", "/v1/apps/oa", Some(ADMIN), Some(on))
        .await;
    assert_eq!(template_send(&app, &t, "oSecret0003").await["errcode"], 0);
    let (s, _) = app
        .call(
            "PUT",
            "/v1/apps/oa/secret",
            Some(ADMIN),
            Some(json!({"secret": "demo-oa-secret-2"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        template_send(&app, &t, "oSecret0004").await["errcode"],
        40001
    );
    let (s, v) = app
        .call(
            "PATCH",
            "/v1/apps/oa",
            Some(ADMIN),
            Some(json!({"secret": "x"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "only settings, not the secret: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_picks_the_host_and_json_bodies_pass_byte_for_byte() {
    // WeCom on a simulator of its own: a WeCom app's calls must go there, an OA app's calls to
    // the WeChat one, for the same path.
    let wecom = wxsim::start_with_clock(SimConfig::default(), wxgate::clock::Clock::new())
        .await
        .unwrap();
    let wecom_base = wxgate::config::ApiBase::try_from(wecom.base_url()).unwrap();
    let apps = vec![
        shop(TokenApi::Stable),
        app(
            "corp",
            AppKind::Wecom,
            "wwdemo_corp",
            "demo-wecom-secret",
            TokenApi::Stable,
        ),
    ];
    let app = spawn_with(SimConfig::default(), apps, |c| {
        c.proxy_listen = Some("127.0.0.1:0".parse().unwrap());
        c.wecom_api_base = wecom_base;
    })
    .await;
    let (_, oa_key) = key(&app, json!(["shop"])).await;
    let (_, corp_key) = key(&app, json!(["corp"])).await;
    let oa_t = placeholder(&app, "wxdemo_oa", &oa_key).await;
    let q = [("corpid", "wwdemo_corp"), ("corpsecret", corp_key.as_str())];
    let (_, _, v) = send(
        app.http
            .get(format!("{}/cgi-bin/gettoken", proxy(&app)))
            .query(&q),
    )
    .await;
    let corp_t = v["access_token"].as_str().unwrap().to_string();

    // An odd but valid JSON body (spacing, key order, escapes): WeChat gets these bytes.
    let body = "{ \"z\":1,\"a\" : \"\\u4e2d\\/x\" ,\"n\":1.50 }";
    let digest = wxgate_sha256_hex(body.as_bytes());
    let path = "/cgi-bin/user/info/updateremark";
    for (token, sim_app, sim) in [
        (&oa_t, "wxdemo_oa", &app.sim),
        (&corp_t, "wwdemo_corp:1000002", &wecom),
    ] {
        let url = format!("{}{path}", proxy(&app));
        let req = app
            .http
            .post(url)
            .query(&[("access_token", token.as_str()), ("lang", "zh_CN")]);
        let (s, _, v) = send(req.header("content-type", "application/json").body(body)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let echo = &v["echo"];
        assert_eq!(
            (&echo["path"], &echo["query"]),
            (&json!(path), &json!("lang=zh_CN")),
            "{v}"
        );
        assert_eq!(
            echo["body_sha256"], digest,
            "the body reached WeChat unchanged: {v}"
        );
        assert_eq!(
            sim.stats(sim_app).unwrap().calls_by_path.get(path),
            Some(&1),
            "{sim_app}"
        );
    }
    assert_eq!(
        wecom.stats("wxdemo_oa").unwrap().calls_by_path.get(path),
        None,
        "OA call on the WeCom host"
    );
}

fn wxgate_sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// Sends `request` byte for byte on a fresh connection to the proxy (no client normalises its
/// path), optionally closes the writing side, and returns the answer's text.
async fn raw(app: &TestApp, request: &[u8], close_write: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = proxy(app).trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    if close_write {
        conn.shutdown().await.unwrap();
    }
    let mut out = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        conn.read_to_end(&mut out),
    );
    let _ = read.await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_read_as_other_paths_and_answers_that_echo_the_token_are_refused() {
    let app = proxied().await;
    let (_, k) = key(&app, json!(["mini"])).await;
    let t = placeholder(&app, "wxdemo_mp", &k).await;
    // `..` (plain or encoded) would take the key and the placeholder to /sns/jscode2session.
    for path in [
        "/cgi-bin/%2e%2e/sns/jscode2session",
        "/cgi-bin/../sns/jscode2session",
        "/cgi-bin/%2E%2e/tcb/x",
    ] {
        let req = format!(
            "GET {path}?appid=wxdemo_mp&secret={k}&js_code=c1&grant_type=authorization_code&access_token={t} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let answer = raw(&app, req.as_bytes(), false).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
        assert!(answer.contains("40066"), "{answer}");
    }
    let stats = app.sim.stats("wxdemo_mp").unwrap();
    assert_eq!(
        stats.jscode2session_calls, 0,
        "nothing reached WeChat: {stats:?}"
    );
    assert!(stats.calls_by_path.is_empty(), "{stats:?}");

    // WeChat's rid/get answers with the failed call's query string, real token included.
    let url = format!("{}/cgi-bin/openapi/rid/get", proxy(&app));
    let req = app
        .http
        .post(url)
        .query(&[("access_token", t.as_str())])
        .json(&json!({"rid": "x"}));
    let (s, _, v) = send(req).await;
    assert_eq!(
        (s, &v["errcode"]),
        (StatusCode::NOT_FOUND, &json!(40066)),
        "{v}"
    );

    // A wrong method answers in WeChat's shape too.
    let (s, ct, v) = send(app.http.post(format!("{}/cgi-bin/token", proxy(&app)))).await;
    assert_eq!(
        (s, ct.as_str(), &v["errcode"]),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "application/json; encoding=utf-8",
            &json!(43001)
        ),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_for_more_than_one_app_is_refused_in_the_secret_slot() {
    let app = proxied().await;
    for apps in [json!("*"), json!(["shop", "mini"])] {
        let (_, k) = key(&app, apps).await;
        assert_eq!(classic_token(&app, "wxdemo_oa", &k).await["errcode"], 40125);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_labels_are_a_fixed_set_whatever_the_paths_called() {
    let app = proxied().await;
    let (_, k) = key(&app, json!(["shop"])).await;
    let t = placeholder(&app, "wxdemo_oa", &k).await;
    let tag = format!("zz{}", rand_tag());
    for i in 0..3 {
        let url = format!("{}/cgi-bin/{tag}{i}", proxy(&app));
        send(app.http.get(&url).query(&[("access_token", "garbage")])).await;
        send(app.http.get(&url).query(&[("access_token", t.as_str())])).await;
    }
    let (_, m) = app.call("GET", "/metrics", None, None).await;
    let m = m.as_str().unwrap().to_string();
    assert!(!m.contains(&tag), "a caller minted a label:\n{m}");
    assert!(m.contains(r#"path="/cgi-bin/*""#), "{m}");
}

fn rand_tag() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_short_is_not_sent_and_a_small_chunked_one_is_replayed() {
    let app = proxied().await;
    let (_, k) = key(&app, json!(["shop"])).await;
    let t = placeholder(&app, "wxdemo_oa", &k).await;
    let path = "/cgi-bin/message/template/send";
    let req = format!(
        "POST {path}?access_token={t} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"touser\":"
    );
    let answer = raw(&app, req.as_bytes(), true).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(
        app.sim.stats("wxdemo_oa").unwrap().calls_by_path.get(path),
        None,
        "nothing sent"
    );

    // A chunked body (no Content-Length) small enough to keep is replayed after a revocation.
    let fetches = app.fetches("wxdemo_oa");
    app.sim.revoke_token("wxdemo_oa");
    let body = serde_json::to_vec(&order("oChunked0001")).unwrap();
    let parts: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(16).map(|c| Ok(c.to_vec())).collect();
    let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(parts));
    let url = format!("{}{path}", proxy(&app));
    let req = app
        .http
        .post(url)
        .query(&[("access_token", t.as_str())])
        .header("content-type", "application/json");
    let (s, _, v) = send(req.body(stream)).await;
    assert_eq!((s, &v["errcode"]), (StatusCode::OK, &json!(0)), "{v}");
    assert_eq!(app.fetches("wxdemo_oa"), fetches + 1);
}
