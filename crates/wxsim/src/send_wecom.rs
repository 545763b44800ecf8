//! WeCom application messages (`/cgi-bin/message/send`): `|`-joined recipients with their
//! limits, partial failures answered with errcode 0 and `invaliduser`/`invalidparty`/
//! `invalidtag`, all-invalid → 81013, another app's token → 301002, byte limits,
//! `enable_duplicate_check`, and per-member limits that silently drop.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use serde_json::{Value, json};

use crate::reply::{errmsg, json_reply, wecom_errmsg, wecom_error};
use crate::send_mp::deliver;
use crate::server::ClientIp;
use crate::stats::{bump, bump_map};
use crate::tokens::{Platform, TokenQuery, authorize};
use crate::world::{App, Delivery, MemberWindow, Sim, fingerprint, lock, random_chars};

const MSGTYPES: &[&str] = &[
    "text",
    "image",
    "voice",
    "video",
    "file",
    "textcard",
    "news",
    "mpnews",
    "markdown",
    "miniprogram_notice",
    "template_card",
];
const INTERACTIVE_CARDS: &[&str] = &[
    "button_interaction",
    "vote_interaction",
    "multiple_interaction",
];

fn reject(app: &App, code: i64, msg: &str, ip: IpAddr) -> Response {
    bump_map(&app.counters.rejected, code);
    wecom_error(code, msg, ip)
}

/// Cut a string to at most `max` UTF-8 bytes on a character boundary (WeCom truncates).
fn cut_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn split_ids(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_str)
        .map(|s| {
            s.split('|')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Validate and normalise the message body; Err is (errcode, errmsg).
fn check_body(msgtype: &str, body: &Value) -> Result<Value, (i64, String)> {
    let part = body.get(msgtype).cloned().unwrap_or(Value::Null);
    let s = |k: &str| {
        part.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let e = |c: i64| Err((c, errmsg(c).to_string()));
    match msgtype {
        "text" => {
            let content = s("content");
            if content.is_empty() {
                return e(44004);
            }
            Ok(json!({"content": cut_bytes(&content, 2048)}))
        }
        "markdown" => {
            let content = s("content");
            if content.is_empty() {
                return e(44004);
            }
            if content.len() > 2048 {
                return Err((45002, "content size out of limit".into()));
            }
            Ok(json!({"content": content}))
        }
        "textcard" => {
            let description = s("description");
            if description.is_empty() {
                return e(41033);
            }
            let url = s("url");
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2048 {
                return Err((
                    40054,
                    "invalid url, must include http:// or https://".into(),
                ));
            }
            let mut btn = s("btntxt");
            if btn.chars().count() > 4 {
                btn = btn.chars().take(4).collect();
            }
            Ok(json!({
                "title": cut_bytes(&s("title"), 128),
                "description": cut_bytes(&description, 512),
                "url": url,
                "btntxt": if btn.is_empty() { "详情".to_string() } else { btn },
            }))
        }
        "news" | "mpnews" => {
            let articles = part.get("articles").and_then(Value::as_array);
            match articles {
                Some(a) if (1..=8).contains(&a.len()) => {
                    let mut out = a.clone();
                    for art in &mut out {
                        for (k, max) in [("title", 128), ("description", 512)] {
                            if let Some(t) = art.get(k).and_then(Value::as_str) {
                                art[k] = Value::String(cut_bytes(t, max));
                            }
                        }
                    }
                    Ok(json!({"articles": out}))
                }
                _ => Err((40058, "invalid news article count, must be 1 to 8".into())),
            }
        }
        "template_card" => {
            let card = part
                .get("card_type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let known =
                ["text_notice", "news_notice"].contains(&card) || INTERACTIVE_CARDS.contains(&card);
            if !known {
                return Err((40058, format!("invalid card_type {card:?}")));
            }
            Ok(part)
        }
        "image" | "voice" | "file" | "video" => {
            if s("media_id").is_empty() {
                return Err((40007, "invalid media_id".into()));
            }
            Ok(part)
        }
        _ => Ok(part),
    }
}

fn party_or_tag_ok(id: &str) -> bool {
    id.parse::<u32>().is_ok_and(|n| (1..=9999).contains(&n))
}

fn new_msgid() -> String {
    random_chars(43)
}

/// Per-member limit: true when this member may receive one more message now.
fn member_may_receive(w: &mut MemberWindow, now_ms: i64, per_min: u32, per_hour: u32) -> bool {
    let (minute, hour) = (now_ms.div_euclid(60_000), now_ms.div_euclid(3_600_000));
    if w.minute != minute {
        w.minute = minute;
        w.in_minute = 0;
    }
    if w.hour != hour {
        w.hour = hour;
        w.in_hour = 0;
    }
    if w.in_minute >= per_min || w.in_hour >= per_hour {
        return false;
    }
    w.in_minute += 1;
    w.in_hour += 1;
    true
}

/// `POST /cgi-bin/message/send` (WeCom).
pub(crate) async fn message_send(
    State(sim): State<Arc<Sim>>,
    ClientIp(ip): ClientIp,
    Query(q): Query<TokenQuery>,
    body: Bytes,
) -> Response {
    let app = match authorize(&sim, q.access_token.as_deref(), Platform::Wecom) {
        Ok(a) => a,
        Err(c) => return wecom_error(c, errmsg(c), ip),
    };
    let (whitelisted, agentid, per_min, per_hour, daily_limit) = {
        let st = lock(&app.state);
        (
            st.spec
                .ip_whitelist
                .as_ref()
                .is_none_or(|l| l.contains(&ip)),
            st.spec.agentid,
            st.spec.member_minute_limit,
            st.spec.member_hour_limit,
            st.spec.daily_send_limit(),
        )
    };
    if !whitelisted {
        return reject(&app, 60020, errmsg(60020), ip);
    }
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return reject(&app, 44002, errmsg(44002), ip);
    }
    let Ok(m) = serde_json::from_slice::<Value>(&body) else {
        return reject(&app, 47001, errmsg(47001), ip);
    };
    // WeCom parses what it can: a numeric string agentid works but earns a warning.
    let mut warning = false;
    let sent_agent = match m.get("agentid") {
        None | Some(Value::Null) => return reject(&app, 41011, "missing agentid", ip),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => {
            warning = true;
            s.trim().parse().ok()
        }
        Some(_) => None,
    };
    let Some(sent_agent) = sent_agent else {
        return reject(&app, 40056, errmsg(40056), ip);
    };
    if Some(sent_agent) != agentid {
        let corp = app.key.split(':').next().unwrap_or_default();
        let other = sim.app(&format!("{corp}:{sent_agent}")).is_some();
        let code = if other { 301002 } else { 40056 };
        return reject(&app, code, errmsg(code), ip);
    }
    let msgtype = m.get("msgtype").and_then(Value::as_str).unwrap_or_default();
    if !MSGTYPES.contains(&msgtype) {
        return reject(&app, 40008, errmsg(40008), ip);
    }
    let users = split_ids(m.get("touser"));
    let parties = split_ids(m.get("toparty"));
    let tags = split_ids(m.get("totag"));
    if users.is_empty() && parties.is_empty() && tags.is_empty() {
        return reject(&app, 40031, "invalid userid list", ip);
    }
    for (n, max, code) in [
        (users.len(), 1000, 40032),
        (parties.len(), 100, 82002),
        (tags.len(), 100, 82003),
    ] {
        if n > max {
            return reject(&app, code, errmsg(code), ip);
        }
    }
    let shown = match check_body(msgtype, &m) {
        Ok(v) => v,
        Err((c, msg)) => return reject(&app, c, &msg, ip),
    };
    let content = json!({"msgtype": msgtype, msgtype: shown});
    let dup_check = m.get("enable_duplicate_check").and_then(Value::as_i64) == Some(1);
    let interval = m
        .get("duplicate_check_interval")
        .and_then(Value::as_i64)
        .unwrap_or(1800)
        .clamp(1, 14_400);
    let body_hash = {
        let mut h = DefaultHasher::new();
        m.to_string().hash(&mut h);
        h.finish()
    };
    let now = sim.clock.now_ms();
    let mut st = lock(&app.state);
    st.roll(now);
    if !st.take_rate() {
        drop(st);
        return reject(&app, 45009, "api freq out of limit", ip);
    }
    if dup_check
        && let Some((exp, msgid)) = st.wecom_dups.get(&body_hash)
        && *exp > now
    {
        let msgid = msgid.clone();
        drop(st);
        bump(&app.counters.dedupe_hits);
        return json_reply(&json!({"errcode": 0, "errmsg": "ok", "msgid": msgid}));
    }
    let all = users.iter().any(|u| u == "@all");
    let mut invalid_users = Vec::new();
    let mut unlicensed = Vec::new();
    let mut targets = Vec::new();
    if all {
        targets.push("@all".to_string());
    } else {
        for u in &users {
            let lower = u.to_lowercase();
            if lower.starts_with("invalid") {
                invalid_users.push(lower);
            } else if lower.starts_with("unlicensed") {
                unlicensed.push(lower);
            } else {
                targets.push(lower);
            }
        }
    }
    let (mut invalid_parties, mut invalid_tags) = (Vec::new(), Vec::new());
    if !all {
        for p in &parties {
            if party_or_tag_ok(p) {
                targets.push(format!("party:{p}"))
            } else {
                invalid_parties.push(p.clone())
            }
        }
        for t in &tags {
            if party_or_tag_ok(t) {
                targets.push(format!("tag:{t}"))
            } else {
                invalid_tags.push(t.clone())
            }
        }
    }
    if targets.is_empty() {
        drop(st);
        bump_map(&app.counters.rejected, 81013);
        return json_reply(&json!({
            "errcode": 81013, "errmsg": wecom_errmsg(81013, errmsg(81013), ip),
            "invaliduser": invalid_users.join("|"), "invalidparty": invalid_parties.join("|"),
            "invalidtag": invalid_tags.join("|"),
        }));
    }
    if st.daily.sends + targets.len() as u64 > daily_limit {
        drop(st);
        return reject(&app, 45009, "api freq out of limit", ip);
    }
    st.daily.sends += targets.len() as u64;
    let msgid = new_msgid();
    if dup_check {
        st.wecom_dups
            .insert(body_hash, (now + interval * 1000, msgid.clone()));
    }
    let mut delivered = Vec::with_capacity(targets.len());
    for to in targets {
        if !to.contains(':') && to != "@all" {
            let w = st.members.entry(to.clone()).or_default();
            if !member_may_receive(w, now, per_min, per_hour) {
                bump(&app.counters.dropped_member_limit);
                continue;
            }
        }
        let dup = st.is_duplicate(fingerprint("wecom", &to, msgtype, &content));
        delivered.push((to, dup));
    }
    drop(st);
    bump(&app.counters.sends_accepted);
    for (to, duplicate) in delivered {
        deliver(
            &sim,
            &app,
            duplicate,
            Delivery {
                seq: 0,
                at_ms: now,
                app: app.key.clone(),
                api: "wecom".into(),
                to,
                template_id: None,
                msgtype: Some(msgtype.to_string()),
                msgid: msgid.clone(),
                client_msg_id: None,
                content: content.clone(),
                duplicate,
            },
        );
    }
    let mut reply = json!({
        "errcode": 0,
        "errmsg": if warning { "ok. Warning: wrong json format. " } else { "ok" },
        "msgid": msgid,
    });
    for (k, v) in [
        ("invaliduser", invalid_users),
        ("invalidparty", invalid_parties),
        ("invalidtag", invalid_tags),
        ("unlicenseduser", unlicensed),
    ] {
        if !v.is_empty() {
            reply[k] = Value::String(v.join("|"));
        }
    }
    let card = m
        .pointer("/template_card/card_type")
        .and_then(Value::as_str);
    if msgtype == "template_card" && card.is_some_and(|c| INTERACTIVE_CARDS.contains(&c)) {
        reply["response_code"] = Value::String(new_msgid());
    }
    json_reply(&reply)
}
