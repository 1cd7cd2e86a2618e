//! The Redis-protocol listener (`--resp`) through real clients: `redis-cli` (skipped
//! with a note when it is not installed; `scripts/ensure-redis` installs it), the
//! `redis` crate, and raw sockets for what clients never send (malformed streams).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use countermesh_strict::harness::ZkCluster;

use crate::support::{Agent, CONVERGE_TIMEOUT, single};

fn resp_agent(dir: &std::path::Path, name: &str, extra: &[&str]) -> anyhow::Result<Agent> {
    let mut args = vec!["--resp", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    single(dir, name, &args)
}

fn resp_addr(agent: &Agent) -> anyhow::Result<SocketAddr> {
    agent
        .resp
        .context("the agent did not announce its RESP address")
}

/// `redis-cli -p PORT ARGS...`'s stdout, or `None` (with a skip line) when redis-cli is
/// not installed.
fn redis_cli(addr: SocketAddr, args: &[&str]) -> anyhow::Result<Option<String>> {
    let output = match Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
        .args(args)
        .output()
    {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            println!("SKIPPED: redis-cli is not installed (scripts/ensure-redis installs it)");
            return Ok(None);
        }
        Err(error) => return Err(error.into()),
    };
    anyhow::ensure!(
        output.status.success(),
        "redis-cli {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(Some(String::from_utf8(output.stdout)?))
}

/// Sends `request` on a fresh connection and reads until the server closes it or
/// `timeout` passes.
fn raw_exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(request)?;
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {}
        Err(error) => return Err(error.into()),
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// Reads from `stream` until `expected` bytes arrived (or fails after 10 s).
fn read_exactly(stream: &mut TcpStream, expected: usize) -> anyhow::Result<String> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut answer = vec![0; expected];
    stream.read_exact(&mut answer)?;
    Ok(String::from_utf8(answer)?)
}

#[test]
fn redis_cli_counts_through_the_agent() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = resp_agent(dir.path(), "resp-cli", &[])?;
    let addr = resp_addr(&agent)?;
    let Some(first) = redis_cli(addr, &["INCRBY", "page_views", "5"])? else {
        return Ok(());
    };
    // Without a terminal redis-cli prints raw values; --no-raw shows the types.
    assert_eq!(first, "5\n");
    let cli = |args: &[&str]| -> anyhow::Result<String> {
        // Raw mode prints errors with an extra blank line; trailing space is not news.
        let output = redis_cli(addr, args)?.context("redis-cli vanished")?;
        Ok(output.trim_end_matches('\n').to_owned())
    };
    assert_eq!(
        cli(&["--no-raw", "INCRBY", "page_views", "5"])?,
        "(integer) 10"
    );
    assert_eq!(cli(&["GET", "page_views"])?, "10");
    assert_eq!(cli(&["--no-raw", "GET", "page_views"])?, "\"10\"");
    assert_eq!(cli(&["--no-raw", "GET", "never_added"])?, "(nil)");
    assert_eq!(cli(&["DECR", "page_views"])?, "9");
    assert_eq!(cli(&["DECRBY", "page_views", "4"])?, "5");
    assert_eq!(
        cli(&["--no-raw", "MGET", "page_views", "never_added"])?,
        "1) \"5\"\n2) (nil)"
    );
    assert_eq!(cli(&["PING"])?, "PONG");
    assert_eq!(cli(&["ECHO", "hi there"])?, "hi there");
    assert_eq!(
        cli(&["FLUSHALL", "now", "please"])?,
        "ERR unknown command 'FLUSHALL', with args beginning with: 'now' 'please' "
    );
    assert_eq!(
        cli(&["INCR"])?,
        "ERR wrong number of arguments for 'incr' command"
    );
    assert_eq!(
        cli(&["INCRBY", "page_views", "1.5"])?,
        "ERR value is not an integer or out of range"
    );
    let invalid = cli(&["INCR", "bad\nname"])?;
    assert!(
        invalid.starts_with("ERR invalid counter name") && invalid.contains("control characters"),
        "{invalid}"
    );
    // Overflow is refused before the add, so the counter keeps its value.
    assert_eq!(
        cli(&["INCRBY", "big", &i64::MAX.to_string()])?,
        format!("{}", i64::MAX)
    );
    assert_eq!(
        cli(&["INCR", "big"])?,
        "ERR increment or decrement would overflow"
    );
    assert_eq!(cli(&["GET", "big"])?, format!("{}", i64::MAX));
    // Without --zookeeper, strict keys say how to enable them.
    assert_eq!(
        cli(&["INCRBY", "strict:tickets", "1"])?,
        "ERR strict mode is not configured (start the agent with --zookeeper)"
    );
    assert_eq!(cli(&["SELECT", "0"])?, "OK");
    assert!(cli(&["SELECT", "1"])?.starts_with("ERR DB index is out of range"));
    assert_eq!(cli(&["COMMAND", "COUNT"])?, "15");

    // The same counters over HTTP, and the RESP metrics.
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let read = crate::support::get(&format!("{}/v1/counters/page_views", agent.url)).await?;
        assert_eq!(read.expect_ok()["value"], 5);
        let metrics = crate::support::http()
            .get(format!("{}/metrics", agent.url))
            .send()
            .await?
            .text()
            .await?;
        for line in [
            "countermesh_resp_commands_total{command=\"incrby\"} 5",
            "countermesh_resp_commands_total{command=\"unknown\"} 1",
            "countermesh_resp_command_errors_total{command=\"incr\"} 3",
        ] {
            assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
        }
        assert!(metrics.contains("countermesh_resp_connections_total "));
        anyhow::Ok(())
    })?;
    Ok(())
}

#[test]
fn a_thousand_pipelined_increments_through_the_redis_crate_are_exact() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = resp_agent(dir.path(), "resp-pipeline", &[])?;
    let client = redis::Client::open(format!("redis://{}/", resp_addr(&agent)?))?;
    let mut connection = client.get_connection()?;
    let mut pipe = redis::pipe();
    for _ in 0..1000 {
        pipe.cmd("INCR").arg("pipelined");
    }
    let answers: Vec<i64> = pipe.query(&mut connection)?;
    assert_eq!(answers, (1..=1000).collect::<Vec<i64>>());
    let value: Option<i64> = redis::cmd("GET").arg("pipelined").query(&mut connection)?;
    assert_eq!(value, Some(1000));
    let values: Vec<Option<i64>> = redis::cmd("MGET")
        .arg("pipelined")
        .arg("missing")
        .query(&mut connection)?;
    assert_eq!(values, vec![Some(1000), None]);
    let error = redis::cmd("NOSUCH")
        .query::<()>(&mut connection)
        .expect_err("an unknown command is an error");
    assert!(error.to_string().contains("unknown command"), "{error}");
    Ok(())
}

#[test]
fn the_agent_token_is_required_until_auth() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = resp_agent(dir.path(), "resp-auth", &["--token", "s3cret"])?;
    let addr = resp_addr(&agent)?;
    let mut stream = TcpStream::connect(addr)?;
    // PING works before AUTH; counters do not; a wrong token is refused; the right one
    // (alone or with any user name) opens the connection.
    let steps: [(&[u8], &str); 6] = [
        (b"PING\r\n", "+PONG\r\n"),
        (b"INCR x\r\n", "-NOAUTH Authentication required.\r\n"),
        (
            b"AUTH wrong\r\n",
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        ),
        (b"GET x\r\n", "-NOAUTH Authentication required.\r\n"),
        (b"AUTH default s3cret\r\n", "+OK\r\n"),
        (b"INCR x\r\n", ":1\r\n"),
    ];
    for (request, expected) in steps {
        stream.write_all(request)?;
        assert_eq!(read_exactly(&mut stream, expected.len())?, expected);
    }
    // The redis crate with the token in its URL authenticates on connect.
    let client = redis::Client::open(format!("redis://:s3cret@{addr}/"))?;
    let value: i64 = redis::cmd("INCR")
        .arg("x")
        .query(&mut client.get_connection()?)?;
    assert_eq!(value, 2);
    let anonymous = redis::Client::open(format!("redis://{addr}/"))?;
    let error = redis::cmd("INCR")
        .arg("x")
        .query::<i64>(&mut anonymous.get_connection()?)
        .expect_err("no token, no counting");
    assert!(
        error.to_string().contains("Authentication required"),
        "{error}"
    );
    // HELLO 3 can authenticate too, and then speaks RESP3.
    let answer = raw_exchange(
        addr,
        b"HELLO 3 AUTH default s3cret\r\nGET nothing\r\nQUIT\r\n",
        Duration::from_secs(10),
    )?;
    assert!(answer.starts_with("%7\r\n$6\r\nserver\r\n"), "{answer}");
    assert!(answer.ends_with("_\r\n+OK\r\n"), "{answer}");
    Ok(())
}

#[test]
fn hello_3_switches_to_resp3() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = resp_agent(dir.path(), "resp3", &[])?;
    let answer = raw_exchange(
        resp_addr(&agent)?,
        b"GET none\r\nHELLO 3\r\nGET none\r\nMGET none\r\nINCR three\r\nHELLO 4\r\nQUIT\r\n",
        Duration::from_secs(10),
    )?;
    let (resp2_nil, rest) = answer.split_once("%7\r\n").context("no RESP3 map")?;
    assert_eq!(resp2_nil, "$-1\r\n");
    assert!(rest.contains("$5\r\nproto\r\n:3\r\n"), "{rest}");
    assert!(
        rest.ends_with("_\r\n*1\r\n_\r\n:1\r\n-NOPROTO unsupported protocol version\r\n+OK\r\n"),
        "{rest}"
    );
    Ok(())
}

#[test]
fn malformed_streams_get_a_protocol_error_and_are_closed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = resp_agent(dir.path(), "resp-proto", &[])?;
    let addr = resp_addr(&agent)?;
    for (request, why) in [
        (&b"*x\r\n"[..], "invalid multibulk length"),
        (b"*2\r\n$4\r\nINCR\r\n:1\r\n", "expected '$', got ':'"),
        (b"*1\r\n$9999999\r\n", "invalid bulk length"),
        (b"*100000\r\n", "invalid multibulk length"),
    ] {
        let started = Instant::now();
        // The commands before the bad frame are answered; then the error; then EOF
        // (read_to_end returns well before the 10 s timeout).
        let mut bytes = b"PING\r\n".to_vec();
        bytes.extend_from_slice(request);
        let answer = raw_exchange(addr, &bytes, Duration::from_secs(10))?;
        assert!(
            answer.starts_with("+PONG\r\n-ERR Protocol error: ") && answer.contains(why),
            "{answer:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "not closed");
    }
    // An endless line without CRLF is cut off at the inline limit, not buffered.
    let answer = raw_exchange(addr, &vec![b'a'; 100 * 1024], Duration::from_secs(10))?;
    assert!(
        answer.starts_with("-ERR Protocol error: too big inline request"),
        "{answer}"
    );
    // The agent still serves.
    let client = redis::Client::open(format!("redis://{addr}/"))?;
    let pong: String = redis::cmd("PING").query(&mut client.get_connection()?)?;
    assert_eq!(pong, "PONG");
    Ok(())
}

#[test]
fn idle_connections_are_closed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = resp_agent(dir.path(), "resp-idle", &["--resp-idle-timeout", "300ms"])?;
    let started = Instant::now();
    let answer = raw_exchange(resp_addr(&agent)?, b"PING\r\n", Duration::from_secs(10))?;
    assert_eq!(answer, "+PONG\r\n");
    assert!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}

#[test]
fn strict_keys_are_linearizable_counters_on_zookeeper() -> anyhow::Result<()> {
    let zk = ZkCluster::standalone()
        .context("starting ZooKeeper (scripts/ensure-zookeeper installs it)")?;
    let dir = tempfile::tempdir()?;
    let connect = format!("{}/countermesh-resp-test", zk.connect_string());
    let agent = resp_agent(dir.path(), "resp-strict", &["--zookeeper", &connect])?;
    let client = redis::Client::open(format!("redis://{}/", resp_addr(&agent)?))?;
    let mut connection = client.get_connection()?;
    // The session opens in the background: retry while strict mode is unavailable.
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let first: i64 = loop {
        match redis::cmd("INCRBY")
            .arg("strict:tickets")
            .arg(1)
            .query(&mut connection)
        {
            Ok(value) => break value,
            Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => bail!("strict mode never connected: {error}"),
        }
    };
    assert_eq!(first, 1);
    let mut pipe = redis::pipe();
    pipe.cmd("INCRBY").arg("strict:tickets").arg(5);
    pipe.cmd("DECR").arg("strict:tickets");
    pipe.cmd("GET").arg("strict:tickets");
    pipe.cmd("GET").arg("strict:ghost");
    pipe.cmd("GET").arg("tickets");
    let answers: (i64, i64, Option<i64>, Option<i64>, Option<i64>) = pipe.query(&mut connection)?;
    // The post-values come from ZooKeeper; the eventual counter of the same bare name
    // is a different counter.
    assert_eq!(answers, (6, 5, Some(5), None, None));
    let error = redis::cmd("INCRBY")
        .arg("strict:tickets")
        .arg(i64::MAX)
        .query::<i64>(&mut connection)
        .expect_err("overflow");
    assert!(error.to_string().contains("would overflow"), "{error}");
    let error = redis::cmd("INCR")
        .arg("strict:no/slash")
        .query::<i64>(&mut connection)
        .expect_err("invalid strict name");
    assert!(
        error.to_string().contains("invalid strict counter name"),
        "{error}"
    );
    Ok(())
}
