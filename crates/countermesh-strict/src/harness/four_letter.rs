//! ZooKeeper's four-letter-word admin commands over plain TCP (`srvr`, `ruok`, …).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A server's role, as `srvr` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A single server without peers.
    Standalone,
    /// The ensemble's leader.
    Leader,
    /// A follower of the leader.
    Follower,
    /// An observer (never used by this harness, reported for completeness).
    Observer,
}

/// Sends `command` (such as `srvr`) to the server's client port and returns its answer.
pub fn four_letter(addr: SocketAddr, command: &str) -> io::Result<String> {
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(command.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// Asks a server for its mode; `Ok(None)` means it runs but does not serve requests
/// (no quorum yet, or an election is running).
pub(crate) fn mode(addr: SocketAddr) -> io::Result<Option<Mode>> {
    let answer = four_letter(addr, "srvr")?;
    let mode = answer
        .lines()
        .find_map(|line| line.strip_prefix("Mode: "))
        .map(str::trim);
    Ok(match mode {
        Some("standalone") => Some(Mode::Standalone),
        Some("leader") => Some(Mode::Leader),
        Some("follower") => Some(Mode::Follower),
        Some("observer") => Some(Mode::Observer),
        _ => None,
    })
}
