//! The commands the RESP listener answers, and the per-connection session they act on
//! (protocol version, authentication, client name).
//!
//! Counter names map to the two kinds of counter: `strict:NAME` is the strict counter
//! `NAME` on ZooKeeper (linearizable, a round trip per command), any other name is an
//! eventual mesh counter (a local atomic add, no network wait).

use std::borrow::Cow;
use std::fmt::Write as _;

use countermesh_strict::StrictError;

use crate::agent::durable::Via;
use crate::agent::state::{AgentState, OpenError};
use crate::agent::strict::{Open, StrictFailure};
use crate::resp::codec::{Proto, Reply};

/// The key prefix that selects a strict counter.
pub(crate) const STRICT_PREFIX: &str = "strict:";

/// One command the listener knows: what `COMMAND` reports and how arity is checked.
#[derive(Debug)]
pub(crate) struct Spec {
    /// Lower case, as Redis reports names.
    pub(crate) name: &'static str,
    /// Redis's convention: `n` exactly n arguments (the name included), `-n` at least n.
    arity: i64,
    flags: &'static [&'static str],
    /// Position of the first and last key argument (0: none) and the step between keys.
    keys: (i64, i64, i64),
    group: &'static str,
    summary: &'static str,
}

/// Every command, in the order `COMMAND` lists them. Metrics index this table, with one
/// extra slot (at `COMMANDS.len()`) for unknown commands.
pub(crate) const COMMANDS: &[Spec] = &[
    Spec {
        name: "incr",
        arity: 2,
        flags: &["write", "fast"],
        keys: (1, 1, 1),
        group: "string",
        summary: "Adds 1 to a counter; answers the value after the add (this node's view for eventual counters).",
    },
    Spec {
        name: "incrby",
        arity: 3,
        flags: &["write", "fast"],
        keys: (1, 1, 1),
        group: "string",
        summary: "Adds an integer to a counter; answers the value after the add.",
    },
    Spec {
        name: "decr",
        arity: 2,
        flags: &["write", "fast"],
        keys: (1, 1, 1),
        group: "string",
        summary: "Subtracts 1 from a counter; answers the value after the subtraction.",
    },
    Spec {
        name: "decrby",
        arity: 3,
        flags: &["write", "fast"],
        keys: (1, 1, 1),
        group: "string",
        summary: "Subtracts an integer from a counter; answers the value after the subtraction.",
    },
    Spec {
        name: "get",
        arity: 2,
        flags: &["readonly", "fast"],
        keys: (1, 1, 1),
        group: "string",
        summary: "A counter's value as a string, or nil if it does not exist.",
    },
    Spec {
        name: "mget",
        arity: -2,
        flags: &["readonly", "fast"],
        keys: (1, -1, 1),
        group: "string",
        summary: "The values of several counters.",
    },
    Spec {
        name: "ping",
        arity: -1,
        flags: &["fast"],
        keys: (0, 0, 0),
        group: "connection",
        summary: "PONG, or the message given.",
    },
    Spec {
        name: "echo",
        arity: 2,
        flags: &["fast"],
        keys: (0, 0, 0),
        group: "connection",
        summary: "The message given.",
    },
    Spec {
        name: "hello",
        arity: -1,
        flags: &["noauth", "fast"],
        keys: (0, 0, 0),
        group: "connection",
        summary: "Switches the protocol (2 or 3), optionally authenticating and naming the connection.",
    },
    Spec {
        name: "auth",
        arity: -2,
        flags: &["noauth", "fast"],
        keys: (0, 0, 0),
        group: "connection",
        summary: "Authenticates the connection with the agent's API token.",
    },
    Spec {
        name: "client",
        arity: -2,
        flags: &[],
        keys: (0, 0, 0),
        group: "connection",
        summary: "CLIENT SETNAME, GETNAME, SETINFO and ID.",
    },
    Spec {
        name: "command",
        arity: -1,
        flags: &[],
        keys: (0, 0, 0),
        group: "server",
        summary: "Describes the commands this server knows (COMMAND, COMMAND COUNT, COMMAND DOCS, COMMAND INFO).",
    },
    Spec {
        name: "select",
        arity: 2,
        flags: &["fast"],
        keys: (0, 0, 0),
        group: "connection",
        summary: "Selects database 0, the only one.",
    },
    Spec {
        name: "wait",
        arity: 3,
        flags: &["blocking"],
        keys: (0, 0, 0),
        group: "generic",
        summary: "Answers 0 once every add made before it is in this node's data directory (no replicas are counted: durability here is local).",
    },
    Spec {
        name: "quit",
        arity: -1,
        flags: &["noauth", "fast"],
        keys: (0, 0, 0),
        group: "connection",
        summary: "Closes the connection.",
    },
];

/// The metrics slot of unknown commands.
pub(crate) const UNKNOWN: usize = COMMANDS.len();

/// What the connection does after a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    /// Send the reply, then close (QUIT).
    Close,
}

/// One connection's state.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) proto: Proto,
    authenticated: bool,
    name: Option<Vec<u8>>,
    id: u64,
    /// `--resp-durable`: eventual adds answer after their flush.
    durable: bool,
}

impl Session {
    /// A new connection: RESP2, authenticated only when the agent has no token.
    pub(crate) fn new(state: &AgentState, id: u64, durable: bool) -> Self {
        Self {
            proto: Proto::Resp2,
            authenticated: state.token.is_none(),
            name: None,
            id,
            durable,
        }
    }
}

/// Runs one command and returns its reply, the metrics slot of its name (see
/// [`COMMANDS`]) and what the connection does next.
pub(crate) async fn execute(
    state: &AgentState,
    session: &mut Session,
    args: &[Cow<'_, [u8]>],
) -> (Reply, usize, Flow) {
    let Some(slot) = COMMANDS
        .iter()
        .position(|spec| spec.name.as_bytes().eq_ignore_ascii_case(&args[0]))
    else {
        if !session.authenticated {
            return (noauth(), UNKNOWN, Flow::Continue);
        }
        return (unknown_command(args), UNKNOWN, Flow::Continue);
    };
    let spec = &COMMANDS[slot];
    let n = args.len() as i64;
    if (spec.arity >= 0 && n != spec.arity) || n < -spec.arity {
        return (wrong_arity(spec.name), slot, Flow::Continue);
    }
    if !session.authenticated && !matches!(spec.name, "auth" | "hello" | "ping" | "quit") {
        return (noauth(), slot, Flow::Continue);
    }
    let durable = session.durable;
    let reply = match spec.name {
        "incr" => incr(state, durable, &args[1], 1).await,
        "decr" => incr(state, durable, &args[1], -1).await,
        "incrby" => match integer(&args[2]) {
            Ok(delta) => incr(state, durable, &args[1], delta).await,
            Err(reply) => reply,
        },
        "decrby" => match integer(&args[2]).and_then(|d| d.checked_neg().ok_or_else(overflow)) {
            Ok(delta) => incr(state, durable, &args[1], delta).await,
            Err(reply) => reply,
        },
        "wait" => wait(state, &args[1], &args[2]).await,
        "get" => get(state, &args[1]).await,
        "mget" => {
            let mut values = Vec::with_capacity(args.len() - 1);
            for key in &args[1..] {
                match get(state, key).await {
                    error @ Reply::Error(_) => return (error, slot, Flow::Continue),
                    value => values.push(value),
                }
            }
            Reply::Array(values)
        }
        "ping" => match args.get(1) {
            Some(message) if args.len() == 2 => Reply::Bulk(message.to_vec()),
            Some(_) => wrong_arity("ping"),
            None => Reply::Simple("PONG"),
        },
        "echo" => Reply::Bulk(args[1].to_vec()),
        "hello" => hello(state, session, &args[1..]),
        "auth" => auth(state, session, &args[1..]),
        "client" => client(session, &args[1..]),
        "command" => command(&args[1..]),
        "select" => match integer(&args[1]) {
            Ok(0) => Reply::Simple("OK"),
            Ok(_) => Reply::err("DB index is out of range (this server has only database 0)"),
            Err(reply) => reply,
        },
        "quit" => return (Reply::Simple("OK"), slot, Flow::Close),
        _ => unknown_command(args),
    };
    (reply, slot, Flow::Continue)
}

fn noauth() -> Reply {
    Reply::Error("NOAUTH Authentication required.".to_owned())
}

fn overflow() -> Reply {
    Reply::err("increment or decrement would overflow")
}

fn wrong_arity(name: &str) -> Reply {
    Reply::err(format!("wrong number of arguments for '{name}' command"))
}

/// Redis's wording: the name and the first arguments, each quoted, 128 bytes at most.
fn unknown_command(args: &[Cow<'_, [u8]>]) -> Reply {
    let name = String::from_utf8_lossy(&args[0]);
    let mut text = format!(
        "unknown command '{}', with args beginning with: ",
        truncate(&name, 128)
    );
    let mut budget = 128usize;
    for arg in &args[1..] {
        if budget == 0 {
            break;
        }
        let arg = String::from_utf8_lossy(arg);
        let arg = truncate(&arg, budget);
        budget = budget.saturating_sub(arg.len());
        let _ = write!(text, "'{arg}' ");
    }
    Reply::err(text)
}

/// At most `max` bytes of `text`, cut on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A Redis integer argument: optional `-`, decimal digits, within `i64` (no `+`, no
/// spaces, no leading zeros beyond `0` itself, as Redis's `string2ll`).
fn integer(arg: &[u8]) -> Result<i64, Reply> {
    let invalid = || Reply::err("value is not an integer or out of range");
    let digits = arg.strip_prefix(b"-").unwrap_or(arg);
    let canonical = !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits == b"0" || digits[0] != b'0')
        && arg != b"-0";
    if !canonical {
        return Err(invalid());
    }
    std::str::from_utf8(arg)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(invalid)
}

/// A counter name: the strict counter behind `strict:`, or an eventual one.
enum Key<'a> {
    Eventual(&'a str),
    Strict(&'a str),
}

fn key(arg: &[u8]) -> Result<Key<'_>, Reply> {
    let name = std::str::from_utf8(arg).map_err(|_| {
        Reply::err(
            "invalid counter name: names must be UTF-8 (1 to 256 bytes without control characters)",
        )
    })?;
    if let Some(strict) = name.strip_prefix(STRICT_PREFIX) {
        countermesh_strict::validate_name(strict).map_err(|e| {
            Reply::err(format!(
                "invalid strict counter name {strict:?} (after the `{STRICT_PREFIX}` prefix): {e}"
            ))
        })?;
        return Ok(Key::Strict(strict));
    }
    countermesh_core::validate_name(name).map_err(|e| {
        Reply::err(format!(
            "invalid counter name {name:?}: {e} (names are 1 to 256 bytes of UTF-8 without control characters)"
        ))
    })?;
    Ok(Key::Eventual(name))
}

/// Adds `delta` and answers the value after it: for an eventual counter this node's
/// view right after its local add (other nodes' adds arrive by gossip, so it is not a
/// linearizable post-value); for a strict counter ZooKeeper's post-value. With
/// `durable` (`--resp-durable`), an eventual add answers after the flush that holds it.
async fn incr(state: &AgentState, durable: bool, arg: &[u8], delta: i64) -> Reply {
    match key(arg) {
        Ok(Key::Eventual(name)) => {
            let reply = incr_eventual(state, name, delta);
            if durable
                && matches!(reply, Reply::Integer(_))
                && let Err(error) = state.make_durable(Via::Resp).await
            {
                return Reply::err(error);
            }
            reply
        }
        Ok(Key::Strict(name)) => {
            let result = state
                .strict
                .run(
                    &state.stats,
                    ("add", Open::OrCreate),
                    name,
                    |_| "ok",
                    |counter| async move { counter.add(delta).await },
                )
                .await;
            match result {
                Ok(value) => Reply::Integer(value),
                Err(failure) => strict_error(&failure),
            }
        }
        Err(reply) => reply,
    }
}

fn incr_eventual(state: &AgentState, name: &str, delta: i64) -> Reply {
    let counter = match state.counter(name) {
        Ok(counter) => counter,
        Err(OpenError::InvalidName(why)) => {
            return Reply::err(format!("invalid counter name {name:?}: {why}"));
        }
        Err(other) => return Reply::err(other),
    };
    // Refused before adding, as Redis does: the counter stays as it was.
    let after = counter.value_i128() + i128::from(delta);
    let Ok(after) = i64::try_from(after) else {
        return overflow();
    };
    counter.add(delta);
    state.stats.count_adds(1);
    // Concurrent adds may have landed in between; the freshest view is the answer,
    // unless those pushed it out of `i64`, when this add's own result is.
    Reply::Integer(counter.value().unwrap_or(after))
}

/// `WAIT numreplicas timeout`: in Redis, the number of replicas that acknowledged the
/// connection's earlier writes. A mesh node has no replicas in that sense, so here it
/// means "every add this node made before it is in its data directory" and answers
/// `0` (no replicas acknowledged) once the flush is done; `numreplicas` is accepted and
/// not waited for. `timeout` is in milliseconds (0: no limit), as in Redis; unlike
/// Redis, running out of it is an error, since `0` must only ever mean "durable".
async fn wait(state: &AgentState, replicas: &[u8], timeout: &[u8]) -> Reply {
    match integer(replicas) {
        Ok(n) if n >= 0 => {}
        Ok(_) => return Reply::err("numreplicas is negative"),
        Err(reply) => return reply,
    }
    let timeout = match integer(timeout) {
        Ok(ms) if ms >= 0 => ms.unsigned_abs(),
        Ok(_) => return Reply::err("timeout is negative"),
        Err(reply) => return reply,
    };
    if state.check_durable().is_err() {
        return Reply::err(
            "WAIT cannot make adds durable: this agent has no data directory (start it with \
             --data-dir DIR)",
        );
    }
    let flush = state.make_durable(Via::Resp);
    let result = if timeout == 0 {
        flush.await
    } else {
        match tokio::time::timeout(std::time::Duration::from_millis(timeout), flush).await {
            Ok(result) => result,
            Err(_) => {
                return Reply::err(format!(
                    "the flush did not finish within {timeout} ms: earlier adds are applied \
                     in memory but not known to be durable yet"
                ));
            }
        }
    };
    match result {
        Ok(()) => Reply::Integer(0),
        Err(error) => Reply::err(error),
    }
}

async fn get(state: &AgentState, arg: &[u8]) -> Reply {
    match key(arg) {
        Ok(Key::Eventual(name)) => {
            state.stats.count_read();
            match state.mesh.value(name) {
                Some(value) => Reply::Bulk(value.value.to_string().into_bytes()),
                None => Reply::Nil,
            }
        }
        Ok(Key::Strict(name)) => {
            let result = state
                .strict
                .run(
                    &state.stats,
                    ("get", Open::Existing),
                    name,
                    |_| "ok",
                    |counter| async move { counter.get().await },
                )
                .await;
            match result {
                Ok(value) => Reply::Bulk(value.to_string().into_bytes()),
                Err(StrictFailure::Op(StrictError::NotFound { .. })) => Reply::Nil,
                Err(failure) => strict_error(&failure),
            }
        }
        Err(reply) => reply,
    }
}

fn strict_error(failure: &StrictFailure) -> Reply {
    match failure {
        StrictFailure::NotConfigured => {
            Reply::err("strict mode is not configured (start the agent with --zookeeper)")
        }
        StrictFailure::NotConnected { connect, why } => Reply::err(format!(
            "strict mode is unavailable: no ZooKeeper session with {connect} yet ({why})"
        )),
        StrictFailure::Op(StrictError::Overflow { .. }) => overflow(),
        StrictFailure::Op(error @ StrictError::Ambiguous { .. }) => Reply::err(format!(
            "strict operation outcome unknown (it may or may not have been applied): {error}"
        )),
        StrictFailure::Op(error) => Reply::err(format!("strict operation failed: {error}")),
    }
}

/// Checks a presented token against the agent's.
fn token_matches(state: &AgentState, presented: &[u8]) -> bool {
    state
        .token
        .as_ref()
        .is_some_and(|token| crate::api::guard::same(presented, token.as_bytes()))
}

fn auth(state: &AgentState, session: &mut Session, args: &[Cow<'_, [u8]>]) -> Reply {
    // `AUTH token` or `AUTH user token`: the agent has one token and no users, so any
    // user name is accepted (redis-cli's `--user` and ACL-style clients send one).
    let token = match args {
        [token] | [_, token] => token,
        _ => return Reply::err("syntax error"),
    };
    if state.token.is_none() {
        return Reply::err(
            "AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        );
    }
    if token_matches(state, token) {
        session.authenticated = true;
        Reply::Simple("OK")
    } else {
        wrong_password()
    }
}

fn wrong_password() -> Reply {
    Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".to_owned())
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
fn hello(state: &AgentState, session: &mut Session, args: &[Cow<'_, [u8]>]) -> Reply {
    let mut proto = session.proto;
    let mut rest = args;
    if let Some((version, after)) = args.split_first() {
        proto = match integer(version) {
            Ok(2) => Proto::Resp2,
            Ok(3) => Proto::Resp3,
            Ok(_) => return Reply::Error("NOPROTO unsupported protocol version".to_owned()),
            Err(_) => return Reply::err("Protocol version is not an integer or out of range"),
        };
        rest = after;
    }
    let mut authenticated = session.authenticated;
    let mut name = None;
    while let Some((option, after)) = rest.split_first() {
        if option.eq_ignore_ascii_case(b"AUTH") && after.len() >= 2 {
            if state.token.is_none() {
                // Redis accepts any password for a default user without one.
            } else if token_matches(state, &after[1]) {
                authenticated = true;
            } else {
                return wrong_password();
            }
            rest = &after[2..];
        } else if option.eq_ignore_ascii_case(b"SETNAME") && !after.is_empty() {
            if let Err(reply) = check_client_name(&after[0]) {
                return reply;
            }
            name = Some(after[0].to_vec());
            rest = &after[1..];
        } else {
            return Reply::err(format!(
                "Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(option)
            ));
        }
    }
    if !authenticated {
        return Reply::Error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
             select the RESP protocol version at the same time"
                .to_owned(),
        );
    }
    session.authenticated = true;
    session.proto = proto;
    if name.is_some() {
        session.name = name;
    }
    Reply::Map(vec![
        (Reply::bulk("server"), Reply::bulk("countermesh")),
        (
            Reply::bulk("version"),
            Reply::bulk(env!("CARGO_PKG_VERSION")),
        ),
        (
            Reply::bulk("proto"),
            Reply::Integer(match proto {
                Proto::Resp2 => 2,
                Proto::Resp3 => 3,
            }),
        ),
        (
            Reply::bulk("id"),
            Reply::Integer(i64::try_from(session.id).unwrap_or(i64::MAX)),
        ),
        (Reply::bulk("mode"), Reply::bulk("standalone")),
        (Reply::bulk("role"), Reply::bulk("master")),
        (Reply::bulk("modules"), Reply::Array(Vec::new())),
    ])
}

/// Redis's rule: printable ASCII without spaces, so `CLIENT LIST` stays parseable.
fn check_client_name(name: &[u8]) -> Result<(), Reply> {
    if name.iter().all(|&b| (b'!'..=b'~').contains(&b)) {
        Ok(())
    } else {
        Err(Reply::err(
            "Client names cannot contain spaces, newlines or special characters.",
        ))
    }
}

/// `CLIENT SETNAME|GETNAME|SETINFO|ID`: what client libraries send when they connect.
fn client(session: &mut Session, args: &[Cow<'_, [u8]>]) -> Reply {
    let sub = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let arity = |n: usize| (args.len() != n).then(|| wrong_arity(&format!("client|{sub}")));
    match sub.as_str() {
        "setname" => {
            if let Some(reply) = arity(2) {
                return reply;
            }
            if let Err(reply) = check_client_name(&args[1]) {
                return reply;
            }
            // Redis: an empty name removes it.
            session.name = (!args[1].is_empty()).then(|| args[1].to_vec());
            Reply::Simple("OK")
        }
        "getname" => {
            arity(1).unwrap_or_else(|| session.name.clone().map_or(Reply::Nil, Reply::Bulk))
        }
        // Library name and version: accepted and not kept (nothing reports them).
        "setinfo" => arity(3).unwrap_or(Reply::Simple("OK")),
        "id" => arity(1)
            .unwrap_or_else(|| Reply::Integer(i64::try_from(session.id).unwrap_or(i64::MAX))),
        _ => Reply::err(format!(
            "unknown subcommand '{}'. Try CLIENT HELP.",
            truncate(&String::from_utf8_lossy(&args[0]), 128)
        )),
    }
}

/// `COMMAND`, `COMMAND COUNT`, `COMMAND INFO [name...]`, `COMMAND DOCS [name...]`.
fn command(args: &[Cow<'_, [u8]>]) -> Reply {
    let Some((sub, names)) = args.split_first() else {
        return Reply::Array(COMMANDS.iter().map(info).collect());
    };
    let find = |name: &[u8]| {
        COMMANDS
            .iter()
            .find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
    };
    let wanted = || -> Vec<&'static Spec> {
        if names.is_empty() {
            COMMANDS.iter().collect()
        } else {
            names.iter().filter_map(|name| find(name)).collect()
        }
    };
    match String::from_utf8_lossy(sub).to_ascii_lowercase().as_str() {
        "count" => Reply::Integer(COMMANDS.len() as i64),
        "info" if names.is_empty() => Reply::Array(COMMANDS.iter().map(info).collect()),
        "info" => Reply::Array(
            names
                .iter()
                .map(|name| find(name).map_or(Reply::Nil, info))
                .collect(),
        ),
        "docs" => Reply::Map(
            wanted()
                .into_iter()
                .map(|spec| {
                    (
                        Reply::bulk(spec.name),
                        Reply::Map(vec![
                            (Reply::bulk("summary"), Reply::bulk(spec.summary)),
                            (Reply::bulk("since"), Reply::bulk("1.0.0")),
                            (Reply::bulk("group"), Reply::bulk(spec.group)),
                        ]),
                    )
                })
                .collect(),
        ),
        _ => Reply::err(format!(
            "unknown subcommand '{}'. Try COMMAND HELP.",
            truncate(&String::from_utf8_lossy(sub), 128)
        )),
    }
}

/// One `COMMAND` entry in Redis 7's ten-field shape.
fn info(spec: &Spec) -> Reply {
    let (first, last, step) = spec.keys;
    Reply::Array(vec![
        Reply::bulk(spec.name),
        Reply::Integer(spec.arity),
        Reply::Array(spec.flags.iter().map(|&flag| Reply::Simple(flag)).collect()),
        Reply::Integer(first),
        Reply::Integer(last),
        Reply::Integer(step),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_redis_rules() {
        assert_eq!(integer(b"5"), Ok(5));
        assert_eq!(integer(b"-12"), Ok(-12));
        assert_eq!(integer(b"0"), Ok(0));
        assert_eq!(integer(b"9223372036854775807"), Ok(i64::MAX));
        assert_eq!(integer(b"-9223372036854775808"), Ok(i64::MIN));
        for bad in [
            &b"+5"[..],
            b" 5",
            b"5 ",
            b"05",
            b"-0",
            b"",
            b"-",
            b"1.5",
            b"9223372036854775808",
            b"abc",
        ] {
            assert!(integer(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_commands_quote_their_first_arguments() {
        let args = [
            Cow::Borrowed(&b"FOO"[..]),
            Cow::Borrowed(&b"a"[..]),
            Cow::Borrowed(&b"b"[..]),
        ];
        assert_eq!(
            unknown_command(&args),
            Reply::err("unknown command 'FOO', with args beginning with: 'a' 'b' ")
        );
    }

    #[test]
    fn keys_choose_the_kind_of_counter() {
        assert!(matches!(
            key(b"page_views"),
            Ok(Key::Eventual("page_views"))
        ));
        assert!(matches!(key(b"strict:tickets"), Ok(Key::Strict("tickets"))));
        assert!(key(b"").is_err());
        assert!(key(b"strict:").is_err());
        assert!(key(b"\xff").is_err());
    }
}
