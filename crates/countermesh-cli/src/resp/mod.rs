//! The agent's Redis-protocol listener (`--resp`): RESP2, and RESP3 after `HELLO 3`,
//! for the counter commands in [`commands`], so `redis-cli` and Redis client libraries
//! can count through the agent.
//!
//! Each connection reads whatever the socket has, answers every complete command in
//! that buffer in order, and writes the answers with one write: a pipelining client
//! gets a thousand answers for one read and one write. Everything a client can make the
//! agent hold is bounded: connections (`--resp-max-connections`; further clients wait
//! in the kernel's backlog, as over HTTP), the size of one command ([`Limits`]), and
//! idle time (`--resp-idle-timeout`). A stream that is not RESP gets
//! `-ERR Protocol error: ...` and the connection is closed.

pub(crate) mod codec;
pub(crate) mod commands;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use self::codec::{Limits, Reply};
use self::commands::{Flow, Session};
use crate::agent::state::AgentState;

/// How long to pause accepting after an accept error (out of file descriptors, say),
/// so the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// How much one read asks the socket for; a pipelined batch larger than this is
/// answered in several rounds.
const READ_CHUNK: usize = 16 * 1024;
/// How long a stopping agent lets a connection finish the batch it is answering.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The listener's configured bounds, and whether its adds are durable.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RespLimits {
    pub(crate) max_connections: usize,
    pub(crate) idle_timeout: Duration,
    /// `--resp-durable`: eventual adds answer after the flush that holds them.
    pub(crate) durable: bool,
}

/// Serves RESP on `listener` until `stop` turns true; then every connection finishes
/// the batch it is answering and closes, and this returns once all have.
///
/// Dropping the returned future aborts every connection.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<AgentState>,
    limits: RespLimits,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                // The semaphore is never closed.
                Err(_) => break,
            },
            () = stopped(&mut stop) => break,
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "cannot accept a RESP connection; pausing briefly");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let state = Arc::clone(&state);
        let stop = stop.clone();
        connections.spawn(async move {
            let stats = &state.stats.resp;
            let id = stats.connections_total.fetch_add(1, Ordering::Relaxed) + 1;
            stats.connections_open.fetch_add(1, Ordering::Relaxed);
            if let Err(error) = connection(stream, &state, id, limits, stop).await {
                debug!(%peer, %error, "RESP connection ended with an error");
            }
            state
                .stats
                .resp
                .connections_open
                .fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Serves one connection until the client leaves, QUIT, a protocol error, the idle
/// timeout, or the agent stopping.
async fn connection(
    mut stream: TcpStream,
    state: &AgentState,
    id: u64,
    limits: RespLimits,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let idle_timeout = limits.idle_timeout;
    // Answers are written as soon as a batch is done, so Nagle's delay only hurts.
    stream.set_nodelay(true)?;
    let mut session = Session::new(state, id, limits.durable);
    let mut input: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut output: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        // Room for one more chunk; the parser's limits keep an unfinished command (all
        // that stays in `input` between rounds) to about `Limits::max_command`.
        let filled = input.len();
        input.resize(filled + READ_CHUNK, 0);
        let read = tokio::select! {
            read = tokio::time::timeout(idle_timeout, stream.read(&mut input[filled..])) => read,
            () = stopped(&mut stop) => return Ok(()),
        };
        let read = match read {
            Ok(read) => read?,
            Err(_) => {
                debug!(id, "closing an idle RESP connection");
                return Ok(());
            }
        };
        input.truncate(filled + read);
        if read == 0 {
            return Ok(());
        }
        let (used, flow) = answer(state, &mut session, &input, &mut output).await;
        input.drain(..used);
        stream.write_all(&output).await?;
        output.clear();
        if flow == Flow::Close {
            stream.shutdown().await?;
            return Ok(());
        }
        // A client that sent one huge pipeline must not keep a huge buffer alive.
        if input.capacity() > 4 * Limits::DEFAULT.max_command {
            input.shrink_to(Limits::DEFAULT.max_command);
        }
        if output.capacity() > 4 * Limits::DEFAULT.max_command {
            output.shrink_to(READ_CHUNK);
        }
    }
}

/// Answers every complete command in `input` into `output`; returns how many bytes
/// were used and whether to close (after QUIT or a protocol error).
async fn answer(
    state: &AgentState,
    session: &mut Session,
    input: &[u8],
    output: &mut Vec<u8>,
) -> (usize, Flow) {
    let stats = &state.stats.resp;
    let mut used = 0;
    while used < input.len() {
        match codec::parse(&input[used..], &Limits::DEFAULT) {
            Ok(None) => break,
            Ok(Some((args, len))) => {
                used += len;
                if args.is_empty() {
                    continue;
                }
                let (reply, slot, flow) = commands::execute(state, session, &args).await;
                stats.count_command(slot, matches!(reply, Reply::Error(_)));
                reply.encode(session.proto, output);
                if flow == Flow::Close {
                    return (used, Flow::Close);
                }
            }
            Err(error) => {
                stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                Reply::err(format!("Protocol error: {error}")).encode(session.proto, output);
                return (input.len(), Flow::Close);
            }
        }
    }
    (used, Flow::Continue)
}

/// Resolves once the agent is stopping (or the flag's sender is gone, which means the
/// same).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`, so it is dropped here, not held in a
    // `select!` across an await.
    let _ = stop.wait_for(|&stopped| stopped).await.map(|_| ());
}
