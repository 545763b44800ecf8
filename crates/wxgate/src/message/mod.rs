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
//! - Bodies are complete except `access_token` (query string). OA templates carry the message's
//!   id as `client_msg_id` (given to [`prepare`] and [`CampaignBuilder::push`]), the same on
//!   every retry of the stored body. WeCom bodies carry `enable_duplicate_check` (see
//!   [`WECOM_DUPLICATE_CHECK_INTERVAL_SECS`]). Together: a retry is never delivered twice.
//! - Campaigns are checked recipient by recipient as they arrive ([`CampaignBuilder`]), from
//!   JSON, CSV ([`CsvRecipients`]) or NDJSON ([`NdjsonRecipients`]); a recipient listed twice
//!   is dropped (and counted) by the store.

mod audience;
mod body;
mod content;
mod csv;
mod data;
mod error;
mod keywords;
mod ndjson;
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

pub use self::csv::{CsvRecipients, parse_csv};
pub use audience::{ALL, MAX_PARTIES, MAX_TAGS, MAX_USERS};
pub use body::WECOM_DUPLICATE_CHECK_INTERVAL_SECS;
pub use data::MAX_KEYWORDS;
pub use error::{FieldError, MAX_ERRORS, ValidationError};
pub use keywords::LEGACY_MAX_CHARS;
pub use ndjson::NdjsonRecipients;
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
    /// The full WeChat body as JSON text, except `access_token` (query string); an OA template's
    /// has `client_msg_id` when a message id was given. Text, not a `Value`: it is what
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

/// A checked campaign: one message per recipient, in request order.
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedCampaign {
    pub spec: CampaignSpec,
    pub messages: Vec<Prepared>,
}

/// Checks one message for `app` and builds its WeChat body; `message_id` is the id it is
/// stored under, which an OA template body carries as `client_msg_id` (`None`: left out).
pub fn prepare(
    app: &App,
    req: MessageRequest,
    message_id: Option<&str>,
) -> Result<Prepared, ValidationError> {
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
            let client_msg_id = body::client_msg_id(kind, message_id);
            let data = (&k.defaults, &none);
            let body = body::keyword_message(&to, &k.template_id, &k.extra, data, client_msg_id);
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

/// A campaign being checked as its recipients arrive, in bounded memory: the shared content
/// once (at [`CampaignBuilder::new`]), then each recipient with its `data` merged over the
/// defaults ([`CampaignBuilder::push`]). All or nothing: problems are collected (capped at
/// [`MAX_ERRORS`], the rest counted) and [`CampaignBuilder::finish`] refuses the campaign if
/// there was any. Recipients listed twice are not looked for here: the store drops them.
pub struct CampaignBuilder {
    kind: MessageType,
    shared: Shared,
    template: String,
    errs: Errors,
    /// Recipients pushed so far; the next one's index in `recipients[…]` paths.
    seen: usize,
}

impl CampaignBuilder {
    /// Checks the campaign's shared content for `app`. A type the app cannot send refuses the
    /// campaign at once; other problems are kept and reported by `finish`, with the
    /// recipients'.
    pub fn new(app: &App, content: request::Content) -> Result<Self, ValidationError> {
        let kind = content.kind;
        content::check_kind(app, kind)?;
        let mut errs = Errors::default();
        let shared = content::check(app, content, &mut errs);
        let template = shared.template().to_owned();
        Ok(CampaignBuilder {
            kind,
            shared,
            template,
            errs,
            seen: 0,
        })
    }

    pub fn spec(&self) -> CampaignSpec {
        CampaignSpec {
            kind: self.kind,
            template: self.template.clone(),
        }
    }

    /// Whether no problem was found so far (once one is, bodies are no longer built).
    pub fn is_ok(&self) -> bool {
        self.errs.is_empty()
    }

    /// Where the upload's own problems go (a ragged CSV row, a broken NDJSON line), for
    /// [`CsvRecipients::next`] and [`NdjsonRecipients::next`].
    pub(crate) fn errors(&mut self) -> &mut Errors {
        &mut self.errs
    }

    /// Checks the next recipient; its message, unless a problem was found (in it or before).
    /// `message_id` is as for [`prepare`].
    pub fn push(&mut self, mut r: Recipient, message_id: Option<&str>) -> Option<Prepared> {
        let i = self.seen;
        self.seen += 1;
        let kind = self.kind;
        let errs = &mut self.errs;
        let path = |what: &str| format!("recipients[{i}].{what}");
        let body = match &self.shared {
            Shared::Keywords(k) => {
                recipients::check_openid(&r.to, kind, errs, r.line, || path("to"));
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
                content::check_keywords(k.platform, &mut r.data, k.truncate, errs, line, || {
                    path("data")
                });
                let client_msg_id = body::client_msg_id(kind, message_id);
                errs.is_empty().then(|| {
                    let data = (&k.defaults, &r.data);
                    body::keyword_message(&r.to, &k.template_id, &k.extra, data, client_msg_id)
                })
            }
            Shared::Wecom(w) => {
                recipients::check_userid(&r.to, errs, r.line, || path("to"));
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
        Some(Prepared {
            kind,
            to: r.to,
            template: self.template.clone(),
            body: body?,
        })
    }

    /// How many recipients were pushed, or every problem found.
    pub fn finish(mut self) -> Result<usize, ValidationError> {
        if self.seen == 0 {
            self.errs.at("recipients", "required", || {
                "a campaign needs at least one recipient".into()
            });
        }
        self.errs.finish(self.seen)
    }
}

/// Checks a whole campaign held in memory (see [`CampaignBuilder`] for one that streams),
/// without message ids (no `client_msg_id`).
pub fn prepare_campaign(
    app: &App,
    req: CampaignRequest,
) -> Result<PreparedCampaign, ValidationError> {
    let mut builder = CampaignBuilder::new(app, req.content)?;
    let messages: Vec<Prepared> = req
        .recipients
        .into_iter()
        .filter_map(|r| builder.push(r, None))
        .collect();
    let spec = builder.spec();
    builder.finish()?;
    Ok(PreparedCampaign { spec, messages })
}
