//! Secrets at rest: the master key, sealing app secrets with XChaCha20-Poly1305, and API keys.
//!
//! Sealed values are `"v1:" + base64(nonce[24] || ciphertext || tag[16])`; the associated data
//! (e.g. `"apps:secret:{id}"`) binds a ciphertext to its row, so it cannot be moved to another.
//! The master key comes from `WXGATE_MASTER_KEY` or a 0600 key file, never from the database;
//! an embedded instance generates the file on first start. API keys are stored as SHA-256
//! hashes and compared in constant time.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use secrecy::ExposeSecret;
use secrecy::zeroize::Zeroize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Config;

const VERSION_PREFIX: &str = "v1:";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// The 32-byte key that seals secrets at rest. Zeroed on drop; `Debug` never shows it.
pub struct MasterKey {
    bytes: [u8; 32],
}

/// Where the master key came from, for the start-up log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `WXGATE_MASTER_KEY` (env or `master_key` in the config file).
    Config,
    /// An existing key file.
    File(PathBuf),
    /// A key file this process just created: tell the operator to back it up.
    Generated(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "{origin}: {reason}; expected 32 bytes as 64 hex characters or standard base64 \
         (44 characters ending in '='); make one with `wxgate gen-key`"
    )]
    BadKey { origin: String, reason: String },
    #[error(
        "master key file {} has mode {mode:03o}, so other users may read it; run `chmod 600 {}` \
         (in Kubernetes, mount the secret with defaultMode 0400)",
        .path.display(), .path.display()
    )]
    LoosePermissions { path: PathBuf, mode: u32 },
    #[error("cannot {action} master key file {}: {source}; {hint}", .path.display())]
    KeyFile {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
        hint: &'static str,
    },
    #[error(
        "fleet mode (WXGATE_REDIS_URL is set) needs the same master key on every instance, and \
         {} does not exist: set WXGATE_MASTER_KEY (make one with `wxgate gen-key`) or point \
         WXGATE_MASTER_KEY_FILE at a key file every instance can read",
        .0.display()
    )]
    FleetNeedsKey(PathBuf),
    #[error("sealed value is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "cannot decrypt sealed value: wrong master key, value copied from another record, or \
         tampered with"
    )]
    Decrypt,
}

impl MasterKey {
    /// `master_key` if set, else the key file, else (embedded mode only) a new key file.
    pub fn from_config(cfg: &Config) -> Result<(MasterKey, KeySource), CryptoError> {
        if let Some(key) = &cfg.master_key {
            return Ok((
                parse_key(key.expose_secret(), "WXGATE_MASTER_KEY")?,
                KeySource::Config,
            ));
        }
        let path = &cfg.master_key_file;
        if let Some(key) = read_key_file(path)? {
            return Ok((key, KeySource::File(path.clone())));
        }
        if cfg.is_fleet() {
            // A key generated here would differ on every instance.
            return Err(CryptoError::FleetNeedsKey(path.clone()));
        }
        generate_key_file(path)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey { bytes }
    }

    /// A key for one `purpose` (e.g. `"proxy placeholders v1"`), derived with HMAC-SHA256 so
    /// that no other use of the master key can be turned into it.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        hmac_sha256(&self.bytes, &[purpose.as_bytes()])
    }

    /// Encrypts `plaintext`, bound to `aad` (e.g. `"apps:secret:{id}"`).
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let payload = Payload {
            msg: plaintext,
            aad: aad.as_bytes(),
        };
        let sealed = self
            .cipher()
            .encrypt(&XNonce::from(nonce), payload)
            .expect("XChaCha20-Poly1305 only fails for messages over 256 GiB");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!("{VERSION_PREFIX}{}", STANDARD.encode(out))
    }

    /// Decrypts a value made by [`seal`](Self::seal) with the same key and `aad`.
    pub fn open(&self, sealed: &str, aad: &str) -> Result<Vec<u8>, CryptoError> {
        let body = sealed
            .strip_prefix(VERSION_PREFIX)
            .ok_or(CryptoError::Malformed("it does not start with \"v1:\""))?;
        let raw = STANDARD
            .decode(body)
            .map_err(|_| CryptoError::Malformed("it is not valid base64"))?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed(
                "it is too short to hold a nonce and a tag",
            ));
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| CryptoError::Malformed("bad nonce length"))?;
        let payload = Payload {
            msg: ciphertext,
            aad: aad.as_bytes(),
        };
        self.cipher()
            .decrypt(&XNonce::from(nonce), payload)
            .map_err(|_| CryptoError::Decrypt)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(self.bytes))
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Config => f.write_str("WXGATE_MASTER_KEY"),
            KeySource::File(p) => write!(f, "key file {}", p.display()),
            KeySource::Generated(p) => write!(f, "new key file {} (back it up)", p.display()),
        }
    }
}

/// A new random master key as 64 hex characters (`wxgate gen-key`).
pub fn generate_key_hex() -> String {
    let mut bytes: [u8; 32] = rand::random();
    let hex = hex::encode(bytes);
    bytes.zeroize();
    hex
}

/// SHA-256 of an API key: what the store keeps instead of the key.
/// HMAC-SHA256 of `parts` (joined as given) under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{KeyInit as _, Mac};
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any size");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

pub fn hash_api_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Whether `key` hashes to `stored_hash`, compared in constant time.
pub fn api_key_matches(key: &str, stored_hash: &[u8]) -> bool {
    hash_api_key(key).ct_eq(stored_hash).into()
}

/// `prefix` + 40 URL-safe random characters (240 bits), e.g. `wxg_...` for API keys.
pub fn random_token(prefix: &str) -> String {
    let bytes: [u8; 30] = rand::random();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Parses 64 hex characters or standard base64 of 32 bytes. Never echoes the input.
fn parse_key(text: &str, origin: &str) -> Result<MasterKey, CryptoError> {
    let text = text.trim();
    let bad = |reason: String| CryptoError::BadKey {
        origin: origin.to_owned(),
        reason,
    };
    if text.is_empty() {
        return Err(bad("it is empty".into()));
    }
    let mut bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|_| bad("it is not valid hex".into()))?
    } else {
        STANDARD.decode(text).map_err(|_| {
            bad(format!(
                "its {} characters are neither hex nor base64",
                text.len()
            ))
        })?
    };
    let result = <[u8; 32]>::try_from(bytes.as_slice())
        .map(|bytes| MasterKey { bytes })
        .map_err(|_| bad(format!("it decodes to {} bytes, not 32", bytes.len())));
    bytes.as_mut_slice().zeroize();
    result
}

/// Reads the key file; `Ok(None)` if it does not exist. Refuses a file others can read.
fn read_key_file(path: &Path) -> Result<Option<MasterKey>, CryptoError> {
    let io_err = |action, source| CryptoError::KeyFile {
        action,
        path: path.to_owned(),
        source,
        hint: "check the path in WXGATE_MASTER_KEY_FILE and the file's owner",
    };
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("inspect", e)),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CryptoError::LoosePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = fs::read_to_string(path).map_err(|e| io_err("read", e))?;
    let key = parse_key(&text, &format!("master key file {}", path.display()));
    text.zeroize();
    key.map(Some)
}

/// Creates the key file with mode 0600, atomically: the key is written to a temp file
/// (`create_new`) and hard-linked into place, which fails if the file exists. So no process
/// ever sees a half-written key, and when several start at once one wins and the others read
/// its key.
fn generate_key_file(path: &Path) -> Result<(MasterKey, KeySource), CryptoError> {
    let key = MasterKey {
        bytes: rand::random(),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", random_token("")));
    let published = write_key(&tmp, &key).and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    let key_file_error = |action, source| CryptoError::KeyFile {
        action,
        path: path.to_owned(),
        source,
        hint: "create its directory, set WXGATE_MASTER_KEY_FILE to a writable path, or set \
               WXGATE_MASTER_KEY",
    };
    match published {
        Ok(()) => {
            // Make the new directory entry durable: losing this key loses every secret.
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            let _ = fs::File::open(dir.unwrap_or(Path::new("."))).and_then(|d| d.sync_all());
            Ok((key, KeySource::Generated(path.to_owned())))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match read_key_file(path)? {
            Some(key) => Ok((key, KeySource::File(path.to_owned()))),
            None => Err(key_file_error("read", io::ErrorKind::NotFound.into())),
        },
        Err(e) => Err(key_file_error("create", e)),
    }
}

/// Writes `key` as hex to a new file with mode 0600.
fn write_key(path: &Path, key: &MasterKey) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let mut hex = [0u8; 65];
    hex[64] = b'\n';
    let written = hex::encode_to_slice(key.bytes, &mut hex[..64])
        .map_err(|e| io::Error::other(e.to_string()))
        .and_then(|()| file.write_all(&hex))
        .and_then(|()| file.sync_all());
    hex.zeroize();
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let name = format!("wxgate-crypto-{}-{}", std::process::id(), random_token(""));
            let dir = std::env::temp_dir().join(name);
            fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn key(byte: u8) -> MasterKey {
        MasterKey { bytes: [byte; 32] }
    }

    fn config_with_file(path: &Path) -> Config {
        Config {
            master_key_file: path.to_owned(),
            ..Config::default()
        }
    }

    #[test]
    fn seal_then_open_round_trips() {
        let k = key(7);
        let sealed = k.seal(b"app secret", "apps:secret:main");
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("app secret"));
        assert_eq!(k.open(&sealed, "apps:secret:main").unwrap(), b"app secret");
        assert_ne!(
            sealed,
            k.seal(b"app secret", "apps:secret:main"),
            "nonce must be random"
        );
    }

    #[test]
    fn wrong_aad_or_key_fails_without_plaintext() {
        let sealed = key(1).seal(b"top secret", "apps:secret:a");
        let err = key(1).open(&sealed, "apps:secret:b").unwrap_err();
        assert!(matches!(err, CryptoError::Decrypt));
        assert!(!err.to_string().contains("top secret"));
        assert!(matches!(
            key(2).open(&sealed, "apps:secret:a"),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn malformed_input_fails_without_panic() {
        let k = key(3);
        let sealed = k.seal(b"x", "aad");
        for bad in [
            "",
            "v1:",
            "v2:AAAA",
            "v1:!!!",
            &sealed[..10],
            &sealed[..sealed.len() - 4],
        ] {
            assert!(k.open(bad, "aad").is_err(), "{bad:?} should fail");
        }
        let mut tampered = STANDARD.decode(&sealed[3..]).unwrap();
        tampered[30] ^= 1;
        let tampered = format!("v1:{}", STANDARD.encode(tampered));
        assert!(matches!(
            k.open(&tampered, "aad"),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn parses_hex_and_base64_keys_only() {
        let hex = generate_key_hex();
        let b64 = STANDARD.encode(hex::decode(&hex).unwrap());
        assert_eq!(
            parse_key(&hex, "k").unwrap().bytes,
            parse_key(&b64, "k").unwrap().bytes
        );
        for bad in ["", "abc", &hex[..62], &STANDARD.encode([0u8; 16])] {
            let msg = parse_key(bad, "WXGATE_MASTER_KEY").unwrap_err().to_string();
            assert!(
                msg.contains("64 hex characters or standard base64"),
                "{msg}"
            );
            assert!(
                bad.is_empty() || !msg.contains(bad),
                "must not echo the key: {msg}"
            );
        }
        let cfg = Config {
            master_key: Some(hex.as_str().into()),
            ..Config::default()
        };
        let (k, source) = MasterKey::from_config(&cfg).unwrap();
        assert_eq!(source, KeySource::Config);
        assert_eq!(format!("{k:?}"), "MasterKey([redacted])");
    }

    #[test]
    fn generates_key_file_with_mode_0600_then_reuses_it() {
        let dir = TempDir::new();
        let path = dir.0.join("wxgate.key");
        let (k1, source) = MasterKey::from_config(&config_with_file(&path)).unwrap();
        assert_eq!(source, KeySource::Generated(path.clone()));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (k2, source) = MasterKey::from_config(&config_with_file(&path)).unwrap();
        assert_eq!(source, KeySource::File(path.clone()));
        assert_eq!(k1.bytes, k2.bytes);
    }

    #[test]
    fn refuses_key_file_others_can_read() {
        let dir = TempDir::new();
        let path = dir.0.join("wxgate.key");
        fs::write(&path, generate_key_hex()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let msg = MasterKey::from_config(&config_with_file(&path))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(&format!("chmod 600 {}", path.display())),
            "{msg}"
        );
    }

    #[test]
    fn fleet_mode_does_not_generate_a_key() {
        let dir = TempDir::new();
        let path = dir.0.join("wxgate.key");
        let cfg = Config {
            redis_url: Some("redis://127.0.0.1:6379".into()),
            ..config_with_file(&path)
        };
        let err = MasterKey::from_config(&cfg).unwrap_err();
        assert!(matches!(err, CryptoError::FleetNeedsKey(_)), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn concurrent_generation_agrees_on_one_key() {
        let dir = TempDir::new();
        let path = dir.0.join("wxgate.key");
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (barrier, cfg) = (barrier.clone(), config_with_file(&path));
                std::thread::spawn(move || {
                    barrier.wait();
                    let (key, source) = MasterKey::from_config(&cfg).unwrap();
                    (key.bytes, matches!(source, KeySource::Generated(_)))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            results.iter().filter(|(_, generated)| *generated).count(),
            1
        );
        assert!(results.iter().all(|(bytes, _)| *bytes == results[0].0));
    }

    #[test]
    fn api_keys_hash_and_match() {
        let token = random_token("wxg_");
        assert_eq!(token.len(), 44);
        assert!(
            token[4..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let stored = hash_api_key(&token);
        assert!(api_key_matches(&token, &stored));
        assert!(!api_key_matches("wxg_other", &stored));
        assert!(!api_key_matches(&token, &stored[..31]));
    }
}
