//! Centre secrets: the ed25519 signing key (PKCS#8 PEM) and the subject secret; zeroized, redacted, written owner-only.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use zeroize::Zeroizing;

use crate::code::{KeyId, SubjectRef, claims::SUBJECT_REF_LEN};
use crate::model::IdNumber;

/// Prepended to the ID number before hashing, so that subject references cannot be
/// confused with any other use of the same secret.
const SUBJECT_DOMAIN: &[u8] = b"liangma/subject/v1\0";

/// Why a key or secret file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read or created.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file exists and is not a secret of the expected kind. The content is never echoed.
    #[error("{path}: {what}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What was expected.
        what: &'static str,
    },
    /// Others may read or write the file, or its group may write it: the secret may be known
    /// elsewhere, so it is not used (as ssh refuses such private keys).
    #[error(
        "{path}: mode {mode:04o} lets others read or change this secret; run `chmod 600` on it (or 640 for a group that may read it)"
    )]
    Unprotected {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The operating system's random source failed.
    #[error("random source failed: {0}")]
    Random(getrandom::Error),
}

/// A centre's ed25519 signing key. The secret half is zeroized on drop and never printed.
pub struct CentreKey {
    signing: SigningKey,
    key_id: KeyId,
}

impl fmt::Debug for CentreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CentreKey").field("key_id", &self.key_id).field("secret", &"<redacted>").finish()
    }
}

impl CentreKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        loop {
            let mut seed = Zeroizing::new([0u8; 32]);
            getrandom::fill(seed.as_mut())?;
            let key = Self::from_seed(&seed);
            // Key id 0 is the protobuf default and would vanish from the claims: draw again
            // (probability 2^-32).
            if key.key_id.get() != 0 {
                return Ok(key);
            }
        }
    }

    /// The key with this 32-byte secret seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let key_id = KeyId::of_public_key(signing.verifying_key().as_bytes());
        Self { signing, key_id }
    }

    /// The key id derived from the public key.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// Signs `message` (already domain-separated by the caller).
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message)
    }

    /// Reads a PKCS#8 PEM private key file.
    pub fn read_pem_file(path: &Path) -> Result<Self, KeyFileError> {
        let pem = read_secret_text(path)?;
        let signing = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|_| KeyFileError::Invalid { path: path.into(), what: "not a PKCS#8 PEM ed25519 private key" })?;
        let key_id = KeyId::of_public_key(signing.verifying_key().as_bytes());
        Ok(Self { signing, key_id })
    }

    /// Writes the key as PKCS#8 v1 PEM (RFC 8410 `OneAsymmetricKey` version 0, without the
    /// public key: the form OpenSSL and Python's `cryptography` read) to a new file readable by
    /// its owner only; an existing file is never overwritten.
    pub fn write_pem_file(&self, path: &Path) -> Result<(), KeyFileError> {
        // Zeroized on drop.
        let v1 = ed25519_dalek::pkcs8::KeypairBytes { secret_key: self.signing.to_bytes(), public_key: None };
        let pem = v1
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| KeyFileError::Invalid { path: path.into(), what: "key could not be encoded as PKCS#8" })?;
        write_new_secret_file(path, pem.as_bytes())
    }
}

/// A centre's secret for pseudonymous subject references. Kept apart from the signing key
/// so that rotating the signing key leaves every member's reference unchanged.
pub struct SubjectSecret {
    secret: Zeroizing<[u8; 32]>,
    /// HMAC already keyed with the secret (its inner and outer hash states), cloned per
    /// reference: keying anew cost two of a reference's four SHA-256 blocks on every issuance.
    /// The states are as secret as the key; sha2's `zeroize` clears them when dropped.
    keyed: Hmac<sha2::Sha256>,
}

impl fmt::Debug for SubjectSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectSecret(<redacted>)")
    }
}

impl SubjectSecret {
    /// A fresh secret from the operating system's random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut secret = Zeroizing::new([0u8; 32]);
        getrandom::fill(secret.as_mut())?;
        Ok(Self::keyed(secret))
    }

    /// The secret with these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self::keyed(Zeroizing::new(bytes))
    }

    fn keyed(secret: Zeroizing<[u8; 32]>) -> Self {
        let keyed =
            <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_ref()).expect("HMAC takes any key length");
        Self { secret, keyed }
    }

    /// The member's pseudonymous reference: HMAC-SHA-256(secret, domain ‖ ID number), first 12 bytes.
    pub fn subject_ref(&self, id_number: &IdNumber) -> SubjectRef {
        let mut mac = self.keyed.clone();
        mac.update(SUBJECT_DOMAIN);
        mac.update(id_number.as_str().as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut reference = [0u8; SUBJECT_REF_LEN];
        reference.copy_from_slice(&digest[..SUBJECT_REF_LEN]);
        SubjectRef::from_bytes(reference)
    }

    /// Reads a file holding the secret as 64 hex digits (surrounding white space ignored).
    pub fn read_file(path: &Path) -> Result<Self, KeyFileError> {
        let text = read_secret_text(path)?;
        let mut secret = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), secret.as_mut())
            .map_err(|_| KeyFileError::Invalid { path: path.into(), what: "not a subject secret (64 hex digits)" })?;
        Ok(Self::keyed(secret))
    }

    /// Writes the secret as hex to a new owner-only file; an existing file is never overwritten.
    pub fn write_file(&self, path: &Path) -> Result<(), KeyFileError> {
        let mut text = Zeroizing::new(hex::encode(self.secret.as_ref()));
        text.push('\n');
        write_new_secret_file(path, text.as_bytes())
    }
}

fn read_secret_text(path: &Path) -> Result<Zeroizing<String>, KeyFileError> {
    check_protected(path)?;
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| KeyFileError::Io { path: path.into(), source })?);
    let text =
        std::str::from_utf8(&bytes).map_err(|_| KeyFileError::Invalid { path: path.into(), what: "not text" })?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// Refuses a secret file others can read or write, or its group can write; warns when its
/// group can read it (a deliberate `root:liangma 0640` setup is common).
#[cfg(unix)]
pub fn check_protected(path: &Path) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        std::fs::metadata(path).map_err(|source| KeyFileError::Io { path: path.into(), source })?.permissions().mode()
            & 0o7777;
    if mode & 0o027 != 0 {
        return Err(KeyFileError::Unprotected { path: path.into(), mode });
    }
    if mode & 0o040 != 0 {
        tracing::warn!(path = %path.display(), mode = format_args!("{mode:04o}"), "secret file is readable by its group");
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn check_protected(_path: &Path) -> Result<(), KeyFileError> {
    Ok(())
}

fn write_new_secret_file(path: &Path, contents: &[u8]) -> Result<(), KeyFileError> {
    let io_error = |source| KeyFileError::Io { path: path.into(), source };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io_error)?;
    file.write_all(contents).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_key_and_writes_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let key = CentreKey::generate().unwrap();
        key.write_pem_file(&path).unwrap();
        let read = CentreKey::read_pem_file(&path).unwrap();
        assert_eq!(read.verifying_key(), key.verifying_key());
        assert_eq!(read.key_id(), key.key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // Never overwrite an existing key.
        assert!(matches!(key.write_pem_file(&path), Err(KeyFileError::Io { .. })));
        // PKCS#8 v1: the private key alone, the form OpenSSL 3.0 and Python's `cryptography` read.
        let written = ed25519_dalek::pkcs8::KeypairBytes::from_pkcs8_pem(&std::fs::read_to_string(&path).unwrap());
        assert_eq!(written.unwrap().public_key, None);
    }

    #[test]
    fn v2_key_files_with_the_public_key_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.pem");
        let key = CentreKey::from_seed(&[3; 32]);
        let v2 = key.signing.to_pkcs8_pem(LineEnding::LF).unwrap();
        write_new_secret_file(&path, v2.as_bytes()).unwrap();
        assert_eq!(CentreKey::read_pem_file(&path).unwrap().key_id(), key.key_id());
    }

    #[cfg(unix)]
    #[test]
    fn secrets_others_can_read_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subject.key");
        SubjectSecret::from_bytes([9; 32]).write_file(&path).unwrap();
        for (mode, accepted) in
            [(0o600, true), (0o400, true), (0o640, true), (0o644, false), (0o660, false), (0o606, false)]
        {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            match SubjectSecret::read_file(&path) {
                Ok(_) => assert!(accepted, "{mode:o} accepted"),
                Err(error) => {
                    assert!(!accepted, "{mode:o} refused: {error}");
                    assert!(
                        matches!(error, KeyFileError::Unprotected { .. }) && error.to_string().contains("chmod 600")
                    );
                }
            }
        }
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let key = CentreKey::from_seed(&[7; 32]);
        let secret = SubjectSecret::from_bytes([9; 32]);
        let shown = format!("{key:?} {secret:?}");
        assert!(!shown.contains("0707") && !shown.contains("0909") && !shown.contains("[7,"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn subject_secret_file_round_trips_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.key");
        SubjectSecret::from_bytes([3; 32]).write_file(&path).unwrap();
        let id: IdNumber = "11010519491231002X".parse().unwrap();
        assert_eq!(
            SubjectSecret::read_file(&path).unwrap().subject_ref(&id),
            SubjectSecret::from_bytes([3; 32]).subject_ref(&id)
        );
        std::fs::write(dir.path().join("bad"), "secret-looking text").unwrap();
        let error = SubjectSecret::read_file(&dir.path().join("bad")).unwrap_err().to_string();
        assert!(!error.contains("secret-looking"), "{error}");
    }
}
