//! The errors of the `tls` module, one enum per kind of operation.

use std::io;
use std::path::PathBuf;

/// Why an identity, a CA or an allow-list could not be made, loaded or saved.
///
/// Every error about a file names the file. A failed load changes nothing on
/// disk; a failed save may leave a temporary file beside the target, never a
/// half-written target.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// One file of a pair (key and certificate) exists and the other does not.
    ///
    /// Nothing is regenerated: a lone key or certificate is a damaged
    /// identity, and a fresh key would silently change the node's id.
    #[error("{} is missing (its companion file exists)", path.display())]
    Missing {
        /// The missing file.
        path: PathBuf,
    },
    /// The private key file is not an Ed25519 PKCS#8 PEM key.
    #[error("{} is not an Ed25519 PKCS#8 PEM private key: {reason}", path.display())]
    MalformedKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate file is not a valid PEM certificate (chain).
    #[error("{} is not a valid PEM certificate file: {reason}", path.display())]
    MalformedCertificate {
        /// The certificate file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate was malformed or unsuitable (not from a file).
    #[error("invalid certificate: {reason}")]
    InvalidCertificate {
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate chain was empty.
    #[error("the certificate chain is empty")]
    EmptyChain,
    /// The leaf certificate does not carry this identity's (or CA's) public key.
    ///
    /// From files, one of the two is damaged or they come from different
    /// nodes; both are named.
    #[error(
        "the certificate{} does not carry the public key of the private key{}",
        in_file(certificate),
        in_file(key)
    )]
    KeyMismatch {
        /// The certificate file, when the certificate came from one.
        certificate: Option<PathBuf>,
        /// The key file, when the key came from one.
        key: Option<PathBuf>,
    },
    /// The CA certificate is not a CA certificate (no `basicConstraints` CA flag).
    #[error("{} is not a CA certificate", path.display())]
    NotACa {
        /// The certificate file.
        path: PathBuf,
    },
    /// Refused to overwrite an existing CA or a different identity.
    #[error("refusing to overwrite {}: {reason}", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
        /// Why overwriting it would be harmful.
        reason: &'static str,
    },
    /// A line of an allow-list file is not a node id.
    #[error("{}:{line}: {source}", path.display())]
    MalformedAllowList {
        /// The allow-list file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// Why the line is not a node id.
        #[source]
        source: ParseNodeIdError,
    },
    /// Key or certificate generation failed.
    #[error("cannot make a key or certificate: {reason}")]
    Generate {
        /// The underlying error, rendered.
        reason: String,
    },
}

fn in_file(path: &Option<PathBuf>) -> String {
    match path {
        Some(path) => format!(" in {}", path.display()),
        None => String::new(),
    }
}

impl From<rcgen::Error> for IdentityError {
    fn from(e: rcgen::Error) -> Self {
        IdentityError::Generate {
            reason: e.to_string(),
        }
    }
}

/// Why a TLS configuration could not be built or a peer certificate read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The [`Trust`](super::Trust) has neither a CA nor an allow-list.
    ///
    /// There is no trust-everyone mode: a node must say whom it accepts.
    #[error(
        "no trust configured: give a cluster CA, an allow-list of node ids, or both \
         (Plexus has no trust-everyone mode)"
    )]
    NoTrust,
    /// The configured cluster CA certificate is unusable.
    #[error("the cluster CA certificate is unusable: {reason}")]
    InvalidCaCertificate {
        /// What is wrong with it.
        reason: String,
    },
    /// The peer presented no certificate.
    #[error("the peer presented no certificate")]
    NoCertificate,
    /// The certificate could not be parsed as X.509.
    #[error("malformed certificate: {reason}")]
    MalformedCertificate {
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate's key is not Ed25519, so it names no Plexus node.
    #[error("the certificate's key is not Ed25519")]
    NotEd25519,
    /// rustls refused the configuration (for example the identity's key).
    #[error("TLS configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Why a string is not a node id (64 hex digits).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseNodeIdError {
    /// The string (trimmed) is not 64 characters long.
    #[error("a node id is 64 hex digits, got {len} characters")]
    WrongLength {
        /// The length found, in characters.
        len: usize,
    },
    /// A character is not a hex digit.
    #[error("{character:?} at position {position} is not a hex digit")]
    InvalidCharacter {
        /// The offending character.
        character: char,
        /// Its position (in characters, from 0, after trimming).
        position: usize,
    },
}
