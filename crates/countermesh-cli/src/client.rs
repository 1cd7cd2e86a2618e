//! Client commands: talk to an agent's HTTP API and print human-readable output, or the
//! agent's JSON with `--json`. Exit codes are listed in `exit.rs`.

use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::exit::Failure;

/// How to reach the agent.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Connection {
    /// The agent's HTTP address.
    #[arg(
        long,
        env = "COUNTERMESH_AGENT",
        default_value = "http://127.0.0.1:8080"
    )]
    agent: String,
    /// Bearer token, if the agent requires one.
    #[arg(long, env = "COUNTERMESH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the agent's JSON answer instead of text.
    #[arg(long)]
    json: bool,
    /// Give up on a request after this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// `countermesh add`.
#[derive(Debug, clap::Args)]
pub(crate) struct AddArgs {
    /// The counter.
    name: String,
    /// The amount (negative to subtract).
    #[arg(default_value_t = 1, allow_negative_numbers = true)]
    delta: i64,
    #[command(flatten)]
    conn: Connection,
}

/// `countermesh get`.
#[derive(Debug, clap::Args)]
pub(crate) struct GetArgs {
    /// The counter.
    name: String,
    #[command(flatten)]
    conn: Connection,
}

/// `countermesh list`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// Only counters whose name starts with this.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Stop after this many counters. [default: all, fetched a page at a time]
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    conn: Connection,
}

/// `countermesh members`.
#[derive(Debug, clap::Args)]
pub(crate) struct MembersArgs {
    #[command(flatten)]
    conn: Connection,
}

/// `countermesh strict`: linearizable counters (the agent needs `--zookeeper`).
#[derive(Debug, clap::Subcommand)]
pub(crate) enum StrictCommand {
    /// Add to a strict counter; prints the value right after this add.
    Add {
        /// The counter.
        name: String,
        /// The amount (negative to subtract).
        #[arg(default_value_t = 1, allow_negative_numbers = true)]
        delta: i64,
        /// An idempotency key, sent as the `Idempotency-Key` header: running the same
        /// command again with the same key (within 10 minutes) prints the original
        /// result and applies nothing. 1 to 128 characters from A-Z a-z 0-9 - _ . ~
        /// (a UUID fits); per counter.
        #[arg(long, value_name = "KEY")]
        op_id: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Read a strict counter (linearizable unless `--sequential`).
    Get {
        /// The counter.
        name: String,
        /// Use ZooKeeper's cheaper sequentially consistent read.
        #[arg(long)]
        sequential: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Set to NEW only if the value is EXPECTED (exit code 4 if it is not).
    Cas {
        /// The counter.
        name: String,
        /// The value it must have.
        #[arg(allow_negative_numbers = true)]
        expected: i64,
        /// The value to set.
        #[arg(allow_negative_numbers = true)]
        new: i64,
        /// An idempotency key, sent as the `Idempotency-Key` header: running the same
        /// command again with the same key (within 10 minutes) prints the original
        /// result and applies nothing. 1 to 128 characters from A-Z a-z 0-9 - _ . ~
        /// (a UUID fits); per counter.
        #[arg(long, value_name = "KEY")]
        op_id: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Set a strict counter.
    Set {
        /// The counter.
        name: String,
        /// The value.
        #[arg(allow_negative_numbers = true)]
        value: i64,
        /// An idempotency key, sent as the `Idempotency-Key` header: running the same
        /// command again with the same key (within 10 minutes) prints the original
        /// result and applies nothing. 1 to 128 characters from A-Z a-z 0-9 - _ . ~
        /// (a UUID fits); per counter.
        #[arg(long, value_name = "KEY")]
        op_id: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Delete a strict counter.
    Delete {
        /// The counter.
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
}

impl Connection {
    /// Sends one request and returns the JSON answer, mapping failures to exit codes.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        self.call_with_key(method, path, body, None).await
    }

    /// [`Connection::call`] with an optional `Idempotency-Key` header.
    async fn call_with_key(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> Result<Value> {
        let base = self.agent.trim_end_matches('/');
        let url = format!("{base}{path}");
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .context("cannot build the HTTP client")?;
        let mut request = client.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            // Checked here too, so a key that is not even a valid header value is a
            // usage error (exit 2) rather than a failed send.
            countermesh_strict::OpId::new(key).map_err(|_| {
                Failure::new(
                    2,
                    format!(
                        "--op-id {key:?}: use 1 to {} characters from A-Z, a-z, 0-9, '-', \
                         '_', '.', '~' (a UUID fits)",
                        countermesh_strict::OpId::MAX_LEN
                    ),
                )
            })?;
            request = request.header("idempotency-key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| {
            Failure::new(
                5,
                format!("cannot reach the agent at {base}: {e} (is `countermesh agent` running? set --agent)"),
            )
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            if !value.is_object() {
                return Err(Failure::new(
                    1,
                    format!("unexpected answer from {base} ({status}): {value}"),
                )
                .into());
            }
            return Ok(value);
        }
        let message = value
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map_or_else(|| format!("{status}: {value}"), str::to_owned);
        let code = match status {
            StatusCode::BAD_REQUEST
            | StatusCode::FORBIDDEN
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNPROCESSABLE_ENTITY => 2,
            StatusCode::NOT_FOUND => 3,
            StatusCode::CONFLICT => 4,
            StatusCode::SERVICE_UNAVAILABLE => 5,
            StatusCode::UNAUTHORIZED => 6,
            _ => 1,
        };
        if self.json {
            print_json(&value);
        }
        Err(Failure::new(code, message).into())
    }
}

/// Percent-encodes a counter name for use as one path segment.
///
/// `.` and `..` cannot be sent as a segment at all (URL parsers remove dot segments,
/// encoded or not), so they are refused here; every other valid name round-trips.
fn name_segment(name: &str) -> Result<String> {
    if name == "." || name == ".." {
        return Err(Failure::new(
            2,
            format!("the counter name {name:?} cannot be used over HTTP; choose another name"),
        )
        .into());
    }
    Ok(segment(name))
}

/// Percent-encodes `text` for use inside a URL path segment or query value.
fn segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[allow(clippy::print_stdout)]
fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

#[allow(clippy::print_stdout)]
fn print_text(text: &str) {
    println!("{text}");
}

fn field(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "?".to_owned(),
    }
}

pub(crate) async fn add(args: AddArgs) -> Result<()> {
    let path = format!("/v1/counters/{}/add", name_segment(&args.name)?);
    let answer = args
        .conn
        .call(Method::POST, &path, Some(json!({ "delta": args.delta })))
        .await?;
    if args.conn.json {
        print_json(&answer);
    } else {
        print_text(&format!(
            "{} {:+} (eventual: reaches other nodes within a few gossip rounds)",
            args.name, args.delta
        ));
    }
    Ok(())
}

pub(crate) async fn get(args: GetArgs) -> Result<()> {
    let path = format!("/v1/counters/{}", name_segment(&args.name)?);
    let answer = args.conn.call(Method::GET, &path, None).await?;
    if args.conn.json {
        print_json(&answer);
    } else {
        print_text(&format!(
            "{} = {}  (eventual; {} contributors)",
            args.name,
            field(&answer, "value"),
            field(&answer, "contributors")
        ));
    }
    Ok(())
}

/// Counters per listing request (the agent's maximum is 10,000).
const LIST_PAGE: usize = 1_000;

pub(crate) async fn list(args: ListArgs) -> Result<()> {
    let wanted = args.limit.unwrap_or(usize::MAX);
    let mut counters: Vec<Value> = Vec::new();
    let mut after: Option<String> = None;
    let mut more = false;
    while counters.len() < wanted {
        let page = LIST_PAGE.min(wanted - counters.len());
        let mut path = format!("/v1/counters?prefix={}&limit={page}", segment(&args.prefix));
        if let Some(after) = &after {
            path.push_str(&format!("&after={}", segment(after)));
        }
        let answer = args.conn.call(Method::GET, &path, None).await?;
        counters.extend(
            answer
                .get("counters")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        );
        more = answer.get("truncated").and_then(Value::as_bool) == Some(true);
        match answer.get("next").and_then(Value::as_str) {
            Some(next) if more => after = Some(next.to_owned()),
            _ => break,
        }
    }
    if args.conn.json {
        print_json(&json!({"counters": counters, "consistency": "eventual", "truncated": more}));
        return Ok(());
    }
    let width = counters
        .iter()
        .map(|c| field(c, "name").len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "{:<width$}  {:>20}  contributors\n",
        "name", "value (eventual)"
    );
    for counter in &counters {
        out.push_str(&format!(
            "{:<width$}  {:>20}  {}\n",
            field(counter, "name"),
            field(counter, "value"),
            field(counter, "contributors")
        ));
    }
    out.push_str(&format!("{} counters", counters.len()));
    if more {
        out.push_str(" (more match: raise --limit or narrow --prefix)");
    }
    print_text(&out);
    Ok(())
}

pub(crate) async fn members(args: MembersArgs) -> Result<()> {
    let answer = args.conn.call(Method::GET, "/v1/members", None).await?;
    if args.conn.json {
        print_json(&answer);
        return Ok(());
    }
    let me = answer.get("self").cloned().unwrap_or(Value::Null);
    let mut out = format!(
        "this node: {} (actor {})\n{:<24} {:<20} {:<8}\n",
        field(&me, "addr"),
        field(&me, "actor"),
        "address",
        "actor",
        "state"
    );
    for member in answer
        .get("members")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push_str(&format!(
            "{:<24} {:<20} {:<8}\n",
            field(member, "addr"),
            field(member, "actor"),
            field(member, "state")
        ));
    }
    print_text(out.trim_end());
    Ok(())
}

pub(crate) async fn strict(command: StrictCommand) -> Result<()> {
    let (conn, answer, text) = match command {
        StrictCommand::Add {
            name,
            delta,
            op_id,
            conn,
        } => {
            let path = format!("/v1/strict/{}/add", name_segment(&name)?);
            let answer = conn
                .call_with_key(
                    Method::POST,
                    &path,
                    Some(json!({ "delta": delta })),
                    op_id.as_deref(),
                )
                .await?;
            let text = format!(
                "{name} = {}  (strict, after this add)",
                field(&answer, "value")
            );
            (conn, answer, text)
        }
        StrictCommand::Get {
            name,
            sequential,
            conn,
        } => {
            let query = if sequential { "?sequential=true" } else { "" };
            let path = format!("/v1/strict/{}{query}", name_segment(&name)?);
            let answer = conn.call(Method::GET, &path, None).await?;
            let kind = if sequential {
                "sequential read"
            } else {
                "linearizable read"
            };
            let text = format!("{name} = {}  (strict, {kind})", field(&answer, "value"));
            (conn, answer, text)
        }
        StrictCommand::Cas {
            name,
            expected,
            new,
            op_id,
            conn,
        } => {
            let path = format!("/v1/strict/{}/cas", name_segment(&name)?);
            let answer = conn
                .call_with_key(
                    Method::POST,
                    &path,
                    Some(json!({ "expected": expected, "new": new })),
                    op_id.as_deref(),
                )
                .await?;
            let text = format!("{name}: {expected} -> {new} swapped");
            (conn, answer, text)
        }
        StrictCommand::Set {
            name,
            value,
            op_id,
            conn,
        } => {
            let path = format!("/v1/strict/{}/set", name_segment(&name)?);
            let answer = conn
                .call_with_key(
                    Method::POST,
                    &path,
                    Some(json!({ "value": value })),
                    op_id.as_deref(),
                )
                .await?;
            let text = format!("{name} = {value}  (strict)");
            (conn, answer, text)
        }
        StrictCommand::Delete { name, conn } => {
            let path = format!("/v1/strict/{}", name_segment(&name)?);
            let answer = conn.call(Method::DELETE, &path, None).await?;
            let text = format!("{name} deleted");
            (conn, answer, text)
        }
    };
    if conn.json {
        print_json(&answer);
    } else {
        print_text(&text);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::segment;

    #[test]
    fn names_are_encoded_as_one_path_segment() {
        assert_eq!(segment("page_views"), "page_views");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
        assert_eq!(segment("é"), "%C3%A9");
        assert!(super::name_segment("..").is_err());
        assert!(super::name_segment(".").is_err());
        assert_eq!(super::name_segment("a.b").unwrap(), "a.b");
    }
}
