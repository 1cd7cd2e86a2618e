//! A throwaway certificate authority for ZooKeeper servers with TLS (rcgen).

use std::fmt;
use std::io;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// The names every server certificate carries: clients dial the harness's servers by
/// loopback address, and verify the certificate against the name they dialled.
const SERVER_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// A certificate authority, a server certificate it signed, and one client certificate.
pub struct TestPki {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate (PEM): what clients and servers trust.
    pub ca_pem: String,
    /// The servers' certificate (PEM), for `127.0.0.1` and `localhost`.
    pub server_cert_pem: String,
    /// The servers' private key (PKCS#8 PEM).
    pub server_key_pem: String,
    /// A client certificate (PEM) whose subject is `CN=countermesh-test-client`.
    pub client_cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub client_key_pem: String,
}

impl fmt::Debug for TestPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

fn rcgen_error(what: &str) -> impl FnOnce(rcgen::Error) -> io::Error + '_ {
    move |err| io::Error::other(format!("generating the {what}: {err}"))
}

impl TestPki {
    /// Generates a CA, a server certificate and a client certificate.
    pub fn generate() -> io::Result<Self> {
        let key = KeyPair::generate().map_err(rcgen_error("CA key"))?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error("CA params"))?;
        params.distinguished_name = common_name("countermesh test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(rcgen_error("CA"))?;
        let ca_pem = issuer.pem();
        let mut pki = Self {
            issuer,
            ca_pem,
            server_cert_pem: String::new(),
            server_key_pem: String::new(),
            client_cert_pem: String::new(),
            client_key_pem: String::new(),
        };
        (pki.server_cert_pem, pki.server_key_pem) = pki.issue(
            "countermesh-test-server",
            &SERVER_NAMES,
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        (pki.client_cert_pem, pki.client_key_pem) = pki.issue_client("countermesh-test-client")?;
        Ok(pki)
    }

    /// Issues another client certificate, with subject `CN=<common_name>`: a different
    /// TLS identity. Returns the certificate and key, PEM.
    pub fn issue_client(&self, common_name: &str) -> io::Result<(String, String)> {
        self.issue(common_name, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        &self,
        name: &str,
        alt_names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> io::Result<(String, String)> {
        let names: Vec<String> = alt_names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).map_err(rcgen_error("params"))?;
        params.distinguished_name = common_name(name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().map_err(rcgen_error("key"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(rcgen_error("certificate"))?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}
