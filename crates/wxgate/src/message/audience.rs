//! WeCom recipients (`wechat-api.md` §5.1): `touser` (≤ 1000 userids, or `@all`), `toparty`
//! (≤ 100 department ids) and `totag` (≤ 100 tag ids), as `a|b|c` strings or arrays.

use std::collections::HashSet;

use super::error::Errors;
use super::request::Ids;
use super::text;

/// Userids per message (`touser`); more gives 40032.
pub const MAX_USERS: usize = 1000;
/// Department ids per message (`toparty`); more gives 82002.
pub const MAX_PARTIES: usize = 100;
/// Tag ids per message (`totag`); more gives 82003.
pub const MAX_TAGS: usize = 100;
/// `touser` value meaning everyone in the app's visible range.
pub const ALL: &str = "@all";

/// Who receives a WeCom message, checked and without duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Audience {
    pub users: Vec<String>,
    pub parties: Vec<String>,
    pub tags: Vec<String>,
}

impl Audience {
    /// One line naming the recipients: `u1|u2`, `@all`, `u1 party:2|3 tag:4`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::with_capacity(3);
        if !self.users.is_empty() {
            parts.push(self.users.join("|"));
        }
        if !self.parties.is_empty() {
            parts.push(format!("party:{}", self.parties.join("|")));
        }
        if !self.tags.is_empty() {
            parts.push(format!("tag:{}", self.tags.join("|")));
        }
        parts.join(" ")
    }
}

/// Checks `to` / `toparty` / `totag` of a single WeCom message.
pub fn check_audience(
    to: Option<Ids>,
    toparty: Option<Ids>,
    totag: Option<Ids>,
    errs: &mut Errors,
) -> Audience {
    let given = [&to, &toparty, &totag]
        .iter()
        .any(|ids| ids.as_ref().is_some_and(|ids| !ids.is_empty()));
    let users = id_list(to, "to", "userids", MAX_USERS, "40032", errs);
    let parties = id_list(
        toparty,
        "toparty",
        "department ids",
        MAX_PARTIES,
        "82002",
        errs,
    );
    let tags = id_list(totag, "totag", "tag ids", MAX_TAGS, "82003", errs);
    if users.iter().any(|u| u == ALL) {
        if users.len() > 1 {
            errs.at("to", "invalid_id", || {
                format!("{ALL} means everyone in the app's visible range and must be alone in to")
            });
        } else if !parties.is_empty() || !tags.is_empty() {
            errs.at("to", "conflicting_recipients", || {
                format!(
                    "to is {ALL} (everyone in the app's visible range), which makes WeChat \
                     ignore toparty and totag: drop them, or name users instead of {ALL}"
                )
            });
        }
    }
    if !given {
        errs.at("to", "required", || {
            "give at least one of to (userids), toparty or totag".into()
        });
    }
    Audience {
        users,
        parties,
        tags,
    }
}

/// Splits, checks and de-duplicates one id list (order kept; ids compare case-insensitively,
/// as WeCom treats userids).
fn id_list(
    ids: Option<Ids>,
    field: &str,
    what: &str,
    max: usize,
    errcode: &str,
    errs: &mut Errors,
) -> Vec<String> {
    let items: Vec<String> = match ids {
        None => return Vec::new(),
        Some(Ids::Joined(s)) if s.is_empty() => return Vec::new(),
        Some(Ids::Joined(s)) => s.split('|').map(str::to_owned).collect(),
        Some(Ids::List(v)) => v,
    };
    let mut seen = HashSet::with_capacity(items.len());
    let mut out = Vec::with_capacity(items.len());
    for (i, id) in items.into_iter().enumerate() {
        if id.is_empty() {
            errs.at(field, "empty_item", || {
                format!("item {} of {field} is empty; remove the stray |", i + 1)
            });
        } else if id.contains('|') || text::has_space_or_control(&id) {
            errs.at(field, "invalid_id", || {
                format!(
                    "item {} of {field} holds |, a space or a control character; give one id \
                     per array item",
                    i + 1
                )
            });
        } else if seen.insert(id.to_ascii_lowercase()) {
            out.push(id);
        }
    }
    if out.len() > max {
        errs.at(field, "too_many_recipients", || {
            format!(
                "{field} holds {} {what}; WeCom takes at most {max} per message ({errcode}): \
                 split them over several messages or use a campaign",
                out.len()
            )
        });
    }
    out
}
