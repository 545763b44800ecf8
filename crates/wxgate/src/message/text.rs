//! Counting and cutting text the way WeChat limits it: characters for OA/MP keywords, UTF-8
//! bytes for WeCom fields (`wechat-api.md` §0 "chars" vs "bytes"), and character classes.

/// What a cut value ends with. One character, three UTF-8 bytes.
pub const ELLIPSIS: &str = "…";

/// Number of characters (Unicode scalar values). ASCII-only strings cost one length check.
pub fn char_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

/// The first `max - 1` characters and "…", so the result is exactly `max` characters.
/// Call only when `char_len(s) > max`.
pub fn cut_chars(s: &str, max: usize) -> String {
    let keep = max.saturating_sub(1);
    let end = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
    let mut out = String::with_capacity(end + ELLIPSIS.len());
    out.push_str(&s[..end]);
    out.push_str(ELLIPSIS);
    out
}

/// The longest prefix that leaves room for "…" within `max` bytes, cut on a character
/// boundary, then "…". Call only when `s.len() > max`.
pub fn cut_bytes(s: &str, max: usize) -> String {
    let mut end = max.saturating_sub(ELLIPSIS.len()).min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + ELLIPSIS.len());
    out.push_str(&s[..end]);
    out.push_str(ELLIPSIS);
    out
}

/// A CJK ideograph ("Chinese character" in WeChat's rules): the unified blocks, extension A
/// and the supplementary-plane extensions, and the compatibility ideographs.
pub fn is_chinese(c: char) -> bool {
    matches!(c,
        '\u{4E00}'..='\u{9FFF}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{323AF}')
}

/// A "symbol" in WeChat's rules: printable, neither a letter nor a digit (of any script).
/// The space counts; control characters, tabs and newlines do not.
pub fn is_symbol(c: char) -> bool {
    !c.is_alphanumeric() && !c.is_control() && (c == ' ' || !c.is_whitespace())
}

/// The first control character (newline, tab, NUL, ...), which no keyword value may hold.
pub fn first_control(s: &str) -> Option<char> {
    s.chars().find(|c| c.is_control())
}

/// Whitespace or a control character: never part of an openid, userid or template id.
pub fn has_space_or_control(s: &str) -> bool {
    s.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chars_and_bytes_differ_for_chinese() {
        assert_eq!(char_len("配送中"), 3);
        assert_eq!("配送中".len(), 9);
        assert_eq!(char_len("abc"), 3);
    }

    #[test]
    fn cut_chars_fits_the_limit_including_the_ellipsis() {
        let s = "一二三四五六七八九十一二三四五六七八九十一";
        let cut = cut_chars(s, 20);
        assert_eq!(char_len(&cut), 20);
        assert_eq!(cut, "一二三四五六七八九十一二三四五六七八九…");
    }

    #[test]
    fn cut_bytes_never_splits_a_character() {
        // 700 Chinese characters = 2100 bytes; 2048 - 3 = 2045 = 681 chars (2043 bytes) + 2.
        let s = "中".repeat(700);
        let cut = cut_bytes(&s, 2048);
        assert!(cut.len() <= 2048, "{}", cut.len());
        assert_eq!(cut.len(), 681 * 3 + 3);
        assert!(cut.ends_with(ELLIPSIS));
        let ascii = "a".repeat(2049);
        assert_eq!(cut_bytes(&ascii, 2048).len(), 2048);
    }

    #[test]
    fn classes() {
        assert!(is_chinese('粤') && !is_chinese('A') && !is_chinese('，'));
        assert!(is_symbol('-') && is_symbol('，') && is_symbol(' ') && is_symbol('…'));
        assert!(!is_symbol('a') && !is_symbol('1') && !is_symbol('中') && !is_symbol('\n'));
        assert_eq!(first_control("a\tb"), Some('\t'));
    }
}
