//! `countermesh certs`: create a cluster CA, issue node certificates, revoke them.
//!
//! Every node of a cluster presents a certificate signed by the cluster CA that names
//! the cluster (`<cluster>.countermesh`) and accepts only peers that do the same. Files
//! are written with `create_new` (an existing file is never overwritten) and private keys
//! are readable by their owner only. `issue` writes a node's files to their own directory
//! (by default next to the CA directory), so what is copied to a node never includes
//! `ca.key`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use countermesh::{
    CertificateAuthority, DEFAULT_CLUSTER, TlsConfig, certificate_serial, check_key_file,
    write_new_file,
};

/// File names inside a CA directory.
const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
/// The serials revoked so far (one hex serial per line, then a comment).
const REVOKED: &str = "revoked.txt";
/// The current revocation list, for `--tls-crl`.
const CRL: &str = "crl.pem";

const DAY: Duration = Duration::from_secs(24 * 3600);

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
        /// The cluster's name: every certificate this CA issues carries the SAN
        /// `<cluster>.countermesh`, and nodes only accept peers with their own.
        #[arg(long, default_value = DEFAULT_CLUSTER)]
        cluster: String,
        /// How long the CA certificate is valid, in days.
        #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
    },
    /// Issue a node certificate signed by the CA in `--dir`, in the CA's cluster:
    /// `<out>/<name>.pem`, `<out>/<name>.key` and a copy of `<out>/ca.pem`, ready to copy
    /// to the node.
    Issue {
        /// Directory holding `ca.pem` and `ca.key`.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// The node's name (its certificate's common name and file name).
        #[arg(long)]
        name: String,
        /// Where to write the node's files; never the CA directory. [default: a
        /// directory named after the node, next to the CA directory]
        #[arg(long)]
        out: Option<PathBuf>,
        /// How long the certificate is valid, in days (rotate before it expires).
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
    },
    /// Revoke a node certificate: adds it to `<dir>/revoked.txt` and rewrites
    /// `<dir>/crl.pem`, the list agents load with `--tls-crl`.
    Revoke {
        /// Directory holding `ca.pem` and `ca.key`.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// The certificate to revoke (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// How long the new list says it is current, in days. Agents keep using a list
        /// past that date; revoking an already revoked certificate again just writes a
        /// fresh list.
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
    },
}

#[allow(clippy::print_stdout)]
fn say(line: &str) {
    println!("{line}");
}

pub(crate) fn run(command: CertsCommand) -> Result<()> {
    match command {
        CertsCommand::Init {
            dir,
            name,
            cluster,
            days,
        } => init(&dir, &name, &cluster, days),
        CertsCommand::Issue {
            dir,
            name,
            out,
            days,
        } => issue(&dir, &name, out, days),
        CertsCommand::Revoke { dir, cert, days } => revoke(&dir, &cert, days),
    }
}

fn init(dir: &Path, name: &str, cluster: &str, days: u32) -> Result<()> {
    let ca = CertificateAuthority::generate_for_cluster(cluster, name, DAY * days)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_new_file(&dir.join(CA_CERT), &ca.cert_pem, false)?;
    write_new_file(&dir.join(CA_KEY), &ca.key_pem, true)?;
    say(&format!(
        "created the CA {name:?} of cluster {cluster:?}, valid {days} days:"
    ));
    say(&format!(
        "  {}  (copied to every node by `certs issue`)",
        dir.join(CA_CERT).display()
    ));
    say(&format!(
        "  {}  (private: keep it off the nodes)",
        dir.join(CA_KEY).display()
    ));
    say(&format!(
        "next: countermesh certs issue --dir {} --name <node>",
        dir.display()
    ));
    Ok(())
}

fn issue(dir: &Path, name: &str, out: Option<PathBuf>, days: u32) -> Result<()> {
    validate_file_stem(name)?;
    let ca = load_ca(dir)?;
    let cluster = ca.cluster()?.unwrap_or_else(|| DEFAULT_CLUSTER.to_owned());
    let out = out.unwrap_or_else(|| dir.parent().unwrap_or(dir).join(name));
    if out.join(CA_KEY).exists() || same_dir(&out, dir) {
        bail!(
            "--out {}: that directory holds (or is) the CA's private key; node files go \
             to a directory of their own, so that copying them to the node never copies \
             {CA_KEY}",
            out.display()
        );
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let node = ca.issue_for_cluster(&cluster, name, DAY * days)?;
    // Prove the pair works before writing it.
    TlsConfig::from_node_certificate(&ca.cert_pem, &node)?;
    let ca_copy = out.join(CA_CERT);
    match std::fs::read_to_string(&ca_copy) {
        Ok(existing) if existing == ca.cert_pem => {}
        Ok(_) => bail!(
            "{} exists and is another CA's certificate; choose another --out",
            ca_copy.display()
        ),
        Err(_) => write_new_file(&ca_copy, &ca.cert_pem, false)?,
    }
    let cert = out.join(format!("{name}.pem"));
    let key = out.join(format!("{name}.key"));
    write_new_file(&cert, &node.cert_pem, false)?;
    write_new_file(&key, &node.key_pem, true)?;
    say(&format!(
        "issued a certificate for {name:?} in cluster {cluster:?}, valid {days} days:"
    ));
    say(&format!("  {}", cert.display()));
    say(&format!("  {}  (private)", key.display()));
    say(&format!("  {}  (the CA certificate)", ca_copy.display()));
    say(&format!(
        "copy {} to the node and run: countermesh agent --tls-ca {} --tls-cert {} --tls-key {}",
        out.display(),
        ca_copy.display(),
        cert.display(),
        key.display()
    ));
    Ok(())
}

fn revoke(dir: &Path, cert: &Path, days: u32) -> Result<()> {
    let ca = load_ca(dir)?;
    let pem = std::fs::read_to_string(cert)
        .with_context(|| format!("--cert: cannot read {}", cert.display()))?;
    let serial = hex(&certificate_serial(&pem)?);
    let list = dir.join(REVOKED);
    let mut serials: Vec<String> = std::fs::read_to_string(&list)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|first| !first.starts_with('#'))
        .map(str::to_owned)
        .collect();
    if !serials.contains(&serial) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&list)
            .with_context(|| format!("cannot write {}", list.display()))?;
        writeln!(file, "{serial}  # {}", cert.display())
            .with_context(|| format!("cannot write {}", list.display()))?;
        serials.push(serial.clone());
    }
    let decoded = serials
        .iter()
        .map(|s| unhex(s).with_context(|| format!("{}: bad serial {s:?}", list.display())))
        .collect::<Result<Vec<_>>>()?;
    // CRL numbers must grow; seconds since the epoch do, one list per second at most.
    let number = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    let crl = ca.revocation_list(&decoded, number, DAY * days)?;
    let path = dir.join(CRL);
    let staged = dir.join(format!("{CRL}.new"));
    let _ = std::fs::remove_file(&staged);
    write_new_file(&staged, &crl, false)?;
    std::fs::rename(&staged, &path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    say(&format!(
        "revoked serial {serial} ({}); {} now lists {} certificate(s)",
        cert.display(),
        path.display(),
        serials.len()
    ));
    say(&format!(
        "copy {} to every node and restart it with --tls-crl",
        path.display()
    ));
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Result<Vec<u8>> {
    anyhow::ensure!(text.len().is_multiple_of(2), "odd length");
    (0..text.len())
        .step_by(2)
        .map(|i| Ok(u8::from_str_radix(&text[i..i + 2], 16)?))
        .collect()
}

/// Whether `a` and `b` are the same directory (both exist and resolve alike).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
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
    check_key_file(&dir.join(CA_KEY))?;
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

#[cfg(test)]
mod tests {
    use super::{hex, unhex};

    #[test]
    fn serials_round_trip_through_hex() {
        let serial = vec![0x00, 0x7f, 0xa0, 0xff];
        assert_eq!(hex(&serial), "007fa0ff");
        assert_eq!(unhex("007fa0ff").unwrap(), serial);
        assert!(unhex("abc").is_err());
        assert!(unhex("zz").is_err());
    }
}
