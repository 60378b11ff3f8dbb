//! Errors of the QUIC layer: TLS material problems and endpoint/connection failures.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Failure to load, generate or use TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading PEM file {path}: {source}")]
    ReadPem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("no certificate in PEM file {path}")]
    NoCertificate { path: PathBuf },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("creating certificate directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CA certificate from {path} rejected: {source}")]
    BadCaCertificate {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("TLS configuration lacks a QUIC initial cipher suite: {0}")]
    NoInitialCipherSuite(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    #[error("{path} exists already: refusing to replace a cluster CA (rotate it deliberately)")]
    CaExists { path: PathBuf },
    #[error("{name:?} is neither a DNS name nor an IP address")]
    BadSubjectName { name: String },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("loading the cluster CA from {cert} and {key}: {source}")]
    LoadCa {
        cert: PathBuf,
        key: PathBuf,
        source: rcgen::Error,
    },
    #[error("a certificate signed with {key} does not verify against {cert} (not this CA's key?): {source}")]
    CaKeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("node certificate {path} is not valid under cluster CA {ca}: {source}")]
    NodeCertificateRejected {
        path: PathBuf,
        ca: PathBuf,
        source: rustls::Error,
    },
    #[error("private key {key} does not belong to certificate {cert}: {source}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("{path} holds {count} certificates: issuing needs exactly the CA's own")]
    CaNotSingle { path: PathBuf, count: usize },
    #[error("certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("server verification: give a CA file or ask for insecure mode, not both")]
    ConflictingTrust,
    #[error("server verification: give a CA file (or explicitly ask for insecure mode)")]
    MissingTrust,
}

/// Failure to create a QUIC endpoint or to establish a connection.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    #[error("binding UDP socket on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting QUIC endpoint on {addr}: {source}")]
    Endpoint {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("connecting to {addr} ({server_name}): {source}")]
    Connect {
        addr: SocketAddr,
        server_name: String,
        source: quinn::ConnectError,
    },
    #[error("connection with {addr}: {source}")]
    Connection {
        addr: SocketAddr,
        source: quinn::ConnectionError,
    },
}
