//! What Plexus reads from an X.509 certificate (with x509-parser).

use x509_parser::oid_registry::OID_SIG_ED25519;

/// The facts of a certificate that Plexus's checks need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CertInfo {
    /// The raw Ed25519 public key: the node id of a leaf certificate.
    pub(crate) key: [u8; 32],
    /// Start of validity, in seconds since the Unix epoch.
    pub(crate) not_before: i64,
    /// End of validity, in seconds since the Unix epoch.
    pub(crate) not_after: i64,
    /// Issuer and subject are the same name (a self-signed certificate).
    pub(crate) self_issued: bool,
    /// The `basicConstraints` CA flag is set.
    pub(crate) is_ca: bool,
}

/// Why a certificate is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CertProblem {
    /// Not DER X.509, or trailing bytes after it.
    Malformed(String),
    /// The subject key is not Ed25519.
    NotEd25519,
}

/// Parses a DER certificate; its key must be Ed25519.
pub(crate) fn parse(der: &[u8]) -> Result<CertInfo, CertProblem> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CertProblem::Malformed(format!("not an X.509 certificate ({e})")))?;
    if !rest.is_empty() {
        return Err(CertProblem::Malformed(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        )));
    }
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_SIG_ED25519 {
        return Err(CertProblem::NotEd25519);
    }
    let key: [u8; 32] = spki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| CertProblem::Malformed("the Ed25519 key is not 32 bytes".to_owned()))?;
    let validity = cert.validity();
    Ok(CertInfo {
        key,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        self_issued: cert.subject().as_raw() == cert.issuer().as_raw(),
        is_ca: cert.is_ca(),
    })
}
