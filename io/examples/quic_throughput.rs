//! QUIC throughput on loopback: one connection, one unidirectional stream,
//! a client shard pushing to a server shard (two glommio executors on two
//! threads). A plain TCP loopback transfer of the same size, run first in the
//! same process, is the baseline.
//!
//! ```text
//! cargo run --release -p sprawl-io --example quic_throughput [-- <MiB, default 1024>]
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use bytes::Bytes;
use glommio::LocalExecutorBuilder;
use sprawl_io::quic::{
    generate_self_signed, CertPaths, LocalEndpoint, QuicLimits, ServerTrust, TlsIdentity,
};

const CHUNK_BYTES: usize = 1 << 20;
const DEFAULT_TOTAL_MIB: usize = 1024;

fn main() -> anyhow::Result<()> {
    let total_mib = match std::env::args().nth(1) {
        Some(arg) => arg.parse().with_context(|| format!("size in MiB: {arg}"))?,
        None => DEFAULT_TOTAL_MIB,
    };
    let total_bytes = total_mib * CHUNK_BYTES;
    print_machine();

    let tcp = tcp_loopback(total_bytes)?;
    report("tcp (baseline)", total_bytes, tcp);

    let dir = tempfile::tempdir()?;
    let paths = generate_self_signed(dir.path())?;
    let quic = quic_loopback(total_bytes, paths)?;
    report("quic", total_bytes, quic.elapsed);
    println!(
        "quic/tcp ratio: {:.2}",
        tcp.as_secs_f64() / quic.elapsed.as_secs_f64()
    );
    println!("{}", quic.details);
    Ok(())
}

fn print_machine() {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split(':').nth(1))
        .map(|model| model.trim().to_string())
        .unwrap_or_default();
    println!("machine: {cpus} CPUs ({model}), kernel {}", kernel.trim());
}

fn report(name: &str, bytes: usize, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    println!(
        "{name:>15}: {} MiB in {:.3} s = {:.0} MB/s ({:.2} Gbit/s)",
        bytes / CHUNK_BYTES,
        seconds,
        bytes as f64 / seconds / 1e6,
        bytes as f64 * 8.0 / seconds / 1e9
    );
}

fn tcp_loopback(total_bytes: usize) -> anyhow::Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<usize> {
        let (mut stream, _) = listener.accept()?;
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut received = 0;
        loop {
            match stream.read(&mut buf)? {
                0 => return Ok(received),
                n => received += n,
            }
        }
    });
    let chunk = vec![0x5au8; CHUNK_BYTES];
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr)?;
    for _ in 0..total_bytes / CHUNK_BYTES {
        stream.write_all(&chunk)?;
    }
    drop(stream);
    let received = reader
        .join()
        .map_err(|_| anyhow!("tcp reader panicked"))??;
    let elapsed = start.elapsed();
    anyhow::ensure!(received == total_bytes, "tcp received {received} bytes");
    Ok(elapsed)
}

struct QuicRun {
    elapsed: Duration,
    details: String,
}

fn quic_loopback(total_bytes: usize, paths: CertPaths) -> anyhow::Result<QuicRun> {
    let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
    let server_paths = paths.clone();
    let server = LocalExecutorBuilder::default()
        .name("quic-server")
        .spawn(move || async move {
            let identity = TlsIdentity::load(&server_paths)?;
            let endpoint =
                LocalEndpoint::server("127.0.0.1:0".parse()?, &identity, &QuicLimits::default())?;
            addr_tx.send(endpoint.local_addr()?)?;
            let incoming = endpoint.accept().await.context("endpoint closed")?;
            let connection = incoming.accept().await?;
            let mut recv = connection.accept_uni().await?;
            let mut received = 0usize;
            while let Some(chunk) = recv.read_chunk(usize::MAX).await? {
                received += chunk.len();
            }
            let udp = endpoint.udp_stats();
            connection.closed().await;
            anyhow::Ok((received, udp))
        })
        .map_err(|e| anyhow!("spawning server shard: {e}"))?;

    let client = LocalExecutorBuilder::default()
        .name("quic-client")
        .spawn(move || async move {
            let server_addr = addr_rx.recv()?;
            let trust = ServerTrust::CaFile(paths.cert_path.clone());
            let endpoint =
                LocalEndpoint::client("127.0.0.1:0".parse()?, &trust, &QuicLimits::default())?;
            let connection = endpoint.connect(server_addr, "localhost").await?;
            let chunk = Bytes::from(vec![0x5au8; CHUNK_BYTES]);
            let start = Instant::now();
            let mut send = connection.open_uni().await?;
            for _ in 0..total_bytes / CHUNK_BYTES {
                send.write_chunk(chunk.clone()).await?;
            }
            send.finish()?;
            // Done when the server has acknowledged every byte.
            send.stopped().await?;
            let elapsed = start.elapsed();
            let stats = connection.stats();
            let udp = endpoint.udp_stats();
            connection.close(0, b"done");
            endpoint.wait_idle().await;
            anyhow::Ok((elapsed, stats, udp))
        })
        .map_err(|e| anyhow!("spawning client shard: {e}"))?;

    let (elapsed, client_stats, client_udp) =
        client.join().map_err(|e| anyhow!("client shard: {e}"))??;
    let (received, server_udp) = server.join().map_err(|e| anyhow!("server shard: {e}"))??;
    anyhow::ensure!(received == total_bytes, "quic received {received} bytes");
    let details = format!(
        "client: {} datagrams in {} sendmsg calls (GSO), {} WouldBlock, lost {} packets, \
         {} congestion events, rtt {:?}\n\
         server: {} datagrams in {} recvmmsg calls (GRO), {} readiness waits",
        client_udp.sent_datagrams,
        client_udp.send_syscalls,
        client_udp.send_would_block,
        client_stats.path.lost_packets,
        client_stats.path.congestion_events,
        client_stats.path.rtt,
        server_udp.recv_datagrams,
        server_udp.recv_syscalls,
        server_udp.read_waits,
    );
    Ok(QuicRun { elapsed, details })
}
