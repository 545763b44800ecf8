//! What every recipient of a message or campaign shares, checked once: the message type against
//! the app's kind, the fields that belong to that type, the template id, default keywords, and
//! the WeCom body. Recipients are checked and bodies built from this.

use std::borrow::Cow;

use serde_json::Value;

use super::body::{KeywordExtra, WecomContent, WecomOptions};
use super::error::{Errors, ValidationError, with_line};
use super::keywords::{self, Platform};
use super::request::{Content, Data, WecomMsgType};
use super::wecom;
use super::{MessageType, text};
use crate::apps::App;
use crate::config::AppKind;

/// The checked, shared part of a message.
#[derive(Clone, Debug)]
pub enum Shared {
    Keywords(KeywordShared),
    Wecom(WecomContent),
}

/// OA template / MP subscribe.
#[derive(Clone, Debug)]
pub struct KeywordShared {
    pub platform: Platform,
    pub template_id: String,
    pub truncate: bool,
    /// Checked `data` (the defaults, for a campaign), values cut where allowed.
    pub defaults: Data,
    /// Fields of the type besides touser/template_id/data.
    pub extra: KeywordExtra,
}

impl Shared {
    /// `template_id` for OA/MP, the msgtype for WeCom.
    pub fn template(&self) -> &str {
        match self {
            Shared::Keywords(k) => &k.template_id,
            Shared::Wecom(w) => w.opts.msgtype.as_str(),
        }
    }
}

/// The app kind a message type is sent from.
pub fn app_kind_for(kind: MessageType) -> AppKind {
    match kind {
        MessageType::Template => AppKind::OfficialAccount,
        MessageType::Subscribe => AppKind::MiniProgram,
        MessageType::Wecom => AppKind::Wecom,
    }
}

fn kind_name(kind: AppKind) -> &'static str {
    match kind {
        AppKind::OfficialAccount => "official_account",
        AppKind::MiniProgram => "mini_program",
        AppKind::Wecom => "wecom",
    }
}

fn type_for(kind: AppKind) -> MessageType {
    match kind {
        AppKind::OfficialAccount => MessageType::Template,
        AppKind::MiniProgram => MessageType::Subscribe,
        AppKind::Wecom => MessageType::Wecom,
    }
}

/// Refuses a message type the app cannot send; nothing else is worth checking then.
pub fn check_kind(app: &App, kind: MessageType) -> Result<(), ValidationError> {
    let needed = app_kind_for(kind);
    if app.kind() == needed {
        return Ok(());
    }
    Err(ValidationError::one(
        "type",
        "wrong_app_kind",
        format!(
            "type {kind} needs an app of kind {}, and app {:?} is of kind {}: send type {} \
             from it, or use an app of kind {}",
            kind_name(needed),
            app.id,
            kind_name(app.kind()),
            type_for(app.kind()),
            kind_name(needed)
        ),
    ))
}

/// Checks everything but the recipients. Call after [`check_kind`].
pub fn check(app: &App, content: Content, errs: &mut Errors) -> Shared {
    reject_foreign_fields(&content, errs);
    match content.kind {
        MessageType::Template => {
            Shared::Keywords(keyword_shared(Platform::OfficialAccount, content, errs))
        }
        MessageType::Subscribe => {
            Shared::Keywords(keyword_shared(Platform::MiniProgram, content, errs))
        }
        MessageType::Wecom => Shared::Wecom(wecom_shared(app, content, errs)),
    }
}

/// Fields that belong to another message type are `not_allowed`, naming their type.
fn reject_foreign_fields(c: &Content, errs: &mut Errors) {
    use MessageType::*;
    let fields: [(&str, bool, &[MessageType]); 10] = [
        (
            "template_id",
            c.template_id.is_some(),
            &[Template, Subscribe],
        ),
        ("data", c.data.is_some(), &[Template, Subscribe]),
        ("url", c.url.is_some(), &[Template]),
        ("miniprogram", c.miniprogram.is_some(), &[Template]),
        ("page", c.page.is_some(), &[Subscribe]),
        (
            "miniprogram_state",
            c.miniprogram_state.is_some(),
            &[Subscribe],
        ),
        ("lang", c.lang.is_some(), &[Subscribe]),
        ("msgtype", c.msgtype.is_some(), &[Wecom]),
        ("safe", c.safe.is_some(), &[Wecom]),
        ("enable_id_trans", c.enable_id_trans.is_some(), &[Wecom]),
    ];
    for (name, present, owners) in fields {
        if present && !owners.contains(&c.kind) {
            errs.at(name, "not_allowed", || {
                let owners: Vec<&str> = owners.iter().map(|t| t.as_str()).collect();
                format!(
                    "{name} is for type {}, not {}: remove it",
                    owners.join(" and "),
                    c.kind
                )
            });
        }
    }
    if c.kind != Wecom {
        for (t, _) in &c.bodies {
            errs.at(t.as_str(), "not_allowed", || {
                format!(
                    "{t} is a WeCom message body (type wecom), not for type {}",
                    c.kind
                )
            });
        }
    }
}

fn keyword_shared(platform: Platform, c: Content, errs: &mut Errors) -> KeywordShared {
    let template_id = c.template_id.unwrap_or_default();
    if template_id.is_empty() {
        errs.at("template_id", "required", || {
            "give the template_id shown in the admin console (WeChat answers 40036 without it)"
                .into()
        });
    } else if text::has_space_or_control(&template_id) {
        errs.at("template_id", "invalid_template_id", || {
            "template_id holds whitespace or a control character; copy it again".into()
        });
    }
    let mut defaults = c.data.unwrap_or_default();
    check_keywords(platform, &mut defaults, c.truncate, errs, None, || {
        "data".to_owned()
    });
    let mut extra = KeywordExtra {
        url: c.url,
        ..KeywordExtra::default()
    };
    if let Some(mp) = c.miniprogram {
        if mp.appid.is_empty() {
            errs.at("miniprogram.appid", "required", || {
                "give the appid of a mini program bound to this official account".into()
            });
        }
        extra.miniprogram = Some(mp);
    }
    if platform == Platform::MiniProgram {
        extra.page = c.page;
        // Sent even when not given: the 2024 API page marks both as required (§4.1).
        extra.miniprogram_state = Some(c.miniprogram_state.unwrap_or_default());
        extra.lang = Some(c.lang.unwrap_or_default());
    }
    KeywordShared {
        platform,
        template_id,
        truncate: c.truncate,
        defaults,
        extra,
    }
}

/// Checks every keyword of `data`, cutting values in place where allowed; `prefix` is the
/// JSON path of `data`, `line` the CSV line it came from.
pub fn check_keywords(
    platform: Platform,
    data: &mut Data,
    truncate: bool,
    errs: &mut Errors,
    line: Option<u64>,
    prefix: impl Fn() -> String,
) {
    for (name, value) in data.entries_mut() {
        let cut = match keywords::check(platform, name, value, truncate) {
            Ok(Cow::Owned(cut)) => Some(cut),
            Ok(Cow::Borrowed(_)) => None,
            Err(v) => {
                errs.add(
                    || format!("{}.{name}", prefix()),
                    v.rule(),
                    || with_line(v.message(), line),
                );
                None
            }
        };
        if let Some(cut) = cut {
            *value = cut;
        }
    }
}

fn wecom_shared(app: &App, c: Content, errs: &mut Errors) -> WecomContent {
    // Every WeCom `App` has one (it is checked when the app is made), and `check_kind` let
    // only WeCom apps get here.
    let agentid = app.agentid().unwrap_or_default();
    if let Some(safe) = c.safe {
        if safe > 2 {
            errs.at("safe", "invalid_value", || {
                "safe is 0 (shareable), 1 (no sharing, watermark) or 2 (corp only, mpnews)".into()
            });
        } else if safe == 2 && c.msgtype != Some(WecomMsgType::Mpnews) {
            errs.at("safe", "invalid_value", || {
                "safe 2 is for msgtype mpnews only".into()
            });
        }
    }
    if c.enable_id_trans.is_some_and(|v| v > 1) {
        errs.at("enable_id_trans", "invalid_value", || {
            "enable_id_trans is 0 or 1".into()
        });
    }
    let Some(msgtype) = c.msgtype else {
        let hint = match c.bodies.first() {
            Some((t, _)) => format!("; the body under {t} suggests \"msgtype\":\"{t}\""),
            None => String::new(),
        };
        errs.at("msgtype", "required", || {
            format!(
                "give msgtype (text, markdown, textcard, news, template_card, ...) and the body \
                 under the key it names, like \"msgtype\":\"text\",\"text\":{{\"content\":\"…\"}}{hint}"
            )
        });
        let opts = WecomOptions {
            agentid,
            msgtype: WecomMsgType::Text,
            safe: c.safe,
            enable_id_trans: c.enable_id_trans,
        };
        return WecomContent::new(opts, Value::Null);
    };
    let mut msg = None;
    for (t, body) in c.bodies {
        if t == msgtype {
            msg = Some(wecom::check_body(t, body, c.truncate, errs));
        } else {
            errs.at(t.as_str(), "not_allowed", || {
                format!("msgtype is {msgtype}, so {t} would not be sent: remove it")
            });
        }
    }
    if msg.is_none() {
        errs.at(msgtype.as_str(), "required", || {
            format!("msgtype {msgtype} needs its body under \"{msgtype}\"")
        });
    }
    let opts = WecomOptions {
        agentid,
        msgtype,
        safe: c.safe,
        enable_id_trans: c.enable_id_trans,
    };
    WecomContent::new(opts, msg.unwrap_or_default())
}
