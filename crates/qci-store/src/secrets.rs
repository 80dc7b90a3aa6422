//! Secrets at rest: registry passwords are sealed with ChaCha20-Poly1305 under a key kept in
//! the data dir (`secret.key`, mode 0600). A sealed value reads `sealed:v1:<hex nonce+ciphertext>`.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "sealed:v1:";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("a sealed secret cannot be opened (wrong key or damaged)")]
    Open,
    #[error("no system randomness")]
    Random,
}

pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl Sealer {
    /// Loads the key from `path`, creating it (0600) on first use.
    pub fn load_or_create(path: &Path) -> Result<Sealer, SecretError> {
        let err = |reason: String| SecretError::Key {
            path: path.display().to_string(),
            reason,
        };
        let rng = SystemRandom::new();
        let bytes = match std::fs::read(path) {
            Ok(b) => {
                let mode = std::fs::metadata(path)
                    .map_err(|e| err(e.to_string()))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| err(format!("cannot restrict its mode to 0600: {e}")))?;
                }
                b
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut b = vec![0u8; 32];
                rng.fill(&mut b).map_err(|_| SecretError::Random)?;
                let tmp = path.with_extension("tmp");
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(|e| err(e.to_string()))?;
                f.write_all(&b)
                    .and_then(|_| f.sync_all())
                    .map_err(|e| err(e.to_string()))?;
                std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))?;
                b
            }
            Err(e) => return Err(err(e.to_string())),
        };
        Self::from_key(&bytes)
            .map_err(|_| err(format!("must hold 32 bytes, it holds {}", bytes.len())))
    }

    /// A sealer with a fresh random key (tests, in-memory stores).
    pub fn ephemeral() -> Result<Sealer, SecretError> {
        let mut b = [0u8; 32];
        SystemRandom::new()
            .fill(&mut b)
            .map_err(|_| SecretError::Random)?;
        Self::from_key(&b).map_err(|_| SecretError::Random)
    }

    fn from_key(bytes: &[u8]) -> Result<Sealer, ()> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes).map_err(|_| ())?;
        Ok(Sealer {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        })
    }

    pub fn is_sealed(value: &str) -> bool {
        value.starts_with(PREFIX)
    }

    pub fn seal(&self, plaintext: &str) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SecretError::Random)?;
        let mut data = plaintext.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
            .map_err(|_| SecretError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{PREFIX}{}", hex::encode(out)))
    }

    pub fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let raw = hex::decode(sealed.strip_prefix(PREFIX).ok_or(SecretError::Open)?)
            .map_err(|_| SecretError::Open)?;
        if raw.len() < NONCE_LEN {
            return Err(SecretError::Open);
        }
        let (nonce, data) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Open)?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut data)
            .map_err(|_| SecretError::Open)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_key_file() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("secret.key");
        let s = Sealer::load_or_create(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let sealed = s.seal("s3cret").unwrap();
        assert!(Sealer::is_sealed(&sealed) && !sealed.contains("s3cret"));
        assert_ne!(sealed, s.seal("s3cret").unwrap(), "nonces differ");
        assert_eq!(
            Sealer::load_or_create(&path)
                .unwrap()
                .open(&sealed)
                .unwrap(),
            "s3cret"
        );
        assert!(Sealer::ephemeral().unwrap().open(&sealed).is_err());
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push('0');
        assert!(s.open(&tampered).is_err() || tampered == sealed);
    }
}
