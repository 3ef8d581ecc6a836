//! A node's identity: its Ed25519 key pair and its certificate chain.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use super::cert::{self, CertProblem};
use super::error::IdentityError;
use super::{files, node_id_hex, SERVER_NAME};
use crate::proto::NodeId;

/// The file holding a node's private key (PKCS#8 PEM, mode 0600).
pub const KEY_FILE: &str = "node.key";
/// The file holding a node's certificate chain (PEM, leaf first).
pub const CERT_FILE: &str = "node.crt";

/// How long a node certificate is valid: five years.
const NODE_CERT_VALIDITY: Duration = Duration::days(5 * 365 + 1);
/// How far back a new certificate's validity starts, for peers whose clock
/// is a little behind.
const CLOCK_SKEW: Duration = Duration::hours(1);
/// The common name of a self-signed node certificate.
const SELF_SIGNED_NAME: &str = "plexus node";

/// A node's identity: an Ed25519 key pair and the certificate chain that
/// presents it to peers.
///
/// The node's [`NodeId`] is its raw Ed25519 public key, so the id cannot be
/// claimed without the key: the TLS handshake proves possession. The chain is
/// either one self-signed certificate (for allow-list clusters, see
/// [`Identity::generate`]) or a leaf signed by a cluster CA followed by the CA
/// certificate (see [`ClusterCa::issue`](super::ClusterCa::issue)).
///
/// `Debug` shows the node id and the chain length, never the key.
#[derive(Clone)]
pub struct Identity {
    key: Arc<PrivatePkcs8KeyDer<'static>>,
    node_id: NodeId,
    chain: Vec<CertificateDer<'static>>,
}

impl Identity {
    /// A fresh Ed25519 key with a self-signed certificate for
    /// [`SERVER_NAME`], valid from an hour ago for five years.
    pub fn generate() -> Result<Identity, IdentityError> {
        let pair = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        let key = files::pkcs8_v1(pair.serialize_der());
        let public =
            files::key_from_der(&key).map_err(|reason| IdentityError::Generate { reason })?;
        Self::self_signed(key, public)
    }

    /// Loads the identity in `dir`, or makes one and saves it there when
    /// `dir` holds neither [`KEY_FILE`] nor [`CERT_FILE`] (creating `dir`).
    ///
    /// A damaged identity is an error naming the file, never a silent
    /// regeneration: a corrupt or truncated file, a missing companion file, a
    /// certificate for another key.
    pub fn load_or_generate(dir: &Path) -> Result<Identity, IdentityError> {
        let (key_path, cert_path) = paths(dir);
        match (files::exists(&key_path)?, files::exists(&cert_path)?) {
            (false, false) => {
                let identity = Self::generate()?;
                identity.save(dir)?;
                Ok(identity)
            }
            (true, false) => Err(IdentityError::Missing { path: cert_path }),
            (false, true) => Err(IdentityError::Missing { path: key_path }),
            (true, true) => Self::load(dir),
        }
    }

    /// Loads the identity saved in `dir` ([`KEY_FILE`] and [`CERT_FILE`]).
    ///
    /// The leaf certificate must carry the key's public key. Certificate
    /// validity dates are not checked here; peers check them.
    pub fn load(dir: &Path) -> Result<Identity, IdentityError> {
        let (key_path, cert_path) = paths(dir);
        let key = files::read_key(&key_path)?;
        let chain = files::read_certificates(&cert_path)?;
        let identity = Identity {
            key: Arc::new(key.der),
            node_id: NodeId::from_bytes(key.public),
            chain: Vec::new(),
        };
        identity.with_certificate_chain(chain).map_err(|e| match e {
            IdentityError::KeyMismatch { .. } => IdentityError::KeyMismatch {
                certificate: Some(cert_path),
                key: Some(key_path),
            },
            other => other,
        })
    }

    /// Loads only the key saved in `dir` ([`KEY_FILE`]) and gives it a fresh
    /// self-signed certificate, ignoring (and not touching) [`CERT_FILE`].
    ///
    /// For re-issuing a certificate to an existing node: the node id stays.
    pub fn load_key(dir: &Path) -> Result<Identity, IdentityError> {
        let key = files::read_key(&dir.join(KEY_FILE))?;
        Self::self_signed(key.der, key.public)
    }

    /// Saves the identity in `dir` (created if missing, mode 0700 on Unix):
    /// the key in [`KEY_FILE`] (mode 0600), the chain in [`CERT_FILE`].
    ///
    /// Both writes are atomic. An existing [`CERT_FILE`] is replaced; an
    /// existing [`KEY_FILE`] is kept when it holds this key and is an
    /// [`IdentityError::AlreadyExists`] when it holds another one (or cannot
    /// be read), so a node's identity is never overwritten by accident.
    pub fn save(&self, dir: &Path) -> Result<(), IdentityError> {
        let (key_path, cert_path) = paths(dir);
        files::create_dir(dir)?;
        if files::exists(&key_path)? {
            let existing =
                files::read_key(&key_path).map_err(|_| IdentityError::AlreadyExists {
                    path: key_path.clone(),
                    reason: "it holds a key that cannot be read",
                })?;
            if existing.public != *self.node_id.as_bytes() {
                return Err(IdentityError::AlreadyExists {
                    path: key_path,
                    reason: "it holds another node's key",
                });
            }
        } else {
            files::write_atomic(&key_path, &files::key_pem(&self.key), true)?;
        }
        files::write_atomic(&cert_path, &files::certificates_pem(&self.chain), false)
    }

    /// The node id: the raw Ed25519 public key.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The certificate chain presented to peers, leaf first.
    pub fn certificate_chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The same key with another certificate chain (leaf first).
    ///
    /// The leaf must be an Ed25519 certificate for this identity's key; the
    /// rest of the chain is sent as is (peers verify it).
    pub fn with_certificate_chain(
        self,
        chain: Vec<CertificateDer<'static>>,
    ) -> Result<Identity, IdentityError> {
        let leaf = chain.first().ok_or(IdentityError::EmptyChain)?;
        let info = cert::parse(leaf).map_err(|problem| IdentityError::InvalidCertificate {
            reason: match problem {
                CertProblem::Malformed(reason) => reason,
                CertProblem::NotEd25519 => "the key is not Ed25519".to_owned(),
            },
        })?;
        if info.key != *self.node_id.as_bytes() {
            return Err(IdentityError::KeyMismatch {
                certificate: None,
                key: None,
            });
        }
        Ok(Identity { chain, ..self })
    }

    /// The private key, for rustls.
    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// The key pair, for rcgen (as the subject key of a certificate).
    pub(crate) fn key_pair(&self) -> Result<KeyPair, IdentityError> {
        Ok(KeyPair::from_pkcs8_der_and_sign_algo(
            &self.key,
            &rcgen::PKCS_ED25519,
        )?)
    }

    fn self_signed(
        key: PrivatePkcs8KeyDer<'static>,
        public: [u8; 32],
    ) -> Result<Identity, IdentityError> {
        let pair = KeyPair::from_pkcs8_der_and_sign_algo(&key, &rcgen::PKCS_ED25519)?;
        let cert = leaf_params(SELF_SIGNED_NAME)?.self_signed(&pair)?;
        Ok(Identity {
            key: Arc::new(key),
            node_id: NodeId::from_bytes(public),
            chain: vec![cert.der().clone()],
        })
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &node_id_hex(&self.node_id))
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// Certificate parameters for a node (leaf) certificate named `common_name`:
/// DNS SAN [`SERVER_NAME`], usable for both TLS server and client auth.
pub(crate) fn leaf_params(common_name: &str) -> Result<CertificateParams, IdentityError> {
    let mut params = CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    set_validity(&mut params, NODE_CERT_VALIDITY);
    Ok(params)
}

/// Sets a random serial number and a validity from an hour ago for `period`.
pub(crate) fn set_validity(params: &mut CertificateParams, period: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + period;
    let mut serial: [u8; 16] = rand::random();
    // Positive and without a leading zero byte, as DER integers want.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    params.serial_number = Some(SerialNumber::from(serial.to_vec()));
}

fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(KEY_FILE), dir.join(CERT_FILE))
}
