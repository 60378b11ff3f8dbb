//! TLS material for QUIC: PEM files, self-signed certificates, rustls configs.
//!
//! Everything uses rustls' ring provider and TLS 1.3 only (QUIC requires 1.3).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::endpoint::ALPN_SPRAWL_V1;
use super::error::TlsError;

/// File name of the certificate written by [`generate_self_signed`].
pub const CERT_FILE_NAME: &str = "cert.pem";
/// File name of the private key written by [`generate_self_signed`].
pub const KEY_FILE_NAME: &str = "key.pem";
/// Subject alternative names of [`generate_self_signed`]'s certificate.
pub const SELF_SIGNED_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// Where a certificate and its private key are stored (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// A server's certificate chain and private key.
#[derive(Debug)]
pub struct TlsIdentity {
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl TlsIdentity {
    /// Loads a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1).
    pub fn load(paths: &CertPaths) -> Result<Self, TlsError> {
        let cert_chain = load_certificates(&paths.cert_path)?;
        let key =
            PrivateKeyDer::from_pem_file(&paths.key_path).map_err(|source| TlsError::ReadPem {
                path: paths.key_path.clone(),
                source,
            })?;
        Ok(Self { cert_chain, key })
    }

    /// The rustls server configuration of a Sprawl node: TLS 1.3, ALPN `sprawl/1`,
    /// no client authentication.
    pub fn server_tls_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(ring_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.cert_chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN_SPRAWL_V1.to_vec()];
        Ok(config)
    }
}

/// How a client decides to trust a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTrust {
    /// Verify the server's chain against the CA certificate(s) in this PEM file.
    CaFile(PathBuf),
    /// Accept any server certificate. Only for tests and explicit opt-in: it
    /// gives up authentication (still encrypted, but open to interception).
    InsecureSkipVerification,
}

impl ServerTrust {
    /// Maps the usual command-line pair (`--ca-file`, `--insecure`) to a trust
    /// mode, refusing to guess when neither or both are given.
    pub fn from_flags(ca_file: Option<PathBuf>, insecure: bool) -> Result<Self, TlsError> {
        match (ca_file, insecure) {
            (Some(path), false) => Ok(Self::CaFile(path)),
            (None, true) => Ok(Self::InsecureSkipVerification),
            (Some(_), true) => Err(TlsError::ConflictingTrust),
            (None, false) => Err(TlsError::MissingTrust),
        }
    }

    /// The rustls client configuration: TLS 1.3, ALPN `sprawl/1`, no client certificate.
    pub fn client_tls_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = ring_provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?;
        let mut config = match self {
            Self::CaFile(path) => {
                let mut roots = RootCertStore::empty();
                for cert in load_certificates(path)? {
                    roots
                        .add(cert)
                        .map_err(|source| TlsError::BadCaCertificate {
                            path: path.clone(),
                            source,
                        })?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            Self::InsecureSkipVerification => {
                tracing::warn!("QUIC client does not verify server certificates (insecure mode)");
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert { provider }))
                    .with_no_client_auth()
            }
        };
        config.alpn_protocols = vec![ALPN_SPRAWL_V1.to_vec()];
        Ok(config)
    }
}

/// Generates a self-signed certificate for [`SELF_SIGNED_NAMES`] and writes
/// `cert.pem` and `key.pem` (mode 0600) into `dir`, creating it if needed.
/// The certificate doubles as the CA file clients verify against.
pub fn generate_self_signed(dir: &Path) -> Result<CertPaths, TlsError> {
    generate_self_signed_for(dir, &SELF_SIGNED_NAMES)
}

/// [`generate_self_signed`] for other subject alternative names (DNS names or
/// IP addresses, e.g. a node's advertised address).
pub fn generate_self_signed_for(dir: &Path, names: &[&str]) -> Result<CertPaths, TlsError> {
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let signing_key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names)?;
    // A distinct subject per certificate: with rcgen's fixed default subject, a
    // client trusting another self-signed certificate reports `BadSignature`
    // instead of the clearer `UnknownIssuer`.
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, unique_common_name());
    let cert = params.self_signed(&signing_key)?;
    std::fs::create_dir_all(dir).map_err(|source| TlsError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let paths = CertPaths {
        cert_path: dir.join(CERT_FILE_NAME),
        key_path: dir.join(KEY_FILE_NAME),
    };
    write_file(&paths.cert_path, cert.pem().as_bytes(), 0o644)?;
    write_file(
        &paths.key_path,
        signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    Ok(paths)
}

fn unique_common_name() -> String {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "Sprawl self-signed {}.{:09}-{}",
        since_epoch.as_secs(),
        since_epoch.subsec_nanos(),
        std::process::id()
    )
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)?;
        file.write_all(contents)?;
        file.sync_all()
    };
    write().map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

pub(super) fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_error = |source| TlsError::ReadPem {
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

pub(super) fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Skips chain and name checks, but still checks that the server owns the
/// key of the certificate it presented (handshake signatures).
#[derive(Debug)]
struct AcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_loads_and_builds_both_configs() {
        let dir = tempfile::tempdir().unwrap();
        let paths = generate_self_signed(&dir.path().join("tls")).unwrap();
        assert_eq!(paths.cert_path, dir.path().join("tls").join(CERT_FILE_NAME));
        let key_mode = std::fs::metadata(&paths.key_path).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&key_mode.permissions()) & 0o777,
            0o600
        );
        let identity = TlsIdentity::load(&paths).unwrap();
        let server = identity.server_tls_config().unwrap();
        assert_eq!(server.alpn_protocols, vec![ALPN_SPRAWL_V1.to_vec()]);
        ServerTrust::CaFile(paths.cert_path.clone())
            .client_tls_config()
            .unwrap();
    }

    #[test]
    fn missing_files_name_the_path() {
        let err = TlsIdentity::load(&CertPaths {
            cert_path: "/nonexistent/cert.pem".into(),
            key_path: "/nonexistent/key.pem".into(),
        })
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }

    #[test]
    fn trust_flags_must_be_explicit() {
        assert!(matches!(
            ServerTrust::from_flags(None, false),
            Err(TlsError::MissingTrust)
        ));
        assert!(matches!(
            ServerTrust::from_flags(Some("ca.pem".into()), true),
            Err(TlsError::ConflictingTrust)
        ));
        assert_eq!(
            ServerTrust::from_flags(None, true).unwrap(),
            ServerTrust::InsecureSkipVerification
        );
    }
}
