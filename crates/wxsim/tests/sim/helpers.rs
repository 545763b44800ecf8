//! Shared plumbing: start a simulator, talk HTTP to it as a WeChat client would, and check the
//! reply shapes (`rid:` suffix on OA/MP, `hint/from ip/more info` on WeCom).

use std::time::Duration;

use serde_json::{Value, json};
use wxsim::{AppStats, Delivery, DeliveryFilter, SimConfig, SimHandle};

pub const OA: &str = "wxdemo_oa";
pub const OA_SECRET: &str = "demo-oa-secret";
pub const MP: &str = "wxdemo_mp";
pub const MP_SECRET: &str = "demo-mp-secret";
pub const CORP: &str = "wwdemo_corp";
pub const AGENT: i64 = 1_000_002;
pub const WECOM_SECRET: &str = "demo-wecom-secret";
pub const WECOM: &str = "wwdemo_corp:1000002";

const DAY_MS: i64 = 86_400_000;
const SHANGHAI_MS: i64 = 8 * 3_600_000;

/// A client that never reuses a connection nor retries, so a fault on one request can never be
/// hidden (or doubled) by a transparent retry.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .retry(reqwest::retry::never())
        .timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client")
}

/// A running simulator and a client talking to it.
pub struct Sim {
    pub h: SimHandle,
    pub c: reqwest::Client,
    pub base: String,
}

impl Sim {
    pub async fn start(config: SimConfig) -> Sim {
        let h = wxsim::start(config).await.expect("simulator starts");
        let base = h.base_url();
        Sim {
            h,
            c: client(),
            base,
        }
    }

    /// The demo world: `wxdemo_oa`, `wxdemo_mp` and `wwdemo_corp:1000002`.
    pub async fn demo() -> Sim {
        Sim::start(SimConfig::default()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A reply as WeChat sends it: HTTP 200 with a JSON body.
    pub async fn json_of(resp: reqwest::Response) -> Value {
        assert_eq!(resp.status(), 200, "WeChat answers HTTP 200");
        let text = resp.text().await.expect("body");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    pub async fn get(&self, path: &str) -> Value {
        let resp = self.c.get(self.url(path)).send().await.expect("GET");
        Self::json_of(resp).await
    }

    pub async fn get_query(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let resp = self
            .c
            .get(self.url(path))
            .query(query)
            .send()
            .await
            .expect("GET");
        Self::json_of(resp).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Value {
        self.post_bytes(path, serde_json::to_vec(body).unwrap())
            .await
    }

    pub async fn post_bytes(&self, path: &str, body: impl Into<reqwest::Body>) -> Value {
        let resp = self
            .c
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        Self::json_of(resp).await
    }

    /// The raw reply text, for fields that must not go through a float (u64 msgids).
    pub async fn post_text(&self, path: &str, body: &Value) -> String {
        let resp = self
            .c
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST");
        assert_eq!(resp.status(), 200);
        resp.text().await.expect("body")
    }

    pub async fn token_reply(&self, appid: &str, secret: &str) -> Value {
        self.get_query(
            "/cgi-bin/token",
            &[
                ("grant_type", "client_credential"),
                ("appid", appid),
                ("secret", secret),
            ],
        )
        .await
    }

    /// A classic token; panics unless the fetch succeeds.
    pub async fn token(&self, appid: &str, secret: &str) -> String {
        let v = self.token_reply(appid, secret).await;
        access_token(&v)
    }

    pub async fn stable_reply(&self, appid: &str, secret: &str, force: bool) -> Value {
        let body = json!({"grant_type": "client_credential", "appid": appid, "secret": secret,
            "force_refresh": force});
        self.post("/cgi-bin/stable_token", &body).await
    }

    pub async fn stable(&self, appid: &str, secret: &str, force: bool) -> String {
        access_token(&self.stable_reply(appid, secret, force).await)
    }

    pub async fn gettoken_reply(&self, corpid: &str, secret: &str) -> Value {
        self.get_query(
            "/cgi-bin/gettoken",
            &[("corpid", corpid), ("corpsecret", secret)],
        )
        .await
    }

    pub async fn wecom_token(&self, corpid: &str, secret: &str) -> String {
        let v = self.gettoken_reply(corpid, secret).await;
        assert_eq!(v["errcode"], 0, "{v}");
        access_token(&v)
    }

    /// `get_api_domain_ip`: the cheap authenticated call used as a token probe.
    pub async fn probe(&self, token: &str) -> Value {
        self.get(&format!("/cgi-bin/get_api_domain_ip?access_token={token}"))
            .await
    }

    pub async fn template_send(&self, token: &str, body: &Value) -> Value {
        let path = format!("/cgi-bin/message/template/send?access_token={token}");
        self.post(&path, body).await
    }

    pub async fn subscribe_send(&self, token: &str, body: &Value) -> Value {
        let path = format!("/cgi-bin/message/subscribe/send?access_token={token}");
        self.post(&path, body).await
    }

    pub async fn wecom_send(&self, token: &str, body: &Value) -> Value {
        let path = format!("/cgi-bin/message/send?access_token={token}");
        self.post(&path, body).await
    }

    /// `POST /cgi-bin/media/upload` with one file part `media` (no `Content-Type` line when
    /// `content_type` is `None`).
    pub async fn upload(
        &self,
        token: &str,
        kind: &str,
        filename: &str,
        content_type: Option<&str>,
        data: &[u8],
    ) -> Value {
        let body = multipart("wxsim-test-boundary", "media", filename, content_type, data);
        let path = format!("/cgi-bin/media/upload?access_token={token}&type={kind}");
        let resp = self
            .c
            .post(self.url(&path))
            .header(
                "content-type",
                "multipart/form-data; boundary=wxsim-test-boundary",
            )
            .body(body)
            .send()
            .await
            .expect("POST");
        Self::json_of(resp).await
    }

    /// `GET /cgi-bin/media/get`, the raw reply (a file, a range of it, or a JSON error).
    pub async fn media_get(
        &self,
        token: &str,
        media_id: &str,
        range: Option<&str>,
    ) -> reqwest::Response {
        let path = format!("/cgi-bin/media/get?access_token={token}&media_id={media_id}");
        let mut req = self.c.get(self.url(&path));
        if let Some(r) = range {
            req = req.header("range", r);
        }
        req.send().await.expect("GET")
    }

    /// How many requests naming `key` arrived on `path`.
    pub fn calls(&self, key: &str, path: &str) -> u64 {
        self.stats(key)
            .calls_by_path
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn stats(&self, key: &str) -> AppStats {
        self.h.stats(key).expect("app exists")
    }

    pub fn deliveries(&self, app: &str) -> Vec<Delivery> {
        self.h.deliveries(&DeliveryFilter {
            app: Some(app.into()),
            ..DeliveryFilter::default()
        })
    }

    pub fn advance_secs(&self, secs: u64) {
        self.h.advance(Duration::from_secs(secs));
    }

    /// Move the clock to just after a Shanghai midnight, so a test has a whole day ahead of it.
    pub fn align_day(&self) {
        let now = self.h.clock().now_ms();
        let into = (now + SHANGHAI_MS).rem_euclid(DAY_MS);
        self.h
            .advance(Duration::from_millis((DAY_MS - into + 1000) as u64));
    }

    /// Move the clock to just after a minute boundary.
    pub fn align_minute(&self) {
        let now = self.h.clock().now_ms();
        self.h.advance(Duration::from_millis(
            (60_000 - now.rem_euclid(60_000) + 5) as u64,
        ));
    }

    /// Move the clock to just after a second boundary.
    pub fn align_second(&self) {
        let now = self.h.clock().now_ms();
        self.h.advance(Duration::from_millis(
            (1000 - now.rem_euclid(1000) + 2) as u64,
        ));
    }
}

pub fn access_token(v: &Value) -> String {
    let t = v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {v}"));
    assert_token_shape(t);
    t.to_string()
}

/// `<digits>_<chars>`, as WeChat's tokens look (`83_FDMplPKn…`), at most 512 characters.
pub fn assert_token_shape(t: &str) {
    let (generation, body) = t.split_once('_').unwrap_or_else(|| panic!("no _ in {t}"));
    assert!(!generation.is_empty() && generation.bytes().all(|b| b.is_ascii_digit()));
    assert!(!body.is_empty() && t.len() <= 512, "{t}");
}

pub fn errcode(v: &Value) -> i64 {
    v["errcode"].as_i64().unwrap_or(0)
}

pub fn errmsg(v: &Value) -> &str {
    v["errmsg"].as_str().unwrap_or_default()
}

/// An OA/MP error: this errcode, and an errmsg ending in `rid: xxxxxxxx-xxxxxxxx-xxxxxxxx`.
#[track_caller]
pub fn assert_err(v: &Value, code: i64) {
    assert_eq!(errcode(v), code, "{v}");
    assert_rid(errmsg(v));
}

#[track_caller]
pub fn assert_rid(msg: &str) {
    let (_, rid) = msg
        .rsplit_once(" rid: ")
        .unwrap_or_else(|| panic!("no rid in {msg:?}"));
    let parts: Vec<&str> = rid.split('-').collect();
    assert_eq!(parts.len(), 3, "{msg:?}");
    for p in parts {
        assert!(
            p.len() == 8 && p.bytes().all(|b| b.is_ascii_hexdigit()),
            "{msg:?}"
        );
    }
}

/// A WeCom error: this errcode, and `…, hint: [N], from ip: IP, more info at …?e=CODE`.
#[track_caller]
pub fn assert_wecom_err(v: &Value, code: i64) {
    assert_eq!(errcode(v), code, "{v}");
    let msg = errmsg(v);
    assert!(msg.contains(", hint: ["), "{msg:?}");
    assert!(msg.contains("], from ip: "), "{msg:?}");
    assert!(
        msg.ends_with(&format!(
            "more info at https://open.work.weixin.qq.com/devtool/query?e={code}"
        )),
        "{msg:?}"
    );
}

/// Success on a send API: `errcode 0, errmsg ok`.
#[track_caller]
pub fn assert_ok(v: &Value) {
    assert_eq!(v["errcode"], 0, "{v}");
    assert_eq!(v["errmsg"], "ok", "{v}");
}

/// An OA template send body to `to` with the demo legacy template.
pub fn legacy_body(to: &str) -> Value {
    json!({
        "touser": to,
        "template_id": "TPL_LEGACY",
        "data": {"keyword1": {"value": "巧克力"}, "keyword2": {"value": "39.8元"},
                 "keyword3": {"value": "2014年9月22日"}}
    })
}

/// An MP subscribe body with the demo one-time template `TPL_SUB`.
pub fn sub_body(to: &str) -> Value {
    json!({
        "touser": to,
        "template_id": "TPL_SUB",
        "data": {"thing1": {"value": "订单已发货"}, "time2": {"value": "15:01"},
                 "phrase3": {"value": "配送中"}, "amount4": {"value": "¥99.00"}}
    })
}

/// A WeCom text message from the demo agent.
pub fn text_body(to: &str, content: &str) -> Value {
    json!({"touser": to, "msgtype": "text", "agentid": AGENT, "text": {"content": content}})
}

/// A `multipart/form-data` body with one file part, framed as a client frames it.
pub fn multipart(
    boundary: &str,
    field: &str,
    filename: &str,
    content_type: Option<&str>,
    data: &[u8],
) -> Vec<u8> {
    let mut b = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
    );
    if let Some(ct) = content_type {
        b.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    b.push_str("\r\n");
    let mut b = b.into_bytes();
    b.extend_from_slice(data);
    b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    b
}
