//! WeCom message bodies (`wechat-api.md` §5.2): the fields of each msgtype and their limits
//! in UTF-8 bytes. Where WeChat itself cuts an over-long field (text content, titles,
//! descriptions, btntxt) we cut it with "…" first, so what is stored is what is shown; where
//! WeChat refuses, so do we (unless the caller asked for `truncate`); URLs and page paths are
//! never cut.

use serde_json::{Map, Value};

use super::error::Errors;
use super::request::WecomMsgType;
use super::text;

/// What WeChat does with a value over its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Over {
    /// WeChat cuts it: we cut it first, with "…".
    Cut,
    /// WeChat refuses it: refused unless the caller asked for `truncate`.
    Refused,
    /// A URL or path: refused, never cut.
    Never,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Str,
    /// A string limited to this many UTF-8 bytes.
    Bytes(usize, Over),
    /// A string limited to this many characters.
    Chars(usize, Over),
    /// An http(s) URL of at most this many bytes.
    Url(usize),
    Bool,
    /// An array of objects, each checked against the fields, `min..=max` long.
    Items(&'static [Field], usize, usize),
}

#[derive(Clone, Copy, Debug)]
struct Field {
    name: &'static str,
    required: bool,
    kind: Kind,
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        required: true,
        kind,
    }
}
const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        required: false,
        kind,
    }
}

const TEXT: &[Field] = &[req("content", Kind::Bytes(2048, Over::Cut))];
const MARKDOWN: &[Field] = &[req("content", Kind::Bytes(2048, Over::Refused))];
const MEDIA: &[Field] = &[req("media_id", Kind::Str)];
const VIDEO: &[Field] = &[
    req("media_id", Kind::Str),
    opt("title", Kind::Bytes(128, Over::Cut)),
    opt("description", Kind::Bytes(512, Over::Cut)),
];
const TEXTCARD: &[Field] = &[
    req("title", Kind::Bytes(128, Over::Cut)),
    req("description", Kind::Bytes(512, Over::Cut)),
    req("url", Kind::Url(2048)),
    opt("btntxt", Kind::Chars(4, Over::Cut)),
];
const ARTICLE: &[Field] = &[
    req("title", Kind::Bytes(128, Over::Cut)),
    opt("description", Kind::Bytes(512, Over::Cut)),
    opt("url", Kind::Str),
    opt("picurl", Kind::Str),
    opt("appid", Kind::Str),
    opt("pagepath", Kind::Str),
];
const NEWS: &[Field] = &[req("articles", Kind::Items(ARTICLE, 1, 8))];
const MPNEWS_ARTICLE: &[Field] = &[
    req("title", Kind::Str),
    req("thumb_media_id", Kind::Str),
    opt("author", Kind::Bytes(64, Over::Refused)),
    opt("content_source_url", Kind::Str),
    req("content", Kind::Str),
    opt("digest", Kind::Str),
];
const MPNEWS: &[Field] = &[req("articles", Kind::Items(MPNEWS_ARTICLE, 1, 8))];
const CONTENT_ITEM: &[Field] = &[req("key", Kind::Str), req("value", Kind::Str)];
const MINIPROGRAM_NOTICE: &[Field] = &[
    req("appid", Kind::Str),
    opt("page", Kind::Bytes(1024, Over::Never)),
    req("title", Kind::Str),
    opt("description", Kind::Str),
    opt("emphasis_first_item", Kind::Bool),
    opt("content_item", Kind::Items(CONTENT_ITEM, 0, 10)),
];
const CARD_TYPES: &[&str] = &[
    "text_notice",
    "news_notice",
    "button_interaction",
    "vote_interaction",
    "multiple_interaction",
];

/// Checks the body of `msgtype` in place (cutting where allowed) and returns it.
pub fn check_body(
    msgtype: WecomMsgType,
    mut body: Value,
    truncate: bool,
    errs: &mut Errors,
) -> Value {
    let name = msgtype.as_str();
    let Some(obj) = body.as_object_mut() else {
        errs.at(name, "not_an_object", || {
            format!("{name} must be an object, like WeChat's \"{name}\":{{…}}")
        });
        return body;
    };
    let fields = match msgtype {
        WecomMsgType::Text => TEXT,
        WecomMsgType::Markdown => MARKDOWN,
        WecomMsgType::Image | WecomMsgType::Voice | WecomMsgType::File => MEDIA,
        WecomMsgType::Video => VIDEO,
        WecomMsgType::Textcard => TEXTCARD,
        WecomMsgType::News => NEWS,
        WecomMsgType::Mpnews => MPNEWS,
        WecomMsgType::MiniprogramNotice => MINIPROGRAM_NOTICE,
        WecomMsgType::TemplateCard => {
            check_card(obj, errs);
            return body;
        }
    };
    check_object(obj, fields, name, truncate, errs);
    body
}

/// `template_card`: only `card_type` is checked; the rest of WeChat's large schema passes.
fn check_card(obj: &Map<String, Value>, errs: &mut Errors) {
    match obj.get("card_type").and_then(Value::as_str) {
        None | Some("") => errs.at("template_card.card_type", "required", || {
            format!(
                "template_card needs a card_type: one of {}",
                CARD_TYPES.join(", ")
            )
        }),
        Some(t) if !CARD_TYPES.contains(&t) => {
            errs.at("template_card.card_type", "invalid_value", || {
                format!("card_type must be one of {}", CARD_TYPES.join(", "))
            })
        }
        Some(_) => {}
    }
}

fn check_object(
    obj: &mut Map<String, Value>,
    fields: &[Field],
    path: &str,
    truncate: bool,
    errs: &mut Errors,
) {
    for key in obj.keys() {
        if !fields.iter().any(|f| f.name == key) {
            errs.add(
                || format!("{path}.{key}"),
                "unknown_field",
                || {
                    let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                    format!("unknown field; expected one of {}", names.join(", "))
                },
            );
        }
    }
    for field in fields {
        let at = || format!("{path}.{}", field.name);
        match obj.get_mut(field.name) {
            None | Some(Value::Null) => {
                if field.required {
                    errs.add(at, "required", || format!("{path} needs {}", field.name));
                }
            }
            Some(value) => check_value(value, field, &at, truncate, errs),
        }
    }
}

fn check_value(
    value: &mut Value,
    field: &Field,
    at: &dyn Fn() -> String,
    truncate: bool,
    errs: &mut Errors,
) {
    match (field.kind, value) {
        (Kind::Bool, Value::Bool(_)) => {}
        (Kind::Bool, _) => errs.add(at, "not_a_bool", || "must be true or false".into()),
        (Kind::Items(item_fields, min, max), Value::Array(items)) => {
            if items.len() < min {
                errs.add(at, "too_few_items", || {
                    format!("needs at least {min}, has {}", items.len())
                });
            } else if items.len() > max {
                errs.add(at, "too_many_items", || {
                    format!("WeCom takes at most {max}, this has {}", items.len())
                });
            }
            for (i, item) in items.iter_mut().enumerate() {
                let item_path = format!("{}[{i}]", at());
                match item.as_object_mut() {
                    Some(obj) => check_object(obj, item_fields, &item_path, truncate, errs),
                    None => errs.at(&item_path, "not_an_object", || "must be an object".into()),
                }
            }
        }
        (Kind::Items(..), _) => errs.add(at, "not_an_array", || "must be an array".into()),
        (_, Value::String(s)) => check_string(s, field, at, truncate, errs),
        (_, _) => errs.add(at, "not_a_string", || "must be a string".into()),
    }
}

fn check_string(
    s: &mut String,
    field: &Field,
    at: &dyn Fn() -> String,
    truncate: bool,
    errs: &mut Errors,
) {
    if s.is_empty() {
        if field.required {
            errs.add(at, "required", || "must not be empty".into());
        }
        return;
    }
    let (unit, limit, actual, over) = match field.kind {
        Kind::Bytes(limit, over) => (BYTES, limit, s.len(), over),
        Kind::Chars(limit, over) => (CHARS, limit, text::char_len(s), over),
        Kind::Url(limit) => {
            let scheme = s.get(..8).unwrap_or(s).to_ascii_lowercase();
            if !scheme.starts_with("http://") && !scheme.starts_with("https://") {
                errs.add(at, "invalid_url", || {
                    "must start with http:// or https://".into()
                });
            }
            (BYTES, limit, s.len(), Over::Never)
        }
        Kind::Str | Kind::Bool | Kind::Items(..) => return,
    };
    if actual <= limit {
        return;
    }
    match over {
        Over::Cut => *s = cut(s, unit, limit),
        Over::Refused if truncate => *s = cut(s, unit, limit),
        Over::Refused | Over::Never => errs.add(at, "too_long", || {
            let hint = if over == Over::Refused {
                ", or send \"truncate\": true to cut it with \"…\""
            } else {
                ""
            };
            format!("at most {limit} {unit}, this has {actual}: shorten it{hint}")
        }),
    }
}

const BYTES: &str = "bytes of UTF-8";
const CHARS: &str = "characters";

fn cut(s: &str, unit: &str, limit: usize) -> String {
    if unit == BYTES {
        text::cut_bytes(s, limit)
    } else {
        text::cut_chars(s, limit)
    }
}
