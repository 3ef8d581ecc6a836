//! Reading and writing keys and certificates as PEM files.
//!
//! Writes are atomic (a temporary file beside the target, synced, then
//! renamed over it), and private keys are created with mode 0600 on Unix.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use super::cert::{self, CertProblem};
use super::error::IdentityError;

/// An Ed25519 private key read from a file, with its raw public key.
pub(crate) struct LoadedKey {
    pub(crate) der: PrivatePkcs8KeyDer<'static>,
    pub(crate) public: [u8; 32],
}

/// Whether `path` exists, as an error naming it when that cannot be told.
pub(crate) fn exists(path: &Path) -> Result<bool, IdentityError> {
    path.try_exists().map_err(|source| IdentityError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads an Ed25519 PKCS#8 private key from a PEM file.
pub(crate) fn read_key(path: &Path) -> Result<LoadedKey, IdentityError> {
    let bytes = read(path)?;
    let malformed = |reason: String| IdentityError::MalformedKey {
        path: path.to_owned(),
        reason,
    };
    let der = PrivatePkcs8KeyDer::from_pem_slice(&bytes).map_err(|e| malformed(pem_problem(&e)))?;
    let public = key_from_der(&der).map_err(malformed)?;
    Ok(LoadedKey { der, public })
}

/// The raw public key of an Ed25519 PKCS#8 key.
pub(crate) fn key_from_der(der: &PrivatePkcs8KeyDer<'_>) -> Result<[u8; 32], String> {
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(der, &rcgen::PKCS_ED25519)
        .map_err(|e| format!("not an Ed25519 key ({e})"))?;
    pair.public_key_raw()
        .try_into()
        .map_err(|_| "the Ed25519 public key is not 32 bytes".to_owned())
}

/// The start of an Ed25519 PKCS#8 key up to its 32-byte seed, in version 1
/// (RFC 8410) and in the version 2 layout that ring generates (RFC 5958,
/// with the public key after the seed).
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const ED25519_PKCS8_V2_PREFIX: [u8; 16] = [
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A freshly generated Ed25519 key in PKCS#8 version 1, which every tool
/// reads (OpenSSL 3.0 rejects ring's version 2). Other layouts are kept.
pub(crate) fn pkcs8_v1(der: Vec<u8>) -> PrivatePkcs8KeyDer<'static> {
    match der.strip_prefix(&ED25519_PKCS8_V2_PREFIX[..]) {
        Some(rest) if rest.len() == 32 + 35 => {
            let mut v1 = ED25519_PKCS8_V1_PREFIX.to_vec();
            v1.extend_from_slice(&rest[..32]);
            PrivatePkcs8KeyDer::from(v1)
        }
        _ => PrivatePkcs8KeyDer::from(der),
    }
}

/// Reads every certificate of a PEM file; at least one, each a parseable
/// Ed25519 X.509 certificate.
pub(crate) fn read_certificates(
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let bytes = read(path)?;
    let malformed = |reason: String| IdentityError::MalformedCertificate {
        path: path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| malformed(pem_problem(&e)))?;
    if chain.is_empty() {
        return Err(malformed("no CERTIFICATE section".to_owned()));
    }
    for (i, der) in chain.iter().enumerate() {
        cert::parse(der).map_err(|problem| {
            malformed(match problem {
                CertProblem::Malformed(reason) => format!("certificate #{}: {reason}", i + 1),
                CertProblem::NotEd25519 => format!("certificate #{}: key is not Ed25519", i + 1),
            })
        })?;
    }
    Ok(chain)
}

/// The PEM text of a private key.
pub(crate) fn key_pem(der: &PrivatePkcs8KeyDer<'_>) -> String {
    pem_block("PRIVATE KEY", der.secret_pkcs8_der())
}

/// The PEM text of a certificate chain, leaf first.
pub(crate) fn certificates_pem(chain: &[CertificateDer<'_>]) -> String {
    chain.iter().map(|c| pem_block("CERTIFICATE", c)).collect()
}

/// Creates `dir` (and its parents) if missing, private to the owner on Unix.
pub(crate) fn create_dir(dir: &Path) -> Result<(), IdentityError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| IdentityError::Write {
        path: dir.to_owned(),
        source,
    })
}

/// Replaces `path` with `contents` atomically; `private` files get mode 0600.
pub(crate) fn write_atomic(
    path: &Path,
    contents: &str,
    private: bool,
) -> Result<(), IdentityError> {
    let tmp = temporary_path(path);
    let write_error = |source| IdentityError::Write {
        path: path.to_owned(),
        source,
    };
    // A temporary file left by an earlier crash may have other permissions.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_error(e)),
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp).map_err(write_error)?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write_error)?;
    drop(file);
    fs::rename(&tmp, path).map_err(write_error)
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    path.with_file_name(name)
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, IdentityError> {
    fs::read(path).map_err(|source| IdentityError::Read {
        path: path.to_owned(),
        source,
    })
}

fn pem_problem(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "truncated: a PEM section has no END line".into(),
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed".into(),
        pem::Error::Base64Decode(e) => format!("corrupt base64 ({e})"),
        pem::Error::NoItemsFound => "no PEM section of the expected kind".into(),
        other => other.to_string(),
    }
}

fn pem_block(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = Vec::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            b64.push(if i <= chunk.len() {
                ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]
            } else {
                b'='
            });
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.chunks(64) {
        out.extend(line.iter().map(|b| char::from(*b)));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
