//! Identity and trust: mutual TLS 1.3 between Plexus nodes.
//!
//! Every node has an Ed25519 key pair; its [`NodeId`] **is** the raw 32-byte
//! public key, so an id cannot be claimed without the key, and the TLS
//! handshake proves possession. Both sides present certificates (mutual
//! TLS) and both check the other's against a [`Trust`]:
//!
//! * **cluster CA** ([`Trust::ca`]): peers present a chain to the cluster
//!   CA ([`ClusterCa::issue`]); any node the CA signed is accepted;
//! * **allow-list** ([`Trust::allow_list`]): peers present any certificate
//!   (typically self-signed, [`Identity::generate`]) whose key is listed;
//! * **both** ([`Trust::and_allow`]): a CA chain *and* a listed key.
//!
//! There is no plaintext and no trust-everyone mode. Certificates must be
//! Ed25519 and within their validity dates; the host name is not used to
//! identify peers (every certificate is for [`SERVER_NAME`], every client
//! asks for it). A refused peer fails the handshake on both sides; the
//! refusing side logs why ([`PeerRejection`]) with `tracing::warn!`.
//!
//! ```
//! use plexus::tls::{self, ClusterCa, Identity, Trust};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = ClusterCa::generate("demo cluster")?;
//! let amy = ca.issue(Identity::generate()?, "amy")?;
//! let trust = Trust::ca(ca.certificate());
//! let server = tls::server_config(&amy, &trust)?; // for quinn's QuicServerConfig
//! let client = tls::client_config(&amy, &trust)?; // for quinn's QuicClientConfig
//! assert_eq!(tls::peer_node_id(amy.certificate_chain())?, amy.node_id());
//! # let _ = (server, client);
//! # Ok(())
//! # }
//! ```
//!
//! Session resumption is off: every connection runs a full handshake, so
//! the trust rule (which may change between runs) is checked every time.

mod ca;
mod cert;
mod error;
mod files;
mod identity;
mod verify;

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, ServerConfig};

use crate::proto::NodeId;

pub use ca::{load_ca_certificate, ClusterCa, CA_CERT_FILE, CA_KEY_FILE};
pub use error::{IdentityError, ParseNodeIdError, TlsError};
pub use identity::{Identity, CERT_FILE, KEY_FILE};
pub use verify::{load_allow_list, PeerRejection, Trust};

/// ALPN of the Plexus protocol.
pub const ALPN: &[u8] = b"plexus/1";

/// The server name every Plexus certificate carries (DNS SAN) and every
/// client asks for; peers are identified by key, not by name.
pub const SERVER_NAME: &str = "plexus.node";

/// A rustls server configuration for `identity`: TLS 1.3 only, ALPN
/// [`ALPN`], client certificates required and checked against `trust`.
///
/// Fails with [`TlsError::NoTrust`] when `trust` has neither a CA nor an
/// allow-list, and with [`TlsError::InvalidCaCertificate`] when its CA
/// certificate is not an Ed25519 CA certificate.
pub fn server_config(identity: &Identity, trust: &Trust) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(verify::ClientCertCheck::new(trust, &provider)?);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            identity.certificate_chain().to_vec(),
            identity.private_key(),
        )?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// A rustls client configuration for `identity`: TLS 1.3 only, ALPN
/// [`ALPN`], `identity` as the client certificate, the server checked
/// against `trust`.
///
/// Connect with the server name [`SERVER_NAME`]; any other name is ignored.
/// Fails like [`server_config`].
pub fn client_config(identity: &Identity, trust: &Trust) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(verify::ServerCertCheck::new(trust, &provider)?);
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(
            identity.certificate_chain().to_vec(),
            identity.private_key(),
        )?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// The [`NodeId`] of the peer that presented `chain` (leaf first): the
/// Ed25519 public key of the leaf certificate.
///
/// Call it on the chain of an established connection (quinn's
/// `Connection::peer_identity()`, downcast to `Vec<CertificateDer>`); the
/// handshake has already proved that the peer holds the key.
pub fn peer_node_id(chain: &[CertificateDer<'_>]) -> Result<NodeId, TlsError> {
    let leaf = chain.first().ok_or(TlsError::NoCertificate)?;
    let info = cert::parse(leaf).map_err(|problem| match problem {
        cert::CertProblem::Malformed(reason) => TlsError::MalformedCertificate { reason },
        cert::CertProblem::NotEd25519 => TlsError::NotEd25519,
    })?;
    Ok(NodeId::from_bytes(info.key))
}

/// A node id as 64 lowercase hex digits (the full key; [`NodeId`]'s
/// `Display` shows only a prefix). [`parse_node_id`] reads it back.
pub fn node_id_hex(id: &NodeId) -> String {
    id.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a node id written as 64 hex digits (either case; surrounding
/// whitespace is ignored), as in hand-written allow-lists.
pub fn parse_node_id(text: &str) -> Result<NodeId, ParseNodeIdError> {
    let text = text.trim();
    let len = text.chars().count();
    if len != 64 {
        return Err(ParseNodeIdError::WrongLength { len });
    }
    let mut bytes = [0u8; 32];
    let mut digits = text.chars().enumerate().map(|(position, character)| {
        character
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or(ParseNodeIdError::InvalidCharacter {
                character,
                position,
            })
    });
    for byte in &mut bytes {
        let (Some(high), Some(low)) = (digits.next(), digits.next()) else {
            return Err(ParseNodeIdError::WrongLength { len });
        };
        *byte = (high? << 4) | low?;
    }
    Ok(NodeId::from_bytes(bytes))
}
