//! Whom a node accepts: [`Trust`], and the rustls verifiers that enforce it.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, PeerMisbehaved,
    RootCertStore, SignatureScheme,
};

use super::cert::{self, CertProblem};
use super::error::{IdentityError, TlsError};
use super::{files, node_id_hex, parse_node_id, SERVER_NAME};
use crate::proto::NodeId;

/// Whom a node accepts as a peer.
///
/// A peer is accepted if and only if
/// * a cluster CA is configured and the peer's chain verifies to it, or no
///   CA is configured; **and**
/// * an allow-list is configured and holds the peer's [`NodeId`], or no
///   allow-list is configured; **and**
/// * at least one of the two is configured.
///
/// There is no trust-everyone mode: a `Trust` with neither is refused when a
/// TLS configuration is built ([`TlsError::NoTrust`]). In every mode the
/// peer's certificates must be Ed25519 and within their validity dates, and
/// the peer proves possession of the key in the handshake.
#[derive(Clone, Debug)]
pub struct Trust {
    ca: Option<CertificateDer<'static>>,
    allowed: BTreeSet<NodeId>,
}

impl Trust {
    /// Peers must present a chain to the cluster CA certificate `root`.
    pub fn ca(root: CertificateDer<'static>) -> Trust {
        Trust {
            ca: Some(root),
            allowed: BTreeSet::new(),
        }
    }

    /// Peers must hold a key listed in `ids`; their certificates may be
    /// self-signed (or signed by anyone).
    pub fn allow_list(ids: impl IntoIterator<Item = NodeId>) -> Trust {
        Trust {
            ca: None,
            allowed: ids.into_iter().collect(),
        }
    }

    /// Adds `ids` to the allow-list. On a CA trust, both must then hold: a
    /// chain to the CA and a listed key.
    pub fn and_allow(mut self, ids: impl IntoIterator<Item = NodeId>) -> Trust {
        self.allowed.extend(ids);
        self
    }

    /// Whether `id` passes the allow-list part of the rule: true when `id`
    /// is listed, or when no allow-list is configured but a CA is (the CA
    /// check then happens at the handshake). False for a `Trust` with
    /// nothing configured.
    pub fn allows(&self, id: &NodeId) -> bool {
        if self.allowed.is_empty() {
            self.ca.is_some()
        } else {
            self.allowed.contains(id)
        }
    }

    /// The cluster CA certificate, if one is configured.
    pub fn ca_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.ca.as_ref()
    }

    /// The allow-listed node ids, in order (empty when there is no allow-list).
    pub fn allowed(&self) -> impl Iterator<Item = &NodeId> + '_ {
        self.allowed.iter()
    }
}

/// Reads an allow-list file: one node id (64 hex digits) per line; blank
/// lines and everything after a `#` are ignored.
///
/// A line that is not a node id is an error naming the file and the line.
pub fn load_allow_list(path: &Path) -> Result<Vec<NodeId>, IdentityError> {
    let bytes = files::read(path)?;
    let text = String::from_utf8(bytes).map_err(|e| IdentityError::Read {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    let mut ids = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or_default().trim();
        if content.is_empty() {
            continue;
        }
        let id = parse_node_id(content).map_err(|source| IdentityError::MalformedAllowList {
            path: path.to_owned(),
            line: i + 1,
            source,
        })?;
        ids.push(id);
    }
    Ok(ids)
}

/// Why a peer's certificate was refused at the handshake.
///
/// Carried in the handshake's `rustls::Error` (as
/// `InvalidCertificate(CertificateError::Other(..))`, so peers get a
/// `certificate_unknown` alert) and logged with `tracing::warn!`. Its
/// `Debug` form is its sentence, because rustls prints the error with it.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerRejection {
    /// The certificate could not be parsed.
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// The certificate's key is not Ed25519.
    #[error("certificate key is not Ed25519")]
    NotEd25519,
    /// The chain does not lead to the cluster CA.
    #[error("certificate not signed by the cluster CA")]
    NotSignedByCa,
    /// A self-signed certificate was presented where the cluster CA is required.
    #[error("self-signed certificate, not signed by the cluster CA")]
    SelfSigned,
    /// The key is not in the allow-list.
    #[error("node {} is not in the allow-list", node_id_hex(.0))]
    NotInAllowList(NodeId),
    /// A certificate of the chain has expired.
    #[error("certificate expired")]
    Expired,
    /// A certificate of the chain is not valid yet.
    #[error("certificate not valid yet")]
    NotYetValid,
    /// The chain failed another check of the CA verification.
    #[error("certificate chain rejected: {0}")]
    InvalidChain(String),
}

impl fmt::Debug for PeerRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl PeerRejection {
    fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }

    /// Names the failure of the CA verification in Plexus's terms.
    fn from_ca_check(error: rustls::Error, self_issued: bool) -> PeerRejection {
        match error {
            rustls::Error::InvalidCertificate(e) => match e {
                CertificateError::UnknownIssuer | CertificateError::BadSignature if self_issued => {
                    PeerRejection::SelfSigned
                }
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    PeerRejection::NotSignedByCa
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    PeerRejection::Expired
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    PeerRejection::NotYetValid
                }
                other => PeerRejection::InvalidChain(
                    rustls::Error::InvalidCertificate(other).to_string(),
                ),
            },
            other => PeerRejection::InvalidChain(other.to_string()),
        }
    }
}

/// The trust rule, shared by the verifiers of both sides.
#[derive(Debug)]
struct Policy {
    allowed: BTreeSet<NodeId>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Policy {
    /// Builds the policy and, when a CA is configured, its root store.
    fn new(
        trust: &Trust,
        provider: &CryptoProvider,
    ) -> Result<(Policy, Option<Arc<RootCertStore>>), TlsError> {
        if trust.ca.is_none() && trust.allowed.is_empty() {
            return Err(TlsError::NoTrust);
        }
        let roots = match &trust.ca {
            None => None,
            Some(root) => {
                let invalid = |reason: String| TlsError::InvalidCaCertificate { reason };
                let info = cert::parse(root).map_err(|problem| match problem {
                    CertProblem::Malformed(reason) => invalid(reason),
                    CertProblem::NotEd25519 => invalid("its key is not Ed25519".to_owned()),
                })?;
                if !info.is_ca {
                    return Err(invalid("it is not a CA certificate".to_owned()));
                }
                let mut store = RootCertStore::empty();
                store
                    .add(root.clone())
                    .map_err(|e| invalid(e.to_string()))?;
                Some(Arc::new(store))
            }
        };
        let policy = Policy {
            allowed: trust.allowed.clone(),
            algorithms: provider.signature_verification_algorithms,
        };
        Ok((policy, roots))
    }

    /// Judges a peer's leaf certificate, given the outcome of the CA
    /// verification (`None` without a CA), and logs a refusal.
    fn check(
        &self,
        side: &'static str,
        end_entity: &CertificateDer<'_>,
        now: UnixTime,
        ca_check: Option<Result<(), rustls::Error>>,
    ) -> Result<NodeId, rustls::Error> {
        match self.judge(end_entity, now, ca_check) {
            Ok(id) => {
                tracing::debug!(side, peer = %node_id_hex(&id), "accepted peer certificate");
                Ok(id)
            }
            Err(rejection) => {
                tracing::warn!(side, reason = %rejection, "refused peer certificate");
                Err(rejection.into_rustls())
            }
        }
    }

    fn judge(
        &self,
        end_entity: &CertificateDer<'_>,
        now: UnixTime,
        ca_check: Option<Result<(), rustls::Error>>,
    ) -> Result<NodeId, PeerRejection> {
        let info = cert::parse(end_entity).map_err(|problem| match problem {
            CertProblem::Malformed(reason) => PeerRejection::Malformed(reason),
            CertProblem::NotEd25519 => PeerRejection::NotEd25519,
        })?;
        let id = NodeId::from_bytes(info.key);
        match ca_check {
            Some(outcome) => {
                outcome.map_err(|e| PeerRejection::from_ca_check(e, info.self_issued))?;
            }
            None => {
                let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
                if now < info.not_before {
                    return Err(PeerRejection::NotYetValid);
                }
                if now > info.not_after {
                    return Err(PeerRejection::Expired);
                }
            }
        }
        if !self.allowed.is_empty() && !self.allowed.contains(&id) {
            return Err(PeerRejection::NotInAllowList(id));
        }
        Ok(id)
    }

    /// Verifies a TLS 1.3 handshake signature: Ed25519 only.
    fn verify_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
        }
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

fn tls12_refused() -> rustls::Error {
    rustls::Error::General("Plexus speaks TLS 1.3 only".to_owned())
}

/// The server side's check of client certificates.
#[derive(Debug)]
pub(crate) struct ClientCertCheck {
    policy: Policy,
    webpki: Option<Arc<dyn ClientCertVerifier>>,
}

impl ClientCertCheck {
    pub(crate) fn new(trust: &Trust, provider: &Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let (policy, roots) = Policy::new(trust, provider)?;
        let webpki = roots
            .map(|roots| {
                WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(provider))
                    .build()
                    .map_err(|e| TlsError::InvalidCaCertificate {
                        reason: e.to_string(),
                    })
            })
            .transpose()?;
        Ok(ClientCertCheck { policy, webpki })
    }
}

impl ClientCertVerifier for ClientCertCheck {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        match &self.webpki {
            Some(webpki) => webpki.root_hint_subjects(),
            None => &[],
        }
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ca_check = self.webpki.as_ref().map(|webpki| {
            webpki
                .verify_client_cert(end_entity, intermediates, now)
                .map(|_| ())
        });
        self.policy
            .check("server", end_entity, now, ca_check)
            .map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.policy.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The client side's check of server certificates.
#[derive(Debug)]
pub(crate) struct ServerCertCheck {
    policy: Policy,
    webpki: Option<Arc<WebPkiServerVerifier>>,
    server_name: ServerName<'static>,
}

impl ServerCertCheck {
    pub(crate) fn new(trust: &Trust, provider: &Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let (policy, roots) = Policy::new(trust, provider)?;
        let webpki = roots
            .map(|roots| {
                WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(provider))
                    .build()
                    .map_err(|e| TlsError::InvalidCaCertificate {
                        reason: e.to_string(),
                    })
            })
            .transpose()?;
        let server_name =
            ServerName::try_from(SERVER_NAME).expect("SERVER_NAME is a valid DNS name");
        Ok(ServerCertCheck {
            policy,
            webpki,
            server_name,
        })
    }
}

impl ServerCertVerifier for ServerCertCheck {
    /// Peers are identified by key, not by name: the name the caller asked
    /// for is ignored and a CA-issued certificate must be for [`SERVER_NAME`].
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca_check = self.webpki.as_ref().map(|webpki| {
            webpki
                .verify_server_cert(end_entity, intermediates, &self.server_name, &[], now)
                .map(|_| ())
        });
        self.policy
            .check("client", end_entity, now, ca_check)
            .map(|_| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.policy.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}
