//! Messages: API requests turned into checked, ready-to-send WeChat request bodies, before
//! anything is stored (design invariant 11). Pure code, no I/O.
//!
//! - [`prepare`] takes one `POST /v1/messages` body, [`prepare_campaign`] a `POST /v1/campaigns`
//!   body (recipients from JSON, or from [`parse_csv`]). Both check the message type against
//!   the app's kind, every field and keyword against WeChat's rules (`wechat-api.md` §3, §4,
//!   §5), and report every problem at once as a [`ValidationError`] naming JSON paths.
//! - Over-long values are cut with "…" only where WeChat itself cuts them (legacy OA keywords,
//!   WeCom text fields) or where the caller sent `"truncate": true` and the value is free text;
//!   a value of the wrong shape is refused either way.
//! - Bodies are complete except `access_token` (query string) and, for OA templates,
//!   `client_msg_id`, which the sender sets with [`with_client_msg_id`] once per message and
//!   reuses on every retry. WeCom bodies carry `enable_duplicate_check` (see
//!   [`WECOM_DUPLICATE_CHECK_INTERVAL_SECS`]). Together: a retry is never delivered twice.
//! - A campaign never holds one recipient twice: later duplicates are dropped and counted.

mod audience;
mod body;
mod content;
mod csv;
mod data;
mod error;
mod keywords;
mod recipients;
mod request;
mod text;
mod values;
mod wecom;

#[cfg(test)]
mod tests;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::apps::App;
use crate::config::AppKind;
use content::Shared;
use error::{Errors, with_line};

pub use self::csv::parse_csv;
pub use audience::{ALL, MAX_PARTIES, MAX_TAGS, MAX_USERS};
pub use body::{WECOM_DUPLICATE_CHECK_INTERVAL_SECS, with_client_msg_id};
pub use data::MAX_KEYWORDS;
pub use error::{FieldError, MAX_ERRORS, ValidationError};
pub use keywords::LEGACY_MAX_CHARS;
pub use request::{
    CampaignRequest, Content, Data, Ids, Lang, MessageRequest, MiniProgramLink, MiniProgramState,
    Recipient, WecomMsgType,
};

/// The three send APIs, named by the API's `"type"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    /// OA template message, `/cgi-bin/message/template/send`.
    Template,
    /// Mini Program subscribe message, `/cgi-bin/message/subscribe/send`.
    Subscribe,
    /// WeCom app message, `qyapi /cgi-bin/message/send`.
    Wecom,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Template => "template",
            MessageType::Subscribe => "subscribe",
            MessageType::Wecom => "wecom",
        }
    }

    /// The kind of app that sends this type.
    pub fn app_kind(self) -> AppKind {
        content::app_kind_for(self)
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message, checked and ready to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    pub kind: MessageType,
    /// The recipient: an openid, a WeCom userid (campaigns), or a WeCom audience summary like
    /// `u1|u2 party:2 tag:3` or `@all`.
    pub to: String,
    /// The template_id (OA/MP) or the msgtype (WeCom).
    pub template: String,
    /// The full WeChat body as JSON text, except `access_token` (query string) and, for OA
    /// templates, `client_msg_id` (see [`with_client_msg_id`]). Text, not a `Value`: it is what
    /// is stored and sent, and a million of them fit in a few hundred MB.
    pub body: String,
}

impl Prepared {
    /// The body as a JSON value (parsed; for inspection, not for the send path).
    pub fn body_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("bodies are built as valid JSON")
    }
}

/// What a campaign sends, shared by all its messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignSpec {
    pub kind: MessageType,
    /// The template_id (OA/MP) or the msgtype (WeCom).
    pub template: String,
}

/// A checked campaign: one message per distinct recipient, in request order.
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedCampaign {
    pub spec: CampaignSpec,
    pub messages: Vec<Prepared>,
    /// Recipients dropped because an earlier one had the same `to` (WeCom userids compare
    /// case-insensitively, as WeCom treats them).
    pub duplicates_skipped: usize,
}

/// Checks one message for `app` and builds its WeChat body.
pub fn prepare(app: &App, req: MessageRequest) -> Result<Prepared, ValidationError> {
    let kind = req.content.kind;
    content::check_kind(app, kind)?;
    let mut errs = Errors::default();
    match content::check(app, req.content, &mut errs) {
        Shared::Keywords(k) => {
            for (name, present) in [
                ("toparty", req.toparty.is_some()),
                ("totag", req.totag.is_some()),
            ] {
                if present {
                    errs.at(name, "not_allowed", || {
                        format!("{name} is for type wecom: remove it")
                    });
                }
            }
            let to = match req.to {
                None => {
                    recipients::check_openid("", kind, &mut errs, None, || "to".into());
                    String::new()
                }
                Some(Ids::Joined(to)) => {
                    recipients::check_openid(&to, kind, &mut errs, None, || "to".into());
                    to
                }
                Some(Ids::List(_)) => {
                    errs.at("to", "invalid_recipient", || {
                        format!(
                            "to is one openid for type {kind}; send to many with POST /v1/campaigns"
                        )
                    });
                    String::new()
                }
            };
            if k.defaults.is_empty() {
                errs.at("data", "required", || {
                    "give the template's keywords, like {\"thing1\":\"…\"}".into()
                });
            }
            errs.finish(())?;
            let none = Data::new();
            let body = body::keyword_message(&to, &k.template_id, &k.extra, &k.defaults, &none);
            Ok(Prepared {
                kind,
                to,
                template: k.template_id,
                body,
            })
        }
        Shared::Wecom(w) => {
            let audience = audience::check_audience(req.to, req.toparty, req.totag, &mut errs);
            errs.finish(())?;
            Ok(Prepared {
                kind,
                to: audience.summary(),
                template: w.opts.msgtype.as_str().into(),
                body: body::wecom_message(&audience.users, &audience.parties, &audience.tags, &w),
            })
        }
    }
}

/// Checks a campaign for `app`: the shared content once, then each distinct recipient with its
/// `data` merged over the defaults. All or nothing: any problem refuses the whole campaign.
pub fn prepare_campaign(
    app: &App,
    req: CampaignRequest,
) -> Result<PreparedCampaign, ValidationError> {
    let kind = req.content.kind;
    content::check_kind(app, kind)?;
    let mut errs = Errors::default();
    let shared = content::check(app, req.content, &mut errs);
    let recipients = req.recipients;
    if recipients.is_empty() {
        errs.at("recipients", "required", || {
            "a campaign needs at least one recipient".into()
        });
    }
    let (keep, duplicates_skipped) = recipients::first_occurrences(&recipients, kind);
    let mut messages = Vec::with_capacity(recipients.len() - duplicates_skipped);
    let template = shared.template().to_owned();
    for ((i, mut r), keep) in recipients.into_iter().enumerate().zip(keep) {
        if !keep {
            continue;
        }
        let path = |what: &str| format!("recipients[{i}].{what}");
        let body = match &shared {
            Shared::Keywords(k) => {
                recipients::check_openid(&r.to, kind, &mut errs, r.line, || path("to"));
                if k.defaults.is_empty() && r.data.is_empty() {
                    errs.add(
                        || path("data"),
                        "required",
                        || {
                            with_line(
                                "no keywords: give data here or as campaign defaults",
                                r.line,
                            )
                        },
                    );
                }
                let line = r.line;
                content::check_keywords(
                    k.platform,
                    &mut r.data,
                    k.truncate,
                    &mut errs,
                    line,
                    || path("data"),
                );
                errs.is_empty().then(|| {
                    body::keyword_message(&r.to, &k.template_id, &k.extra, &k.defaults, &r.data)
                })
            }
            Shared::Wecom(w) => {
                recipients::check_userid(&r.to, &mut errs, r.line, || path("to"));
                if !r.data.is_empty() {
                    errs.add(
                        || path("data"),
                        "not_allowed",
                        || with_line("WeCom messages have no keywords: remove data", r.line),
                    );
                }
                errs.is_empty().then(|| {
                    let user = std::slice::from_ref(&r.to);
                    body::wecom_message(user, &[], &[], w)
                })
            }
        };
        if let Some(body) = body {
            messages.push(Prepared {
                kind,
                to: r.to,
                template: template.clone(),
                body,
            });
        }
    }
    errs.finish(PreparedCampaign {
        spec: CampaignSpec { kind, template },
        messages,
        duplicates_skipped,
    })
}
