//! `countermesh certs`: create a cluster CA and issue node certificates for mutual TLS.
//!
//! Every node of a cluster presents a certificate signed by the cluster CA and accepts
//! only peers that do the same. Files are written with `create_new` (an existing file is
//! never overwritten) and private keys are readable by their owner only.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use countermesh::{CertificateAuthority, TlsConfig, write_new_file};

/// File names inside a CA directory.
const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";

/// `countermesh certs`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum CertsCommand {
    /// Create a new cluster CA: `<dir>/ca.pem` (give it to every node) and `<dir>/ca.key`
    /// (keep it off the nodes; it admits new members).
    Init {
        /// Directory for the CA files (created if missing).
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "countermesh cluster CA")]
        name: String,
    },
    /// Issue a node certificate signed by the CA in `--dir`: `<out>/<name>.pem` and
    /// `<out>/<name>.key`.
    Issue {
        /// Directory holding `ca.pem` and `ca.key`.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// The node's name (its certificate's common name and file name).
        #[arg(long)]
        name: String,
        /// Where to write the node's files (default: the CA directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[allow(clippy::print_stdout)]
pub(crate) fn run(command: CertsCommand) -> Result<()> {
    match command {
        CertsCommand::Init { dir, name } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let ca = CertificateAuthority::generate(&name)?;
            write_new_file(&dir.join(CA_CERT), &ca.cert_pem, false)?;
            write_new_file(&dir.join(CA_KEY), &ca.key_pem, true)?;
            println!("created cluster CA {name:?}:");
            println!("  {}  (copy to every node)", dir.join(CA_CERT).display());
            println!(
                "  {}  (private: keep it off the nodes)",
                dir.join(CA_KEY).display()
            );
            println!(
                "next: countermesh certs issue --dir {} --name <node>",
                dir.display()
            );
        }
        CertsCommand::Issue { dir, name, out } => {
            validate_file_stem(&name)?;
            let ca = load_ca(&dir)?;
            let out = out.unwrap_or_else(|| dir.clone());
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let node = ca.issue(&name)?;
            // Prove the pair works before writing it.
            TlsConfig::from_node_certificate(&ca.cert_pem, &node)?;
            let cert = out.join(format!("{name}.pem"));
            let key = out.join(format!("{name}.key"));
            write_new_file(&cert, &node.cert_pem, false)?;
            write_new_file(&key, &node.key_pem, true)?;
            println!("issued a certificate for {name:?}:");
            println!("  {}", cert.display());
            println!("  {}  (private)", key.display());
            println!(
                "use: countermesh agent --tls-ca {} --tls-cert {} --tls-key {}",
                dir.join(CA_CERT).display(),
                cert.display(),
                key.display()
            );
        }
    }
    Ok(())
}

fn load_ca(dir: &Path) -> Result<CertificateAuthority> {
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (create a CA with `countermesh certs init --dir {}`)",
                path.display(),
                dir.display()
            )
        })
    };
    Ok(CertificateAuthority::from_pem(
        &read(CA_CERT)?,
        &read(CA_KEY)?,
    ))
}

/// Node names become file names, so keep them to a safe alphabet.
fn validate_file_stem(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    anyhow::ensure!(
        ok,
        "node name {name:?} must be 1-64 characters of A-Z, a-z, 0-9, '-', '_' or '.', not starting with '.'"
    );
    Ok(())
}
