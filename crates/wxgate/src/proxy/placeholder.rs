//! Placeholder tokens: what the proxy hands an SDK in place of the real access_token. A
//! placeholder names an app and the API key that asked for it, and carries a MAC under a key
//! derived from the master key, so any instance of a fleet can check it without storage and
//! nobody can make one up. It never expires; it stops working when its key is deleted.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use crate::crypto::{MasterKey, hmac_sha256};

const PREFIX: &str = "wxgp";
/// How the holder of a placeholder handed out for an app's real secret starts.
pub(super) const SECRET_HOLDER: &str = "secret-";
/// The master-key derivation purpose; changing it voids every placeholder handed out.
const PURPOSE: &str = "wxgate proxy placeholders v1";

/// Mints and opens placeholders. Holds the derived key only.
pub struct Placeholders {
    key: [u8; 32],
}

/// Whom a placeholder was handed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub app: String,
    pub key_id: String,
}

impl Placeholders {
    pub fn new(master: &MasterKey) -> Self {
        Placeholders {
            key: master.derive(PURPOSE),
        }
    }

    /// `wxgp.<app>.<key id>.<MAC>`: app ids and key ids never contain a `.`.
    pub fn mint(&self, app: &str, key_id: &str) -> String {
        let mac = URL_SAFE_NO_PAD.encode(self.mac(app, key_id));
        format!("{PREFIX}.{app}.{key_id}.{mac}")
    }

    /// The holder of a placeholder this gateway (or its fleet) minted; `None` for anything else.
    pub fn open(&self, token: &str) -> Option<Holder> {
        let mut parts = token.split('.');
        let (prefix, app, key_id, mac) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if prefix != PREFIX || parts.next().is_some() || app.is_empty() || key_id.is_empty() {
            return None;
        }
        let given = URL_SAFE_NO_PAD.decode(mac).ok()?;
        let ok: bool = self.mac(app, key_id).ct_eq(given.as_slice()).into();
        ok.then(|| Holder {
            app: app.to_string(),
            key_id: key_id.to_string(),
        })
    }

    /// The holder a placeholder names when it was handed out for app `app`'s real secret
    /// (`proxy_accepts_secret`): a keyed digest of the secret, so rotating the secret voids
    /// those placeholders and the secret cannot be guessed from them. API key ids start with
    /// `key_`, so the two never meet.
    pub fn secret_holder(&self, app: &str, secret: &str) -> String {
        let digest = hmac_sha256(
            &self.key,
            &[b"secret\n", app.as_bytes(), b"\n", secret.as_bytes()],
        );
        format!("{SECRET_HOLDER}{}", hex::encode(&digest[..12]))
    }

    fn mac(&self, app: &str, key_id: &str) -> [u8; 32] {
        hmac_sha256(&self.key, &[app.as_bytes(), b"\n", key_id.as_bytes()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placeholders(seed: u8) -> Placeholders {
        Placeholders::new(&MasterKey::from_bytes([seed; 32]))
    }

    #[test]
    fn a_minted_placeholder_opens_to_its_holder() {
        let p = placeholders(1);
        let t = p.mint("shop", "key_abc-DEF_123");
        assert!(t.starts_with("wxgp.shop.key_abc-DEF_123."), "{t}");
        let holder = Holder {
            app: "shop".into(),
            key_id: "key_abc-DEF_123".into(),
        };
        assert_eq!(p.open(&t), Some(holder));
    }

    #[test]
    fn forged_altered_or_foreign_placeholders_do_not_open() {
        let p = placeholders(1);
        let t = p.mint("shop", "key_a");
        assert_eq!(placeholders(2).open(&t), None, "another master key");
        let other_app = t.replacen("wxgp.shop.", "wxgp.blog.", 1);
        assert_eq!(p.open(&other_app), None);
        let other_key = t.replacen(".key_a.", ".key_b.", 1);
        assert_eq!(p.open(&other_key), None);
        assert_eq!(p.open(&format!("{t}.x")), None);
        assert_eq!(p.open("wxgp.shop.key_a"), None);
        assert_eq!(p.open("a-real-looking-access-token"), None);
        let mut cut = t.clone();
        cut.pop();
        assert_eq!(p.open(&cut), None);
    }
}
