//! Generating a cluster CA, node certificates and revocation lists (rcgen), for tests,
//! demos and the agent's `certs` command.
//!
//! **The cluster SAN.** A node certificate names the cluster it belongs to with one DNS
//! subject alternative name `<cluster>.countermesh` (see [`cluster_san`]). Both sides of
//! every connection require the peer's certificate to chain to the cluster CA *and* to
//! carry the same cluster SAN as their own, so a CA shared with other services (an
//! organisation's internal CA) does not admit the other certificates it signs, and two
//! clusters under one CA stay apart. A CA made here records its cluster in its own SAN,
//! so [`CertificateAuthority::issue`] needs no cluster argument.
//!
//! Validity: CA certificates last [`DEFAULT_CA_VALIDITY`] (10 years), node certificates
//! [`DEFAULT_NODE_VALIDITY`] (1 year) unless asked otherwise; both start 5 minutes in the
//! past, so a peer whose clock is slightly behind accepts a fresh certificate.

use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::TlsError;

/// The server name (SNI) every connection asks for. Verification does not use it: each
/// side checks the peer's certificate for the cluster SAN instead (see the module docs).
pub const CLUSTER_SERVER_NAME: &str = "countermesh.cluster";

/// The DNS suffix of a cluster SAN: `<cluster>.countermesh`.
pub const CLUSTER_SAN_SUFFIX: &str = ".countermesh";

/// The cluster of a CA created without naming one.
pub const DEFAULT_CLUSTER: &str = "default";

/// How long a CA certificate is valid unless asked otherwise: 10 years.
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How long a node certificate is valid unless asked otherwise: 1 year.
pub const DEFAULT_NODE_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// How far in the past certificates start, for peers whose clocks are a little behind.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// The cluster SAN of `cluster`: `<cluster>.countermesh`. A cluster name is one DNS
/// label: 1 to 63 characters of `a-z`, `0-9` and `-`, not starting or ending with `-`.
pub fn cluster_san(cluster: &str) -> Result<String, TlsError> {
    let valid = !cluster.is_empty()
        && cluster.len() <= 63
        && !cluster.starts_with('-')
        && !cluster.ends_with('-')
        && cluster
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(TlsError::ClusterName(format!(
            "{cluster:?} is not a cluster name: use 1 to 63 characters of a-z, 0-9 and '-', \
             not starting or ending with '-'"
        )));
    }
    Ok(format!("{cluster}{CLUSTER_SAN_SUFFIX}"))
}

/// The cluster SAN a certificate carries: its one DNS name ending in
/// [`CLUSTER_SAN_SUFFIX`]. `Ok(None)` if it has none; an error if it has several (which
/// cluster would it be in?) or does not parse.
pub(crate) fn certificate_cluster_san(
    cert: &CertificateDer<'_>,
) -> Result<Option<String>, TlsError> {
    let parsed = webpki::EndEntityCert::try_from(cert).map_err(|e| TlsError::Pem {
        what: "certificate",
        reason: format!("cannot parse: {e:?}"),
    })?;
    let mut found: Option<String> = None;
    for name in parsed.valid_dns_names() {
        let name = name.to_ascii_lowercase();
        if let Some(cluster) = name.strip_suffix(CLUSTER_SAN_SUFFIX)
            && cluster_san(cluster).is_ok()
        {
            if let Some(first) = &found
                && *first != name
            {
                return Err(TlsError::ClusterName(format!(
                    "the certificate names two clusters ({first} and {name}); a node \
                     certificate must carry exactly one cluster SAN"
                )));
            }
            found = Some(name);
        }
    }
    Ok(found)
}

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

/// `(not_before, not_after)` for a certificate valid for `validity` from now.
fn validity_window(validity: Duration) -> Result<(OffsetDateTime, OffsetDateTime), TlsError> {
    let now = OffsetDateTime::now_utc();
    let not_after = now.checked_add(time_duration(validity)?);
    let not_before = now.checked_sub(time_duration(BACKDATE)?);
    match (not_before, not_after) {
        (Some(not_before), Some(not_after)) if !validity.is_zero() => Ok((not_before, not_after)),
        _ => Err(TlsError::Generate {
            what: "validity period",
            reason: format!("{validity:?} is not a usable validity (from a minute to millennia)"),
        }),
    }
}

fn time_duration(duration: Duration) -> Result<time::Duration, TlsError> {
    time::Duration::try_from(duration).map_err(|e| TlsError::Generate {
        what: "validity period",
        reason: e.to_string(),
    })
}

/// Parses a PEM certificate into DER (the first one in `pem`).
fn first_cert(what: &'static str, pem: &str) -> Result<CertificateDer<'static>, TlsError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .ok_or_else(|| TlsError::Pem {
            what,
            reason: "no CERTIFICATE block found".into(),
        })?
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })
}

impl CertificateAuthority {
    /// Creates a new self-signed CA named `common_name` for the cluster
    /// [`DEFAULT_CLUSTER`], valid for [`DEFAULT_CA_VALIDITY`].
    pub fn generate(common_name: &str) -> Result<Self, TlsError> {
        Self::generate_for_cluster(DEFAULT_CLUSTER, common_name, DEFAULT_CA_VALIDITY)
    }

    /// Creates a new self-signed CA named `common_name` for `cluster` (recorded as the
    /// CA's own cluster SAN, which [`CertificateAuthority::issue`] reads), valid for
    /// `validity`.
    pub fn generate_for_cluster(
        cluster: &str,
        common_name: &str,
        validity: Duration,
    ) -> Result<Self, TlsError> {
        let san = cluster_san(cluster)?;
        let key = KeyPair::generate().map_err(rcgen_error("CA key"))?;
        let mut params = CertificateParams::new(vec![san]).map_err(rcgen_error("CA params"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        (params.not_before, params.not_after) = validity_window(validity)?;
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

    /// The cluster this CA was made for (its own cluster SAN), or `None` for a CA that
    /// records none (an organisation's CA, say: use
    /// [`CertificateAuthority::issue_for_cluster`]).
    pub fn cluster(&self) -> Result<Option<String>, TlsError> {
        let cert = first_cert("CA certificate", &self.cert_pem)?;
        // A CA certificate is not an end entity, but its SAN extension reads the same.
        Ok(certificate_cluster_san(&cert)?
            .and_then(|san| san.strip_suffix(CLUSTER_SAN_SUFFIX).map(str::to_owned)))
    }

    /// Issues a certificate for a node called `node_name` in this CA's cluster (or
    /// [`DEFAULT_CLUSTER`] if the CA records none), valid for [`DEFAULT_NODE_VALIDITY`].
    pub fn issue(&self, node_name: &str) -> Result<NodeCertificate, TlsError> {
        let cluster = self
            .cluster()?
            .unwrap_or_else(|| DEFAULT_CLUSTER.to_owned());
        self.issue_for_cluster(&cluster, node_name, DEFAULT_NODE_VALIDITY)
    }

    /// Issues a certificate for a node called `node_name` (its common name, and an extra
    /// DNS name when it is one) in `cluster`, valid for `validity`, usable on both sides
    /// of a mutual-TLS connection.
    pub fn issue_for_cluster(
        &self,
        cluster: &str,
        node_name: &str,
        validity: Duration,
    ) -> Result<NodeCertificate, TlsError> {
        let ca_key = KeyPair::from_pem(&self.key_pem).map_err(rcgen_error("CA key (PEM)"))?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)
            .map_err(rcgen_error("CA certificate (PEM)"))?;
        let mut names = vec![cluster_san(cluster)?];
        // The node's own name helps operators tell certificates apart; it must not look
        // like a cluster SAN, which would put the node in two clusters.
        if !node_name.to_ascii_lowercase().ends_with(CLUSTER_SAN_SUFFIX)
            && node_name != CLUSTER_SERVER_NAME
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
        (params.not_before, params.not_after) = validity_window(validity)?;
        let key = KeyPair::generate().map_err(rcgen_error("node key"))?;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(rcgen_error("node certificate"))?;
        Ok(NodeCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A certificate revocation list (PEM) signed by this CA that revokes the
    /// certificates with `serials` (see [`certificate_serial`]). `number` must grow with
    /// every list issued; the list says the next one is due within `validity`.
    pub fn revocation_list(
        &self,
        serials: &[Vec<u8>],
        number: u64,
        validity: Duration,
    ) -> Result<String, TlsError> {
        let ca_key = KeyPair::from_pem(&self.key_pem).map_err(rcgen_error("CA key (PEM)"))?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)
            .map_err(rcgen_error("CA certificate (PEM)"))?;
        let (this_update, next_update) = validity_window(validity)?;
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: this_update,
                    reason_code: Some(RevocationReason::Unspecified),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&issuer)
            .and_then(|crl| crl.pem())
            .map_err(rcgen_error("revocation list"))
    }
}

/// The serial number of a PEM certificate (big-endian), as a revocation list names it.
pub fn certificate_serial(cert_pem: &str) -> Result<Vec<u8>, TlsError> {
    let cert = first_cert("certificate", cert_pem)?;
    let parsed = webpki::EndEntityCert::try_from(&cert).map_err(|e| TlsError::Pem {
        what: "certificate",
        reason: format!("cannot parse: {e:?}"),
    })?;
    Ok(parsed.serial().to_vec())
}

impl NodeCertificate {
    /// A certificate signed by nobody but itself, in the [`DEFAULT_CLUSTER`] (for tests
    /// of rejection).
    pub fn self_signed(node_name: &str) -> Result<Self, TlsError> {
        let key = KeyPair::generate().map_err(rcgen_error("key"))?;
        let mut params =
            CertificateParams::new(vec![cluster_san(DEFAULT_CLUSTER)?, node_name.to_owned()])
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

/// Refuses a private-key file that its group or other users can access (Unix): a key
/// anyone on the machine can read is not a secret.
pub fn check_key_file(path: &Path) -> Result<(), TlsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|source| TlsError::Io {
                path: path.to_owned(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(TlsError::KeyFileNotPrivate {
                path: path.to_owned(),
                mode: mode & 0o7777,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_are_one_dns_label() {
        assert_eq!(cluster_san("prod-1").unwrap(), "prod-1.countermesh");
        for bad in ["", "Prod", "a.b", "-a", "a-", "a b", &"x".repeat(64)] {
            assert!(cluster_san(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn issued_certificates_carry_the_cas_cluster() {
        let ca = CertificateAuthority::generate_for_cluster("blue", "test CA", DEFAULT_CA_VALIDITY)
            .unwrap();
        assert_eq!(ca.cluster().unwrap().as_deref(), Some("blue"));
        let node = ca.issue("node-a").unwrap();
        let der = first_cert("node", &node.cert_pem).unwrap();
        assert_eq!(
            certificate_cluster_san(&der).unwrap().as_deref(),
            Some("blue.countermesh")
        );
        // A node name that looks like a cluster SAN is not added as a second one.
        let tricky = ca.issue("red.countermesh").unwrap();
        let der = first_cert("node", &tricky.cert_pem).unwrap();
        assert_eq!(
            certificate_cluster_san(&der).unwrap().as_deref(),
            Some("blue.countermesh")
        );
    }

    #[test]
    fn revocation_lists_parse() {
        let ca = CertificateAuthority::generate("crl CA").unwrap();
        let node = ca.issue("node").unwrap();
        let serial = certificate_serial(&node.cert_pem).unwrap();
        let pem = ca
            .revocation_list(&[serial], 1, Duration::from_secs(3600))
            .unwrap();
        let crls: Vec<_> = rustls_pemfile::crls(&mut pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(crls.len(), 1);
    }
}
