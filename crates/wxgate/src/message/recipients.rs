//! Who a message goes to: openids (OA/MP) and WeCom userids in campaigns.

use super::error::{Errors, with_line};
use super::{ALL, MessageType, text};

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
