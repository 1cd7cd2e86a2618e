//! Who the client is to ZooKeeper: its credentials, TLS to the servers, and the ACLs the
//! znodes it creates get.
//!
//! Without credentials every znode is created open to anyone (`world:anyone`), as
//! ZooKeeper's own default. With credentials the default becomes creator-only
//! (`auth:` expanded by the server to the session's authenticated ids), so only clients
//! with the same identity can read, change or delete counters and receipts: an
//! anonymous client can neither forge nor delete a receipt, which is what exactly-once
//! rests on.

use std::fmt;

use zookeeper_client as zk;

use crate::error::StrictError;

/// Credentials the client authenticates to ZooKeeper with. The password never appears in
/// `Debug` output.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// ZooKeeper's `digest` scheme (`addauth digest user:password`): needs nothing on the
    /// server side; the identity in ACLs is `digest:user:<base64 sha1>`.
    Digest {
        /// The user name (no `:`).
        user: String,
        /// The password.
        password: String,
    },
    /// SASL with the DIGEST-MD5 mechanism, against users the server's JAAS `Server`
    /// section defines (`SASLAuthenticationProvider`). Needs this crate's `sasl` feature;
    /// the identity in ACLs is `sasl:user`.
    SaslDigestMd5 {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (scheme, user) = match self {
            Self::Digest { user, .. } => ("Digest", user),
            Self::SaslDigestMd5 { user, .. } => ("SaslDigestMd5", user),
        };
        f.debug_struct(scheme)
            .field("user", user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Digest credentials (`user` must not contain `:`).
    pub fn digest(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self::Digest {
            user: user.into(),
            password: password.into(),
        }
    }

    /// SASL DIGEST-MD5 credentials.
    pub fn sasl_digest_md5(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self::SaslDigestMd5 {
            user: user.into(),
            password: password.into(),
        }
    }

    /// Parses credentials as an auth file holds them: `digest:USER:PASSWORD` or
    /// `sasl:USER:PASSWORD` on one line (surrounding whitespace and a final newline are
    /// ignored; the password is everything after the second `:`).
    pub fn parse(text: &str) -> Result<Self, StrictError> {
        let text = text.trim();
        let mut parts = text.splitn(3, ':');
        let (Some(scheme), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(StrictError::InvalidConfig(
                "credentials must be digest:USER:PASSWORD or sasl:USER:PASSWORD",
            ));
        };
        let credentials = match scheme {
            "digest" => Self::digest(user, password),
            "sasl" => Self::sasl_digest_md5(user, password),
            _ => {
                return Err(StrictError::InvalidConfig(
                    "credentials scheme must be digest or sasl",
                ));
            }
        };
        credentials.validate()?;
        Ok(credentials)
    }

    pub(crate) fn validate(&self) -> Result<(), StrictError> {
        let (user, password) = match self {
            Self::Digest { user, password } | Self::SaslDigestMd5 { user, password } => {
                (user, password)
            }
        };
        if user.is_empty() || user.contains(':') || user.chars().any(char::is_control) {
            return Err(StrictError::InvalidConfig(
                "the user name must be non-empty, without ':' or control characters",
            ));
        }
        if password.is_empty() {
            return Err(StrictError::InvalidConfig("the password must not be empty"));
        }
        if matches!(self, Self::SaslDigestMd5 { .. }) && !cfg!(feature = "sasl") {
            return Err(StrictError::InvalidConfig(
                "SASL credentials need countermesh-strict's `sasl` feature",
            ));
        }
        Ok(())
    }
}

/// TLS to ZooKeeper's `secureClientPort`: the CA that signed the servers' certificates
/// and, for mutual TLS, the client's certificate and key, all PEM. Servers are verified
/// by name (the host in the connect string must be in the certificate). The key never
/// appears in `Debug` output. Needs this crate's `tls` feature.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsConfig {
    ca_pem: String,
    identity: Option<(String, String)>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("client_identity", &self.identity.is_some())
            .finish()
    }
}

impl TlsConfig {
    /// Trusts the CA certificates (and CRLs) in `ca_pem`.
    pub fn new(ca_pem: impl Into<String>) -> Self {
        Self {
            ca_pem: ca_pem.into(),
            identity: None,
        }
    }

    /// Presents `cert_pem` (the chain) with its private key `key_pem` to the servers. With
    /// ZooKeeper's `X509AuthenticationProvider` the certificate's subject becomes an
    /// authenticated `x509` identity, usable with [`AclPolicy::CreatorOnly`].
    #[must_use]
    pub fn with_identity(
        mut self,
        cert_pem: impl Into<String>,
        key_pem: impl Into<String>,
    ) -> Self {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Whether a client certificate is configured.
    pub fn has_identity(&self) -> bool {
        self.identity.is_some()
    }
}

/// Which ACL the znodes this client creates (root path, directories, counters, receipts)
/// get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AclPolicy {
    /// Creator-only when credentials are configured, else open.
    #[default]
    Auto,
    /// `world:anyone` with every permission: any client can change counters and receipts.
    Open,
    /// `auth:` with every permission: only sessions sharing an authenticated identity with
    /// the creator (same digest or SASL user, or same TLS client certificate subject).
    /// Needs an authenticated session, else creating fails with `InvalidACL`.
    CreatorOnly,
}

/// The resolved security settings of a client.
#[derive(Debug, Clone)]
pub(crate) struct Security {
    credentials: Option<Credentials>,
    tls: Option<TlsConfig>,
    creator_only: bool,
}

impl Security {
    /// Validates the settings and resolves [`AclPolicy::Auto`].
    pub(crate) fn new(
        credentials: Option<Credentials>,
        tls: Option<TlsConfig>,
        acl: AclPolicy,
    ) -> Result<Self, StrictError> {
        if let Some(credentials) = &credentials {
            credentials.validate()?;
        }
        if tls.is_some() && !cfg!(feature = "tls") {
            return Err(StrictError::InvalidConfig(
                "TLS to ZooKeeper needs countermesh-strict's `tls` feature",
            ));
        }
        let authenticated =
            credentials.is_some() || tls.as_ref().is_some_and(TlsConfig::has_identity);
        let creator_only = match acl {
            AclPolicy::Auto => credentials.is_some(),
            AclPolicy::Open => false,
            AclPolicy::CreatorOnly if !authenticated => {
                return Err(StrictError::InvalidConfig(
                    "creator-only ACLs need credentials or a TLS client certificate",
                ));
            }
            AclPolicy::CreatorOnly => true,
        };
        let security = Self {
            credentials,
            tls,
            creator_only,
        };
        // Parse the PEM now, so that bad files fail `connect` at once and not later.
        security.apply_tls(zk::Client::connector())?;
        Ok(security)
    }

    /// How every znode this client creates is created.
    pub(crate) fn create_mode(&self) -> zk::CreateOptions<'static> {
        let acls = if self.creator_only {
            zk::Acls::creator_all()
        } else {
            zk::Acls::anyone_all()
        };
        zk::CreateMode::Persistent.with_acls(acls)
    }

    /// Opens a session to `hosts` with these credentials and TLS settings.
    pub(crate) async fn connect(
        &self,
        connector: zk::Connector,
        hosts: &str,
    ) -> Result<zk::Client, zk::Error> {
        let connector = match &self.credentials {
            Some(Credentials::Digest { user, password }) => {
                connector.with_auth("digest", format!("{user}:{password}").as_bytes())
            }
            Some(Credentials::SaslDigestMd5 { user, password }) => {
                with_sasl(connector, user, password)
            }
            None => connector,
        };
        let connector = self
            .apply_tls(connector)
            .map_err(|_| zk::Error::BadArguments(&"invalid TLS configuration"))?;
        if self.tls.is_some() {
            secure_connect(connector, hosts).await
        } else {
            connector.connect(hosts).await
        }
    }

    #[cfg(feature = "tls")]
    fn apply_tls(&self, connector: zk::Connector) -> Result<zk::Connector, StrictError> {
        let Some(tls) = &self.tls else {
            return Ok(connector);
        };
        // zookeeper-client builds its rustls config with the process-wide default crypto
        // provider; its rustls also enables aws-lc-rs, so with ring (used by the rest of
        // the workspace) there would be two and no default. Installing ring settles it;
        // if the application installed one already, that one stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut options = zk::TlsOptions::new()
            .with_pem_ca(&tls.ca_pem)
            .map_err(|_| StrictError::InvalidConfig("invalid TLS CA certificate (PEM)"))?;
        if let Some((cert, key)) = &tls.identity {
            options = options.with_pem_identity(cert, key).map_err(|_| {
                StrictError::InvalidConfig("invalid TLS client certificate or key (PEM)")
            })?;
        }
        Ok(connector.with_tls(options))
    }

    #[cfg(not(feature = "tls"))]
    fn apply_tls(&self, connector: zk::Connector) -> Result<zk::Connector, StrictError> {
        Ok(connector)
    }
}

#[cfg(feature = "tls")]
async fn secure_connect(connector: zk::Connector, hosts: &str) -> Result<zk::Client, zk::Error> {
    connector.secure_connect(hosts).await
}

#[cfg(not(feature = "tls"))]
async fn secure_connect(_: zk::Connector, _: &str) -> Result<zk::Client, zk::Error> {
    // `Security::new` refuses TLS settings without the feature, so this is unreachable;
    // answer with a typed refusal all the same.
    Err(zk::Error::BadArguments(&"TLS needs the tls feature"))
}

#[cfg(feature = "sasl")]
fn with_sasl(connector: zk::Connector, user: &str, password: &str) -> zk::Connector {
    connector.with_sasl(zk::SaslOptions::digest_md5(
        user.to_owned(),
        password.to_owned(),
    ))
}

#[cfg(not(feature = "sasl"))]
fn with_sasl(connector: zk::Connector, _: &str, _: &str) -> zk::Connector {
    // `Credentials::validate` refuses SASL credentials without the feature.
    connector
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_auth_file_contents() {
        assert_eq!(
            Credentials::parse("digest:bob:s3:cr3t\n"),
            Ok(Credentials::digest("bob", "s3:cr3t"))
        );
        for bad in [
            "",
            "bob:secret",
            "digest::pw",
            "digest:bob:",
            "kerberos:bob:pw",
        ] {
            assert!(Credentials::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let shown = format!(
            "{:?} {:?}",
            Credentials::digest("bob", "hunter2"),
            TlsConfig::new("CA").with_identity("CERT", "hunter3")
        );
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(shown.contains("bob"), "{shown}");
    }

    #[test]
    fn creator_only_needs_an_identity() {
        assert!(Security::new(None, None, AclPolicy::CreatorOnly).is_err());
        let digest = Some(Credentials::digest("bob", "pw"));
        assert!(Security::new(digest.clone(), None, AclPolicy::Auto).is_ok_and(|s| s.creator_only));
        assert!(Security::new(digest, None, AclPolicy::Open).is_ok_and(|s| !s.creator_only));
        assert!(Security::new(None, None, AclPolicy::Auto).is_ok_and(|s| !s.creator_only));
    }
}
