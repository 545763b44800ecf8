//! Shapes of typed keyword values (`wechat-api.md` §4.2): numbers, amounts, times and dates,
//! licence plates. Hand-written scanners, no regex: they run once per value of a campaign.

use super::text::is_chinese;

/// `digits[.digits]`; returns how many digits it holds.
pub fn number_digits(s: &str) -> Option<usize> {
    let mut cur = Cursor::new(s);
    let int = cur.digit_run();
    if int == 0 {
        return None;
    }
    let frac = if cur.eat('.') { cur.digit_run() } else { 0 };
    if cur.at_end() && (frac > 0 || !s.ends_with('.')) {
        Some(int + frac)
    } else {
        None
    }
}

/// An optional currency sign, `digits[.digits]`, an optional trailing `元`: `¥99.00`,
/// `39.8元`. Returns how many digits it holds.
pub fn amount_digits(s: &str) -> Option<usize> {
    let mut cur = Cursor::new(s);
    if cur.peek().is_some_and(is_currency) {
        cur.bump();
    }
    let start = cur.pos;
    let digits = {
        let int = cur.digit_run();
        if int == 0 {
            return None;
        }
        let frac = if cur.eat('.') { cur.digit_run() } else { 0 };
        if s[start..cur.pos].ends_with('.') {
            return None;
        }
        int + frac
    };
    cur.eat('元');
    cur.at_end().then_some(digits)
}

/// Unicode currency signs (category Sc) that a person would type: `$ ¢ £ ¤ ¥`, the U+20A0
/// block (`€ ₩ ₹ ...`) and the full-width forms (`￥ ＄ ￡ ￠ ￦`).
fn is_currency(c: char) -> bool {
    matches!(c, '$' | '\u{A2}'..='\u{A5}' | '\u{20A0}'..='\u{20C0}' | '￥' | '＄' | '￡' | '￠' | '￦')
}

/// A licence plate: first and last character may be Chinese, the rest ASCII letters/digits
/// (`粤A8Z888挂`). The length limit is checked by the caller.
pub fn is_car_number(s: &str) -> bool {
    let n = s.chars().count();
    s.chars()
        .enumerate()
        .all(|(i, c)| c.is_ascii_alphanumeric() || ((i == 0 || i + 1 == n) && is_chinese(c)))
}

/// A `time` or `date` keyword value: one point or a range `A~B`. A point is a date, a 24-hour
/// clock time, or a date followed by a clock time. Dates: `2019年10月1日`, `10月1日`,
/// `2019-10-01`, `2019/10/01`, `2019.10.01`; clock: `15:01`, `15:01:30`. With `need_date`
/// (the `date` type) the first point must hold a date; the second may be a bare time
/// (`2019年10月1日 15:01~16:00`).
pub fn is_time(s: &str, need_date: bool) -> bool {
    let mut cur = Cursor::new(s);
    let Some(first_has_date) = point(&mut cur) else {
        return false;
    };
    if need_date && !first_has_date {
        return false;
    }
    cur.spaces();
    if cur.eat('~') {
        cur.spaces();
        if point(&mut cur).is_none() {
            return false;
        }
    }
    cur.at_end()
}

/// One point in time; `Some(true)` if it holds a date.
fn point(cur: &mut Cursor) -> Option<bool> {
    let start = cur.pos;
    if let Some(ended_with_ri) = date(cur) {
        let before_clock = cur.pos;
        let spaces = cur.spaces();
        if (spaces > 0 || ended_with_ri) && clock(cur) {
            return Some(true);
        }
        cur.pos = before_clock;
        return Some(true);
    }
    cur.pos = start;
    clock(cur).then_some(false)
}

/// A date; `Some(true)` if it ended with `日` (a clock time may then follow without a space).
fn date(cur: &mut Cursor) -> Option<bool> {
    let start = cur.pos;
    if let Some(year) = cur.number(4, 4) {
        if cur.eat('年') {
            let (m, d) = month_day_cjk(cur)?;
            return valid_day(Some(year), m, d).then_some(true);
        }
        let sep = cur.peek().filter(|c| matches!(c, '-' | '/' | '.'))?;
        cur.bump();
        let m = cur.number(1, 2)?;
        if !cur.eat(sep) {
            return None;
        }
        let d = cur.number(1, 2)?;
        return valid_day(Some(year), m, d).then_some(false);
    }
    cur.pos = start;
    let (m, d) = month_day_cjk(cur)?;
    valid_day(None, m, d).then_some(true)
}

/// `M月D日`.
fn month_day_cjk(cur: &mut Cursor) -> Option<(u32, u32)> {
    let m = cur.number(1, 2)?;
    if !cur.eat('月') {
        return None;
    }
    let d = cur.number(1, 2)?;
    cur.eat('日').then_some((m, d))
}

/// `H:MM` or `H:MM:SS`, 24-hour.
fn clock(cur: &mut Cursor) -> bool {
    let Some(h) = cur.number(1, 2) else {
        return false;
    };
    if h > 23 || !cur.eat(':') || cur.number(2, 2).is_none_or(|m| m > 59) {
        return false;
    }
    if cur.eat(':') {
        return cur.number(2, 2).is_some_and(|s| s <= 59);
    }
    true
}

fn valid_day(year: Option<u32>, month: u32, day: u32) -> bool {
    let leap = year.is_none_or(|y| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// A position in a string, moved forward by the scanners above.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor { s, pos: 0 }
    }
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }
    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.pos += c.len_utf8();
        }
    }
    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += c.len_utf8();
        }
        hit
    }
    fn at_end(&self) -> bool {
        self.pos == self.s.len()
    }
    /// Skips ASCII spaces; returns how many.
    fn spaces(&mut self) -> usize {
        let n = self.s[self.pos..]
            .bytes()
            .take_while(|&b| b == b' ')
            .count();
        self.pos += n;
        n
    }
    /// Skips ASCII digits; returns how many.
    fn digit_run(&mut self) -> usize {
        let n = self.s[self.pos..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        self.pos += n;
        n
    }
    /// `min..=max` ASCII digits (no more may follow) as a number.
    fn number(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.pos;
        let n = self.digit_run();
        if !(min..=max).contains(&n) {
            self.pos = start;
            return None;
        }
        self.s[start..self.pos].parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number_digits("3.14"), Some(3));
        assert_eq!(number_digits("007"), Some(3));
        for bad in ["", ".5", "5.", "1.2.3", "-1", "1,000", "12a", "１２"] {
            assert_eq!(number_digits(bad), None, "{bad}");
        }
    }

    #[test]
    fn amounts() {
        for (ok, digits) in [
            ("¥99.00", 4),
            ("39.8元", 3),
            ("￥5", 1),
            ("$1234567890", 10),
        ] {
            assert_eq!(amount_digits(ok), Some(digits), "{ok}");
        }
        for bad in ["", "¥", "¥¥5", "5.", "-¥5", "¥1,000", "5元元", "abc", "元5"] {
            assert_eq!(amount_digits(bad), None, "{bad}");
        }
    }

    #[test]
    fn times_and_dates() {
        for ok in [
            "15:01",
            "9:05",
            "23:59:59",
            "2019年10月1日 15:01",
            "2019年10月1日15:01",
            "2019-12-25 09:42",
            "2023/11/30",
            "10月1日",
            "2019年10月1日 15:01~16:00",
            "15:01 ~ 16:30",
            "2024-02-29",
        ] {
            assert!(is_time(ok, false), "time {ok}");
        }
        for bad in [
            "",
            "24:00",
            "15:60",
            "3:01 PM",
            "15:1",
            "15点",
            "2019-13-01",
            "2023-02-29",
            "2019-10/01",
            "2019-10-0115:01",
            "15:01~",
            "tomorrow",
            "2019年10月1日 25:00",
        ] {
            assert!(!is_time(bad, false), "time {bad}");
        }
        assert!(is_time("2019年10月1日", true));
        assert!(is_time("2019-12-25 09:42", true));
        assert!(is_time("2019年10月1日 15:01~16:00", true));
        assert!(!is_time("15:01", true));
        assert!(!is_time("15:01~2019年10月1日", true));
    }

    #[test]
    fn car_numbers() {
        assert!(is_car_number("粤A8Z888挂"));
        assert!(is_car_number("粤AD12345"));
        assert!(!is_car_number("粤A中888"));
        assert!(!is_car_number("粤A-8888"));
    }
}
