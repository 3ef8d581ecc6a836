//! Tests of the fault-injecting socket over real quinn endpoints on loopback.
use std::future::Future;
use std::net::Ipv4Addr;

use quinn::{ClientConfig, Connection, ConnectionError, TransportConfig, VarInt};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use rustls::RootCertStore;

use super::*;

const MSG: usize = 32;

struct Pair {
    client: Endpoint,
    server: SocketAddr,
    accepted: mpsc::UnboundedReceiver<Connection>,
    cert: CertificateDer<'static>,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The failure bound on anything a test waits for.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    let bound = Duration::from_secs(60);
    let outcome = tokio::time::timeout(bound, fut).await;
    outcome.unwrap_or_else(|_| panic!("{what}: no outcome in {bound:?}"))
}

fn loopback() -> std::net::UdpSocket {
    std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind loopback")
}

/// A plain server on loopback (echoing every bi stream if `echo`) and a
/// client endpoint over `faults`.
fn pair(faults: &Faults, echo: bool) -> Pair {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let cert = ck.cert.der().clone();
    let key = PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()).into();
    let config = ServerConfig::with_single_cert(vec![cert.clone()], key).expect("server tls");
    let runtime = quinn::default_runtime().expect("tokio");
    let server = Endpoint::new(EndpointConfig::default(), Some(config), loopback(), runtime);
    let server = server.expect("server endpoint");
    let addr = server.local_addr().expect("server addr");
    let (tx, accepted) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            let Ok(conn) = incoming.await else { continue };
            if echo {
                tokio::spawn(echo_streams(conn.clone()));
            }
            let _ = tx.send(conn);
        }
    });
    let client = endpoint(EndpointConfig::default(), None, loopback(), faults.clone());
    let client = client.expect("client endpoint");
    Pair {
        client,
        server: addr,
        accepted,
        cert,
    }
}

async fn echo_streams(conn: Connection) {
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        tokio::spawn(async move {
            let mut msg = [0u8; MSG];
            while recv.read_exact(&mut msg).await.is_ok() {
                let _ = send.write_all(&msg).await;
            }
        });
    }
}

async fn try_connect(pair: &Pair, idle_ms: u32) -> Result<Connection, ConnectionError> {
    let mut roots = RootCertStore::empty();
    roots.add(pair.cert.clone()).expect("root");
    let mut config = ClientConfig::with_root_certificates(Arc::new(roots)).expect("client tls");
    let mut transport = TransportConfig::default();
    transport.max_idle_timeout(Some(VarInt::from_u32(idle_ms).into()));
    config.transport_config(Arc::new(transport));
    let connecting = pair.client.connect_with(config, pair.server, "localhost");
    within("handshake", connecting.expect("connect")).await
}

async fn connect(pair: &Pair, idle_ms: u32) -> Connection {
    try_connect(pair, idle_ms).await.expect("handshake")
}

fn assert_timed_out<T: fmt::Debug>(outcome: Result<T, ConnectionError>) {
    assert!(
        matches!(outcome, Err(ConnectionError::TimedOut)),
        "{outcome:?}"
    );
}

/// Send `n` numbered messages on a new bi stream, `window` at a time,
/// checking every echo. Returns the echoes and the mean time per window.
async fn exchange(conn: &Connection, n: u64, window: u64) -> (u64, Duration) {
    let (mut send, mut recv) = conn.open_bi().await.expect("open_bi");
    let (mut echoed, started) = (0, Instant::now());
    for first in (0..n).step_by(window as usize) {
        let last = (first + window).min(n);
        for i in first..last {
            let mut msg = [0xa5u8; MSG];
            msg[..8].copy_from_slice(&i.to_le_bytes());
            send.write_all(&msg).await.expect("write");
        }
        for i in first..last {
            let mut msg = [0u8; MSG];
            recv.read_exact(&mut msg).await.expect("read echo");
            assert_eq!(msg[..8], i.to_le_bytes(), "echo out of order");
            echoed += 1;
        }
    }
    let _ = send.finish();
    (echoed, started.elapsed() / n.div_ceil(window) as u32)
}

#[tokio::test]
async fn no_faults_all_messages_arrive() {
    let faults = Faults::with_seed(1);
    let pair = pair(&faults, true);
    let conn = connect(&pair, 10_000).await;
    let (echoed, _) = within("exchange", exchange(&conn, 1000, 10)).await;
    let s = faults.stats();
    println!("no faults: {s:?}");
    assert_eq!(echoed, 1000);
    assert_eq!(s.dropped() + s.delayed_outbound + s.delayed_inbound, 0);
    assert!(s.sent > 0 && s.received > 0);
}

#[tokio::test]
async fn lossy_link_still_delivers_everything() {
    let faults = Faults::with_seed(20);
    faults.set_loss(Target::All, Direction::Both, 0.2);
    let mut pair = pair(&faults, true);
    let conn = connect(&pair, 30_000).await;
    let started = Instant::now();
    let (echoed, _) = within("exchange", exchange(&conn, 1000, 10)).await;
    let s = faults.stats();
    let (out_all, in_all) = (s.sent + s.lost_outbound, s.received + s.lost_inbound);
    let out = s.lost_outbound as f64 / out_all as f64;
    let inb = s.lost_inbound as f64 / in_all as f64;
    let took = started.elapsed();
    println!("20% loss: {echoed} echoed in {took:?}; lost out {out:.3}, in {inb:.3}; {s:?}");
    assert_eq!(echoed, 1000);
    assert!((0.05..0.40).contains(&out), "outbound loss {out}");
    assert!((0.05..0.40).contains(&inb), "inbound loss {inb}");

    // Bulk data from the (GSO-sending) server reaches the client in GRO
    // batches, which the socket splits to judge each datagram.
    let bulk: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let server_conn = within("accept", pair.accepted.recv())
        .await
        .expect("accepted");
    let mut send = server_conn.open_uni().await.expect("open_uni");
    let sent = bulk.clone();
    tokio::spawn(async move {
        send.write_all(&sent)
            .await
            .and_then(|()| Ok(send.finish()?))
    });
    let mut recv = within("stream", conn.accept_uni()).await.expect("stream");
    let started = Instant::now();
    let got = within("bulk", recv.read_to_end(2_000_000))
        .await
        .expect("bulk");
    println!(
        "20% loss: 1 MB in {:?}; {:?}",
        started.elapsed(),
        faults.stats()
    );
    assert!(got == bulk, "bulk data corrupted");
}

#[tokio::test]
async fn partition_cuts_the_link_and_heal_restores_it() {
    let faults = Faults::with_seed(3);
    let mut pair = pair(&faults, false);
    let conn = connect(&pair, 1000).await;
    let server_conn = within("accept", pair.accepted.recv())
        .await
        .expect("accepted");

    faults.partition([pair.server]);
    let mut send = conn.open_uni().await.expect("open_uni");
    send.write_all(b"lost").await.expect("buffered");
    let _ = send.finish();
    // The stream never reaches the server: both sides idle out (1 s).
    assert_timed_out(within("server stream", server_conn.accept_uni()).await);
    assert_timed_out(Err::<(), _>(within("client close", conn.closed()).await));
    assert_timed_out(try_connect(&pair, 1000).await);
    let cut = faults.stats();
    println!("partitioned: {cut:?}");
    assert!(cut.partitioned_outbound > 0);

    faults.heal();
    let conn = connect(&pair, 1000).await;
    let server_conn = within("accept", pair.accepted.recv())
        .await
        .expect("accepted");
    let mut send = conn.open_uni().await.expect("open_uni");
    send.write_all(b"healed").await.expect("write");
    send.finish().expect("finish");
    let mut recv = within("stream", server_conn.accept_uni())
        .await
        .expect("stream");
    let got = within("read", recv.read_to_end(64)).await.expect("read");
    assert_eq!(got, b"healed");
    assert_eq!(
        faults.stats().partitioned_outbound,
        cut.partitioned_outbound
    );
}

#[tokio::test]
async fn delay_grows_the_round_trip() {
    let faults = Faults::with_seed(4);
    let pair = pair(&faults, true);
    let conn = connect(&pair, 10_000).await;
    let (_, base_rt) = within("exchange", exchange(&conn, 200, 1)).await;
    let base = conn.rtt();

    faults.set_delay(Target::All, Direction::Both, ms(25), ms(25));
    let (echoed, delayed_rt) = within("exchange", exchange(&conn, 60, 1)).await;
    let delayed = conn.rtt();
    println!("25 ms each way: quinn rtt {base:?} -> {delayed:?}");
    println!("25 ms each way: measured round trip {base_rt:?} -> {delayed_rt:?}");
    assert_eq!(echoed, 60);
    for grew in [
        delayed.saturating_sub(base),
        delayed_rt.saturating_sub(base_rt),
    ] {
        assert!(
            (ms(40)..=ms(150)).contains(&grew),
            "round trip grew by {grew:?}"
        );
    }

    // Jitter reorders datagrams; the stream still delivers in order.
    faults.set_delay(Target::All, Direction::Both, ms(1), ms(30));
    assert_eq!(within("exchange", exchange(&conn, 300, 10)).await.0, 300);
    let s = faults.stats();
    println!("delay: {s:?}");
    assert!(s.delayed_outbound > 0 && s.delayed_inbound > 0 && s.dropped() == 0);
}

#[test]
fn same_seed_same_decisions() {
    let peer: SocketAddr = (Ipv4Addr::LOCALHOST, 9).into();
    let run = |seed| {
        let f = Faults::with_seed(seed);
        f.set_loss(Target::All, Direction::Both, 0.3);
        f.set_delay(peer, Direction::Outbound, ms(1), ms(50));
        let ways = [Way::Out, Way::In].into_iter().cycle().take(500);
        ways.map(|way| f.judge(way, peer)).collect::<Vec<_>>()
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12));
}

#[test]
fn peer_rules_override_the_default() {
    let a: SocketAddr = "127.0.0.1:1".parse().expect("an address");
    let b: SocketAddr = "[::ffff:127.0.0.1]:2".parse().expect("an address");
    let f = Faults::with_seed(0);
    f.set_loss(Target::All, Direction::Outbound, 1.0);
    f.set_loss(a, Direction::Both, 0.0);
    assert_eq!(f.judge(Way::Out, a), Verdict::Pass);
    assert_eq!(f.judge(Way::Out, b), Verdict::Lose);
    assert_eq!(f.judge(Way::In, b), Verdict::Pass);
    f.partition(["127.0.0.1:2".parse().expect("an address")]); // matches the mapped spelling
    assert_eq!(f.judge(Way::In, b), Verdict::Partition);
    f.clear();
    assert_eq!(f.judge(Way::Out, b), Verdict::Pass);
    let s = f.stats();
    assert_eq!((s.lost_outbound, s.partitioned_inbound), (1, 1));
}

#[test]
fn gro_batches_split_by_stride_and_compact() {
    let (mut a, mut b, mut c) = (*b"AAAABBBBCC______", *b"DDDD____", *b"EEEEFF______");
    let mut bufs = [&mut a[..], &mut b[..], &mut c[..]].map(IoSliceMut::new);
    let meta = |len| RecvMeta {
        len,
        stride: 4,
        ..RecvMeta::default()
    };
    let mut metas = [meta(10), meta(4), meta(6)];
    let mut seen = Vec::new();
    // Drop B (inside a batch) and D (a whole buffer).
    let kept = filter_batch(&mut bufs, &mut metas, 3, |_, d| {
        seen.push(d.to_vec());
        d[0] != b'B' && d[0] != b'D'
    });
    assert_eq!(
        seen,
        [&b"AAAA"[..], b"BBBB", b"CC", b"DDDD", b"EEEE", b"FF"]
    );
    assert_eq!((kept, metas[0].stride, metas[1].stride), (2, 4, 4));
    assert_eq!(&bufs[0][..metas[0].len], b"AAAACC");
    assert_eq!(&bufs[1][..metas[1].len], b"EEEEFF");
}
