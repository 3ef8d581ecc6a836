//! A cluster certificate authority: signs node certificates.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use time::Duration;

use super::error::IdentityError;
use super::identity::{leaf_params, set_validity};
use super::{cert, files, Identity};

/// The file holding a cluster CA's private key (PKCS#8 PEM, mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// The file holding a cluster CA's self-signed certificate (PEM).
pub const CA_CERT_FILE: &str = "ca.crt";

/// How long a cluster CA certificate is valid: twenty years.
const CA_CERT_VALIDITY: Duration = Duration::days(20 * 365 + 5);

/// A cluster certificate authority: an Ed25519 key and its self-signed CA
/// certificate.
///
/// Nodes that trust the CA ([`Trust::ca`](super::Trust::ca)) accept any peer
/// presenting a certificate it issued; they need only the certificate
/// ([`load_ca_certificate`]), never the key. The CA may sign node
/// certificates only (path length 0).
///
/// `Debug` shows the CA's public key, never the private key.
#[derive(Clone)]
pub struct ClusterCa {
    key: Arc<PrivatePkcs8KeyDer<'static>>,
    public: [u8; 32],
    cert: CertificateDer<'static>,
}

impl ClusterCa {
    /// A fresh CA whose certificate has the common name `name`, valid from
    /// an hour ago for twenty years.
    pub fn generate(name: &str) -> Result<ClusterCa, IdentityError> {
        let pair = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_CERT_VALIDITY);
        let cert = params.self_signed(&pair)?;
        let key = files::pkcs8_v1(pair.serialize_der());
        let public =
            files::key_from_der(&key).map_err(|reason| IdentityError::Generate { reason })?;
        Ok(ClusterCa {
            key: Arc::new(key),
            public,
            cert: cert.der().clone(),
        })
    }

    /// Loads the CA saved in `dir` ([`CA_KEY_FILE`], [`CA_CERT_FILE`]).
    ///
    /// The certificate must be a CA certificate carrying the key's public key.
    pub fn load(dir: &Path) -> Result<ClusterCa, IdentityError> {
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        let key = files::read_key(&key_path)?;
        let cert = load_ca_certificate(&cert_path)?;
        let info = cert::parse(&cert).map_err(|_| IdentityError::MalformedCertificate {
            path: cert_path.clone(),
            reason: "unparseable certificate".to_owned(),
        })?;
        if info.key != key.public {
            return Err(IdentityError::KeyMismatch {
                certificate: Some(cert_path),
                key: Some(key_path),
            });
        }
        Ok(ClusterCa {
            key: Arc::new(key.der),
            public: key.public,
            cert,
        })
    }

    /// Saves the CA in `dir` (created if missing, mode 0700 on Unix): the key
    /// in [`CA_KEY_FILE`] (mode 0600), the certificate in [`CA_CERT_FILE`].
    ///
    /// Refuses ([`IdentityError::AlreadyExists`]) when either file exists:
    /// replacing a CA would orphan every certificate it issued.
    pub fn save(&self, dir: &Path) -> Result<(), IdentityError> {
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        for path in [&key_path, &cert_path] {
            if files::exists(path)? {
                return Err(IdentityError::AlreadyExists {
                    path: path.clone(),
                    reason: "a cluster CA is already there",
                });
            }
        }
        files::create_dir(dir)?;
        files::write_atomic(&key_path, &files::key_pem(&self.key), true)?;
        files::write_atomic(
            &cert_path,
            &files::certificates_pem(std::slice::from_ref(&self.cert)),
            false,
        )
    }

    /// The CA certificate: what nodes put in [`Trust::ca`](super::Trust::ca).
    pub fn certificate(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// Signs `identity`'s key: returns the identity with the chain
    /// `[leaf, CA certificate]`, the leaf having the common name `name`, the
    /// DNS SAN [`SERVER_NAME`](super::SERVER_NAME), server and client
    /// authentication usages, and a validity of five years from an hour ago.
    pub fn issue(&self, identity: Identity, name: &str) -> Result<Identity, IdentityError> {
        let ca_key = KeyPair::from_pkcs8_der_and_sign_algo(&self.key, &rcgen::PKCS_ED25519)?;
        let issuer = Issuer::from_ca_cert_der(&self.cert, ca_key)?;
        let mut params = leaf_params(name)?;
        params.use_authority_key_identifier_extension = true;
        let leaf = params.signed_by(&identity.key_pair()?, &issuer)?;
        identity.with_certificate_chain(vec![leaf.der().clone(), self.cert.clone()])
    }
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let public: String = self.public.iter().map(|b| format!("{b:02x}")).collect();
        f.debug_struct("ClusterCa")
            .field("public_key", &public)
            .finish_non_exhaustive()
    }
}

/// Loads a cluster CA certificate (PEM; the first certificate of the file),
/// for nodes that trust the CA without holding its key.
///
/// The certificate must be an Ed25519 CA certificate.
pub fn load_ca_certificate(path: &Path) -> Result<CertificateDer<'static>, IdentityError> {
    let cert = files::read_certificates(path)?
        .into_iter()
        .next()
        .ok_or_else(|| IdentityError::MalformedCertificate {
            path: path.to_owned(),
            reason: "no CERTIFICATE section".to_owned(),
        })?;
    let is_ca = cert::parse(&cert).map(|info| info.is_ca).unwrap_or(false);
    if !is_ca {
        return Err(IdentityError::NotACa {
            path: path.to_owned(),
        });
    }
    Ok(cert)
}
