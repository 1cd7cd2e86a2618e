//! [`TlsConfig`]: mutual TLS against a cluster CA, turned into quinn configurations.
//!
//! Both sides of every connection present a certificate and verify the other's (TLS 1.3
//! only, ring as the only crypto provider): it must chain to the cluster CA, must not be
//! on a configured revocation list, and must carry this node's own cluster SAN
//! (`<cluster>.countermesh`, see [`crate::certs`]), so a CA that also signs other
//! services' certificates admits none of them. A peer that fails any of these cannot
//! complete a handshake with a node: the node closes the connection before reading a
//! single application byte from it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DistinguishedName, RootCertStore};

use crate::certs::{CLUSTER_SERVER_NAME, NodeCertificate, certificate_cluster_san, check_key_file};

/// Application protocol negotiated on every connection; a peer speaking anything else
/// is refused during the handshake.
const ALPN: &[u8] = b"countermesh/1";

/// Why TLS material could not be loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// A cluster name is invalid, or a certificate names no cluster or several.
    #[error("cluster name: {0}")]
    ClusterName(String),
    /// A private-key file can be read by other users than its owner.
    #[error(
        "{path}: the private key is accessible by its group or other users (mode {mode:04o}); \
         make it private with `chmod 600 {path}`"
    )]
    KeyFileNotPrivate {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

#[derive(Clone)]
enum Mode {
    Mutual {
        roots: Arc<RootCertStore>,
        chain: Vec<CertificateDer<'static>>,
        key: Arc<PrivateKeyDer<'static>>,
        /// The cluster SAN of this node's certificate, required of every peer.
        cluster: ServerName<'static>,
        /// The same, as text.
        cluster_san: String,
        /// Revocation lists both verifiers honour.
        crls: Vec<CertificateRevocationListDer<'static>>,
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
        match &self.mode {
            Mode::Mutual {
                cluster_san, crls, ..
            } => f
                .debug_struct("TlsConfig")
                .field("mode", &"mutual TLS")
                .field("cluster", cluster_san)
                .field("crls", &crls.len())
                .finish(),
            Mode::Insecure => f
                .debug_struct("TlsConfig")
                .field("mode", &"INSECURE: no peer verification")
                .finish(),
        }
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
    /// Mutual TLS from PEM text: the cluster CA certificate(s), this node's certificate
    /// chain, and this node's private key. The node's certificate must carry exactly one
    /// cluster SAN (`<cluster>.countermesh`); peers must carry the same one.
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for ca in certs("CA certificate", ca_pem)? {
            roots.add(ca)?;
        }
        let chain = certs("node certificate", cert_pem)?;
        let cluster = certificate_cluster_san(&chain[0])?.ok_or_else(|| {
            TlsError::ClusterName(
                "the node certificate has no cluster SAN (a DNS name <cluster>.countermesh); \
                 issue it with `countermesh certs issue` or add that SAN"
                    .to_owned(),
            )
        })?;
        let cluster_san = cluster;
        let cluster = ServerName::try_from(cluster_san.clone())
            .map_err(|e| TlsError::ClusterName(e.to_string()))?;
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
                cluster,
                cluster_san,
                crls: Vec::new(),
            },
        };
        // Build once now so that a key that does not match its certificate is reported
        // here, not at the first connection.
        config.rustls_configs()?;
        Ok(config)
    }

    /// Mutual TLS from PEM files: the cluster CA certificate, this node's certificate
    /// chain, and this node's private key, which must be accessible by its owner only
    /// ([`TlsError::KeyFileNotPrivate`] otherwise).
    pub fn from_pem_files(
        ca: impl AsRef<Path>,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        check_key_file(key.as_ref())?;
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

    /// Also refuses peers whose certificates are on these revocation lists (PEM, one or
    /// more `X509 CRL` blocks signed by the cluster CA), on both sides of a connection.
    /// Only end-entity certificates are checked; a certificate issued by a CA that no
    /// list covers is refused too, so a missing list fails loudly rather than silently.
    pub fn with_crls_pem(mut self, crl_pem: &str) -> Result<Self, TlsError> {
        let parsed = rustls_pemfile::crls(&mut crl_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem {
                what: "revocation list",
                reason: e.to_string(),
            })?;
        if parsed.is_empty() {
            return Err(TlsError::Pem {
                what: "revocation list",
                reason: "no X509 CRL block found".into(),
            });
        }
        match &mut self.mode {
            Mode::Mutual { crls, .. } => crls.extend(parsed),
            Mode::Insecure => {
                return Err(TlsError::Verifier(
                    "revocation lists need mutual TLS; the insecure mode verifies no one".into(),
                ));
            }
        }
        // Build once now so that a list the verifiers cannot use is reported here.
        self.rustls_configs()?;
        Ok(self)
    }

    /// [`TlsConfig::with_crls_pem`] from a file.
    pub fn with_crl_file(self, path: impl AsRef<Path>) -> Result<Self, TlsError> {
        self.with_crls_pem(&read(path.as_ref())?)
    }

    /// The cluster SAN this node requires of its peers (`None` in the insecure mode).
    pub fn cluster_san(&self) -> Option<&str> {
        match &self.mode {
            Mode::Mutual { cluster_san, .. } => Some(cluster_san),
            Mode::Insecure => None,
        }
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
            Mode::Mutual {
                roots,
                chain,
                key,
                cluster,
                crls,
                ..
            } => {
                let clients = cluster_client_verifier(roots, crls, cluster, &provider)?;
                let servers = cluster_server_verifier(roots, crls, cluster, &provider)?;
                let server = rustls::ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(versions)?
                    .with_client_cert_verifier(clients)
                    .with_single_cert(chain.clone(), key.clone_key())?;
                let client = rustls::ClientConfig::builder_with_provider(provider)
                    .with_protocol_versions(versions)?
                    .dangerous()
                    .with_custom_certificate_verifier(servers)
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
    /// [`CLUSTER_SERVER_NAME`] (the server is checked for the cluster SAN whatever the
    /// name).
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

/// The server side's check of client certificates: the CA chain and revocation lists
/// (webpki), then the cluster SAN.
fn cluster_client_verifier(
    roots: &Arc<RootCertStore>,
    crls: &[CertificateRevocationListDer<'static>],
    cluster: &ServerName<'static>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
    if !crls.is_empty() {
        builder = builder
            .with_crls(crls.iter().cloned())
            .only_check_end_entity_revocation();
    }
    let inner = builder
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    Ok(Arc::new(ClusterClientVerifier {
        inner,
        cluster: cluster.clone(),
    }))
}

/// The client side's check of server certificates: the CA chain and revocation lists,
/// against the cluster SAN rather than the name dialled ([`CLUSTER_SERVER_NAME`] for
/// every peer, since peers are dialled by IP address).
fn cluster_server_verifier(
    roots: &Arc<RootCertStore>,
    crls: &[CertificateRevocationListDer<'static>],
    cluster: &ServerName<'static>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
    let mut builder = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone());
    if !crls.is_empty() {
        builder = builder
            .with_crls(crls.iter().cloned())
            .only_check_end_entity_revocation();
    }
    let inner = builder
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    Ok(Arc::new(ClusterServerVerifier {
        inner,
        cluster: cluster.clone(),
    }))
}

/// Whether `cert` carries the cluster SAN `cluster` (exactly, as TLS name checks go).
fn has_cluster_san(
    cert: &CertificateDer<'_>,
    cluster: &ServerName<'_>,
) -> Result<(), rustls::Error> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    parsed
        .verify_is_valid_for_subject_name(cluster)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::NotValidForName))
}

/// [`WebPkiClientVerifier`] plus the cluster SAN.
#[derive(Debug)]
struct ClusterClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    cluster: ServerName<'static>,
}

impl ClientCertVerifier for ClusterClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        has_cluster_san(end_entity, &self.cluster)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// [`WebPkiServerVerifier`] checking the cluster SAN instead of the dialled name.
#[derive(Debug)]
struct ClusterServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    cluster: ServerName<'static>,
}

impl ServerCertVerifier for ClusterServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the name given here, so the cluster SAN is checked with the chain.
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.cluster, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::CertificateAuthority;
    use crate::certs::{DEFAULT_CA_VALIDITY, certificate_serial};

    fn der(pem: &str) -> CertificateDer<'static> {
        certs("test certificate", pem).unwrap().remove(0)
    }

    /// Both verifiers of a node holding `node`'s certificate.
    fn verifiers(
        ca: &CertificateAuthority,
        node: &NodeCertificate,
        crl: Option<&str>,
    ) -> (Arc<dyn ClientCertVerifier>, Arc<dyn ServerCertVerifier>) {
        let mut config = TlsConfig::from_node_certificate(&ca.cert_pem, node).unwrap();
        if let Some(crl) = crl {
            config = config.with_crls_pem(crl).unwrap();
        }
        let Mode::Mutual {
            roots,
            cluster,
            crls,
            ..
        } = &config.mode
        else {
            unreachable!("mutual TLS")
        };
        (
            cluster_client_verifier(roots, crls, cluster, &provider()).unwrap(),
            cluster_server_verifier(roots, crls, cluster, &provider()).unwrap(),
        )
    }

    /// Whether a node with these verifiers accepts `peer` as a client and as a server.
    fn accepts(
        (clients, servers): &(Arc<dyn ClientCertVerifier>, Arc<dyn ServerCertVerifier>),
        peer: &str,
    ) -> (bool, bool) {
        let peer = der(peer);
        let now = UnixTime::now();
        let name = ServerName::try_from(CLUSTER_SERVER_NAME).unwrap();
        (
            clients.verify_client_cert(&peer, &[], now).is_ok(),
            servers
                .verify_server_cert(&peer, &[], &name, &[], now)
                .is_ok(),
        )
    }

    /// A certificate from `ca` for another service: valid chain, no cluster SAN.
    fn other_service(ca: &CertificateAuthority) -> String {
        let key = rcgen::KeyPair::from_pem(&ca.key_pem).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.cert_pem, key).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["www.corp.example".into()]).unwrap();
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let own = rcgen::KeyPair::generate().unwrap();
        params.signed_by(&own, &issuer).unwrap().pem()
    }

    #[test]
    fn both_sides_require_the_cluster_san() {
        let ca = CertificateAuthority::generate_for_cluster("prod", "org CA", DEFAULT_CA_VALIDITY)
            .unwrap();
        let me = ca.issue("a").unwrap();
        let node = verifiers(&ca, &me, None);
        assert_eq!(
            accepts(&node, &ca.issue("b").unwrap().cert_pem),
            (true, true)
        );
        let other_cluster = ca
            .issue_for_cluster("other", "c", Duration::from_secs(3600))
            .unwrap();
        assert_eq!(accepts(&node, &other_cluster.cert_pem), (false, false));
        assert_eq!(accepts(&node, &other_service(&ca)), (false, false));
        // A certificate without a cluster SAN cannot even configure a node.
        let Err(TlsError::ClusterName(_)) =
            TlsConfig::from_pem(&ca.cert_pem, &other_service(&ca), &me.key_pem)
        else {
            panic!("a certificate without a cluster SAN was accepted");
        };
    }

    #[test]
    fn both_sides_honour_the_revocation_list() {
        let ca = CertificateAuthority::generate("crl CA").unwrap();
        let (me, good, revoked) = (
            ca.issue("a").unwrap(),
            ca.issue("b").unwrap(),
            ca.issue("c").unwrap(),
        );
        let crl = ca
            .revocation_list(
                &[certificate_serial(&revoked.cert_pem).unwrap()],
                1,
                Duration::from_secs(3600),
            )
            .unwrap();
        let without = verifiers(&ca, &me, None);
        assert_eq!(accepts(&without, &revoked.cert_pem), (true, true));
        let with = verifiers(&ca, &me, Some(&crl));
        assert_eq!(accepts(&with, &good.cert_pem), (true, true));
        assert_eq!(accepts(&with, &revoked.cert_pem), (false, false));
        // A list from another CA does not cover this cluster's certificates: refused.
        let stranger = CertificateAuthority::generate("other CA").unwrap();
        let foreign = stranger
            .revocation_list(&[], 1, Duration::from_secs(3600))
            .unwrap();
        let unknown = verifiers(&ca, &me, Some(&foreign));
        assert_eq!(accepts(&unknown, &good.cert_pem), (false, false));
    }

    /// CA rotation as the README describes it: with both CA certificates in `--tls-ca`,
    /// nodes with certificates from either CA (same cluster) accept each other.
    #[test]
    fn a_ca_bundle_admits_both_cas_during_rotation() {
        let old =
            CertificateAuthority::generate_for_cluster("prod", "old", DEFAULT_CA_VALIDITY).unwrap();
        let new =
            CertificateAuthority::generate_for_cluster("prod", "new", DEFAULT_CA_VALIDITY).unwrap();
        let bundle = format!("{}{}", old.cert_pem, new.cert_pem);
        let me = new.issue("a").unwrap();
        let config = TlsConfig::from_pem(&bundle, &me.cert_pem, &me.key_pem).unwrap();
        let Mode::Mutual {
            roots,
            cluster,
            crls,
            ..
        } = &config.mode
        else {
            unreachable!("mutual TLS")
        };
        let node = (
            cluster_client_verifier(roots, crls, cluster, &provider()).unwrap(),
            cluster_server_verifier(roots, crls, cluster, &provider()).unwrap(),
        );
        assert_eq!(
            accepts(&node, &old.issue("b").unwrap().cert_pem),
            (true, true)
        );
        assert_eq!(
            accepts(&node, &new.issue("c").unwrap().cert_pem),
            (true, true)
        );
        let stranger =
            CertificateAuthority::generate_for_cluster("prod", "x", DEFAULT_CA_VALIDITY).unwrap();
        assert_eq!(
            accepts(&node, &stranger.issue("d").unwrap().cert_pem),
            (false, false)
        );
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("countermesh-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = CertificateAuthority::generate("perm CA").unwrap();
        let node = ca.issue("a").unwrap();
        let (ca_path, cert, key) = (dir.join("ca.pem"), dir.join("a.pem"), dir.join("a.key"));
        std::fs::write(&ca_path, &ca.cert_pem).unwrap();
        std::fs::write(&cert, &node.cert_pem).unwrap();
        std::fs::write(&key, &node.key_pem).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let refused = TlsConfig::from_pem_files(&ca_path, &cert, &key);
        assert!(
            matches!(
                refused,
                Err(TlsError::KeyFileNotPrivate { mode: 0o640, .. })
            ),
            "{refused:?}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        TlsConfig::from_pem_files(&ca_path, &cert, &key).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
