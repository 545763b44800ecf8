//! Changes the instances sharing a store must hear about: an app or an API key was created,
//! changed or deleted (so every registry and key cache follows within a second), or new work
//! is due (so idle delivery workers start at once instead of at their next poll).
//!
//! SQLite: one process, so changes go through an in-process broadcast. PostgreSQL: `NOTIFY` on
//! [`CHANNEL`] after the write; every instance `LISTEN`s (its own announcements included) and
//! forwards what it hears into the same kind of broadcast. Notifications are hints: listeners
//! re-read the store, and re-read everything after [`Change::Resync`].

use serde::{Deserialize, Serialize};

/// The PostgreSQL notification channel.
pub const CHANNEL: &str = "wxgate_changes";

/// Changes buffered per receiver; one that falls behind gets `Lagged` (resync).
pub(crate) const CAPACITY: usize = 1024;

/// One change, as announced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Change {
    /// The app with this id was created, changed (secret rotated) or deleted: re-read it.
    App(String),
    /// The API key with this id was deleted (or changed): forget it.
    Key(String),
    /// Messages were committed or re-queued and may be due now.
    Due,
    /// Notifications may have been missed (the listening connection was lost): re-read all.
    Resync,
}

impl Change {
    /// The payload of the `NOTIFY`.
    pub(crate) fn to_payload(&self) -> String {
        serde_json::to_string(self).expect("a change always serializes")
    }

    /// A payload heard on the channel; `None` for one this version does not know.
    pub(crate) fn from_payload(payload: &str) -> Option<Change> {
        serde_json::from_str(payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_unknown_ones_are_ignored() {
        for c in [
            Change::App("shop".into()),
            Change::Key("key_abc".into()),
            Change::Due,
            Change::Resync,
        ] {
            assert_eq!(Change::from_payload(&c.to_payload()), Some(c));
        }
        assert_eq!(
            Change::App("shop".into()).to_payload(),
            r#"{"kind":"app","id":"shop"}"#
        );
        assert_eq!(Change::Due.to_payload(), r#"{"kind":"due"}"#);
        assert_eq!(Change::from_payload(r#"{"kind":"later"}"#), None);
    }
}
