//! OA template messages (`/cgi-bin/message/template/send`) and MP subscribe messages
//! (`/cgi-bin/message/subscribe/send`): recipient, template and keyword checks, `client_msg_id`
//! dedupe, one-time credits, daily caps, u64 msgids, and the delivery record.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::config::{AppKind, Subscription, TemplateSpec, TemplateStyle};
use crate::keywords::{self, KeywordError};
use crate::reply::{errmsg, mp_error, ok_msgid};
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

/// A send's `data`: keyword name → its value.
type Data = BTreeMap<String, Keyword>;

/// One entry of a send's `data`: the string inside `{"value": "..."}`, or `None` for anything
/// else (not an object, no `value`, a `value` that is not a string), which is not a usable value.
///
/// It is what `v.get("value").and_then(Value::as_str)` reads from a `serde_json::Value`, parsed
/// without building the `Value` tree (every send parses four of these). It accepts and refuses
/// exactly the JSON a `Value` does: every nested value still goes through `deserialize_any`, so
/// numbers, strings, escapes and nesting depth are checked the same way, and a repeated `value`
/// key keeps the last one, as a `Map` does.
struct Keyword(Option<String>);

impl Keyword {
    fn value(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<'de> Deserialize<'de> for Keyword {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Lenient::Keyword.deserialize(d).map(Keyword)
    }
}

/// How [`Keyword`] reads a JSON value of any shape: the keyword object itself, the string
/// under its `value` key, or something to check and drop.
#[derive(Clone, Copy)]
enum Lenient {
    Keyword,
    Str,
    Skip,
}

impl<'de> DeserializeSeed<'de> for Lenient {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(self)
    }
}

/// A map key, compared with `value`.
struct IsValueKey;

impl<'de> DeserializeSeed<'de> for IsValueKey {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for IsValueKey {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E>(self, k: &str) -> Result<bool, E> {
        Ok(k == "value")
    }
}

impl<'de> Visitor<'de> for Lenient {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(matches!(self, Lenient::Str).then(|| v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(matches!(self, Lenient::Str).then_some(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element_seed(Lenient::Skip)?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut value = None;
        if let Lenient::Keyword = self {
            while let Some(is_value) = map.next_key_seed(IsValueKey)? {
                if is_value {
                    value = map.next_value_seed(Lenient::Str)?;
                } else {
                    map.next_value_seed(Lenient::Skip)?;
                }
            }
        } else {
            while map.next_key_seed(Lenient::Skip)?.is_some() {
                map.next_value_seed(Lenient::Skip)?;
            }
        }
        Ok(value)
    }
}

/// Check typed keywords, in the template's keyword order (or the data's, when the template lists
/// none); returns the delivered data or the 47003 errmsg naming the first bad field. The names
/// and values are moved out of `data` into the delivered map rather than copied.
fn typed_data(t: &TemplateSpec, mut data: Data) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    if t.keywords.is_empty() {
        for (name, v) in data {
            check_keyword(&mut out, name, Some(v))?;
        }
    } else {
        for name in &t.keywords {
            if out.contains_key(name.as_str()) {
                // Listed twice in the template: already checked and kept.
                continue;
            }
            match data.remove_entry(name.as_str()) {
                Some((name, v)) => check_keyword(&mut out, name, Some(v))?,
                None => check_keyword(&mut out, name.clone(), None)?,
            }
        }
    }
    Ok(out)
}

/// Check one keyword (`None`: absent from the data) and keep it in `out` when it is good.
fn check_keyword(
    out: &mut Map<String, Value>,
    name: String,
    raw: Option<Keyword>,
) -> Result<(), String> {
    let value = match raw {
        None => String::new(),
        Some(Keyword(Some(v))) => v,
        Some(Keyword(None)) => {
            return Err(format!("argument invalid! data.{name}.value invalid"));
        }
    };
    match keywords::check(&name, &value) {
        Ok(()) => {
            out.insert(name, Value::String(value));
            Ok(())
        }
        Err(KeywordError::Empty) => Err(format!("argument invalid! data.{name}.value is empty")),
        Err(KeywordError::Invalid) => Err(format!("argument invalid! data.{name}.value invalid")),
    }
}

/// Legacy OA templates: values over 20 characters are cut to 20 with "…"; `first`, `remark`
/// and colours are dropped without an error.
fn legacy_data(data: &Data) -> Map<String, Value> {
    data.iter()
        .filter(|(k, _)| k.as_str() != "first" && k.as_str() != "remark")
        .map(|(k, v)| {
            let s = v.value().unwrap_or_default();
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

/// `touser` (40003 when missing) and `template_id` (`missing_template` when missing: 40036 on
/// OA, 40037 on MP).
fn required(
    app: &App,
    touser: Option<String>,
    template_id: Option<String>,
    missing_template: i64,
) -> Result<(String, String), Response> {
    let to = touser
        .filter(|s| !s.is_empty())
        .ok_or_else(|| reject_std(app, 40003))?;
    let template_id = template_id
        .filter(|s| !s.is_empty())
        .ok_or_else(|| reject_std(app, missing_template))?;
    Ok((to, template_id))
}

#[derive(Deserialize)]
struct TemplateSend {
    touser: Option<String>,
    template_id: Option<String>,
    url: Option<String>,
    miniprogram: Option<Value>,
    client_msg_id: Option<String>,
    #[serde(default)]
    data: Data,
}

/// `POST /cgi-bin/message/template/send`.
pub(crate) async fn template_send(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<TokenQuery>,
    body: Bytes,
) -> Response {
    let (app, mut m) = match open_call::<TemplateSend>(
        &sim,
        q.access_token.as_deref(),
        AppKind::OfficialAccount,
        &body,
    ) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (to, template_id) = match required(&app, m.touser.take(), m.template_id.take(), 40036) {
        Ok(v) => v,
        Err(r) => return r,
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
        TemplateStyle::Typed => match typed_data(template, std::mem::take(&mut m.data)) {
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
        return ok_msgid(msgid);
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
    // `json!({"data": data})` would deep-copy `data` through `to_value`; move it instead.
    let mut content = Value::Object(Map::from_iter([("data".to_string(), Value::Object(data))]));
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
    ok_msgid(msgid)
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
    data: Data,
}

/// `POST /cgi-bin/message/subscribe/send` (Mini Program).
pub(crate) async fn subscribe_send(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<TokenQuery>,
    body: Bytes,
) -> Response {
    let (app, mut m) = match open_call::<SubscribeSend>(
        &sim,
        q.access_token.as_deref(),
        AppKind::MiniProgram,
        &body,
    ) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (to, template_id) = match required(&app, m.touser.take(), m.template_id.take(), 40037) {
        Ok(v) => v,
        Err(r) => return r,
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
    let data = match typed_data(template, std::mem::take(&mut m.data)) {
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
    // `json!({"data": data})` would deep-copy `data` through `to_value`; move it instead.
    let mut content = Value::Object(Map::from_iter([("data".to_string(), Value::Object(data))]));
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
    ok_msgid(msgid)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the handlers read before `Keyword`: a `Value` map and `value_of`.
    fn via_value(body: &str) -> Result<Vec<(String, Option<String>)>, ()> {
        let m: Map<String, Value> = serde_json::from_str(body).map_err(|_| ())?;
        Ok(m.iter()
            .map(|(k, v)| {
                let s = v.get("value").and_then(Value::as_str).map(str::to_owned);
                (k.clone(), s)
            })
            .collect())
    }

    fn via_keyword(body: &str) -> Result<Vec<(String, Option<String>)>, ()> {
        let m: Data = serde_json::from_str(body).map_err(|_| ())?;
        Ok(m.into_iter().map(|(k, v)| (k, v.0)).collect())
    }

    /// `typed_data` as it was, on a `Value` map, copying names and values.
    fn typed_data_via_value(
        t: &TemplateSpec,
        data: &Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let names: Vec<&str> = if t.keywords.is_empty() {
            data.keys().map(String::as_str).collect()
        } else {
            t.keywords.iter().map(String::as_str).collect()
        };
        let mut out = Map::new();
        for name in names {
            let value = match data.get(name) {
                None => "",
                Some(v) => v
                    .get("value")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("argument invalid! data.{name}.value invalid"))?,
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

    #[test]
    fn typed_data_checks_and_delivers_as_before() {
        let templates = [
            TemplateSpec::typed("T", &["thing1", "amount2", "time3", "character_string4"]),
            TemplateSpec::typed("T", &["thing1", "time3", "thing1"]),
            TemplateSpec::typed("T", &[]),
        ];
        let bodies = [
            r#"{"thing1":{"value":"Order shipped"},"amount2":{"value":"¥9.90"},"time3":{"value":"15:01"},"character_string4":{"value":"SN1"},"extra9":{"value":"x"}}"#,
            r#"{"thing1":{"value":"ok"},"time3":{"value":"not a time"}}"#,
            r#"{"thing1":{"value":"ok"},"time3":{"value":""}}"#,
            r#"{"thing1":{"value":"ok"},"time3":{"value":15}}"#,
            r#"{"thing1":{"value":"ok"},"time3":"15:01"}"#,
            r#"{"time3":{"value":"15:01"}}"#,
            r#"{"thing1":{"value":"much too long for a thing keyword, over twenty"}}"#,
            r#"{}"#,
        ];
        for t in &templates {
            for body in bodies {
                let want = typed_data_via_value(t, &serde_json::from_str(body).unwrap());
                let got = typed_data(t, serde_json::from_str(body).unwrap());
                assert_eq!(got, want, "{:?} {body}", t.keywords);
            }
        }
    }

    #[test]
    fn keyword_reads_what_a_value_map_reads() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        let cases = [
            r#"{"thing1":{"value":"Order shipped"},"amount2":{"value":"¥9.90"}}"#,
            r##"{"a":{"value":"x","color":"#173177"},"b":{"color":"red"}}"##,
            r#"{"a":{"value":1},"b":{"value":null},"c":{"value":["x"]},"d":{"value":{"v":"x"}}}"#,
            r#"{"a":"plain","b":7,"c":null,"d":[{"value":"x"}],"e":true,"f":-1.5e3}"#,
            r#"{"a":{"value":"first","value":"second"},"a":{"value":"third"}}"#,
            r#"{"a":{"value":"one","value":2}}"#,
            r#"{"a":{"\u0076alue":"escaped key"},"\u0062":{"value":"\u4e2d\n"}}"#,
            r#"{"a":{"value":"x","n":1e400}}"#,
            r#"{"a":{"value":"x","n":18446744073709551616}}"#,
            r#"{"a":{"value":"\ud800"}}"#,
            r#"{"a":{"value":"x"},}"#,
            r#"{"a":{"value":"x"}"#,
            r#"[{"value":"x"}]"#,
            r#"null"#,
            r#"{}"#,
            &deep,
        ];
        for body in cases {
            assert_eq!(via_keyword(body), via_value(body), "{body}");
        }
        let bad_utf8 = b"{\"a\":{\"value\":\"x\",\"n\":\"\xff\"}}";
        assert!(serde_json::from_slice::<Map<String, Value>>(bad_utf8).is_err());
        assert!(serde_json::from_slice::<Data>(bad_utf8).is_err());
    }
}
