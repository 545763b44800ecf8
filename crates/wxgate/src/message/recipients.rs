//! Who a message goes to: openids (OA/MP), WeCom userids in campaigns, and a campaign's
//! duplicate recipients.

use std::borrow::Cow;

use super::error::{Errors, with_line};
use super::request::Recipient;
use super::{ALL, MessageType, text};

/// Which recipients are the first with their `to`, and how many are not. Sorting (key, index)
/// pairs finds them several times faster than a hash set of a million keys, and the lowest
/// index of each key sorts first.
pub fn first_occurrences(recipients: &[Recipient], kind: MessageType) -> (Vec<bool>, usize) {
    let mut order: Vec<(Cow<str>, usize)> = recipients
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let key = match kind {
                MessageType::Wecom if r.to.bytes().any(|b| b.is_ascii_uppercase()) => {
                    Cow::Owned(r.to.to_ascii_lowercase())
                }
                _ => Cow::Borrowed(r.to.as_str()),
            };
            (key, i)
        })
        .collect();
    order.sort_unstable();
    let mut keep = vec![true; recipients.len()];
    let mut skipped = 0;
    for pair in order.windows(2) {
        if pair[0].0 == pair[1].0 {
            keep[pair[1].1] = false;
            skipped += 1;
        }
    }
    (keep, skipped)
}

pub fn check_openid(
    to: &str,
    kind: MessageType,
    errs: &mut Errors,
    line: Option<u64>,
    field: impl FnOnce() -> String,
) {
    if to.is_empty() {
        errs.add(field, "required", || {
            with_line(format!("give the recipient's openid for type {kind}"), line)
        });
    } else if to.contains('|') || text::has_space_or_control(to) {
        errs.add(field, "invalid_recipient", || {
            with_line(
                "an openid holds no |, whitespace or control characters; give one openid",
                line,
            )
        });
    }
}

pub fn check_userid(
    to: &str,
    errs: &mut Errors,
    line: Option<u64>,
    field: impl FnOnce() -> String,
) {
    if to.is_empty() {
        errs.add(field, "required", || {
            with_line("give the recipient's WeCom userid", line)
        });
    } else if to == ALL {
        errs.add(field, "invalid_recipient", || {
            with_line(
                "a campaign names users; send one message with to @all instead",
                line,
            )
        });
    } else if to.contains('|') || text::has_space_or_control(to) {
        errs.add(field, "invalid_recipient", || {
            with_line(
                "one userid per recipient, without |, whitespace or control characters",
                line,
            )
        });
    }
}
