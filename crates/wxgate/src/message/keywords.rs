//! Template keyword rules: MP subscribe keywords by type prefix (`wechat-api.md` §4.2) and OA
//! template keywords (§3.2: typed keywords of category templates follow §4.2; legacy keywords
//! are cut to 20 characters with "…", as WeChat itself does since 2023-05-04).
//!
//! Where the doc is silent, a value is accepted: WeChat stays the judge (47003), and refusing
//! what WeChat would take leaves a caller no way round it.

use std::borrow::Cow;

use super::text::{self, ELLIPSIS, char_len, is_chinese, is_symbol};
use super::values;

/// Which send API the keywords go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// OA `message/template/send`: typed (category) and legacy keywords.
    OfficialAccount,
    /// MP `message/subscribe/send`: typed keywords only.
    MiniProgram,
}

/// A keyword type: the letters before the number in `thing1`, `character_string21`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeywordType {
    Thing,
    Number,
    Letter,
    Symbol,
    CharacterString,
    Time,
    Date,
    Amount,
    PhoneNumber,
    CarNumber,
    Name,
    Phrase,
    /// One of the template's enumerated values, which only WeChat knows: not checked here.
    Enum,
    /// OA category templates; fixed by the template, rules not published: not checked.
    Const,
    /// OA category templates; rules not published (§3.2): only "not empty" is checked.
    ShortThing,
}

/// Legacy OA keywords are cut to this many characters (§3.2).
pub const LEGACY_MAX_CHARS: usize = 20;

impl KeywordType {
    pub fn from_prefix(prefix: &str) -> Option<Self> {
        use KeywordType::*;
        Some(match prefix {
            "thing" => Thing,
            "number" => Number,
            "letter" => Letter,
            "symbol" => Symbol,
            "character_string" => CharacterString,
            "time" => Time,
            "date" => Date,
            "amount" => Amount,
            "phone_number" => PhoneNumber,
            "car_number" => CarNumber,
            "name" => Name,
            "phrase" => Phrase,
            "enum" => Enum,
            "const" => Const,
            "short_thing" => ShortThing,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        use KeywordType::*;
        match self {
            Thing => "thing",
            Number => "number",
            Letter => "letter",
            Symbol => "symbol",
            CharacterString => "character_string",
            Time => "time",
            Date => "date",
            Amount => "amount",
            PhoneNumber => "phone_number",
            CarNumber => "car_number",
            Name => "name",
            Phrase => "phrase",
            Enum => "enum",
            Const => "const",
            ShortThing => "short_thing",
        }
    }

    /// The rule code and the allowed shape, for a value of the wrong shape.
    fn shape(self) -> (&'static str, &'static str) {
        use KeywordType::*;
        match self {
            Number => (
                "not_a_number",
                "digits with an optional decimal point, like 3.14",
            ),
            Letter => ("not_letters", "ASCII letters only"),
            Symbol => (
                "not_symbols",
                "symbols only (no letters, digits or Chinese)",
            ),
            CharacterString => (
                "not_ascii",
                "digits, ASCII letters and symbols, no Chinese, like SN-2024-001",
            ),
            Time => (
                "not_a_time",
                "a 24-hour time, optionally after a date, or a range joined with ~, like 15:01 \
                 or 2019年10月1日 15:01",
            ),
            Date => (
                "not_a_date",
                "a date, optionally with a 24-hour time, or a range joined with ~, like \
                 2019年10月1日 or 2019-10-01 15:01",
            ),
            Amount => (
                "not_an_amount",
                "one optional currency sign, digits with optional decimals, optionally ending \
                 with 元, like ¥99.00 or 39.8元",
            ),
            PhoneNumber => (
                "not_a_phone_number",
                "digits and symbols, like +86-0766-66888866",
            ),
            CarNumber => (
                "not_a_car_number",
                "letters and digits, the first and last may be Chinese, like 粤A8Z888挂",
            ),
            Phrase => ("not_chinese", "Chinese characters only, like 配送中"),
            Thing | Name | Enum | Const | ShortThing => ("invalid_value", "any text"),
        }
    }
}

/// What is wrong with one keyword; turned into a message only if it is reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    BadName {
        platform: Platform,
        has_suffix: bool,
    },
    Empty,
    Control {
        ty: KeywordType,
        c: char,
    },
    Shape {
        ty: KeywordType,
    },
    TooLong {
        ty: KeywordType,
        unit: &'static str,
        limit: usize,
        actual: usize,
        cuttable: bool,
    },
}

impl Violation {
    pub fn rule(&self) -> &'static str {
        match self {
            Violation::BadName { .. } => "invalid_keyword_name",
            Violation::Empty => "required",
            Violation::Control { .. } => "control_character",
            Violation::Shape { ty } => ty.shape().0,
            Violation::TooLong { .. } => "too_long",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Violation::BadName {
                has_suffix: true, ..
            } => "the key is the keyword name without .DATA: thing1, not thing1.DATA".into(),
            Violation::BadName {
                platform: Platform::MiniProgram,
                ..
            } => "subscribe keywords are a type and a number, like thing1 or character_string21, \
                 as shown in the template's details"
                .into(),
            Violation::BadName { .. } => {
                "template keywords are names like keyword1, thing2 or amount3, as in the \
                 template's {{name.DATA}} placeholders"
                    .into()
            }
            Violation::Empty => "the value is empty; WeChat rejects empty keywords (47003)".into(),
            Violation::Control { ty, c } => format!(
                "{} values may not hold control characters such as newlines or tabs; found \
                 U+{:04X}",
                ty.as_str(),
                u32::from(*c)
            ),
            Violation::Shape { ty } => format!(
                "a {} value must be {}; WeChat rejects other values (47003)",
                ty.as_str(),
                ty.shape().1
            ),
            Violation::TooLong {
                ty,
                unit,
                limit,
                actual,
                cuttable,
            } => {
                let fix = if *cuttable {
                    format!(
                        "shorten it, or send \"truncate\": true to cut it to {} {unit} and \"{ELLIPSIS}\"",
                        limit - 1
                    )
                } else {
                    "shorten it".to_owned()
                };
                format!(
                    "{} values are at most {limit} {unit}, this one has {actual}: {fix}",
                    ty.as_str()
                )
            }
        }
    }
}

/// How a keyword name is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    Typed(KeywordType),
    /// MP keyword whose type is not in the doc's table: WeChat's admin offers types the table
    /// lacks (§4.2 "which types are live"), so only "not empty" is checked.
    Unlisted,
    /// OA legacy keyword (`keyword1`, `first`-less names): cut to 20 characters.
    Legacy,
    /// OA `first` / `remark`: accepted but no longer shown (§3.2); passed through.
    Hidden,
}

/// Checks one keyword and returns the value to send, cut with "…" where allowed.
pub fn check<'v>(
    platform: Platform,
    name: &str,
    value: &'v str,
    truncate: bool,
) -> Result<Cow<'v, str>, Violation> {
    match rule_for(platform, name)? {
        Rule::Typed(ty) => check_typed(ty, value, truncate),
        Rule::Unlisted if value.is_empty() => Err(Violation::Empty),
        Rule::Unlisted | Rule::Hidden => Ok(Cow::Borrowed(value)),
        Rule::Legacy if char_len(value) > LEGACY_MAX_CHARS => {
            Ok(Cow::Owned(text::cut_chars(value, LEGACY_MAX_CHARS)))
        }
        Rule::Legacy => Ok(Cow::Borrowed(value)),
    }
}

fn rule_for(platform: Platform, name: &str) -> Result<Rule, Violation> {
    let bad = || Violation::BadName {
        platform,
        has_suffix: name.ends_with(".DATA"),
    };
    // `[a-z_]+[0-9]+`: the shape of every typed keyword.
    let split = name.bytes().position(|b| b.is_ascii_digit());
    let typed_shape = split.filter(|&i| {
        i > 0
            && name[..i]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
            && name[i..].bytes().all(|b| b.is_ascii_digit())
    });
    match (platform, typed_shape) {
        (_, Some(i)) => Ok(match KeywordType::from_prefix(&name[..i]) {
            Some(ty) => Rule::Typed(ty),
            None if platform == Platform::MiniProgram => Rule::Unlisted,
            None => Rule::Legacy,
        }),
        (Platform::MiniProgram, None) => Err(bad()),
        (Platform::OfficialAccount, None) if name == "first" || name == "remark" => {
            Ok(Rule::Hidden)
        }
        (Platform::OfficialAccount, None) if is_identifier(name) => Ok(Rule::Legacy),
        (Platform::OfficialAccount, None) => Err(bad()),
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`: what a legacy `{{name.DATA}}` placeholder can be called.
fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn check_typed(ty: KeywordType, value: &str, truncate: bool) -> Result<Cow<'_, str>, Violation> {
    use KeywordType::*;
    if ty == Const {
        return Ok(Cow::Borrowed(value));
    }
    if value.is_empty() {
        return Err(Violation::Empty);
    }
    if let Some(c) = text::first_control(value) {
        return Err(Violation::Control { ty, c });
    }
    let shape_ok = match ty {
        Number => values::number_digits(value).is_some(),
        Letter => value.bytes().all(|b| b.is_ascii_alphabetic()),
        Symbol => value.chars().all(is_symbol),
        CharacterString => value.bytes().all(|b| (0x20..=0x7e).contains(&b)),
        Time => values::is_time(value, false),
        Date => values::is_time(value, true),
        Amount => values::amount_digits(value).is_some(),
        PhoneNumber => value.chars().all(|c| c.is_ascii_digit() || is_symbol(c)),
        CarNumber => values::is_car_number(value),
        Phrase => value.chars().all(is_chinese),
        Thing | Name | Enum | Const | ShortThing => true,
    };
    if !shape_ok {
        return Err(Violation::Shape { ty });
    }
    // (unit, limit, actual, cuttable): only free text may be cut, since "…" would break the
    // shape of the others.
    let (unit, limit, actual, cuttable) = match ty {
        Thing => ("characters", 20, char_len(value), true),
        Name if value.chars().any(is_chinese) => ("characters", 10, char_len(value), true),
        Name => ("characters", 20, char_len(value), true),
        Number => (
            "digits",
            32,
            values::number_digits(value).unwrap_or(0),
            false,
        ),
        Amount => (
            "digits",
            10,
            values::amount_digits(value).unwrap_or(0),
            false,
        ),
        Letter | CharacterString => ("characters", 32, value.len(), false),
        Symbol => ("characters", 5, char_len(value), false),
        PhoneNumber => ("characters", 17, char_len(value), false),
        CarNumber => ("characters", 8, char_len(value), false),
        Phrase => ("Chinese characters", 5, char_len(value), false),
        Time | Date | Enum | Const | ShortThing => return Ok(Cow::Borrowed(value)),
    };
    if actual <= limit {
        Ok(Cow::Borrowed(value))
    } else if cuttable && truncate {
        Ok(Cow::Owned(text::cut_chars(value, limit)))
    } else {
        Err(Violation::TooLong {
            ty,
            unit,
            limit,
            actual,
            cuttable,
        })
    }
}
