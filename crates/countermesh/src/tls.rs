//! [`TlsConfig`]: mutual TLS against a cluster CA, turned into quinn configurations.
//!
//! Both sides of every connection present a certificate and verify the other's against
//! the cluster CA (TLS 1.3 only, ring as the only crypto provider). A peer without a
//! certificate from that CA cannot complete a handshake with a node: the node closes the
//! connection before reading a single application byte from it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;

use crate::certs::{CLUSTER_SERVER_NAME, NodeCertificate};

/// Application protocol negotiated on every connection; a peer speaking anything else
/// is refused during the handshake.
const ALPN: &[u8] = b"countermesh/1";

/// Why TLS material could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// PEM input did not contain what it should.
    #[error("{what}: {reason}")]
    Pem {
        /// Which input (CA certificate, node certificate, key).
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the material (for example a key that does not match the
    /// certificate, or a CA certificate it cannot parse).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built from the CA.
    #[error("client verifier: {0}")]
    Verifier(String),
    /// The rustls configuration does not offer a cipher suite QUIC can use.
    #[error("QUIC cannot use this TLS configuration: {0}")]
    Quic(String),
    /// Certificate generation failed.
    #[error("cannot generate {what}: {reason}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// rcgen's error.
        reason: String,
    },
}

#[derive(Clone)]
enum Mode {
    Mutual {
        roots: Arc<RootCertStore>,
        chain: Vec<CertificateDer<'static>>,
        key: Arc<PrivateKeyDer<'static>>,
    },
    Insecure,
}

/// How a node authenticates its peers and itself.
#[derive(Clone)]
pub struct TlsConfig {
    mode: Mode,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.mode {
            Mode::Mutual { .. } => "mutual TLS",
            Mode::Insecure => "INSECURE: no peer verification",
        };
        f.debug_struct("TlsConfig").field("mode", &mode).finish()
    }
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

fn certs(what: &'static str, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsConfig {
    /// Mutual TLS from PEM text: the cluster CA certificate, this node's certificate
    /// chain, and this node's private key.
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for ca in certs("CA certificate", ca_pem)? {
            roots.add(ca)?;
        }
        let chain = certs("node certificate", cert_pem)?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .map_err(|e| TlsError::Pem {
                what: "node key",
                reason: e.to_string(),
            })?
            .ok_or_else(|| TlsError::Pem {
                what: "node key",
                reason: "no PRIVATE KEY block found".into(),
            })?;
        let config = Self {
            mode: Mode::Mutual {
                roots: Arc::new(roots),
                chain,
                key: Arc::new(key),
            },
        };
        // Build once now so that a key that does not match its certificate is reported
        // here, not at the first connection.
        config.rustls_configs()?;
        Ok(config)
    }

    /// Mutual TLS from PEM files: the cluster CA certificate, this node's certificate
    /// chain, and this node's private key.
    pub fn from_pem_files(
        ca: impl AsRef<Path>,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        Self::from_pem(
            &read(ca.as_ref())?,
            &read(cert.as_ref())?,
            &read(key.as_ref())?,
        )
    }

    /// Mutual TLS with a node certificate generated by [`crate::CertificateAuthority`].
    pub fn from_node_certificate(
        ca_cert_pem: &str,
        node: &NodeCertificate,
    ) -> Result<Self, TlsError> {
        Self::from_pem(ca_cert_pem, &node.cert_pem, &node.key_pem)
    }

    /// **INSECURE.** Encrypts traffic but verifies no one: any peer can join, read and
    /// write. Only for local experiments where generating a CA is not worth it; a node
    /// started this way logs a warning.
    pub fn dangerously_insecure_no_peer_verification() -> Self {
        Self {
            mode: Mode::Insecure,
        }
    }

    /// Whether this configuration verifies peers.
    pub fn is_insecure(&self) -> bool {
        matches!(self.mode, Mode::Insecure)
    }

    fn rustls_configs(&self) -> Result<(rustls::ServerConfig, rustls::ClientConfig), TlsError> {
        let provider = provider();
        let versions = &[&rustls::version::TLS13];
        let (mut server, mut client) = match &self.mode {
            Mode::Mutual { roots, chain, key } => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                        .build()
                        .map_err(|e| TlsError::Verifier(e.to_string()))?;
                let server = rustls::ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(versions)?
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(chain.clone(), key.clone_key())?;
                let client = rustls::ClientConfig::builder_with_provider(provider)
                    .with_protocol_versions(versions)?
                    .with_root_certificates(roots.clone())
                    .with_client_auth_cert(chain.clone(), key.clone_key())?;
                (server, client)
            }
            Mode::Insecure => {
                let own = NodeCertificate::self_signed("insecure")?;
                let chain = certs("generated certificate", &own.cert_pem)?;
                let key = rustls_pemfile::private_key(&mut own.key_pem.as_bytes())
                    .ok()
                    .flatten()
                    .ok_or_else(|| TlsError::Pem {
                        what: "generated key",
                        reason: "unreadable".into(),
                    })?;
                let server = rustls::ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(versions)?
                    .with_no_client_auth()
                    .with_single_cert(chain, key)?;
                let client = rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(versions)?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider)))
                    .with_no_client_auth();
                (server, client)
            }
        };
        server.alpn_protocols = vec![ALPN.to_vec()];
        client.alpn_protocols = vec![ALPN.to_vec()];
        Ok((server, client))
    }

    /// A quinn client configuration that presents this node's certificate, for tools
    /// that talk to a node directly (diagnostics, tests). Connect with the server name
    /// [`CLUSTER_SERVER_NAME`].
    pub fn quinn_client_config(&self) -> Result<quinn::ClientConfig, TlsError> {
        let (_, client) = self.rustls_configs()?;
        let client =
            QuicClientConfig::try_from(client).map_err(|e| TlsError::Quic(e.to_string()))?;
        Ok(quinn::ClientConfig::new(Arc::new(client)))
    }

    /// quinn server and client configurations sharing `transport`.
    pub(crate) fn quinn_configs(
        &self,
        transport: Arc<quinn::TransportConfig>,
    ) -> Result<(quinn::ServerConfig, quinn::ClientConfig), TlsError> {
        let (server, client) = self.rustls_configs()?;
        let server =
            QuicServerConfig::try_from(server).map_err(|e| TlsError::Quic(e.to_string()))?;
        let client =
            QuicClientConfig::try_from(client).map_err(|e| TlsError::Quic(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
        server.transport_config(transport.clone());
        let mut client = quinn::ClientConfig::new(Arc::new(client));
        client.transport_config(transport);
        Ok((server, client))
    }
}

/// The server name every connection asks for; see [`CLUSTER_SERVER_NAME`].
pub(crate) fn server_name() -> &'static str {
    CLUSTER_SERVER_NAME
}

/// Accepts any server certificate. Only reachable through
/// [`TlsConfig::dangerously_insecure_no_peer_verification`].
#[derive(Debug)]
struct AcceptAnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
