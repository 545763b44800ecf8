//! The API's input: `POST /v1/messages` and `POST /v1/campaigns` bodies as serde types.
//!
//! Unknown keys are errors so typos fail loudly. Both bodies carry `app` and an optional
//! `send_at` (RFC 3339, parsed by the API layer) so the handler deserializes the body once;
//! `prepare` ignores them. The WeCom body sits under the key its `msgtype` names, exactly as
//! WeChat has it (`"msgtype":"text","text":{"content":"…"}`). Campaign bodies are read as a
//! stream: `recipients` is never buffered, only the handful of other keys are.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::MessageType;
pub use super::data::Data;

/// One message (`POST /v1/messages`).
#[derive(Clone, Debug)]
pub struct MessageRequest {
    pub app: String,
    pub send_at: Option<String>,
    /// OA/MP: one openid. WeCom: userids joined with `|`, an array, or `"@all"`.
    pub to: Option<Ids>,
    /// WeCom only: department ids.
    pub toparty: Option<Ids>,
    /// WeCom only: tag ids.
    pub totag: Option<Ids>,
    pub content: Content,
}

/// One template (or WeCom body) for many recipients (`POST /v1/campaigns`).
#[derive(Clone, Debug)]
pub struct CampaignRequest {
    pub app: String,
    pub send_at: Option<String>,
    /// `data` here holds the defaults each recipient's `data` overrides.
    pub content: Content,
    pub recipients: Vec<Recipient>,
}

/// One campaign recipient: an openid (OA/MP) or a userid (WeCom) and keyword overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    pub to: String,
    #[serde(default)]
    pub data: Data,
    /// CSV line the recipient came from, named in error messages.
    #[serde(skip)]
    pub line: Option<u64>,
}

/// What to send, shared by a message and a campaign. Fields of another message type are
/// reported by `prepare` as `not_allowed`, with the type they belong to. Read it as part of a
/// `MessageRequest` or `CampaignRequest`: only they collect the msgtype-named WeCom bodies.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Content {
    #[serde(rename = "type")]
    pub kind: MessageType,
    /// template, subscribe.
    pub template_id: Option<String>,
    /// template, subscribe: keyword → value.
    pub data: Option<Data>,
    /// template: jump link.
    pub url: Option<String>,
    /// template: mini-program jump (wins over `url`).
    pub miniprogram: Option<MiniProgramLink>,
    /// subscribe: page of the mini program to open.
    pub page: Option<String>,
    /// subscribe: which version opens; WeChat's default is `formal`.
    pub miniprogram_state: Option<MiniProgramState>,
    /// subscribe: WeChat's default is `zh_CN`.
    pub lang: Option<Lang>,
    /// wecom: which body to send.
    pub msgtype: Option<WecomMsgType>,
    /// wecom: 0 shareable, 1 no sharing + watermark, 2 share within the corp (mpnews only).
    pub safe: Option<u8>,
    /// wecom: 0/1, turn `$userName=…$` ids into names.
    pub enable_id_trans: Option<u8>,
    /// Cut over-long free-text values with "…" instead of refusing them.
    #[serde(default)]
    pub truncate: bool,
    /// wecom: bodies found under msgtype-named keys, in input order.
    #[serde(skip)]
    pub bodies: Vec<(WecomMsgType, Value)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiniProgramLink {
    pub appid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pagepath: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MiniProgramState {
    Developer,
    Trial,
    #[default]
    Formal,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lang {
    #[default]
    #[serde(rename = "zh_CN")]
    ZhCn,
    #[serde(rename = "en_US")]
    EnUs,
    #[serde(rename = "zh_HK")]
    ZhHk,
    #[serde(rename = "zh_TW")]
    ZhTw,
}

impl MiniProgramState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Developer => "developer",
            Self::Trial => "trial",
            Self::Formal => "formal",
        }
    }
}

impl Lang {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ZhCn => "zh_CN",
            Self::EnUs => "en_US",
            Self::ZhHk => "zh_HK",
            Self::ZhTw => "zh_TW",
        }
    }
}

/// WeCom `msgtype`s of app messages (`wechat-api.md` §5.1; `template_msg` is for third-party
/// apps only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WecomMsgType {
    Text,
    Image,
    Voice,
    Video,
    File,
    Textcard,
    News,
    Mpnews,
    Markdown,
    MiniprogramNotice,
    TemplateCard,
}

impl WecomMsgType {
    pub const ALL: [WecomMsgType; 11] = [
        Self::Text,
        Self::Image,
        Self::Voice,
        Self::Video,
        Self::File,
        Self::Textcard,
        Self::News,
        Self::Mpnews,
        Self::Markdown,
        Self::MiniprogramNotice,
        Self::TemplateCard,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Voice => "voice",
            Self::Video => "video",
            Self::File => "file",
            Self::Textcard => "textcard",
            Self::News => "news",
            Self::Mpnews => "mpnews",
            Self::Markdown => "markdown",
            Self::MiniprogramNotice => "miniprogram_notice",
            Self::TemplateCard => "template_card",
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == key)
    }
}

impl fmt::Display for WecomMsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Ids as WeCom takes them (`"u1|u2"`) or as an array (`["u1","u2"]`, numbers allowed for
/// party and tag ids).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ids {
    Joined(String),
    List(Vec<String>),
}

impl Ids {
    /// No id at all: `""` or `[]`.
    pub fn is_empty(&self) -> bool {
        match self {
            Ids::Joined(s) => s.is_empty(),
            Ids::List(v) => v.is_empty(),
        }
    }
}

impl<'de> Deserialize<'de> for Ids {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdsVisitor;
        impl<'de> Visitor<'de> for IdsVisitor {
            type Value = Ids;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string of ids joined with | or an array of ids")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ids, E> {
                Ok(Ids::Joined(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Ids, E> {
                Ok(Ids::Joined(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ids, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(id) = seq.next_element::<Id>()? {
                    out.push(id.0);
                }
                Ok(Ids::List(out))
            }
        }
        d.deserialize_any(IdsVisitor)
    }
}

/// One id in an array: a string or a non-negative integer.
struct Id(String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an id (string or integer)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

impl<'de> Deserialize<'de> for MessageRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MessageRequest;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a message object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MessageRequest, A::Error> {
                let (mut app, mut send_at, mut to, mut toparty, mut totag) =
                    (None, None, None, None, None);
                let content = read_object(map, |key, map| match key {
                    "app" => once(&mut app, "app", map),
                    "send_at" => once(&mut send_at, "send_at", map),
                    "to" => once(&mut to, "to", map),
                    "toparty" => once(&mut toparty, "toparty", map),
                    "totag" => once(&mut totag, "totag", map),
                    _ => Ok(false),
                })?;
                Ok(MessageRequest {
                    app: app.ok_or_else(|| de::Error::missing_field("app"))?,
                    send_at: send_at.flatten(),
                    to,
                    toparty,
                    totag,
                    content,
                })
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for CampaignRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CampaignRequest;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a campaign object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CampaignRequest, A::Error> {
                let (mut app, mut send_at, mut recipients) = (None, None, None);
                let content = read_object(map, |key, map| match key {
                    "app" => once(&mut app, "app", map),
                    "send_at" => once(&mut send_at, "send_at", map),
                    "recipients" => once(&mut recipients, "recipients", map),
                    "to" | "toparty" | "totag" => Err(de::Error::custom(format!(
                        "`{key}` is per recipient in a campaign: put it in `recipients`"
                    ))),
                    _ => Ok(false),
                })?;
                Ok(CampaignRequest {
                    app: app.ok_or_else(|| de::Error::missing_field("app"))?,
                    send_at: send_at.flatten(),
                    content,
                    recipients: recipients.ok_or_else(|| de::Error::missing_field("recipients"))?,
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// Reads the value of `key` into `slot`, refusing a second occurrence.
fn once<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    slot: &mut Option<T>,
    key: &'static str,
    map: &mut A,
) -> Result<bool, A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(key));
    }
    *slot = Some(map.next_value()?);
    Ok(true)
}

/// Reads a request object: `own` takes the keys of the outer type, `data` and msgtype-named
/// keys are read directly (keeping keyword order and catching repeated keywords), and the rest
/// (a handful of small values) is deserialized as `Content`.
fn read_object<'de, A: MapAccess<'de>>(
    mut map: A,
    mut own: impl FnMut(&str, &mut A) -> Result<bool, A::Error>,
) -> Result<Content, A::Error> {
    let mut rest = Map::new();
    let mut data: Option<Option<Data>> = None;
    let mut bodies: Vec<(WecomMsgType, Value)> = Vec::new();
    while let Some(key) = map.next_key::<String>()? {
        if own(&key, &mut map)? {
            continue;
        }
        if key == "data" {
            once(&mut data, "data", &mut map)?;
        } else if let Some(t) = WecomMsgType::from_key(&key) {
            if bodies.iter().any(|(seen, _)| *seen == t) {
                return Err(de::Error::duplicate_field(t.as_str()));
            }
            bodies.push((t, map.next_value()?));
        } else if rest.contains_key(&key) {
            return Err(de::Error::custom(format!("duplicate field `{key}`")));
        } else {
            let value = map.next_value()?;
            rest.insert(key, value);
        }
    }
    let mut content = Content::deserialize(Value::Object(rest)).map_err(de::Error::custom)?;
    content.data = data.flatten();
    content.bodies = bodies;
    Ok(content)
}
