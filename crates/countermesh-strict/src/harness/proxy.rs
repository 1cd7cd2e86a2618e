//! A TCP proxy in front of one ZooKeeper server that loses replies, holds requests and
//! refuses connections on command: the network faults behind every ambiguous outcome,
//! made deterministic.
//!
//! It understands just enough of ZooKeeper's framing (a 4-byte big-endian length, then
//! the record; a request starts with its `xid` and type) to forward whole frames, to tell
//! pings apart, and to count the replies to requests it held back.
//!
//! * **Mute**: requests still reach the server, replies are dropped. A write commits and
//!   its client never hears of it: the lost-reply case receipts exist for.
//! * **Freeze**: requests are held in the proxy, replies dropped, and the proxy keeps the
//!   server-side connection (and so the client's session) alive with its own pings,
//!   even after the client gave up on the connection. [`FaultProxy::release_frozen`]
//!   later delivers the held requests: an old-session request executing late.
//! * **Refuse**: new connections are closed as soon as they have sent their connect
//!   request, whose session id is recorded ([`FaultProxy::refused_session_ids`]): `0`
//!   means the client asked for a new session, so it gave up its old one.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often blocked reads wake up to look at the connection's mode.
const POLL: Duration = Duration::from_millis(20);
/// How often the proxy pings the server for a frozen connection.
const PING_EVERY: Duration = Duration::from_millis(250);
/// A ping request: length 8, xid -2, type 11.
const PING: [u8; 12] = [0, 0, 0, 8, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 11];
/// The largest frame accepted (ZooKeeper's default `jute.maxbuffer` is 1 MiB).
const MAX_FRAME: usize = 16 << 20;

/// A fault-injecting proxy; dropping it closes every connection it carries.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    stop: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    refuse_new: bool,
    mute_new: bool,
    conns: Vec<Arc<Conn>>,
    /// Session ids of the connect requests of refused connections.
    refused_sessions: Vec<i64>,
}

/// A reply the server sent to a request that [`FaultProxy::release_frozen`] delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasedReply {
    /// The request's `xid`.
    pub xid: i32,
    /// The reply header's error code (0 is success; a `multi` that failed still has 0
    /// here, see [`ReleasedReply::multi_failed`]).
    pub err: i32,
    /// The reply body after the header.
    pub body: Vec<u8>,
}

impl ReleasedReply {
    /// For the reply to a `multi`: whether ZooKeeper rejected it as a whole. A failed
    /// `multi` answers every operation with an error result (type -1), a committed one
    /// with the operations' own results.
    pub fn multi_failed(&self) -> bool {
        self.err != 0 || self.body.get(..4).is_some_and(|kind| be_i32(kind) == -1)
    }
}

/// One proxied connection.
#[derive(Debug)]
struct Conn {
    client: TcpStream,
    server: Mutex<TcpStream>,
    /// Replies are dropped.
    muted: AtomicBool,
    /// Requests are held, replies dropped, the session kept alive.
    frozen: AtomicBool,
    /// Replies are parsed and recorded (after a release).
    counting: AtomicBool,
    closed: AtomicBool,
    held: Mutex<Vec<Vec<u8>>>,
    /// Replies seen while counting.
    replies: Mutex<Vec<ReleasedReply>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port that forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            stop: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        });
        let accepting = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("zk-proxy-accept".into())
            .spawn(move || accept_loop(&listener, &accepting))?;
        Ok(Self {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The proxy's address, for connect strings.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops, from now on, every reply on the connections open now. Their requests still
    /// reach the server.
    pub fn mute_open(&self) {
        for conn in &lock(&self.shared.state).conns {
            conn.muted.store(true, Ordering::SeqCst);
        }
    }

    /// Mutes the open connections and every new one until [`FaultProxy::heal`].
    pub fn mute_all(&self) {
        lock(&self.shared.state).mute_new = true;
        self.mute_open();
    }

    /// Closes new connections as soon as they sent their connect request (on), or
    /// forwards them (off).
    pub fn refuse_new(&self, refuse: bool) {
        lock(&self.shared.state).refuse_new = refuse;
    }

    /// The session ids that refused connections asked for, oldest first (`0`: a new
    /// session).
    pub fn refused_session_ids(&self) -> Vec<i64> {
        lock(&self.shared.state).refused_sessions.clone()
    }

    /// Freezes the connections open now: their requests are held, their replies dropped,
    /// and their sessions kept alive by the proxy's pings. Returns how many were frozen.
    pub fn freeze_open(&self) -> usize {
        let state = lock(&self.shared.state);
        for conn in &state.conns {
            conn.frozen.store(true, Ordering::SeqCst);
        }
        state.conns.len()
    }

    /// How many requests (pings aside) the frozen connections hold.
    pub fn held_requests(&self) -> usize {
        lock(&self.shared.state)
            .conns
            .iter()
            .map(|conn| lock(&conn.held).len())
            .sum()
    }

    /// Delivers the requests held by frozen connections to the server, waits up to
    /// `wait` for their replies, then closes those connections. Returns the replies the
    /// server sent for them: proof that it processed them, and how.
    pub fn release_frozen(&self, wait: Duration) -> Vec<ReleasedReply> {
        let frozen: Vec<Arc<Conn>> = lock(&self.shared.state)
            .conns
            .iter()
            .filter(|conn| conn.frozen.load(Ordering::SeqCst))
            .cloned()
            .collect();
        let mut expected = Vec::new();
        for conn in &frozen {
            conn.counting.store(true, Ordering::SeqCst);
            let held = std::mem::take(&mut *lock(&conn.held));
            let mut server = lock(&conn.server);
            for frame in held {
                expected.push(xid(&frame));
                if server.write_all(&frame).is_err() {
                    break;
                }
            }
        }
        let deadline = Instant::now() + wait;
        let answered = || -> Vec<ReleasedReply> {
            frozen
                .iter()
                .flat_map(|conn| lock(&conn.replies).clone())
                .filter(|reply| expected.contains(&reply.xid))
                .collect()
        };
        while answered().len() < expected.len() && Instant::now() < deadline {
            thread::sleep(POLL);
        }
        let replies = answered();
        for conn in &frozen {
            conn.close();
        }
        replies
    }

    /// Closes every open connection (both sides).
    pub fn cut_open(&self) {
        for conn in lock(&self.shared.state).conns.drain(..) {
            conn.close();
        }
    }

    /// Forwards new connections normally again and closes the muted ones, so their
    /// clients notice at once and reconnect. Frozen connections stay frozen.
    pub fn heal(&self) {
        let mut state = lock(&self.shared.state);
        state.mute_new = false;
        state.refuse_new = false;
        state.conns.retain(|conn| {
            let muted = conn.muted.load(Ordering::SeqCst) && !conn.frozen.load(Ordering::SeqCst);
            if muted {
                conn.close();
            }
            !muted
        });
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for conn in lock(&self.shared.state).conns.drain(..) {
            conn.close();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                thread::sleep(POLL / 4);
                continue;
            }
            Err(_) => continue,
        };
        let (refuse, muted) = {
            let mut state = lock(&shared.state);
            state
                .conns
                .retain(|conn| !conn.closed.load(Ordering::SeqCst));
            (state.refuse_new, state.mute_new)
        };
        if refuse {
            let session = read_connect_session(&client);
            lock(&shared.state).refused_sessions.extend(session);
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        if let Ok(conn) = Conn::open(client, shared.upstream, muted) {
            lock(&shared.state).conns.push(Arc::clone(&conn));
            let down = Arc::clone(&conn);
            let spawned = thread::Builder::new()
                .name("zk-proxy-up".into())
                .spawn(move || conn.pump_up())
                .and_then(|_| {
                    thread::Builder::new()
                        .name("zk-proxy-down".into())
                        .spawn(move || down.pump_down())
                });
            if spawned.is_err() {
                continue;
            }
        }
    }
}

impl Conn {
    fn open(client: TcpStream, upstream: SocketAddr, muted: bool) -> io::Result<Arc<Self>> {
        client.set_nonblocking(false)?;
        let server = TcpStream::connect_timeout(&upstream, Duration::from_secs(2))?;
        for stream in [&client, &server] {
            stream.set_read_timeout(Some(POLL))?;
            stream.set_nodelay(true)?;
        }
        Ok(Arc::new(Self {
            client,
            server: Mutex::new(server),
            muted: AtomicBool::new(muted),
            frozen: AtomicBool::new(false),
            counting: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            held: Mutex::new(Vec::new()),
            replies: Mutex::new(Vec::new()),
        }))
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = lock(&self.server).shutdown(Shutdown::Both);
    }

    /// Client to server: forwards whole frames, or holds them while frozen (and pings the
    /// server itself, also after the client hung up).
    fn pump_up(&self) {
        let Ok(mut client) = self.client.try_clone() else {
            return self.close();
        };
        let mut buf = Vec::new();
        let mut chunk = vec![0; 64 << 10];
        let mut client_gone = false;
        let mut last_ping = Instant::now();
        while !self.closed.load(Ordering::SeqCst) {
            let frozen = self.frozen.load(Ordering::SeqCst);
            if client_gone && !frozen {
                break;
            }
            if !client_gone {
                match client.read(&mut chunk) {
                    Ok(0) => client_gone = true,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(err)
                        if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => client_gone = true,
                }
            } else {
                thread::sleep(POLL);
            }
            while let Some(frame) = take_frame(&mut buf) {
                if self.frozen.load(Ordering::SeqCst) {
                    if frame != PING {
                        lock(&self.held).push(frame);
                    }
                } else if lock(&self.server).write_all(&frame).is_err() {
                    return self.close();
                }
            }
            if buf.len() > MAX_FRAME + 4 {
                break;
            }
            if frozen && last_ping.elapsed() >= PING_EVERY {
                last_ping = Instant::now();
                if lock(&self.server).write_all(&PING).is_err() {
                    break;
                }
            }
        }
        self.close();
    }

    /// Server to client: forwards whole frames unless muted or frozen; records reply
    /// headers once counting.
    fn pump_down(&self) {
        let Ok(mut server) = lock(&self.server).try_clone() else {
            return self.close();
        };
        let Ok(mut client) = self.client.try_clone() else {
            return self.close();
        };
        let mut buf = Vec::new();
        let mut chunk = vec![0; 64 << 10];
        // The first frame is the connect response, which has no reply header.
        let mut first = true;
        while !self.closed.load(Ordering::SeqCst) {
            match server.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue;
                }
                Err(_) => break,
            }
            while let Some(frame) = take_frame(&mut buf) {
                if !std::mem::take(&mut first)
                    && self.counting.load(Ordering::SeqCst)
                    && frame.len() >= 20
                {
                    lock(&self.replies).push(ReleasedReply {
                        xid: xid(&frame),
                        err: be_i32(&frame[16..20]),
                        body: frame[20..].to_vec(),
                    });
                }
                let drop_it =
                    self.muted.load(Ordering::SeqCst) || self.frozen.load(Ordering::SeqCst);
                if !drop_it && client.write_all(&frame).is_err() {
                    return self.close();
                }
            }
            if buf.len() > MAX_FRAME + 4 {
                break;
            }
        }
        // The server closed: so does the client side, unless the connection is frozen
        // (then its client is not listening anyway).
        self.close();
    }
}

/// Reads a new connection's connect request (length, protocol version, last zxid seen,
/// timeout, session id, …) and returns its session id, if it arrives soon.
fn read_connect_session(client: &TcpStream) -> Option<i64> {
    let mut client = client.try_clone().ok()?;
    client.set_nonblocking(false).ok()?;
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    let mut head = [0; 28];
    client.read_exact(&mut head).ok()?;
    let mut id = [0; 8];
    id.copy_from_slice(&head[20..28]);
    Some(i64::from_be_bytes(id))
}

/// Splits one whole frame (length prefix included) off the front of `buf`.
fn take_frame(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let len = usize::try_from(be_i32(buf.get(..4)?)).ok()?;
    if len > MAX_FRAME || buf.len() < 4 + len {
        return None;
    }
    Some(buf.drain(..4 + len).collect())
}

/// The `xid` of a request or reply frame (right after the length).
fn xid(frame: &[u8]) -> i32 {
    frame.get(4..8).map_or(0, be_i32)
}

fn be_i32(bytes: &[u8]) -> i32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[..4]);
    i32::from_be_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_whole() {
        let mut buf = PING.to_vec();
        buf.extend_from_slice(&[0, 0, 0, 2, 7]);
        assert_eq!(take_frame(&mut buf), Some(PING.to_vec()));
        assert_eq!(take_frame(&mut buf), None, "the second frame is incomplete");
        buf.push(8);
        assert_eq!(take_frame(&mut buf), Some(vec![0, 0, 0, 2, 7, 8]));
        assert!(buf.is_empty());
        assert_eq!(xid(&PING), -2);
    }
}
