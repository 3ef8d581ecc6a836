//! The `plexus` binary: cluster CA and node identities, run as a user would.

use std::path::Path;
use std::process::{Command, Output};

use plexus::tls::{self, Identity, Trust};

/// Runs the built `plexus` binary with `args`.
fn plexus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(args)
        .output()
        .expect("run the plexus binary")
}

/// Runs `plexus` expecting success; returns its standard output, trimmed.
fn plexus_ok(args: &[&str]) -> String {
    let output = plexus(args);
    assert!(
        output.status.success(),
        "plexus {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8 output")
        .trim()
        .to_owned()
}

/// Runs `plexus` expecting failure; returns its standard error.
fn plexus_err(args: &[&str]) -> String {
    let output = plexus(args);
    assert!(!output.status.success(), "plexus {args:?} should fail");
    assert!(output.stdout.is_empty(), "a failure prints no node id");
    String::from_utf8(output.stderr).expect("UTF-8 output")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

#[test]
fn ca_init_issue_and_id() {
    let tmp = tempfile::Builder::new()
        .prefix("plexus-cli-")
        .tempdir()
        .unwrap();
    let ca_dir = tmp.path().join("ca");
    let amy_dir = tmp.path().join("amy");
    let bob_dir = tmp.path().join("bob");

    plexus_ok(&[
        "ca",
        "init",
        "--dir",
        path(&ca_dir),
        "--name",
        "test cluster",
    ]);
    assert!(ca_dir.join(tls::CA_KEY_FILE).is_file());
    assert!(ca_dir.join(tls::CA_CERT_FILE).is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(ca_dir.join(tls::CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "ca.key is private");
    }

    // Init refuses to overwrite the CA, and leaves it as it was.
    let ca_key = std::fs::read(ca_dir.join(tls::CA_KEY_FILE)).unwrap();
    let error = plexus_err(&["ca", "init", "--dir", path(&ca_dir)]);
    assert!(error.contains("refusing to overwrite"), "{error}");
    assert_eq!(
        std::fs::read(ca_dir.join(tls::CA_KEY_FILE)).unwrap(),
        ca_key
    );

    // Issue prints the node id; issuing again keeps the key and the id.
    let issue = |name: &str, out: &Path| {
        plexus_ok(&[
            "ca",
            "issue",
            "--ca",
            path(&ca_dir),
            "--name",
            name,
            "--out",
            path(out),
        ])
    };
    let amy = issue("amy", &amy_dir);
    let amy_id = tls::parse_node_id(&amy).expect("issue prints a node id");
    let first_cert = std::fs::read(amy_dir.join(tls::CERT_FILE)).unwrap();
    assert_eq!(issue("amy", &amy_dir), amy);
    assert_ne!(
        std::fs::read(amy_dir.join(tls::CERT_FILE)).unwrap(),
        first_cert,
        "a new certificate"
    );
    let bob = issue("bob", &bob_dir);
    assert_ne!(bob, amy);

    // `id` prints what `issue` printed, and it is the key in the chain.
    assert_eq!(plexus_ok(&["id", "--dir", path(&amy_dir)]), amy);
    assert_eq!(plexus_ok(&["id", "--dir", path(&bob_dir)]), bob);
    let loaded = Identity::load(&amy_dir).unwrap();
    assert_eq!(loaded.node_id(), amy_id);
    assert_eq!(
        tls::peer_node_id(loaded.certificate_chain()).unwrap(),
        amy_id
    );
    assert_eq!(
        loaded.certificate_chain().len(),
        2,
        "leaf and CA certificate"
    );

    // The issued identities make valid TLS configs under the CA's trust.
    let root = tls::load_ca_certificate(&ca_dir.join(tls::CA_CERT_FILE)).unwrap();
    tls::server_config(&loaded, &Trust::ca(root)).unwrap();
}

#[test]
fn keygen_and_errors() {
    let tmp = tempfile::Builder::new()
        .prefix("plexus-cli-")
        .tempdir()
        .unwrap();
    let carol_dir = tmp.path().join("carol");

    let carol = plexus_ok(&["keygen", "--out", path(&carol_dir)]);
    tls::parse_node_id(&carol).expect("keygen prints a node id");
    assert_eq!(plexus_ok(&["id", "--dir", path(&carol_dir)]), carol);
    assert_eq!(
        Identity::load(&carol_dir)
            .unwrap()
            .certificate_chain()
            .len(),
        1
    );

    let error = plexus_err(&["keygen", "--out", path(&carol_dir)]);
    assert!(error.contains("already exists"), "{error}");
    assert_eq!(
        plexus_ok(&["id", "--dir", path(&carol_dir)]),
        carol,
        "the key survives"
    );

    // Missing identity and missing CA name the file they looked for.
    let empty = tmp.path().join("empty");
    let error = plexus_err(&["id", "--dir", path(&empty)]);
    assert!(error.contains(tls::KEY_FILE), "{error}");
    let error = plexus_err(&[
        "ca",
        "issue",
        "--ca",
        path(&empty),
        "--name",
        "x",
        "--out",
        path(&carol_dir),
    ]);
    assert!(error.contains(tls::CA_KEY_FILE), "{error}");
}

#[test]
fn plot_draws_reports_and_refuses_bad_ones() {
    let tmp = tempfile::Builder::new()
        .prefix("plexus-plot-")
        .tempdir()
        .expect("temp dir");
    let reports = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reports");
    let one = reports.join("scale-100.json");
    let two = reports.join("scale-1000.json");
    let out = tmp.path().join("curve.svg");
    plexus_ok(&["plot", path(&one), path(&two), "--out", path(&out)]);
    let svg = std::fs::read_to_string(&out).expect("the SVG");
    assert!(svg.starts_with("<svg") && svg.contains("Latency to all nodes"));
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, r#"[{"nodes": 5}]"#).expect("write");
    let err = plexus_err(&["plot", path(&bad), "--out", path(&out)]);
    assert!(err.contains("latency_ms.p50"), "{err}");
}
