//! Identity and trust: real TLS 1.3 handshakes between Plexus configs,
//! pumped through memory buffers (and one over QUIC on localhost).

use std::fs;
use std::path::Path;
use std::sync::Arc;

use plexus::tls::{
    self, load_allow_list, load_ca_certificate, ClusterCa, Identity, IdentityError, TlsError,
    Trust, ALPN, SERVER_NAME,
};
use plexus::NodeId;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConnection, Connection, ServerConnection};

/// What each side of a handshake ended with: the peer's chain, or its error.
struct Outcome {
    client: Result<Vec<CertificateDer<'static>>, rustls::Error>,
    server: Result<Vec<CertificateDer<'static>>, rustls::Error>,
}

impl Outcome {
    fn both_ok(&self) -> bool {
        self.client.is_ok() && self.server.is_ok()
    }

    /// The error of the side that refused (`server` or `client`), whose
    /// peer must then have failed too.
    fn refused_by(&self, side: &str) -> String {
        let (refuser, other) = match side {
            "server" => (&self.server, &self.client),
            _ => (&self.client, &self.server),
        };
        let other = other.as_ref().err().map(ToString::to_string);
        assert!(other.is_some(), "the {side}'s peer should fail too");
        match refuser {
            Err(e) => e.to_string(),
            Ok(_) => panic!("the {side} accepted; its peer failed with {other:?}"),
        }
    }
}

/// Runs a TLS handshake between `client` (as a client) and `server`.
fn handshake(
    client: &Identity,
    client_trust: &Trust,
    server: &Identity,
    server_trust: &Trust,
) -> Outcome {
    let client_config = tls::client_config(client, client_trust).expect("client config");
    let server_config = tls::server_config(server, server_trust).expect("server config");
    let name = ServerName::try_from(SERVER_NAME).expect("valid name");
    let mut client =
        Connection::Client(ClientConnection::new(Arc::new(client_config), name).expect("client"));
    let mut server =
        Connection::Server(ServerConnection::new(Arc::new(server_config)).expect("server"));
    let mut client_error = None;
    let mut server_error = None;
    for _ in 0..32 {
        let moved = pump(&mut client, &mut server, &mut server_error)
            + pump(&mut server, &mut client, &mut client_error);
        if moved == 0 {
            break;
        }
    }
    let finish = |conn: &Connection, error: Option<rustls::Error>| match error {
        Some(e) => Err(e),
        None if conn.is_handshaking() => panic!("handshake stalled without an error"),
        None => {
            assert_eq!(conn.alpn_protocol(), Some(ALPN));
            assert_eq!(
                conn.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_3)
            );
            Ok(conn
                .peer_certificates()
                .expect("a peer chain after a mutual handshake")
                .iter()
                .map(|c| c.clone().into_owned())
                .collect())
        }
    };
    Outcome {
        client: finish(&client, client_error),
        server: finish(&server, server_error),
    }
}

/// Moves every pending TLS byte from `from` to `to` and lets `to` process
/// them, keeping `to`'s first error. Returns the bytes moved.
fn pump(from: &mut Connection, to: &mut Connection, to_error: &mut Option<rustls::Error>) -> usize {
    let mut bytes = Vec::new();
    while from.wants_write() {
        if from.write_tls(&mut bytes).expect("write to memory") == 0 {
            break;
        }
    }
    let mut rest = &bytes[..];
    while !rest.is_empty() && to_error.is_none() {
        match to.read_tls(&mut rest) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if let Err(e) = to.process_new_packets() {
                    *to_error = Some(e);
                }
            }
        }
    }
    bytes.len()
}

fn id_of(chain: &Result<Vec<CertificateDer<'static>>, rustls::Error>) -> NodeId {
    let chain = chain.as_ref().expect("accepted");
    tls::peer_node_id(chain).expect("an Ed25519 leaf")
}

fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("plexus-tls-{name}-"))
        .tempdir()
        .expect("temp dir")
}

#[test]
fn ca_signed_peers_accept_each_other_and_learn_node_ids() {
    let ca = ClusterCa::generate("test cluster").unwrap();
    let amy = ca.issue(Identity::generate().unwrap(), "amy").unwrap();
    let bob = ca.issue(Identity::generate().unwrap(), "bob").unwrap();
    let trust = Trust::ca(ca.certificate());
    assert_eq!(amy.certificate_chain().len(), 2);
    assert_eq!(amy.certificate_chain()[1], ca.certificate());

    for (client, server) in [(&amy, &bob), (&bob, &amy)] {
        let outcome = handshake(client, &trust, server, &trust);
        assert!(
            outcome.both_ok(),
            "{:?} / {:?}",
            outcome.client.err(),
            outcome.server.err()
        );
        assert_eq!(
            id_of(&outcome.client),
            server.node_id(),
            "the client learns the server's id"
        );
        assert_eq!(
            id_of(&outcome.server),
            client.node_id(),
            "the server learns the client's id"
        );
    }
}

#[test]
fn certificate_from_another_ca_is_refused_both_ways() {
    let ca = ClusterCa::generate("test cluster").unwrap();
    let amy = ca.issue(Identity::generate().unwrap(), "amy").unwrap();
    let trust = Trust::ca(ca.certificate());
    // Another CA with another name, and one impersonating this CA's name.
    for other_name in ["other cluster", "test cluster"] {
        let other = ClusterCa::generate(other_name).unwrap();
        let mallory = other
            .issue(Identity::generate().unwrap(), "mallory")
            .unwrap();

        // Mallory trusts the real CA (its certificate is public) but shows hers.
        let outcome = handshake(&mallory, &trust, &amy, &trust);
        let reason = outcome.refused_by("server");
        assert!(
            reason.contains("certificate not signed by the cluster CA"),
            "{reason}"
        );

        let outcome = handshake(&amy, &trust, &mallory, &Trust::ca(other.certificate()));
        let reason = outcome.refused_by("client");
        assert!(
            reason.contains("certificate not signed by the cluster CA"),
            "{reason}"
        );
    }
}

#[test]
fn self_signed_peer_is_refused_by_a_ca_node() {
    let ca = ClusterCa::generate("test cluster").unwrap();
    let amy = ca.issue(Identity::generate().unwrap(), "amy").unwrap();
    let eve = Identity::generate().unwrap();
    let trust = Trust::ca(ca.certificate());

    let reason = handshake(&eve, &trust, &amy, &trust).refused_by("server");
    assert!(
        reason.contains("self-signed certificate, not signed by the cluster CA"),
        "{reason}"
    );
    let reason = handshake(&amy, &trust, &eve, &trust).refused_by("client");
    assert!(reason.contains("self-signed certificate"), "{reason}");
}

#[test]
fn allow_list_accepts_listed_self_signed_peers_and_refuses_others() {
    let amy = Identity::generate().unwrap();
    let bob = Identity::generate().unwrap();
    let carol = Identity::generate().unwrap();
    let amy_trust = Trust::allow_list([bob.node_id()]);
    let bob_trust = Trust::allow_list([amy.node_id()]);

    let outcome = handshake(&amy, &amy_trust, &bob, &bob_trust);
    assert!(outcome.both_ok());
    assert_eq!(id_of(&outcome.client), bob.node_id());
    assert_eq!(id_of(&outcome.server), amy.node_id());
    let outcome = handshake(&bob, &bob_trust, &amy, &amy_trust);
    assert!(outcome.both_ok());

    // Carol is in nobody's list: refused as a client and as a server, with
    // her full id in the reason so it can be pasted into an allow-list.
    let carol_trust = Trust::allow_list([amy.node_id()]);
    let expected = format!(
        "node {} is not in the allow-list",
        tls::node_id_hex(&carol.node_id())
    );
    let reason = handshake(&carol, &carol_trust, &amy, &amy_trust).refused_by("server");
    assert!(reason.contains(&expected), "{reason}");
    let reason = handshake(&amy, &amy_trust, &carol, &carol_trust).refused_by("client");
    assert!(reason.contains(&expected), "{reason}");

    assert!(amy_trust.allows(&bob.node_id()));
    assert!(!amy_trust.allows(&carol.node_id()));
}

#[test]
fn ca_and_allow_list_must_both_hold() {
    let ca = ClusterCa::generate("test cluster").unwrap();
    let amy = ca.issue(Identity::generate().unwrap(), "amy").unwrap();
    let bob = ca.issue(Identity::generate().unwrap(), "bob").unwrap();
    let carol = ca.issue(Identity::generate().unwrap(), "carol").unwrap();
    let dave = Identity::generate().unwrap(); // listed, but self-signed
    let open = Trust::ca(ca.certificate());
    let amy_trust = Trust::ca(ca.certificate()).and_allow([bob.node_id(), dave.node_id()]);

    assert!(handshake(&bob, &open, &amy, &amy_trust).both_ok());
    assert!(handshake(&amy, &amy_trust, &bob, &open).both_ok());

    let reason = handshake(&carol, &open, &amy, &amy_trust).refused_by("server");
    assert!(reason.contains("is not in the allow-list"), "{reason}");
    let reason = handshake(&amy, &amy_trust, &carol, &open).refused_by("client");
    assert!(reason.contains("is not in the allow-list"), "{reason}");

    let reason = handshake(&dave, &open, &amy, &amy_trust).refused_by("server");
    assert!(reason.contains("not signed by the cluster CA"), "{reason}");

    assert!(
        open.allows(&carol.node_id()),
        "a CA-only trust has no allow-list to fail"
    );
    assert!(!amy_trust.allows(&carol.node_id()));
}

/// The key pair saved in `dir/file`, for rcgen.
fn saved_key(dir: &Path, file: &str) -> rcgen::KeyPair {
    rcgen::KeyPair::from_pem(&fs::read_to_string(dir.join(file)).unwrap()).unwrap()
}

/// Node certificate parameters valid from 30 days ago until yesterday.
fn expired_params() -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()]).unwrap();
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now - time::Duration::days(1);
    params
}

#[test]
fn expired_certificate_is_refused() {
    let dir = temp_dir("expired");
    let amy = Identity::generate().unwrap();
    let old = Identity::generate().unwrap();
    old.save(dir.path()).unwrap();
    let old_key = saved_key(dir.path(), tls::KEY_FILE);

    // Allow-list: a listed key whose self-signed certificate expired.
    let expired = expired_params()
        .self_signed(&old_key)
        .unwrap()
        .der()
        .clone();
    let old_self_signed = old.clone().with_certificate_chain(vec![expired]).unwrap();
    let trust = Trust::allow_list([amy.node_id(), old.node_id()]);
    let reason = handshake(&old_self_signed, &trust, &amy, &trust).refused_by("server");
    assert!(reason.contains("certificate expired"), "{reason}");
    let reason = handshake(&amy, &trust, &old_self_signed, &trust).refused_by("client");
    assert!(reason.contains("certificate expired"), "{reason}");

    // CA: an expired certificate from the right CA.
    let ca = ClusterCa::generate("test cluster").unwrap();
    let ca_dir = temp_dir("expired-ca");
    ca.save(ca_dir.path()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_der(
        &ca.certificate(),
        saved_key(ca_dir.path(), tls::CA_KEY_FILE),
    )
    .unwrap();
    let expired = expired_params()
        .signed_by(&old_key, &issuer)
        .unwrap()
        .der()
        .clone();
    let old_issued = old
        .with_certificate_chain(vec![expired, ca.certificate()])
        .unwrap();
    let ca_trust = Trust::ca(ca.certificate());
    let amy = ca.issue(amy, "amy").unwrap();
    let reason = handshake(&old_issued, &ca_trust, &amy, &ca_trust).refused_by("server");
    assert!(reason.contains("certificate expired"), "{reason}");
}

#[test]
fn trust_with_nothing_configured_is_refused_at_config_time() {
    let amy = Identity::generate().unwrap();
    let nobody = Trust::allow_list([]).and_allow([]);
    assert!(!nobody.allows(&amy.node_id()));
    assert!(matches!(
        tls::server_config(&amy, &nobody),
        Err(TlsError::NoTrust)
    ));
    assert!(matches!(
        tls::client_config(&amy, &nobody),
        Err(TlsError::NoTrust)
    ));

    // A CA "certificate" that is a node certificate is refused too.
    let bogus = Trust::ca(amy.certificate_chain()[0].clone());
    assert!(matches!(
        tls::server_config(&amy, &bogus),
        Err(TlsError::InvalidCaCertificate { .. })
    ));
}

#[test]
fn configs_are_accepted_by_quinn() {
    let ca = ClusterCa::generate("test cluster").unwrap();
    let amy = ca.issue(Identity::generate().unwrap(), "amy").unwrap();
    let trust = Trust::ca(ca.certificate());
    quinn::crypto::rustls::QuicServerConfig::try_from(tls::server_config(&amy, &trust).unwrap())
        .expect("quinn takes the server config");
    quinn::crypto::rustls::QuicClientConfig::try_from(tls::client_config(&amy, &trust).unwrap())
        .expect("quinn takes the client config");
}

#[test]
fn identity_round_trips_through_files() {
    let dir = temp_dir("identity");
    let node_dir = dir.path().join("amy");
    let amy = Identity::load_or_generate(&node_dir).unwrap();
    assert!(node_dir.join(tls::KEY_FILE).is_file());
    assert!(node_dir.join(tls::CERT_FILE).is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(node_dir.join(tls::KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let again = Identity::load_or_generate(&node_dir).unwrap();
    assert_eq!(again.node_id(), amy.node_id());
    assert_eq!(again.certificate_chain(), amy.certificate_chain());

    // A CA-issued chain replaces the certificate, keeps the key, and loads back.
    let ca = ClusterCa::generate("test cluster").unwrap();
    let issued = ca.issue(again, "amy").unwrap();
    issued.save(&node_dir).unwrap();
    let loaded = Identity::load(&node_dir).unwrap();
    assert_eq!(loaded.node_id(), amy.node_id());
    assert_eq!(loaded.certificate_chain(), issued.certificate_chain());
    assert_eq!(
        Identity::load_key(&node_dir).unwrap().node_id(),
        amy.node_id()
    );

    // Another identity may not overwrite this one's key.
    let other = Identity::generate().unwrap();
    assert!(matches!(
        other.save(&node_dir),
        Err(IdentityError::AlreadyExists { .. })
    ));
    assert_eq!(Identity::load(&node_dir).unwrap().node_id(), amy.node_id());

    // Debug never shows the key.
    let key_pem = fs::read_to_string(node_dir.join(tls::KEY_FILE)).unwrap();
    let key_body = key_pem.lines().nth(1).unwrap();
    let debug = format!("{loaded:?}");
    assert!(!debug.contains(key_body), "{debug}");
    assert!(debug.contains(&tls::node_id_hex(&amy.node_id())), "{debug}");
}

/// Loading `dir` fails with an error naming `file`, and leaves it as it was.
fn assert_load_fails_naming(dir: &Path, file: &str) {
    let before = fs::read(dir.join(file)).ok();
    for result in [Identity::load(dir), Identity::load_or_generate(dir)] {
        let error = result.expect_err("a damaged identity must not load");
        let message = error.to_string();
        assert!(message.contains(file), "{message}");
    }
    assert_eq!(fs::read(dir.join(file)).ok(), before, "{file} was modified");
}

#[test]
fn corrupt_or_truncated_files_are_errors_naming_the_file() {
    let dir = temp_dir("corrupt");
    let ca = ClusterCa::generate("test cluster").unwrap();
    let amy = ca.issue(Identity::generate().unwrap(), "amy").unwrap();
    amy.save(dir.path()).unwrap();
    let key_path = dir.path().join(tls::KEY_FILE);
    let cert_path = dir.path().join(tls::CERT_FILE);
    let good_key = fs::read(&key_path).unwrap();
    let good_cert = fs::read(&cert_path).unwrap();

    // A flipped character in the key's base64.
    let mut bad = good_key.clone();
    bad[40] = if bad[40] == b'A' { b'B' } else { b'A' };
    fs::write(&key_path, &bad).unwrap();
    assert_load_fails_naming(dir.path(), tls::KEY_FILE);

    // A flipped character in the key's seed: still a key, but another one.
    let mut bad = good_key.clone();
    bad[70] = if bad[70] == b'A' { b'B' } else { b'A' };
    fs::write(&key_path, &bad).unwrap();
    assert_load_fails_naming(dir.path(), tls::KEY_FILE);

    // A truncated key, and garbage.
    fs::write(&key_path, &good_key[..good_key.len() / 2]).unwrap();
    assert_load_fails_naming(dir.path(), tls::KEY_FILE);
    fs::write(&key_path, b"not a key").unwrap();
    assert_load_fails_naming(dir.path(), tls::KEY_FILE);
    fs::write(&key_path, &good_key).unwrap();

    // A truncated chain.
    fs::write(&cert_path, &good_cert[..good_cert.len() / 2]).unwrap();
    assert_load_fails_naming(dir.path(), tls::CERT_FILE);
    // Another node's certificate.
    let other = temp_dir("corrupt-other");
    Identity::generate().unwrap().save(other.path()).unwrap();
    fs::copy(other.path().join(tls::CERT_FILE), &cert_path).unwrap();
    assert_load_fails_naming(dir.path(), tls::CERT_FILE);

    // A lone key is not silently completed with a fresh certificate.
    fs::remove_file(&cert_path).unwrap();
    let error = Identity::load_or_generate(dir.path()).unwrap_err();
    assert!(matches!(error, IdentityError::Missing { .. }), "{error}");
    assert!(error.to_string().contains(tls::CERT_FILE), "{error}");
    assert!(!cert_path.exists());
}

#[test]
fn cluster_ca_round_trips_and_refuses_to_be_overwritten() {
    let dir = temp_dir("ca");
    let ca = ClusterCa::generate("test cluster").unwrap();
    ca.save(dir.path()).unwrap();
    assert!(matches!(
        ClusterCa::generate("again").unwrap().save(dir.path()),
        Err(IdentityError::AlreadyExists { .. })
    ));

    // A node certificate issued by the loaded CA is trusted through the
    // certificate alone, as a node without the CA key loads it.
    let loaded = ClusterCa::load(dir.path()).unwrap();
    assert_eq!(loaded.certificate(), ca.certificate());
    let root = load_ca_certificate(&dir.path().join(tls::CA_CERT_FILE)).unwrap();
    let trust = Trust::ca(root);
    let amy = loaded.issue(Identity::generate().unwrap(), "amy").unwrap();
    let bob = ca.issue(Identity::generate().unwrap(), "bob").unwrap();
    assert!(handshake(&amy, &trust, &bob, &trust).both_ok());

    // A node certificate is not a CA certificate.
    let node_dir = temp_dir("ca-node");
    amy.save(node_dir.path()).unwrap();
    let error = load_ca_certificate(&node_dir.path().join(tls::CERT_FILE)).unwrap_err();
    assert!(matches!(error, IdentityError::NotACa { .. }), "{error}");
}

#[test]
fn peer_node_id_reads_ed25519_leaves_only() {
    let amy = Identity::generate().unwrap();
    assert_eq!(
        tls::peer_node_id(amy.certificate_chain()).unwrap(),
        amy.node_id()
    );
    assert!(matches!(
        tls::peer_node_id(&[]),
        Err(TlsError::NoCertificate)
    ));
    assert!(matches!(
        tls::peer_node_id(&[CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00])]),
        Err(TlsError::MalformedCertificate { .. })
    ));
    let ecdsa = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()]).unwrap();
    assert!(matches!(
        tls::peer_node_id(&[ecdsa.cert.der().clone()]),
        Err(TlsError::NotEd25519)
    ));

    // A chain for another key cannot be attached to this identity.
    let bob = Identity::generate().unwrap();
    let error = amy
        .with_certificate_chain(bob.certificate_chain().to_vec())
        .unwrap_err();
    assert!(
        matches!(error, IdentityError::KeyMismatch { .. }),
        "{error}"
    );
}

#[test]
fn node_ids_round_trip_through_hex_and_allow_list_files() {
    let amy = Identity::generate().unwrap().node_id();
    let bob = Identity::generate().unwrap().node_id();
    let hex = tls::node_id_hex(&amy);
    assert_eq!(hex.len(), 64);
    assert_eq!(tls::parse_node_id(&hex).unwrap(), amy);
    assert_eq!(
        tls::parse_node_id(&format!("  {}\n", hex.to_uppercase())).unwrap(),
        amy
    );
    assert!(tls::parse_node_id(&hex[..63]).is_err());
    assert!(tls::parse_node_id(&format!("{}g", &hex[..63])).is_err());
    assert!(tls::parse_node_id(&format!("{}é", &hex[..63])).is_err());

    let dir = temp_dir("allow");
    let path = dir.path().join("allow.txt");
    let text = format!(
        "# the cluster\n{hex}  # amy\n\n{}\n",
        tls::node_id_hex(&bob)
    );
    fs::write(&path, text).unwrap();
    assert_eq!(load_allow_list(&path).unwrap(), vec![amy, bob]);
    fs::write(&path, format!("{hex}\nnot-an-id\n")).unwrap();
    let error = load_allow_list(&path).unwrap_err().to_string();
    assert!(error.contains("allow.txt:2"), "{error}");
}

#[tokio::test]
async fn quic_handshake_over_localhost() {
    use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

    let ca = ClusterCa::generate("test cluster").unwrap();
    let amy = ca.issue(Identity::generate().unwrap(), "amy").unwrap();
    let bob = ca.issue(Identity::generate().unwrap(), "bob").unwrap();
    let eve = Identity::generate().unwrap();
    let trust = Trust::ca(ca.certificate());

    let server_crypto =
        QuicServerConfig::try_from(tls::server_config(&bob, &trust).unwrap()).unwrap();
    let server = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(server_crypto)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let client_config = |id: &Identity| {
        let crypto = QuicClientConfig::try_from(tls::client_config(id, &trust).unwrap()).unwrap();
        quinn::ClientConfig::new(Arc::new(crypto))
    };
    let peer_id = |conn: &quinn::Connection| {
        let chain = conn
            .peer_identity()
            .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
            .expect("a certificate chain");
        tls::peer_node_id(&chain).unwrap()
    };

    // Amy is accepted; each side learns the other's id.
    let connecting = client
        .connect_with(client_config(&amy), addr, SERVER_NAME)
        .unwrap();
    let (client_side, server_side) = tokio::join!(connecting, async {
        server.accept().await.expect("incoming").await
    });
    let (client_side, server_side) = (client_side.unwrap(), server_side.unwrap());
    assert_eq!(peer_id(&client_side), bob.node_id());
    assert_eq!(peer_id(&server_side), amy.node_id());
    client_side.close(0u32.into(), b"done");

    // Eve (self-signed) is refused by the server; she sees the connection fail.
    let connecting = client
        .connect_with(client_config(&eve), addr, SERVER_NAME)
        .unwrap();
    let (client_side, server_side) = tokio::join!(
        async {
            match connecting.await {
                Ok(conn) => conn.closed().await,
                Err(e) => e,
            }
        },
        async { server.accept().await.expect("incoming").await }
    );
    assert!(server_side.is_err(), "the server must refuse eve");
    assert!(
        matches!(
            client_side,
            quinn::ConnectionError::TransportError(_) | quinn::ConnectionError::ConnectionClosed(_)
        ),
        "{client_side:?}"
    );
}
