//! How the agent proves itself to ZooKeeper: `--zookeeper-auth-file` (credentials) and
//! `--zookeeper-tls-ca/-cert/-key` (mutual TLS), read and checked once at start so a bad
//! file stops the agent with a message naming the option instead of leaving strict mode
//! silently broken.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use countermesh_strict::{Credentials, StrictError, StrictOptions, TlsConfig};

use crate::config::check_private_file;

/// Why the ZooKeeper security options cannot be used. Each message names the option and
/// what to do; none repeats a secret.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ZookeeperSecurityError {
    /// A security option was given without `--zookeeper`, which would silently do nothing.
    #[error(
        "{option} needs --zookeeper HOST:PORT[/chroot]: it only configures how strict \
         mode connects to ZooKeeper"
    )]
    WithoutZookeeper {
        /// The option given.
        option: &'static str,
    },
    /// Some but not all of the three TLS files were given.
    #[error(
        "TLS to ZooKeeper needs --zookeeper-tls-ca, --zookeeper-tls-cert and \
         --zookeeper-tls-key together (missing: {missing}); give all three, or none for \
         plain TCP"
    )]
    IncompleteTls {
        /// The options left out, comma-separated.
        missing: String,
    },
    /// A secret file its group or other users can access.
    #[error("{option}: {why}")]
    NotPrivate {
        /// The option naming the file.
        option: &'static str,
        /// What is wrong and the `chmod` that fixes it.
        why: String,
    },
    /// A file that cannot be read.
    #[error("{option}: cannot read {}: {source}", path.display())]
    Unreadable {
        /// The option naming the file.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The auth file does not hold `scheme:credentials` the strict client accepts.
    #[error(
        "--zookeeper-auth-file {}: {why}; expected one line digest:USER:PASSWORD \
         (or sasl:USER:PASSWORD)", path.display()
    )]
    BadCredentials {
        /// The file.
        path: PathBuf,
        /// The strict client's reason (never the file's contents).
        why: String,
    },
    /// The PEM files are not a usable CA, certificate or key.
    #[error("--zookeeper-tls-ca/-cert/-key: {why}")]
    BadTls {
        /// The strict client's reason.
        why: String,
    },
    /// The option needs a feature this binary was built without.
    #[error(
        "{option}: this countermesh binary was built without the `{feature}` feature; \
         rebuild with `cargo build -p countermesh-cli --features {feature}`"
    )]
    NotBuilt {
        /// The option given.
        option: &'static str,
        /// The cargo feature of `countermesh-cli` it needs.
        feature: &'static str,
    },
}

/// Credentials and TLS settings for strict mode's ZooKeeper sessions, loaded from their
/// files. `Debug` shows neither the password nor the key (the strict crate's types
/// redact them).
#[derive(Clone, Default)]
pub(crate) struct ZookeeperSecurity {
    credentials: Option<Credentials>,
    tls: Option<TlsConfig>,
}

impl fmt::Debug for ZookeeperSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZookeeperSecurity")
            .field("credentials", &self.credentials)
            .field("tls", &self.tls)
            .finish()
    }
}

impl ZookeeperSecurity {
    /// Reads and checks `--zookeeper-auth-file` and the three `--zookeeper-tls-*` files.
    /// `zookeeper` says whether `--zookeeper` was given.
    pub(crate) fn load(
        zookeeper: bool,
        auth_file: Option<&Path>,
        [ca, cert, key]: [Option<PathBuf>; 3],
    ) -> Result<Self, ZookeeperSecurityError> {
        let tls_given = ca.is_some() || cert.is_some() || key.is_some();
        if !zookeeper {
            if auth_file.is_some() {
                return Err(ZookeeperSecurityError::WithoutZookeeper {
                    option: "--zookeeper-auth-file",
                });
            }
            if tls_given {
                return Err(ZookeeperSecurityError::WithoutZookeeper {
                    option: "--zookeeper-tls-ca/-cert/-key",
                });
            }
        }
        let credentials = auth_file.map(read_credentials).transpose()?;
        let tls = match (ca, cert, key) {
            (None, None, None) => None,
            (Some(ca), Some(cert), Some(key)) => Some(read_tls(&ca, &cert, &key)?),
            (ca, cert, key) => {
                let missing: Vec<&str> = [
                    ("--zookeeper-tls-ca", ca.is_none()),
                    ("--zookeeper-tls-cert", cert.is_none()),
                    ("--zookeeper-tls-key", key.is_none()),
                ]
                .into_iter()
                .filter_map(|(option, missing)| missing.then_some(option))
                .collect();
                return Err(ZookeeperSecurityError::IncompleteTls {
                    missing: missing.join(", "),
                });
            }
        };
        let security = Self { credentials, tls };
        // The strict client parses the PEM when it connects, which happens in the
        // background; checking now turns a bad file into a start-up error.
        security
            .apply(StrictOptions::default())
            .check()
            .map_err(|error| match error {
                StrictError::InvalidConfig(why) => ZookeeperSecurityError::BadTls {
                    why: why.to_owned(),
                },
                other => ZookeeperSecurityError::BadTls {
                    why: other.to_string(),
                },
            })?;
        Ok(security)
    }

    /// `options` with these credentials and TLS settings.
    pub(crate) fn apply(&self, mut options: StrictOptions) -> StrictOptions {
        if let Some(credentials) = &self.credentials {
            options = options.with_credentials(credentials.clone());
        }
        if let Some(tls) = &self.tls {
            options = options.with_tls(tls.clone());
        }
        options
    }

    /// Whether credentials are configured.
    pub(crate) fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// Whether TLS is configured.
    pub(crate) fn has_tls(&self) -> bool {
        self.tls.is_some()
    }
}

fn read_private(option: &'static str, path: &Path) -> Result<String, ZookeeperSecurityError> {
    check_private_file(path).map_err(|why| ZookeeperSecurityError::NotPrivate { option, why })?;
    read(option, path)
}

fn read(option: &'static str, path: &Path) -> Result<String, ZookeeperSecurityError> {
    std::fs::read_to_string(path).map_err(|source| ZookeeperSecurityError::Unreadable {
        option,
        path: path.to_owned(),
        source,
    })
}

fn read_credentials(path: &Path) -> Result<Credentials, ZookeeperSecurityError> {
    const OPTION: &str = "--zookeeper-auth-file";
    let text = read_private(OPTION, path)?;
    if text.trim_start().starts_with("sasl:") && !cfg!(feature = "zookeeper-sasl") {
        return Err(ZookeeperSecurityError::NotBuilt {
            option: OPTION,
            feature: "zookeeper-sasl",
        });
    }
    Credentials::parse(&text).map_err(|error| ZookeeperSecurityError::BadCredentials {
        path: path.to_owned(),
        why: match error {
            StrictError::InvalidConfig(why) => why.to_owned(),
            other => other.to_string(),
        },
    })
}

fn read_tls(ca: &Path, cert: &Path, key: &Path) -> Result<TlsConfig, ZookeeperSecurityError> {
    if !cfg!(feature = "zookeeper-tls") {
        return Err(ZookeeperSecurityError::NotBuilt {
            option: "--zookeeper-tls-ca/-cert/-key",
            feature: "zookeeper-tls",
        });
    }
    let ca = read("--zookeeper-tls-ca", ca)?;
    let cert = read("--zookeeper-tls-cert", cert)?;
    let key = read_private("--zookeeper-tls-key", key)?;
    Ok(TlsConfig::new(ca).with_identity(cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private_file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        path
    }

    #[test]
    fn nothing_configured_is_fine_with_or_without_zookeeper() {
        for zookeeper in [false, true] {
            let security = ZookeeperSecurity::load(zookeeper, None, [None, None, None]).unwrap();
            assert!(!security.has_credentials() && !security.has_tls());
        }
    }

    #[test]
    fn an_auth_file_is_read_and_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let path = private_file(dir.path(), "auth", "digest:agent:s3:cret\n");
        let security = ZookeeperSecurity::load(true, Some(&path), [None, None, None]).unwrap();
        assert!(security.has_credentials());
        let shown = format!("{security:?}");
        assert!(
            shown.contains("agent") && !shown.contains("s3:cret"),
            "{shown}"
        );
    }

    #[test]
    fn bad_auth_files_are_refused_without_echoing_them() {
        let dir = tempfile::tempdir().unwrap();
        let bad = private_file(dir.path(), "bad", "hunter2");
        let error = ZookeeperSecurity::load(true, Some(&bad), [None, None, None]).unwrap_err();
        assert!(
            matches!(error, ZookeeperSecurityError::BadCredentials { .. }),
            "{error}"
        );
        assert!(!error.to_string().contains("hunter2"), "{error}");

        let missing = dir.path().join("missing");
        let error = ZookeeperSecurity::load(true, Some(&missing), [None, None, None]);
        assert!(matches!(
            error,
            Err(ZookeeperSecurityError::NotPrivate { .. }
                | ZookeeperSecurityError::Unreadable { .. })
        ));

        let without = ZookeeperSecurity::load(false, Some(&bad), [None, None, None]);
        assert!(matches!(
            without,
            Err(ZookeeperSecurityError::WithoutZookeeper { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_auth_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = private_file(dir.path(), "auth", "digest:agent:pw");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = ZookeeperSecurity::load(true, Some(&path), [None, None, None]).unwrap_err();
        assert!(
            matches!(error, ZookeeperSecurityError::NotPrivate { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("chmod 600"), "{error}");
    }

    #[test]
    fn tls_needs_all_three_files() {
        let error =
            ZookeeperSecurity::load(true, None, [Some("ca.pem".into()), None, None]).unwrap_err();
        match error {
            ZookeeperSecurityError::IncompleteTls { missing } => {
                assert_eq!(missing, "--zookeeper-tls-cert, --zookeeper-tls-key");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[cfg(feature = "zookeeper-tls")]
    #[test]
    fn tls_files_that_are_not_pem_are_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let ca = private_file(dir.path(), "ca.pem", "not a certificate");
        let cert = private_file(dir.path(), "cert.pem", "nope");
        let key = private_file(dir.path(), "key.pem", "nope");
        let error =
            ZookeeperSecurity::load(true, None, [Some(ca), Some(cert), Some(key)]).unwrap_err();
        assert!(
            matches!(error, ZookeeperSecurityError::BadTls { .. }),
            "{error}"
        );
    }
}
