//! `roles`: which parts of the gateway an instance runs, so a fleet can scale senders apart
//! from the API. `WXGATE_ROLES=api,worker` or `roles = ["api", "worker"]`; default all three.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The roles an instance runs. `/healthz`, `/readyz` and `/metrics` are served by every
/// instance whatever its roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// The `/v1` HTTP API (tokens, messages, campaigns, apps, keys).
    pub api: bool,
    /// Delivery workers: claim due messages and send them.
    pub worker: bool,
    /// Background token refreshers (ahead of expiry). Without it, tokens are fetched when
    /// asked for, and instances that have it keep the fleet's shared tokens fresh.
    pub refresher: bool,
}

pub const ROLE_NAMES: [&str; 3] = ["api", "worker", "refresher"];

impl Default for Roles {
    fn default() -> Self {
        Roles {
            api: true,
            worker: true,
            refresher: true,
        }
    }
}

impl Roles {
    /// Parses `api,worker` (commas and/or spaces) or the names one by one.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Roles, String> {
        let mut roles = Roles {
            api: false,
            worker: false,
            refresher: false,
        };
        for name in names
            .into_iter()
            .flat_map(|s| s.split([',', ' ']))
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match name.to_ascii_lowercase().as_str() {
                "api" => roles.api = true,
                "worker" => roles.worker = true,
                "refresher" => roles.refresher = true,
                other => {
                    return Err(format!(
                        "unknown role {other:?}; use a list of api, worker, refresher (e.g. \
                         \"api,refresher\"), or leave it unset for all three"
                    ));
                }
            }
        }
        if roles.names().is_empty() {
            return Err("names no role; use api, worker and/or refresher".into());
        }
        Ok(roles)
    }

    pub fn names(&self) -> Vec<&'static str> {
        [self.api, self.worker, self.refresher]
            .iter()
            .zip(ROLE_NAMES)
            .filter(|(on, _)| **on)
            .map(|(_, n)| n)
            .collect()
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

impl Serialize for Roles {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Roles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            One(String),
            Many(Vec<String>),
        }
        let names = match Repr::deserialize(d).map_err(|_| {
            D::Error::custom("expected a list of roles like \"api,worker\" or [\"api\"]")
        })? {
            Repr::One(s) => vec![s],
            Repr::Many(v) => v,
        };
        Roles::parse(names.iter().map(String::as_str)).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_from_lists_and_strings() {
        let all = Roles::default();
        assert_eq!(Roles::parse(["api,worker,refresher"]).unwrap(), all);
        assert_eq!(
            Roles::parse(["worker", "API"]).unwrap().names(),
            ["api", "worker"]
        );
        assert_eq!(
            Roles::parse(["refresher"]).unwrap().to_string(),
            "refresher"
        );
        assert!(
            Roles::parse(["api,mailer"])
                .unwrap_err()
                .contains("\"mailer\"")
        );
        assert!(Roles::parse([" , "]).is_err());
        let toml: Roles = serde_json::from_str(r#"["api","worker"]"#).unwrap();
        assert!(toml.api && toml.worker && !toml.refresher);
        assert_eq!(
            serde_json::to_string(&all).unwrap(),
            r#"["api","worker","refresher"]"#
        );
    }
}
