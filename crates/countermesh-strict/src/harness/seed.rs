//! Crafted starting state for a ZooKeeper server: a transaction log the real server
//! replays at start-up.
//!
//! The point is to reach states that the client protocol can only reach slowly, above
//! all a znode whose data version is near the 2^31 wrap: a `setData` transaction carries
//! the new version explicitly, and the server's replay (`DataTree.processTxn`) sets it
//! as given. Everything else is the real server: after start-up every further version is
//! computed by ZooKeeper itself, so the wrap happens exactly as in production.
//!
//! The log is ZooKeeper's own format (`FileTxnLog`): a file header (`ZKLG`, version 2,
//! database id), then per transaction its Adler-32 checksum, the length-prefixed jute
//! record (`TxnHeader` + `CreateTxn` or `SetDataTxn`) and the end-of-record byte `B`. A
//! log without a snapshot is only replayed with `zookeeper.snapshot.trust.empty=true`,
//! which the harness passes to the server when it has a seed.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path;

/// A znode the server starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedZnode {
    /// Its absolute path. Missing parents are created empty, open to anyone.
    pub path: String,
    /// Its data.
    pub data: Vec<u8>,
    /// Its data version (ZooKeeper's `int`; any value, negative ones included).
    pub version: i32,
}

/// ZooKeeper's transaction types (`ZooDefs.OpCode`).
const OP_CREATE: i32 = 1;
const OP_SET_DATA: i32 = 5;
/// ZooKeeper's permission bits: all of them.
const PERMS_ALL: i32 = 31;

/// Writes the log that creates `nodes` into `data_dir/version-2/log.1`.
pub(crate) fn write_txn_log(data_dir: &Path, nodes: &[SeedZnode]) -> io::Result<()> {
    let mut log = Vec::new();
    log.extend_from_slice(b"ZKLG");
    put_i32(&mut log, 2);
    put_i64(&mut log, 0);
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut zxid = 0i64;
    let mut created = BTreeSet::new();
    for node in nodes {
        if !node.path.starts_with('/') || node.path.ends_with('/') || node.path.len() < 2 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("seed path {:?} is not an absolute znode path", node.path),
            ));
        }
        let mut parents: Vec<&str> = node
            .path
            .match_indices('/')
            .skip(1)
            .map(|(i, _)| &node.path[..i])
            .collect();
        parents.push(&node.path);
        for path in parents {
            if created.insert(path.to_owned()) {
                let data = if path == node.path {
                    &node.data[..]
                } else {
                    &[]
                };
                zxid += 1;
                append_txn(&mut log, zxid, time, OP_CREATE, &create_txn(path, data));
            }
        }
        if node.version != 0 {
            zxid += 1;
            let txn = set_data_txn(&node.path, &node.data, node.version);
            append_txn(&mut log, zxid, time, OP_SET_DATA, &txn);
        }
    }
    let dir = data_dir.join("version-2");
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("log.1"), log)
}

/// `CreateTxn`: path, data, ACLs (`world:anyone`, all permissions), not ephemeral, and
/// parent cversion -1 (the server increments the parent's own).
fn create_txn(path: &str, data: &[u8]) -> Vec<u8> {
    let mut txn = Vec::new();
    put_string(&mut txn, path);
    put_buffer(&mut txn, data);
    put_i32(&mut txn, 1);
    put_i32(&mut txn, PERMS_ALL);
    put_string(&mut txn, "world");
    put_string(&mut txn, "anyone");
    txn.push(0);
    put_i32(&mut txn, -1);
    txn
}

/// `SetDataTxn`: path, data, and the version the znode gets.
fn set_data_txn(path: &str, data: &[u8], version: i32) -> Vec<u8> {
    let mut txn = Vec::new();
    put_string(&mut txn, path);
    put_buffer(&mut txn, data);
    put_i32(&mut txn, version);
    txn
}

/// Appends one log entry: checksum, length-prefixed `TxnHeader` + `txn`, end of record.
fn append_txn(log: &mut Vec<u8>, zxid: i64, time: i64, op: i32, txn: &[u8]) {
    let mut entry = Vec::with_capacity(28 + txn.len());
    put_i64(&mut entry, 0); // client (session) id
    put_i32(&mut entry, 0); // cxid
    put_i64(&mut entry, zxid);
    put_i64(&mut entry, time);
    put_i32(&mut entry, op);
    entry.extend_from_slice(txn);
    put_i64(log, i64::from(adler32(&entry)));
    put_buffer(log, &entry);
    log.push(b'B');
}

fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// A jute buffer: its length, then its bytes.
fn put_buffer(out: &mut Vec<u8>, bytes: &[u8]) {
    put_i32(out, i32::try_from(bytes.len()).unwrap_or(i32::MAX));
    out.extend_from_slice(bytes);
}

/// A jute string: its UTF-8 length, then its bytes.
fn put_string(out: &mut Vec<u8>, s: &str) {
    put_buffer(out, s.as_bytes());
}

/// The Adler-32 checksum `FileTxnLog` uses (`java.util.zip.Adler32`).
fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % MOD;
        b = (b + a) % MOD;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adler32_matches_the_reference() {
        // The example from RFC 1950's description (zlib's own test vector).
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(adler32(b""), 1);
    }
}
