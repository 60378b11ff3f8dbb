//! Mutual TLS between the nodes of a cluster, anchored in a cluster CA.
//!
//! An operator creates the CA once ([`create_cluster_ca`]) and issues each
//! node a certificate ([`issue_node_certificate`]) whose DNS name,
//! [`peer_server_name`], encodes the node id: a connecting node names the
//! node id it means to reach, so reaching another node fails the handshake.
//! Node certificates are valid for both TLS roles; a node's server side
//! requires a client certificate from the same CA ([`ClusterTls`]).
//!
//! Like [`super::tls`]: rustls' ring provider, TLS 1.3 only.

use std::fs::{OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use super::endpoint::ALPN_SPRAWL_V1;
use super::error::TlsError;
use super::tls::CertPaths;
use super::tls::{load_certificates, ring_provider};

/// ALPN protocol id of the node-to-node protocol, version 1.
pub const ALPN_SPRAWL_PEER_V1: &[u8] = b"sprawl-peer/1";
/// File name of the cluster CA certificate written by [`create_cluster_ca`].
pub const CA_CERT_FILE_NAME: &str = "ca.pem";
/// File name of the cluster CA private key written by [`create_cluster_ca`].
pub const CA_KEY_FILE_NAME: &str = "ca-key.pem";

const PUBLIC_MODE: u32 = 0o644;
const PRIVATE_MODE: u32 = 0o600;

/// The DNS name every certificate of node `node_id` carries, and the server
/// name a node connecting to it verifies.
pub fn peer_server_name(node_id: u64) -> String {
    format!("node-{node_id}.sprawl.cluster")
}

/// Where [`create_cluster_ca`] puts the CA in `dir`.
pub fn cluster_ca_paths(dir: &Path) -> CertPaths {
    CertPaths {
        cert_path: dir.join(CA_CERT_FILE_NAME),
        key_path: dir.join(CA_KEY_FILE_NAME),
    }
}

/// Where [`issue_node_certificate`] puts node `node_id`'s chain and key in `dir`.
pub fn node_cert_paths(dir: &Path, node_id: u64) -> CertPaths {
    CertPaths {
        cert_path: dir.join(format!("node-{node_id}.pem")),
        key_path: dir.join(format!("node-{node_id}-key.pem")),
    }
}

/// Creates a cluster CA: `ca.pem` and `ca-key.pem` (mode 0600) in `dir`,
/// created if needed. Refuses ([`TlsError::CaExists`]) when either file
/// exists: replacing a CA cuts every node it certified off the cluster.
pub fn create_cluster_ca(dir: &Path) -> Result<CertPaths, TlsError> {
    let paths = cluster_ca_paths(dir);
    for path in [&paths.cert_path, &paths.key_path] {
        if path.exists() {
            return Err(TlsError::CaExists { path: path.clone() });
        }
    }
    let signing_key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("Sprawl cluster CA {}", random_suffix()?),
    );
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let cert = params.self_signed(&signing_key)?;
    create_dir(dir)?;
    // The key first: a CA certificate must never exist without its key.
    write_new(
        &paths.key_path,
        signing_key.serialize_pem().as_bytes(),
        PRIVATE_MODE,
    )?;
    write_new(&paths.cert_path, cert.pem().as_bytes(), PUBLIC_MODE)?;
    Ok(paths)
}

/// Issues node `node_id` a certificate signed by the CA at `ca`: subject
/// alternative names [`peer_server_name`] and `extra_names` (IP addresses or
/// DNS names, e.g. the addresses clients dial), valid for server and client
/// authentication. Writes `node-<id>.pem` (the leaf, then the CA certificate)
/// and `node-<id>-key.pem` (mode 0600) in `out_dir`, created if needed,
/// replacing earlier ones.
pub fn issue_node_certificate(
    ca: &CertPaths,
    node_id: u64,
    extra_names: &[&str],
    out_dir: &Path,
) -> Result<CertPaths, TlsError> {
    let subject_alt_names = subject_alt_names(node_id, extra_names)?;
    let ca_pem = read_to_string(&ca.cert_path)?;
    let ca_certs = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::ReadPem {
            path: ca.cert_path.clone(),
            source,
        })?;
    let [ca_der] = ca_certs.as_slice() else {
        return Err(TlsError::CaNotSingle {
            path: ca.cert_path.clone(),
            count: ca_certs.len(),
        });
    };
    let load_error = |source| TlsError::LoadCa {
        cert: ca.cert_path.clone(),
        key: ca.key_path.clone(),
        source,
    };
    let ca_key = rcgen::KeyPair::from_pem(&read_to_string(&ca.key_path)?).map_err(load_error)?;
    let issuer = rcgen::Issuer::from_ca_cert_der(ca_der, ca_key).map_err(load_error)?;

    let signing_key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = subject_alt_names;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("sprawl-node-{node_id}"));
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&signing_key, &issuer)?;

    // rcgen signs with whatever key it is given: check that the result
    // chains to the CA certificate, i.e. that the key is the CA's.
    verify_issued(ca, ca_der, cert.der(), node_id)?;

    create_dir(out_dir)?;
    let paths = node_cert_paths(out_dir, node_id);
    let mut chain = cert.pem();
    chain.push_str(&ca_pem);
    if !chain.ends_with('\n') {
        chain.push('\n');
    }
    write_replacing(
        &paths.key_path,
        signing_key.serialize_pem().as_bytes(),
        PRIVATE_MODE,
    )?;
    write_replacing(&paths.cert_path, chain.as_bytes(), PUBLIC_MODE)?;
    Ok(paths)
}

/// A node's TLS material for the cluster: the CA roots it trusts, its
/// certificate chain and private key.
#[derive(Debug)]
pub struct ClusterTls {
    roots: Arc<RootCertStore>,
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl ClusterTls {
    /// Loads the cluster CA certificate(s) (every certificate in `ca_cert` is
    /// trusted, so a bundle of old and new CA can bridge a rotation) and the
    /// node's chain (leaf first) and key, and checks that the leaf is valid
    /// under those roots for client authentication and that the key is its.
    pub fn load(ca_cert: &Path, node: &CertPaths) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in load_certificates(ca_cert)? {
            roots
                .add(cert)
                .map_err(|source| TlsError::BadCaCertificate {
                    path: ca_cert.to_path_buf(),
                    source,
                })?;
        }
        let cert_chain = load_certificates(&node.cert_path)?;
        let key =
            PrivateKeyDer::from_pem_file(&node.key_path).map_err(|source| TlsError::ReadPem {
                path: node.key_path.clone(),
                source,
            })?;
        let tls = Self {
            roots: Arc::new(roots),
            cert_chain,
            key,
        };
        tls.client_verifier()?
            .verify_client_cert(&tls.cert_chain[0], &tls.cert_chain[1..], UnixTime::now())
            .map_err(|source| TlsError::NodeCertificateRejected {
                path: node.cert_path.clone(),
                ca: ca_cert.to_path_buf(),
                source,
            })?;
        rustls::sign::CertifiedKey::from_der(
            tls.cert_chain.clone(),
            tls.key.clone_key(),
            &ring_provider(),
        )
        .map_err(|source| TlsError::KeyMismatch {
            cert: node.cert_path.clone(),
            key: node.key_path.clone(),
            source,
        })?;
        Ok(tls)
    }

    /// The server side of the node-to-node protocol: TLS 1.3, ALPN
    /// `sprawl-peer/1`, a client certificate chaining to the cluster CA
    /// required.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(ring_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(self.client_verifier()?)
            .with_single_cert(self.cert_chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN_SPRAWL_PEER_V1.to_vec()];
        Ok(config)
    }

    /// The client side of the node-to-node protocol: TLS 1.3, ALPN
    /// `sprawl-peer/1`, trusts only the cluster CA, presents the node's
    /// chain. Connect with server name [`peer_server_name`] of the node id
    /// meant.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(ring_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.cert_chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN_SPRAWL_PEER_V1.to_vec()];
        Ok(config)
    }

    /// The client-facing port of a clustered node: the same CA-signed
    /// certificate (clients verify it with the CA file), ALPN `sprawl/1`,
    /// no client authentication.
    pub fn server_config_for_clients(&self) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(ring_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.cert_chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN_SPRAWL_V1.to_vec()];
        Ok(config)
    }

    fn client_verifier(
        &self,
    ) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
        Ok(
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), ring_provider())
                .build()?,
        )
    }
}

/// [`peer_server_name`] first, then `extra_names` (IP addresses as IP SANs,
/// the rest as DNS names), without repeats.
fn subject_alt_names(node_id: u64, extra_names: &[&str]) -> Result<Vec<rcgen::SanType>, TlsError> {
    let mut names = vec![peer_server_name(node_id)];
    for name in extra_names {
        if !names.iter().any(|known| known == name) {
            names.push(name.to_string());
        }
    }
    names
        .into_iter()
        .map(|name| {
            let bad_name = || TlsError::BadSubjectName { name: name.clone() };
            match ServerName::try_from(name.as_str()).map_err(|_| bad_name())? {
                ServerName::IpAddress(ip) => Ok(rcgen::SanType::IpAddress(ip.into())),
                ServerName::DnsName(_) => Ok(rcgen::SanType::DnsName(
                    name.clone().try_into().map_err(|_| bad_name())?,
                )),
                _ => Err(bad_name()),
            }
        })
        .collect()
}

fn verify_issued(
    ca: &CertPaths,
    ca_der: &CertificateDer<'static>,
    leaf: &CertificateDer<'static>,
    node_id: u64,
) -> Result<(), TlsError> {
    let mismatch = |source| TlsError::CaKeyMismatch {
        cert: ca.cert_path.clone(),
        key: ca.key_path.clone(),
        source,
    };
    let mut roots = RootCertStore::empty();
    roots
        .add(ca_der.clone())
        .map_err(|source| TlsError::BadCaCertificate {
            path: ca.cert_path.clone(),
            source,
        })?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        ring_provider(),
    )
    .build()?;
    let name =
        ServerName::try_from(peer_server_name(node_id)).map_err(|_| TlsError::BadSubjectName {
            name: peer_server_name(node_id),
        })?;
    verifier
        .verify_server_cert(leaf, &[], &name, &[], UnixTime::now())
        .map_err(mismatch)?;
    Ok(())
}

/// 16 hex digits from the provider's secure random source.
fn random_suffix() -> Result<String, TlsError> {
    let mut bytes = [0u8; 8];
    ring_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(rustls::Error::from)?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

fn create_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes a file that must not exist yet.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true).mode(mode);
    write_with(path, contents, mode, &options).map_err(|error| match error {
        TlsError::Write { path, source } if source.kind() == std::io::ErrorKind::AlreadyExists => {
            TlsError::CaExists { path }
        }
        other => other,
    })
}

/// Writes a file, replacing any earlier one.
fn write_replacing(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true).mode(mode);
    write_with(path, contents, mode, &options)
}

fn write_with(
    path: &Path,
    contents: &[u8],
    mode: u32,
    options: &OpenOptions,
) -> Result<(), TlsError> {
    let write = || -> std::io::Result<()> {
        let mut file = options.open(path)?;
        // `mode` applies only to a file created here: an older file with
        // looser permissions is tightened before a key goes into it.
        file.set_permissions(Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()
    };
    write().map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn read_to_string(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{CertificateError, Connection};

    /// Which side's `process_new_packets` failed, and how.
    #[derive(Debug)]
    enum Failed {
        Client(rustls::Error),
        Server(rustls::Error),
    }

    fn pump(from: &mut Connection, to: &mut Connection) {
        let mut bytes = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut bytes).unwrap();
        }
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            to.read_tls(&mut rest).unwrap();
        }
    }

    /// A whole TLS handshake over in-memory buffers.
    fn handshake(
        client: rustls::ClientConfig,
        server: rustls::ServerConfig,
        server_name: &str,
    ) -> Result<(Connection, Connection), Failed> {
        let name = ServerName::try_from(server_name.to_owned()).unwrap();
        let mut client: Connection = rustls::ClientConnection::new(Arc::new(client), name)
            .unwrap()
            .into();
        let mut server: Connection = rustls::ServerConnection::new(Arc::new(server))
            .unwrap()
            .into();
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok((client, server));
            }
            pump(&mut client, &mut server);
            server.process_new_packets().map_err(Failed::Server)?;
            pump(&mut server, &mut client);
            client.process_new_packets().map_err(Failed::Client)?;
        }
        panic!("the handshake did not finish");
    }

    struct Cluster {
        dir: tempfile::TempDir,
        ca: CertPaths,
    }

    impl Cluster {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let ca = create_cluster_ca(&dir.path().join("ca")).unwrap();
            Self { dir, ca }
        }

        fn node(&self, node_id: u64) -> ClusterTls {
            let out = self.dir.path().join("nodes");
            let paths = issue_node_certificate(&self.ca, node_id, &["127.0.0.2"], &out).unwrap();
            ClusterTls::load(&self.ca.cert_path, &paths).unwrap()
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn two_nodes_of_one_ca_authenticate_each_other() {
        let cluster = Cluster::new();
        let (node1, node2) = (cluster.node(1), cluster.node(2));
        let (client, server) = handshake(
            node1.client_config().unwrap(),
            node2.server_config().unwrap(),
            &peer_server_name(2),
        )
        .unwrap();
        assert_eq!(client.alpn_protocol(), Some(ALPN_SPRAWL_PEER_V1));
        assert_eq!(server.alpn_protocol(), Some(ALPN_SPRAWL_PEER_V1));
        // The server saw node 1's chain: leaf, then the CA.
        let presented = server.peer_certificates().unwrap();
        assert_eq!(presented.len(), 2);
        assert_eq!(presented[0], node1.cert_chain[0]);
        // The extra name is an IP SAN.
        handshake(
            node1.client_config().unwrap(),
            node2.server_config().unwrap(),
            "127.0.0.2",
        )
        .unwrap();
    }

    #[test]
    fn a_client_certificate_of_another_ca_is_rejected() {
        let (ours, theirs) = (Cluster::new(), Cluster::new());
        let their_node = theirs.node(1);
        // Trusts our CA (so it gets as far as presenting), presents theirs.
        let intruder = ClusterTls {
            roots: ours.node(1).roots.clone(),
            cert_chain: their_node.cert_chain.clone(),
            key: their_node.key.clone_key(),
        };
        let failed = handshake(
            intruder.client_config().unwrap(),
            ours.node(2).server_config().unwrap(),
            &peer_server_name(2),
        )
        .unwrap_err();
        assert!(
            matches!(
                failed,
                Failed::Server(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer
                ))
            ),
            "{failed:?}"
        );
    }

    #[test]
    fn a_client_without_a_certificate_is_rejected() {
        let cluster = Cluster::new();
        // Trusts the CA, presents nothing.
        let mut anonymous = rustls::ClientConfig::builder_with_provider(ring_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(cluster.node(1).roots.clone())
            .with_no_client_auth();
        anonymous.alpn_protocols = vec![ALPN_SPRAWL_PEER_V1.to_vec()];
        let failed = handshake(
            anonymous,
            cluster.node(2).server_config().unwrap(),
            &peer_server_name(2),
        )
        .unwrap_err();
        assert!(
            matches!(
                failed,
                Failed::Server(rustls::Error::NoCertificatesPresented)
            ),
            "{failed:?}"
        );
    }

    #[test]
    fn reaching_another_node_than_meant_fails() {
        let cluster = Cluster::new();
        let failed = handshake(
            cluster.node(1).client_config().unwrap(),
            cluster.node(2).server_config().unwrap(),
            &peer_server_name(3),
        )
        .unwrap_err();
        assert!(
            matches!(
                failed,
                Failed::Client(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                ))
            ),
            "{failed:?}"
        );
    }

    #[test]
    fn the_client_port_serves_the_node_certificate_to_ca_file_clients() {
        let cluster = Cluster::new();
        let client = super::super::tls::ServerTrust::CaFile(cluster.ca.cert_path.clone())
            .client_tls_config()
            .unwrap();
        let (client, _) = handshake(
            client,
            cluster.node(2).server_config_for_clients().unwrap(),
            &peer_server_name(2),
        )
        .unwrap();
        assert_eq!(client.alpn_protocol(), Some(ALPN_SPRAWL_V1));
    }

    #[test]
    fn the_ca_is_never_replaced() {
        let cluster = Cluster::new();
        let before = std::fs::read(&cluster.ca.cert_path).unwrap();
        let err = create_cluster_ca(cluster.ca.cert_path.parent().unwrap()).unwrap_err();
        assert!(
            matches!(&err, TlsError::CaExists { path } if *path == cluster.ca.cert_path),
            "{err:?}"
        );
        assert!(err.to_string().contains("ca.pem"), "{err}");
        assert_eq!(std::fs::read(&cluster.ca.cert_path).unwrap(), before);
        // A key left alone is not overwritten either.
        std::fs::remove_file(&cluster.ca.cert_path).unwrap();
        let err = create_cluster_ca(cluster.ca.cert_path.parent().unwrap()).unwrap_err();
        assert!(
            matches!(&err, TlsError::CaExists { path } if *path == cluster.ca.key_path),
            "{err:?}"
        );
    }

    #[test]
    fn keys_are_private_and_files_where_documented() {
        let cluster = Cluster::new();
        let ca_dir = cluster.dir.path().join("ca");
        assert_eq!(cluster.ca, cluster_ca_paths(&ca_dir));
        assert_eq!(mode(&cluster.ca.key_path), 0o600);
        assert_eq!(mode(&cluster.ca.cert_path), 0o644);
        let out = cluster.dir.path().join("out");
        let node = issue_node_certificate(&cluster.ca, 7, &[], &out).unwrap();
        assert_eq!(node, node_cert_paths(&out, 7));
        assert!(node.cert_path.ends_with("node-7.pem"));
        assert!(node.key_path.ends_with("node-7-key.pem"));
        assert_eq!(mode(&node.key_path), 0o600);
        // Reissuing over a key file with looser permissions tightens them.
        std::fs::set_permissions(&node.key_path, Permissions::from_mode(0o644)).unwrap();
        issue_node_certificate(&cluster.ca, 7, &[], &out).unwrap();
        assert_eq!(mode(&node.key_path), 0o600);
    }

    #[test]
    fn bad_inputs_are_named() {
        let (ours, theirs) = (Cluster::new(), Cluster::new());
        let out = ours.dir.path().join("out");
        let err = issue_node_certificate(&ours.ca, 1, &["not a name!"], &out).unwrap_err();
        assert!(matches!(err, TlsError::BadSubjectName { .. }), "{err:?}");
        // Our certificate with their key.
        let mixed = CertPaths {
            cert_path: ours.ca.cert_path.clone(),
            key_path: theirs.ca.key_path.clone(),
        };
        let err = issue_node_certificate(&mixed, 1, &[], &out).unwrap_err();
        assert!(matches!(err, TlsError::CaKeyMismatch { .. }), "{err:?}");
        // Their node certificate under our CA.
        let their_node = issue_node_certificate(&theirs.ca, 1, &[], &out).unwrap();
        let err = ClusterTls::load(&ours.ca.cert_path, &their_node).unwrap_err();
        assert!(
            matches!(err, TlsError::NodeCertificateRejected { .. }),
            "{err:?}"
        );
        // A node certificate with another node's key.
        let node2 = issue_node_certificate(&ours.ca, 2, &[], &ours.dir.path().join("n2")).unwrap();
        let node3 = issue_node_certificate(&ours.ca, 3, &[], &ours.dir.path().join("n3")).unwrap();
        let err = ClusterTls::load(
            &ours.ca.cert_path,
            &CertPaths {
                cert_path: node2.cert_path,
                key_path: node3.key_path,
            },
        )
        .unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    }
}

/// The node id a cluster certificate was issued for (its
/// [`peer_server_name`] DNS name), read from a peer's leaf certificate after
/// the TLS handshake verified it: binds what a peer says about itself
/// (`from` fields) to what the cluster CA vouched for.
pub fn certificate_node_id(der: &[u8]) -> Option<u64> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::DNSName(dns) => dns
            .strip_prefix("node-")?
            .strip_suffix(".sprawl.cluster")?
            .parse()
            .ok(),
        _ => None,
    })
}

#[cfg(test)]
mod node_id_tests {
    use super::*;

    #[test]
    fn the_node_id_is_read_back_from_an_issued_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let ca = create_cluster_ca(dir.path()).unwrap();
        let node = issue_node_certificate(&ca, 42, &["127.0.0.1"], dir.path()).unwrap();
        let pem = std::fs::read(&node.cert_path).unwrap();
        let leaf = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(certificate_node_id(&leaf), Some(42));
        let ca_pem = std::fs::read(&ca.cert_path).unwrap();
        let ca_der = rustls::pki_types::CertificateDer::pem_slice_iter(&ca_pem)
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(certificate_node_id(&ca_der), None, "the CA names no node");
        assert_eq!(certificate_node_id(b"not a certificate"), None);
    }
}
