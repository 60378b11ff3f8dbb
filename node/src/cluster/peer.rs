//! The peer endpoint: node-to-node QUIC with mutual TLS (cluster CA), on
//! the cluster thread's tokio runtime. One cached connection per peer;
//! inbound streams become [`Inbound`] events for the metadata driver.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use sprawl_io::quic::{certificate_node_id, peer_server_name, ClusterTls};
use tokio::sync::{mpsc, oneshot};

use super::protocol::{read_frame, write_frame, PeerRequest, PeerResponse};

/// Something a peer sent, for the metadata driver.
#[derive(Debug)]
pub enum Inbound {
    Raft {
        from: u64,
        messages: Vec<Vec<u8>>,
    },
    Request {
        request: PeerRequest,
        reply: oneshot::Sender<PeerResponse>,
    },
    /// The applier thread has brought the shards' catalog to this
    /// metadata index.
    Applied {
        index: u64,
    },
    /// A partition Raft envelope from an authenticated peer, for a shard.
    ReplicaIn {
        from: u64,
        shard: u32,
        envelope: Vec<u8>,
    },
    /// A partition Raft envelope a local shard sends to node `to`.
    ReplicaOut {
        to: u64,
        shard: u32,
        envelope: Vec<u8>,
    },
}

/// Counters `/metrics` shows.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct PeerStats {
    pub connects: u64,
    pub connect_failures: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    pub send_failures: u64,
    pub bad_frames: u64,
}

pub struct PeerEndpoint {
    endpoint: quinn::Endpoint,
    conns: Mutex<HashMap<u64, quinn::Connection>>,
    /// Per peer: the queue of one-way frames its sender task writes, in
    /// order, on one long-lived stream.
    oneway: Mutex<HashMap<u64, mpsc::Sender<(SocketAddr, PeerRequest)>>>,
    pub stats: Mutex<PeerStats>,
}

/// One-way frames queued for one peer beyond this are dropped (a dead or
/// slow peer must not grow memory; Raft resends what matters).
const ONEWAY_QUEUE_MAX: usize = 1024;

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    // A dead peer is noticed in seconds; Raft's own timeouts decide what
    // that means, the connection is only re-dialled.
    t.keep_alive_interval(Some(Duration::from_millis(500)));
    t.max_idle_timeout(Some(Duration::from_secs(5).try_into().expect("5 s fits")));
    Arc::new(t)
}

impl PeerEndpoint {
    /// Binds the peer endpoint; must run inside the tokio runtime.
    pub fn bind(addr: SocketAddr, tls: &ClusterTls) -> anyhow::Result<Arc<Self>> {
        let server_tls = tls.server_config().context("peer TLS server config")?;
        let client_tls = tls.client_config().context("peer TLS client config")?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(
            QuicServerConfig::try_from(server_tls).context("peer QUIC server config")?,
        ));
        server.transport_config(transport());
        let mut endpoint = quinn::Endpoint::server(server, addr)
            .with_context(|| format!("binding the peer endpoint {addr}"))?;
        let mut client = quinn::ClientConfig::new(Arc::new(
            QuicClientConfig::try_from(client_tls).context("peer QUIC client config")?,
        ));
        client.transport_config(transport());
        endpoint.set_default_client_config(client);
        Ok(Arc::new(Self {
            endpoint,
            conns: Mutex::new(HashMap::new()),
            oneway: Mutex::new(HashMap::new()),
            stats: Mutex::new(PeerStats::default()),
        }))
    }

    /// Accepts peer connections until the endpoint closes; every stream's
    /// frames go to `inbound`.
    pub async fn serve(self: Arc<Self>, inbound: mpsc::UnboundedSender<Inbound>) {
        while let Some(incoming) = self.endpoint.accept().await {
            let (me, inbound) = (self.clone(), inbound.clone());
            tokio::spawn(async move {
                let remote = incoming.remote_address();
                match incoming.await {
                    Ok(conn) => me.serve_connection(conn, inbound).await,
                    // A peer without a cluster certificate ends here.
                    Err(e) => {
                        me.stats.lock().unwrap().bad_frames += 1;
                        tracing::warn!(%remote, error = %e, "peer handshake refused");
                    }
                }
            });
        }
    }

    async fn serve_connection(
        self: Arc<Self>,
        conn: quinn::Connection,
        inbound: mpsc::UnboundedSender<Inbound>,
    ) {
        // Who the cluster CA says this peer is; what it claims in `from`
        // fields must match.
        let peer_node = conn
            .peer_identity()
            .and_then(|any| {
                any.downcast::<Vec<quinn::rustls::pki_types::CertificateDer<'static>>>()
                    .ok()
            })
            .and_then(|chain| chain.first().and_then(|leaf| certificate_node_id(leaf)));
        let Some(peer_node) = peer_node else {
            self.stats.lock().unwrap().bad_frames += 1;
            tracing::warn!(remote = %conn.remote_address(), "peer certificate names no node; closing");
            conn.close(1u32.into(), b"certificate names no node");
            return;
        };
        let uni = {
            let (me, conn, inbound) = (self.clone(), conn.clone(), inbound.clone());
            async move {
                while let Ok(mut recv) = conn.accept_uni().await {
                    let (me, inbound) = (me.clone(), inbound.clone());
                    tokio::spawn(async move {
                        loop {
                            match read_frame::<_, PeerRequest>(&mut recv).await {
                                Ok(Some(PeerRequest::MetaRaft { from, messages }))
                                    if from == peer_node =>
                                {
                                    me.stats.lock().unwrap().frames_in += 1;
                                    let _ = inbound.send(Inbound::Raft { from, messages });
                                }
                                Ok(Some(PeerRequest::PartitionRaft {
                                    from,
                                    shard,
                                    envelope,
                                })) if from == peer_node => {
                                    me.stats.lock().unwrap().frames_in += 1;
                                    let _ = inbound.send(Inbound::ReplicaIn {
                                        from,
                                        shard,
                                        envelope,
                                    });
                                }
                                Ok(Some(
                                    PeerRequest::MetaRaft { from, .. }
                                    | PeerRequest::PartitionRaft { from, .. },
                                )) => {
                                    me.stats.lock().unwrap().bad_frames += 1;
                                    tracing::warn!(
                                        from,
                                        peer_node,
                                        "Raft messages in another node's name refused"
                                    );
                                    break;
                                }
                                Ok(Some(other)) => {
                                    tracing::debug!(?other, "request on a one-way stream ignored");
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    me.stats.lock().unwrap().bad_frames += 1;
                                    tracing::debug!(error = %e, "bad peer frame");
                                    break;
                                }
                            }
                        }
                    });
                }
            }
        };
        let bi = async move {
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                let (me, inbound) = (self.clone(), inbound.clone());
                tokio::spawn(async move {
                    let request = match read_frame::<_, PeerRequest>(&mut recv).await {
                        Ok(Some(r)) => r,
                        Ok(None) => return,
                        Err(e) => {
                            me.stats.lock().unwrap().bad_frames += 1;
                            tracing::debug!(error = %e, "bad peer request");
                            return;
                        }
                    };
                    me.stats.lock().unwrap().frames_in += 1;
                    let (reply, answer) = oneshot::channel();
                    if inbound.send(Inbound::Request { request, reply }).is_err() {
                        return;
                    }
                    if let Ok(response) = answer.await {
                        let _ = write_frame(&mut send, &response).await;
                        let _ = send.finish();
                    }
                });
            }
        };
        tokio::join!(uni, bi);
    }

    /// The connection to `node` at `addr`, dialled if there is none (or the
    /// cached one died). The server name pins the node id: reaching another
    /// node's certificate at that address fails the handshake.
    async fn connection(&self, node: u64, addr: SocketAddr) -> anyhow::Result<quinn::Connection> {
        if let Some(c) = self.conns.lock().unwrap().get(&node) {
            if c.close_reason().is_none() && c.remote_address() == addr {
                return Ok(c.clone());
            }
        }
        let connecting = self
            .endpoint
            .connect(addr, &peer_server_name(node))
            .with_context(|| format!("dialling node {node} at {addr}"))?;
        let conn = match tokio::time::timeout(Duration::from_secs(3), connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                self.stats.lock().unwrap().connect_failures += 1;
                return Err(e).with_context(|| format!("connecting to node {node} at {addr}"));
            }
            Err(_) => {
                self.stats.lock().unwrap().connect_failures += 1;
                anyhow::bail!("connecting to node {node} at {addr}: timed out");
            }
        };
        self.stats.lock().unwrap().connects += 1;
        self.conns.lock().unwrap().insert(node, conn.clone());
        Ok(conn)
    }

    /// Sends a one-way request (Raft messages) in the background; a failure
    /// is counted and logged, Raft resends what matters. Frames to one peer
    /// go out in order on one long-lived stream (no stream set-up per
    /// frame), written by that peer's sender task.
    pub fn send_oneway(self: &Arc<Self>, node: u64, addr: SocketAddr, request: PeerRequest) {
        let mut senders = self.oneway.lock().unwrap();
        let tx = senders.entry(node).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(ONEWAY_QUEUE_MAX);
            tokio::spawn(self.clone().run_oneway(node, rx));
            tx
        });
        if tx.try_send((addr, request)).is_err() {
            drop(senders);
            self.stats.lock().unwrap().send_failures += 1;
            tracing::debug!(node, "peer send queue full or closed; frame dropped");
        }
    }

    async fn run_oneway(
        self: Arc<Self>,
        node: u64,
        mut queue: mpsc::Receiver<(SocketAddr, PeerRequest)>,
    ) {
        let mut stream: Option<(SocketAddr, quinn::SendStream)> = None;
        while let Some((addr, request)) = queue.recv().await {
            let result = async {
                let send = match &mut stream {
                    Some((at, send)) if *at == addr => send,
                    _ => {
                        let conn = self.connection(node, addr).await?;
                        &mut stream.insert((addr, conn.open_uni().await?)).1
                    }
                };
                write_frame(send, &request).await?;
                anyhow::Ok(())
            }
            .await;
            let mut stats = self.stats.lock().unwrap();
            match result {
                Ok(()) => stats.frames_out += 1,
                Err(e) => {
                    // Redial (or reopen the stream) for the next frame.
                    stream = None;
                    stats.send_failures += 1;
                    tracing::debug!(node, %addr, error = %e, "peer send failed");
                }
            }
        }
    }

    /// Sends a request and waits for its response.
    pub async fn call(
        &self,
        node: u64,
        addr: SocketAddr,
        request: &PeerRequest,
    ) -> anyhow::Result<PeerResponse> {
        let conn = self.connection(node, addr).await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        write_frame(&mut send, request).await?;
        send.finish()?;
        self.stats.lock().unwrap().frames_out += 1;
        read_frame(&mut recv)
            .await?
            .with_context(|| format!("node {node} closed the stream without answering"))
    }

    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"node shutting down");
    }
}
