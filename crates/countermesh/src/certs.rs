//! Generating a cluster CA and node certificates (rcgen), for tests, demos and the
//! agent's `certs` command.
//!
//! Every node certificate carries the DNS name [`CLUSTER_SERVER_NAME`]: peers dial each
//! other by IP address and verify the certificate against that name and the cluster CA,
//! so any node the CA signed is a member, and nothing else is.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::TlsError;

/// The DNS name every node certificate carries and every connection verifies.
pub const CLUSTER_SERVER_NAME: &str = "countermesh.cluster";

/// A cluster certificate authority: its certificate and private key, PEM-encoded.
#[derive(Clone)]
pub struct CertificateAuthority {
    /// The CA certificate (PEM). Distribute it to every node.
    pub cert_pem: String,
    /// The CA private key (PEM). Keep it off the nodes; it signs new members.
    pub key_pem: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("CertificateAuthority")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A node's certificate (signed by the cluster CA) and private key, PEM-encoded.
#[derive(Clone)]
pub struct NodeCertificate {
    /// The node certificate (PEM).
    pub cert_pem: String,
    /// The node private key (PEM).
    pub key_pem: String,
}

impl std::fmt::Debug for NodeCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCertificate")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn rcgen_error(what: &'static str) -> impl FnOnce(rcgen::Error) -> TlsError {
    move |e| TlsError::Generate {
        what,
        reason: e.to_string(),
    }
}

impl CertificateAuthority {
    /// Creates a new self-signed cluster CA named `common_name`.
    pub fn generate(common_name: &str) -> Result<Self, TlsError> {
        let key = KeyPair::generate().map_err(rcgen_error("CA key"))?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error("CA params"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(rcgen_error("CA"))?;
        Ok(Self {
            cert_pem: issuer.pem(),
            key_pem: issuer.key().serialize_pem(),
        })
    }

    /// Loads a CA from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Self {
        Self {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        }
    }

    /// Issues a certificate for a node called `node_name` (used as the common name and
    /// as an extra DNS name). Valid for both sides of a mutual-TLS connection.
    pub fn issue(&self, node_name: &str) -> Result<NodeCertificate, TlsError> {
        let ca_key = KeyPair::from_pem(&self.key_pem).map_err(rcgen_error("CA key (PEM)"))?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)
            .map_err(rcgen_error("CA certificate (PEM)"))?;
        let mut names = vec![CLUSTER_SERVER_NAME.to_owned()];
        if node_name != CLUSTER_SERVER_NAME
            && rcgen::string::Ia5String::try_from(node_name.to_owned()).is_ok()
        {
            names.push(node_name.to_owned());
        }
        let mut params = CertificateParams::new(names).map_err(rcgen_error("node params"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().map_err(rcgen_error("node key"))?;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(rcgen_error("node certificate"))?;
        Ok(NodeCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl NodeCertificate {
    /// A certificate signed by nobody but itself (for tests of rejection).
    pub fn self_signed(node_name: &str) -> Result<Self, TlsError> {
        let key = KeyPair::generate().map_err(rcgen_error("key"))?;
        let mut params =
            CertificateParams::new(vec![CLUSTER_SERVER_NAME.to_owned(), node_name.to_owned()])
                .map_err(rcgen_error("params"))?;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(rcgen_error("self-signed certificate"))?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Writes `contents` to `path`, readable only by the owner where the platform allows,
/// refusing to overwrite an existing file.
pub fn write_new_file(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| TlsError::Io {
            path: path.to_owned(),
            source,
        })
}
