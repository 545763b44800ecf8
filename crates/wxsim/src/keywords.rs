//! WeChat's keyword value rules for MP subscribe messages and OA category templates
//! (`wechat-api.md` §4.2). A keyword's type is its name without the trailing digits:
//! `thing1` is a `thing`, `character_string21` a `character_string`. Breaking a rule is an
//! error (47003), never a truncation.

/// Why a value was refused; WeChat words it as `data.<key>.value invalid` / `… is empty`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeywordError {
    Empty,
    Invalid,
}

/// The type of a keyword name: `thing12` → `thing`.
pub fn keyword_type(name: &str) -> &str {
    name.trim_end_matches(|c: char| c.is_ascii_digit())
}

fn is_chinese(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}')
}

/// Punctuation and symbols, ASCII or full-width; no letters, digits, spaces or control chars.
fn is_symbol(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c, '\u{3000}'..='\u{303F}' | '\u{FF01}'..='\u{FF0F}' | '\u{FF1A}'..='\u{FF20}'
            | '\u{FF3B}'..='\u{FF40}' | '\u{FF5B}'..='\u{FF65}' | '\u{2010}'..='\u{2027}'
            | '\u{00A2}'..='\u{00A5}' | '\u{00B7}' | '\u{20A0}'..='\u{20CF}')
}

fn count(v: &str) -> usize {
    v.chars().count()
}

/// Check one value against the rules of its keyword's type. Unknown types (`enum`, `const`,
/// `short_thing`, …) are accepted: WeChat's rules for them are not published.
pub fn check(name: &str, value: &str) -> Result<(), KeywordError> {
    if value.is_empty() {
        return Err(KeywordError::Empty);
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(KeywordError::Invalid);
    }
    let ok = match keyword_type(name) {
        "thing" => count(value) <= 20,
        "number" => number(value),
        "letter" => count(value) <= 32 && value.chars().all(|c| c.is_ascii_alphabetic()),
        "symbol" => count(value) <= 5 && value.chars().all(is_symbol),
        "character_string" => {
            count(value) <= 32 && value.chars().all(|c| c.is_ascii_graphic() || c == ' ')
        }
        "time" => ranged(value, time_value),
        "date" => ranged(value, date_value),
        "amount" => amount(value),
        "phone_number" => {
            count(value) <= 17
                && value
                    .chars()
                    .all(|c| c.is_ascii_digit() || is_symbol(c) || c == ' ')
        }
        "car_number" => car_number(value),
        "name" => name_value(value),
        "phrase" => count(value) <= 5 && value.chars().all(is_chinese),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(KeywordError::Invalid)
    }
}

fn number(v: &str) -> bool {
    let digits = v.chars().filter(|c| c.is_ascii_digit()).count();
    let dots = v.chars().filter(|&c| c == '.').count();
    let body = v.strip_prefix('-').unwrap_or(v);
    (1..=32).contains(&digits)
        && dots <= 1
        && !body.starts_with('.')
        && !body.ends_with('.')
        && body.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// `¥99.00`, `99.00元`, `$5`: one optional currency symbol, ≤ 10 integer digits, optional
/// decimals, an optional trailing 元.
fn amount(v: &str) -> bool {
    let v = v.strip_suffix('元').unwrap_or(v);
    let mut chars = v.chars();
    let rest = match chars.next() {
        Some('¥' | '￥' | '$' | '€' | '£' | '＄') => chars.as_str(),
        Some(_) => v,
        None => return false,
    };
    let (int, frac) = match rest.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (rest, None),
    };
    let int_ok = !int.is_empty() && int.len() <= 10 && int.bytes().all(|b| b.is_ascii_digit());
    let frac_ok =
        frac.is_none_or(|f| !f.is_empty() && f.len() <= 2 && f.bytes().all(|b| b.is_ascii_digit()));
    int_ok && frac_ok
}

fn car_number(v: &str) -> bool {
    let chars: Vec<char> = v.chars().collect();
    let n = chars.len();
    (2..=8).contains(&n)
        && chars
            .iter()
            .enumerate()
            .all(|(i, &c)| c.is_ascii_alphanumeric() || ((i == 0 || i == n - 1) && is_chinese(c)))
}

/// ≤ 10 Chinese characters, or ≤ 20 letters/symbols; mixed text counts as Chinese.
fn name_value(v: &str) -> bool {
    let latin = |c: char| c.is_ascii_alphabetic() || c == ' ' || c == '.' || c == '-' || c == '·';
    if v.chars().any(is_chinese) {
        count(v) <= 10 && v.chars().all(|c| is_chinese(c) || latin(c))
    } else {
        count(v) <= 20 && v.chars().all(latin)
    }
}

/// A value, or two joined with `~` (a range).
fn ranged(v: &str, one: fn(&str) -> bool) -> bool {
    match v.split_once('~') {
        Some((a, b)) => one(a.trim()) && one(b.trim()),
        None => one(v.trim()),
    }
}

/// `15:01`, `15:01:30`, optionally after a date: `2019年10月1日 15:01`, `2019-10-01 15:01`.
fn time_value(v: &str) -> bool {
    match v.rsplit_once(' ') {
        Some((d, t)) => date_only(d.trim()) && clock(t),
        None => clock(v),
    }
}

/// `2019年10月1日`, `2019-10-01`, `2019/10/01`, `2019.10.01`, optionally with a time.
fn date_value(v: &str) -> bool {
    match v.rsplit_once(' ') {
        Some((d, t)) => date_only(d.trim()) && clock(t),
        None => date_only(v),
    }
}

fn clock(t: &str) -> bool {
    let parts: Vec<&str> = t.split(':').collect();
    let num = |s: &str, max: u32| {
        (1..=2).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_digit())
            && s.parse::<u32>().is_ok_and(|n| n <= max)
    };
    match parts.as_slice() {
        [h, m] => num(h, 23) && num(m, 59),
        [h, m, s] => num(h, 23) && num(m, 59) && num(s, 59),
        _ => false,
    }
}

fn date_only(d: &str) -> bool {
    let (y, m, day) = if let Some(rest) = d.strip_suffix('日') {
        let Some((y, rest)) = rest.split_once('年') else {
            return false;
        };
        let Some((m, day)) = rest.split_once('月') else {
            return false;
        };
        (y, m, day)
    } else {
        let sep = ['-', '/', '.'].into_iter().find(|s| d.contains(*s));
        let Some(sep) = sep else { return false };
        let parts: Vec<&str> = d.split(sep).collect();
        let [y, m, day] = parts.as_slice() else {
            return false;
        };
        (*y, *m, *day)
    };
    let n = |s: &str| s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty();
    n(y) && y.len() == 4
        && n(m)
        && m.len() <= 2
        && m.parse::<u32>().is_ok_and(|v| (1..=12).contains(&v))
        && n(day)
        && day.len() <= 2
        && day.parse::<u32>().is_ok_and(|v| (1..=31).contains(&v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use KeywordError::*;

    fn ok(k: &str, v: &str) {
        assert_eq!(check(k, v), Ok(()), "{k} = {v:?} should pass");
    }
    fn bad(k: &str, v: &str) {
        assert_eq!(check(k, v), Err(Invalid), "{k} = {v:?} should fail");
    }

    #[test]
    fn types_come_from_the_name() {
        assert_eq!(keyword_type("thing12"), "thing");
        assert_eq!(keyword_type("character_string21"), "character_string");
        assert_eq!(keyword_type("phone_number3"), "phone_number");
    }

    #[test]
    fn empty_is_its_own_error() {
        assert_eq!(check("thing1", ""), Err(Empty));
    }

    #[test]
    fn thing_is_at_most_20_characters() {
        ok("thing1", "您的订单已发货，请注意查收");
        ok("thing1", &"字".repeat(20));
        bad("thing1", &"字".repeat(21));
        bad("thing1", "line\nbreak");
    }

    #[test]
    fn number_letter_symbol() {
        ok("number1", "12345.67");
        bad("number1", "12a");
        bad("number1", &"1".repeat(33));
        bad("number1", "1.2.3");
        ok("letter2", "abcXYZ");
        bad("letter2", "abc1");
        ok("symbol3", "%#@!");
        bad("symbol3", "!!!!!!");
        bad("symbol3", "a");
    }

    #[test]
    fn character_string_has_no_chinese() {
        ok("character_string4", "SO-2026-000123");
        bad("character_string4", "订单123");
        bad("character_string4", &"x".repeat(33));
    }

    #[test]
    fn time_and_date_formats() {
        ok("time1", "15:01");
        ok("time1", "2019年10月1日 15:01");
        ok("time1", "2019-10-01 15:01:30");
        ok("time1", "15:01~16:00");
        bad("time1", "25:01");
        bad("time1", "tomorrow");
        ok("date2", "2019年10月1日");
        ok("date2", "2019-12-25 09:42");
        ok("date2", "2019/10/01~2019/10/07");
        bad("date2", "2019-13-01");
        bad("date2", "10月1日");
    }

    #[test]
    fn amount_phone_car_name_phrase() {
        ok("amount1", "¥99.00");
        ok("amount1", "39.8元");
        bad("amount1", "¥12345678901");
        bad("amount1", "ninety");
        ok("phone_number2", "+86-0766-66888866");
        bad("phone_number2", "+86-0766-668888661");
        bad("phone_number2", "call me");
        ok("car_number3", "粤A8Z888挂");
        bad("car_number3", "粤A8Z8889挂");
        bad("car_number3", "A粤8");
        ok("name4", "张三");
        ok("name4", "John Smith");
        bad("name4", &"张".repeat(11));
        bad("name4", "R2D2");
        ok("phrase5", "配送中");
        bad("phrase5", "配送中了吗啊");
        bad("phrase5", "ok");
    }

    #[test]
    fn unknown_types_pass() {
        ok("enum1", "anything");
        ok("short_thing2", "x");
    }
}
