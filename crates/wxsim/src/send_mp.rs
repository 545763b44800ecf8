//! OA template messages (`/cgi-bin/message/template/send`) and MP subscribe messages
//! (`/cgi-bin/message/subscribe/send`): recipient, template and keyword checks, `client_msg_id`
//! dedupe, one-time credits, daily caps, u64 msgids, and the delivery record.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::config::{AppKind, Subscription, TemplateSpec, TemplateStyle};
use crate::keywords::{self, KeywordError};
use crate::reply::{errmsg, json_reply, mp_error};
use crate::stats::{bump, bump_map};
use crate::tokens::{Platform, TokenQuery, authorize, require_kind};
use crate::world::{App, Delivery, Follow, Sim, fingerprint, lock};

/// Count a rejection against the app and answer it in OA/MP form.
pub(crate) fn reject(app: &App, code: i64, msg: &str) -> Response {
    bump_map(&app.counters.rejected, code);
    mp_error(code, msg)
}

fn reject_std(app: &App, code: i64) -> Response {
    reject(app, code, errmsg(code))
}

/// Token, kind and body checks shared by both endpoints.
fn open_call<T: for<'de> Deserialize<'de>>(
    sim: &Sim,
    token: Option<&str>,
    kind: AppKind,
    body: &[u8],
) -> Result<(Arc<App>, T), Response> {
    let app = authorize(sim, token, Platform::Mp).map_err(|c| mp_error(c, errmsg(c)))?;
    require_kind(&app, kind).map_err(|c| mp_error(c, errmsg(c)))?;
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(reject_std(&app, 44002));
    }
    match serde_json::from_slice::<T>(body) {
        Ok(v) => Ok((app, v)),
        Err(_) => Err(reject_std(&app, 47001)),
    }
}

/// The string inside `{"value": "..."}`; anything else is not a usable value.
fn value_of(v: &Value) -> Option<&str> {
    v.get("value").and_then(Value::as_str)
}

/// Check typed keywords; returns the delivered data or the 47003 errmsg naming the field.
fn typed_data(t: &TemplateSpec, data: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let names: Vec<&str> = if t.keywords.is_empty() {
        data.keys().map(String::as_str).collect()
    } else {
        t.keywords.iter().map(String::as_str).collect()
    };
    let mut out = Map::new();
    for name in names {
        let raw = data.get(name);
        let value = match raw {
            None => "",
            Some(v) => {
                value_of(v).ok_or_else(|| format!("argument invalid! data.{name}.value invalid"))?
            }
        };
        match keywords::check(name, value) {
            Ok(()) => {
                out.insert(name.to_string(), Value::String(value.to_string()));
            }
            Err(KeywordError::Empty) => {
                return Err(format!("argument invalid! data.{name}.value is empty"));
            }
            Err(KeywordError::Invalid) => {
                return Err(format!("argument invalid! data.{name}.value invalid"));
            }
        }
    }
    Ok(out)
}

/// Legacy OA templates: values over 20 characters are cut to 20 with "…"; `first`, `remark`
/// and colours are dropped without an error.
fn legacy_data(data: &Map<String, Value>) -> Map<String, Value> {
    data.iter()
        .filter(|(k, _)| k.as_str() != "first" && k.as_str() != "remark")
        .map(|(k, v)| {
            let s = value_of(v).unwrap_or_default();
            let shown = if s.chars().count() > 20 {
                let mut cut: String = s.chars().take(19).collect();
                cut.push('…');
                cut
            } else {
                s.to_string()
            };
            (k.clone(), Value::String(shown))
        })
        .collect()
}

#[derive(Deserialize)]
struct TemplateSend {
    touser: Option<String>,
    template_id: Option<String>,
    url: Option<String>,
    miniprogram: Option<Value>,
    client_msg_id: Option<String>,
    #[serde(default)]
    data: Map<String, Value>,
}

/// `POST /cgi-bin/message/template/send`.
pub(crate) async fn template_send(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<TokenQuery>,
    body: Bytes,
) -> Response {
    let (app, m) = match open_call::<TemplateSend>(
        &sim,
        q.access_token.as_deref(),
        AppKind::OfficialAccount,
        &body,
    ) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(to) = m.touser.filter(|s| !s.is_empty()) else {
        return reject_std(&app, 40003);
    };
    let Some(template_id) = m.template_id.filter(|s| !s.is_empty()) else {
        return reject_std(&app, 40036);
    };
    let now = sim.clock.now_ms();
    let window_ms = sim.settings().dedupe_window_secs * 1000;
    let mut st = lock(&app.state);
    st.roll(now);
    let Some(template) = st.templates.get(&template_id) else {
        drop(st);
        return reject_std(&app, 40037);
    };
    let data = match template.style {
        TemplateStyle::Legacy => legacy_data(&m.data),
        TemplateStyle::Typed => match typed_data(template, &m.data) {
            Ok(d) => d,
            Err(msg) => {
                drop(st);
                return reject(&app, 47003, &msg);
            }
        },
    };
    if !st.take_rate() {
        drop(st);
        return reject_std(&app, 45011);
    }
    let cmid = m.client_msg_id.filter(|s| !s.is_empty());
    if let Some(c) = &cmid
        && let Some((msgid, exp)) = st.dedupe.get(&(to.clone(), c.clone()))
        && *exp > now
    {
        let msgid = *msgid;
        drop(st);
        bump(&app.counters.dedupe_hits);
        return json_reply(&json!({"errcode": 0, "errmsg": "ok", "msgid": msgid}));
    }
    let code = match st.follow_state(&to) {
        Follow::Follower => 0,
        Follow::Unknown => 40003,
        Follow::Unfollowed => 43004,
        Follow::Refused => 48002,
        Follow::Restricted => 50002,
    };
    if code == 0 && st.daily.sends >= st.spec.daily_send_limit() {
        drop(st);
        return reject_std(&app, 45009);
    }
    if code != 0 {
        drop(st);
        return reject_std(&app, code);
    }
    st.daily.sends += 1;
    let msgid = sim.next_msgid();
    if let Some(c) = &cmid {
        st.dedupe
            .insert((to.clone(), c.clone()), (msgid, now + window_ms));
    }
    let mut content = json!({"data": data});
    if let Some(u) = m.url {
        content["url"] = Value::String(u);
    }
    if let Some(mp) = m.miniprogram {
        content["miniprogram"] = mp;
    }
    let duplicate = st.is_duplicate(fingerprint("template", &to, &template_id, &content));
    drop(st);
    bump(&app.counters.sends_accepted);
    deliver(
        &sim,
        &app,
        duplicate,
        Delivery {
            seq: 0,
            at_ms: now,
            app: app.key.clone(),
            api: "template".into(),
            to,
            template_id: Some(template_id),
            msgtype: None,
            msgid: msgid.to_string(),
            client_msg_id: cmid,
            content,
            duplicate,
        },
    );
    json_reply(&json!({"errcode": 0, "errmsg": "ok", "msgid": msgid}))
}

/// Count a delivery (and a duplicate) and put it in the log.
pub(crate) fn deliver(sim: &Sim, app: &App, duplicate: bool, d: Delivery) {
    bump(&app.counters.deliveries);
    if duplicate {
        bump(&app.counters.duplicate_deliveries);
    }
    sim.record_delivery(d);
}

#[derive(Deserialize)]
struct SubscribeSend {
    touser: Option<String>,
    template_id: Option<String>,
    page: Option<String>,
    miniprogram_state: Option<String>,
    lang: Option<String>,
    #[serde(default)]
    data: Map<String, Value>,
}

/// `POST /cgi-bin/message/subscribe/send` (Mini Program).
pub(crate) async fn subscribe_send(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<TokenQuery>,
    body: Bytes,
) -> Response {
    let (app, m) = match open_call::<SubscribeSend>(
        &sim,
        q.access_token.as_deref(),
        AppKind::MiniProgram,
        &body,
    ) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(to) = m.touser.filter(|s| !s.is_empty()) else {
        return reject_std(&app, 40003);
    };
    let Some(template_id) = m.template_id.filter(|s| !s.is_empty()) else {
        return reject_std(&app, 40037);
    };
    if let Some(s) = &m.miniprogram_state
        && !matches!(s.as_str(), "developer" | "trial" | "formal")
    {
        return reject(&app, 47003, "argument invalid! miniprogram_state invalid");
    }
    if let Some(l) = &m.lang
        && !matches!(l.as_str(), "zh_CN" | "en_US" | "zh_HK" | "zh_TW")
    {
        return reject(&app, 47003, "argument invalid! lang invalid");
    }
    let now = sim.clock.now_ms();
    let mut st = lock(&app.state);
    st.roll(now);
    let Some(template) = st.templates.get(&template_id) else {
        drop(st);
        return reject_std(&app, 40037);
    };
    let one_time = template.subscription == Subscription::OneTime;
    let data = match typed_data(template, &m.data) {
        Ok(d) => d,
        Err(msg) => {
            drop(st);
            return reject(&app, 47003, &msg);
        }
    };
    if let (Some(page), Some(pages)) = (&m.page, &st.spec.pages) {
        let path = page.split('?').next().unwrap_or_default();
        if !pages.iter().any(|p| p == path) {
            drop(st);
            return reject_std(&app, 41030);
        }
    }
    if !st.take_rate() {
        drop(st);
        return reject_std(&app, 45011);
    }
    let code = match st.follow_state(&to) {
        Follow::Follower => 0,
        Follow::Unknown => 40003,
        Follow::Unfollowed | Follow::Refused => 43101,
        Follow::Restricted => 50002,
    };
    if code != 0 {
        drop(st);
        return reject_std(&app, code);
    }
    if st.daily.sends >= st.spec.daily_send_limit() {
        drop(st);
        return reject_std(&app, 45009);
    }
    if one_time {
        let default = st.spec.default_credits;
        let credits = st
            .credits
            .entry((to.clone(), template_id.clone()))
            .or_insert(default);
        if *credits == 0 {
            drop(st);
            return reject_std(&app, 43101);
        }
        *credits -= 1;
    }
    st.daily.sends += 1;
    let msgid = sim.next_msgid();
    let mut content = json!({"data": data});
    if let Some(p) = m.page {
        content["page"] = Value::String(p);
    }
    let duplicate = st.is_duplicate(fingerprint("subscribe", &to, &template_id, &content));
    drop(st);
    bump(&app.counters.sends_accepted);
    deliver(
        &sim,
        &app,
        duplicate,
        Delivery {
            seq: 0,
            at_ms: now,
            app: app.key.clone(),
            api: "subscribe".into(),
            to,
            template_id: Some(template_id),
            msgtype: None,
            msgid: msgid.to_string(),
            client_msg_id: None,
            content,
            duplicate,
        },
    );
    json_reply(&json!({"errcode": 0, "errmsg": "ok", "msgid": msgid}))
}
