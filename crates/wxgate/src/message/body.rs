//! The WeChat JSON bodies, built from values that were already checked: OA template send
//! (§3.1), MP subscribe send (§4.1), WeCom message/send (§5.1). The access token goes in the
//! query string and is never part of a body.
//!
//! Bodies are written straight to JSON text, one allocation each: a `serde_json::Value` would
//! cost a map node per keyword (~4 KB a message, 4 GB for a million-recipient campaign), and
//! the text is what is stored and sent anyway.

use std::fmt;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;

use super::MessageType;
use super::request::{Data, Lang, MiniProgramLink, MiniProgramState, WecomMsgType};

/// WeCom drops an identical body sent again within this many seconds (§5.1). Every WeCom body
/// turns the check on, so retrying a stored body after an ambiguous failure (timeout, reset,
/// 5xx) cannot deliver it twice while the retry is inside the window. The flip side: the same
/// body sent on purpose twice within 30 minutes is delivered once.
pub const WECOM_DUPLICATE_CHECK_INTERVAL_SECS: u32 = 1800;

/// Fields of an OA template / MP subscribe body besides `touser`, `template_id` and `data`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KeywordExtra {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub miniprogram: Option<MiniProgramLink>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub miniprogram_state: Option<MiniProgramState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<Lang>,
}

#[derive(Serialize)]
struct KeywordBody<'a> {
    touser: &'a str,
    template_id: &'a str,
    #[serde(flatten)]
    extra: &'a KeywordExtra,
    data: Merged<'a>,
    /// OA template sends only: the message's id. WeChat sends one message per
    /// `openid + client_msg_id` within 10 minutes (§3.1), so every retry of the stored body
    /// is deduplicated.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_msg_id: Option<&'a str>,
}

/// `defaults` without the names `overrides` has, then `overrides`, each as `{"value": …}`.
struct Merged<'a> {
    defaults: &'a Data,
    overrides: &'a Data,
}

impl Serialize for Merged<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (name, value) in self.defaults.iter() {
            if self.overrides.get(name).is_none() {
                map.serialize_entry(name, &Wrapped(value))?;
            }
        }
        for (name, value) in self.overrides.iter() {
            map.serialize_entry(name, &Wrapped(value))?;
        }
        map.end()
    }
}

/// `{"value": v}`, one keyword as WeChat takes it.
struct Wrapped<'a>(&'a str);

impl Serialize for Wrapped<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("value", self.0)?;
        map.end()
    }
}

impl KeywordExtra {
    /// About how many bytes these fields take as JSON.
    fn json_len(&self) -> usize {
        let len = |s: &Option<String>| s.as_ref().map_or(0, |s| s.len() + 12);
        let mp = self.miniprogram.as_ref().map_or(0, |m| {
            m.appid.len() + m.pagepath.as_ref().map_or(0, String::len) + 40
        });
        len(&self.url) + len(&self.page) + mp + 48
    }
}

/// About how many bytes `data` takes as `"name":{"value":"…"},` entries.
fn data_json_len(data: &Data) -> usize {
    data.iter().map(|(n, v)| n.len() + v.len() + 16).sum()
}

/// The `client_msg_id` a `kind` body carries for a message stored as `message_id`: only OA
/// template send knows the field (§3.1).
pub fn client_msg_id(kind: MessageType, message_id: Option<&str>) -> Option<&str> {
    message_id.filter(|_| kind == MessageType::Template)
}

/// An OA template or MP subscribe body: `defaults` merged with `overrides` (overrides win),
/// with `client_msg_id` when given.
pub fn keyword_message(
    to: &str,
    template_id: &str,
    extra: &KeywordExtra,
    (defaults, overrides): (&Data, &Data),
    client_msg_id: Option<&str>,
) -> String {
    let capacity = 48
        + client_msg_id.map_or(0, |id| id.len() + 20)
        + to.len()
        + template_id.len()
        + extra.json_len()
        + data_json_len(defaults)
        + data_json_len(overrides);
    to_json(
        capacity,
        &KeywordBody {
            touser: to,
            template_id,
            extra,
            data: Merged {
                defaults,
                overrides,
            },
            client_msg_id,
        },
    )
}

/// Options of a WeCom message besides recipients and body.
#[derive(Clone, Copy, Debug)]
pub struct WecomOptions {
    pub agentid: i64,
    pub msgtype: WecomMsgType,
    pub safe: Option<u8>,
    pub enable_id_trans: Option<u8>,
}

/// A checked WeCom message without its recipients.
#[derive(Clone, Debug)]
pub struct WecomContent {
    pub opts: WecomOptions,
    /// The body under the msgtype key.
    pub msg: Value,
    /// Length of `msg` as JSON, to size each body's buffer once.
    msg_len: usize,
}

impl WecomContent {
    pub fn new(opts: WecomOptions, msg: Value) -> Self {
        let msg_len = serde_json::to_string(&msg).map_or(0, |s| s.len());
        WecomContent { opts, msg, msg_len }
    }
}

struct WecomBody<'a> {
    users: &'a [String],
    parties: &'a [String],
    tags: &'a [String],
    opts: &'a WecomOptions,
    msg: &'a Value,
}

impl Serialize for WecomBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (key, ids) in [
            ("touser", self.users),
            ("toparty", self.parties),
            ("totag", self.tags),
        ] {
            if !ids.is_empty() {
                map.serialize_entry(key, &Joined(ids))?;
            }
        }
        let msgtype = self.opts.msgtype.as_str();
        map.serialize_entry("msgtype", msgtype)?;
        map.serialize_entry("agentid", &self.opts.agentid)?;
        map.serialize_entry(msgtype, self.msg)?;
        if let Some(safe) = self.opts.safe {
            map.serialize_entry("safe", &safe)?;
        }
        if let Some(trans) = self.opts.enable_id_trans {
            map.serialize_entry("enable_id_trans", &trans)?;
        }
        map.serialize_entry("enable_duplicate_check", &1)?;
        map.serialize_entry(
            "duplicate_check_interval",
            &WECOM_DUPLICATE_CHECK_INTERVAL_SECS,
        )?;
        map.end()
    }
}

/// Ids written as one `a|b|c` JSON string without building it first.
struct Joined<'a>(&'a [String]);

impl fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, id) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            f.write_str(id)?;
        }
        Ok(())
    }
}

impl Serialize for Joined<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A WeCom `message/send` body to checked recipients, with duplicate checking always on.
pub fn wecom_message(
    users: &[String],
    parties: &[String],
    tags: &[String],
    content: &WecomContent,
) -> String {
    let ids: usize = [users, parties, tags]
        .iter()
        .flat_map(|ids| ids.iter())
        .map(|id| id.len() + 1)
        .sum();
    to_json(
        160 + ids + content.msg_len,
        &WecomBody {
            users,
            parties,
            tags,
            opts: &content.opts,
            msg: &content.msg,
        },
    )
}

/// Writes `body` into a buffer of about its size, so building it costs one allocation.
fn to_json(capacity: usize, body: &impl Serialize) -> String {
    let mut buf = Vec::with_capacity(capacity);
    // Strings, integers and JSON values only: serializing cannot fail, and yields UTF-8.
    serde_json::to_writer(&mut buf, body).expect("a body of strings and JSON values serializes");
    String::from_utf8(buf).expect("serde_json writes UTF-8")
}
