//! Query strings and paths as the proxy handles them: pairs kept byte for byte as the SDK sent
//! them, names compared after percent-decoding (so `secre%74` is `secret`, as WeChat reads
//! it), and paths refused when WeChat's URL handling would read them as another path.

/// The value of the first pair named `name` (undecoded: WeChat tokens and placeholders are
/// URL-safe).
pub(super) fn param(query: &str, name: &str) -> Option<String> {
    pairs(query)
        .find(|(k, _)| decoded(k) == name)
        .map(|(_, v)| v.to_string())
}

/// The query without any pair whose name is one of `names`; the others kept as sent, in order.
pub(super) fn without(query: &str, names: &[&str]) -> String {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let name = p.split('=').next().unwrap_or("");
            !names.contains(&decoded(name).as_str())
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `query` with `name=value` added (`value` percent-encoded).
pub(super) fn join(query: &str, name: &str, value: &str) -> String {
    let value = escape(value);
    match query.is_empty() {
        true => format!("{name}={value}"),
        false => format!("{query}&{name}={value}"),
    }
}

/// Whether WeChat would read `path` as written: no `.` or `..` segment, and no encoded dot,
/// slash or backslash that a URL parser might turn into one (`/cgi-bin/%2e%2e/sns/…` must not
/// reach `/sns/…` with a placeholder and a key in its query).
pub(super) fn plain_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if ["%2e", "%2f", "%5c", "\\"]
        .iter()
        .any(|bad| lower.contains(bad))
    {
        return false;
    }
    !path.split('/').any(|seg| seg == "." || seg == "..")
}

fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// A query-string name percent-decoded (and `+` as a space), as a server reads it.
fn decoded(name: &str) -> String {
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_replaced_in_place_and_kept_as_sent() {
        let q = "type=image&access_token=wxgp.a.b.c&x=%E4%B8%AD";
        assert_eq!(param(q, "access_token").as_deref(), Some("wxgp.a.b.c"));
        assert_eq!(param(q, "access"), None);
        let rest = without(q, &["access_token"]);
        assert_eq!(rest, "type=image&x=%E4%B8%AD");
        assert_eq!(
            join(&rest, "access_token", "T/+1"),
            "type=image&x=%E4%B8%AD&access_token=T%2F%2B1"
        );
        assert_eq!(join("", "access_token", "T"), "access_token=T");
        assert_eq!(
            without("access_token=1&access_token=2", &["access_token"]),
            ""
        );
    }

    #[test]
    fn names_are_compared_as_a_server_decodes_them() {
        let q = "appid=wx1&secre%74=KEY&%73ecret=KEY2&access%5Ftoken=P&a=1";
        assert_eq!(param(q, "secret").as_deref(), Some("KEY"));
        assert_eq!(param(q, "access_token").as_deref(), Some("P"));
        assert_eq!(without(q, &["secret", "access_token", "appid"]), "a=1");
        assert_eq!(without("%zz=1&%=2&%4=3", &["x"]), "%zz=1&%=2&%4=3");
    }

    #[test]
    fn dot_segments_and_encoded_separators_are_not_plain() {
        assert!(plain_path("/cgi-bin/message/template/send"));
        assert!(plain_path("/wxa/getwxacode"));
        for bad in [
            "/cgi-bin/../sns/jscode2session",
            "/cgi-bin/./token",
            "/cgi-bin/%2e%2e/sns/jscode2session",
            "/cgi-bin/%2E./tcb/x",
            "/cgi-bin/a%2fb",
            "/cgi-bin/a%5Cb",
            "/cgi-bin/a\\..\\b",
        ] {
            assert!(!plain_path(bad), "{bad}");
        }
    }
}
