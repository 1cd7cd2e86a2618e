//! The RESP wire format: a parser for client commands (multibulk `*N` arrays of `$`
//! bulk strings, and inline lines as typed into telnet) and an encoder for replies in
//! RESP2 or RESP3.
//!
//! Why a codec of our own rather than the `redis-protocol` crate: a server only ever
//! parses one frame shape (an array of bulk strings, or an inline line) and must refuse
//! oversized frames from their headers, before any of their bytes are buffered. This
//! parser borrows the arguments from the read buffer, checks every announced length
//! against [`Limits`] first, and never allocates in proportion to a header's claim.

use std::fmt;

/// The bounds a command must fit in; a stream that breaks one is a protocol error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The longest single argument (`$` bulk string).
    pub(crate) max_bulk: usize,
    /// The most arguments one command may carry, its name included.
    pub(crate) max_args: usize,
    /// The longest line: an inline command, or a `*`/`$` header still waiting for its
    /// CRLF.
    pub(crate) max_inline: usize,
    /// The most bytes all arguments of one command may announce together, so the read
    /// buffer never holds more than about this much of an unfinished command.
    pub(crate) max_command: usize,
}

impl Limits {
    /// Redis's own limits are 512 MiB per argument and 1 MiB per `*` count; a counter
    /// command needs a tiny fraction of either, so these are far smaller.
    pub(crate) const DEFAULT: Self = Self {
        max_bulk: 1024 * 1024,
        max_args: 1024,
        max_inline: 64 * 1024,
        max_command: 2 * 1024 * 1024,
    };
}

/// Why a stream is not valid RESP (the connection is closed after the error reply).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProtocolError {
    /// A line grew past [`Limits::max_inline`] without its CRLF.
    #[error("too big inline request (over {max} bytes without CRLF)")]
    LineTooLong { max: usize },
    /// The `*` count is not a number, or is larger than [`Limits::max_args`].
    #[error("invalid multibulk length (at most {max} arguments)")]
    MultibulkLength { max: usize },
    /// The `$` length is not a number, or is larger than [`Limits::max_bulk`].
    #[error("invalid bulk length (at most {max} bytes)")]
    BulkLength { max: usize },
    /// The arguments together announce more than [`Limits::max_command`] bytes.
    #[error("command too large (its arguments announce over {max} bytes)")]
    CommandTooLarge { max: usize },
    /// An element of a multibulk array did not start with `$`.
    #[error("expected '$', got '{0}'")]
    ExpectedBulk(char),
    /// A bulk string was not followed by CRLF.
    #[error("bulk string not terminated by CRLF")]
    MissingCrlf,
    /// An inline command has an unbalanced quote.
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
}

/// One parsed command: its arguments (the name first), borrowed from the read buffer
/// where possible.
pub(crate) type Args<'a> = Vec<std::borrow::Cow<'a, [u8]>>;

/// Parses the first command in `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a command (read more and call
/// again), `Ok(Some((args, used)))` with the bytes the command took (`args` is empty
/// for a blank line or a `*0` array, which Redis skips), or the protocol error.
pub(crate) fn parse<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Option<(Args<'a>, usize)>, ProtocolError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, limits),
        Some(_) => parse_inline(buf, limits),
    }
}

/// The line starting at `from`, without its CRLF, and the index just past the CRLF.
fn line(buf: &[u8], from: usize, max: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let window = &buf[from..buf.len().min(from.saturating_add(max).saturating_add(2))];
    match window.windows(2).position(|pair| pair == b"\r\n") {
        Some(at) => Ok(Some((&window[..at], from + at + 2))),
        None if window.len() >= max.saturating_add(2) => Err(ProtocolError::LineTooLong { max }),
        None => Ok(None),
    }
}

/// A non-negative decimal length; `None` for anything else (Redis refuses `+`, spaces
/// and empty numbers here too).
fn length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

fn parse_multibulk<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Option<(Args<'a>, usize)>, ProtocolError> {
    let Some((header, mut at)) = line(buf, 1, limits.max_inline)? else {
        return Ok(None);
    };
    let bad_count = ProtocolError::MultibulkLength {
        max: limits.max_args,
    };
    // `*-1` (a null array) and `*0` are empty commands, which Redis skips silently.
    if header == b"-1" {
        return Ok(Some((Vec::new(), at)));
    }
    let count = length(header).ok_or_else(|| bad_count.clone())?;
    let count = usize::try_from(count)
        .ok()
        .filter(|&count| count <= limits.max_args)
        .ok_or(bad_count)?;
    // `count` is bounded by `max_args`, so this allocation is too.
    let mut args = Vec::with_capacity(count);
    let mut announced = 0usize;
    for _ in 0..count {
        let Some(&first) = buf.get(at) else {
            return Ok(None);
        };
        if first != b'$' {
            return Err(ProtocolError::ExpectedBulk(char::from(first)));
        }
        let Some((digits, start)) = line(buf, at + 1, limits.max_inline)? else {
            return Ok(None);
        };
        let bad_length = ProtocolError::BulkLength {
            max: limits.max_bulk,
        };
        let len = length(digits).ok_or_else(|| bad_length.clone())?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= limits.max_bulk)
            .ok_or(bad_length)?;
        announced = announced.saturating_add(len);
        if announced > limits.max_command {
            return Err(ProtocolError::CommandTooLarge {
                max: limits.max_command,
            });
        }
        let end = start + len;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ProtocolError::MissingCrlf);
        }
        args.push(std::borrow::Cow::Borrowed(&buf[start..end]));
        at = end + 2;
    }
    Ok(Some((args, at)))
}

/// An inline command: words separated by spaces, with `"..."` (backslash escapes) and
/// `'...'` quoting as redis-cli and telnet users expect. A lone `\n` also ends a line.
fn parse_inline<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Option<(Args<'a>, usize)>, ProtocolError> {
    let window = &buf[..buf.len().min(limits.max_inline.saturating_add(1))];
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        if window.len() > limits.max_inline {
            return Err(ProtocolError::LineTooLong {
                max: limits.max_inline,
            });
        }
        return Ok(None);
    };
    let used = newline + 1;
    let text = buf[..newline]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..newline]);
    let args = split_inline(text)?;
    if args.len() > limits.max_args {
        return Err(ProtocolError::MultibulkLength {
            max: limits.max_args,
        });
    }
    Ok(Some((args, used)))
}

/// Splits an inline line into arguments, unquoting where needed.
fn split_inline(text: &[u8]) -> Result<Args<'_>, ProtocolError> {
    let mut args = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if text[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        match text[i] {
            quote @ (b'"' | b'\'') => {
                let mut word = Vec::new();
                i += 1;
                loop {
                    let Some(&b) = text.get(i) else {
                        return Err(ProtocolError::UnbalancedQuotes);
                    };
                    i += 1;
                    if b == quote {
                        break;
                    }
                    if b == b'\\' && quote == b'"' {
                        let escaped = text
                            .get(i)
                            .copied()
                            .ok_or(ProtocolError::UnbalancedQuotes)?;
                        i += 1;
                        word.push(match escaped {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            other => other,
                        });
                    } else {
                        word.push(b);
                    }
                }
                // Redis requires a space (or the end) after a closing quote.
                if text.get(i).is_some_and(|b| !b.is_ascii_whitespace()) {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                args.push(std::borrow::Cow::Owned(word));
            }
            _ => {
                let start = i;
                while i < text.len() && !text[i].is_ascii_whitespace() {
                    i += 1;
                }
                args.push(std::borrow::Cow::Borrowed(&text[start..i]));
            }
        }
    }
    Ok(args)
}

/// The protocol a connection speaks: RESP2 until `HELLO 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Resp2,
    Resp3,
}

/// A reply, encoded for the connection's protocol by [`Reply::encode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `+OK`: short status text without CR or LF.
    Simple(&'static str),
    /// `-ERR ...`: the text must start with an error code (`ERR`, `NOAUTH`, ...).
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    /// RESP2 `$-1`, RESP3 `_`.
    Nil,
    Array(Vec<Reply>),
    /// A RESP3 map; RESP2 gets a flat array of keys and values, as Redis sends.
    Map(Vec<(Reply, Reply)>),
}

impl Reply {
    /// `-ERR text`.
    pub(crate) fn err(text: impl fmt::Display) -> Self {
        Self::Error(format!("ERR {text}"))
    }

    pub(crate) fn bulk(text: impl Into<Vec<u8>>) -> Self {
        Self::Bulk(text.into())
    }

    /// Appends the reply's bytes to `out`.
    pub(crate) fn encode(&self, proto: Proto, out: &mut Vec<u8>) {
        match self {
            Self::Simple(text) => {
                out.push(b'+');
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Self::Error(text) => {
                out.push(b'-');
                // An error is one line: a CR or LF inside would end it early and
                // desynchronise the client.
                out.extend(
                    text.bytes()
                        .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
                );
                out.extend_from_slice(b"\r\n");
            }
            Self::Integer(n) => header(out, b':', *n),
            Self::Bulk(bytes) => {
                header(out, b'$', bytes.len() as i64);
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
            Self::Nil => match proto {
                Proto::Resp2 => out.extend_from_slice(b"$-1\r\n"),
                Proto::Resp3 => out.extend_from_slice(b"_\r\n"),
            },
            Self::Array(items) => {
                header(out, b'*', items.len() as i64);
                for item in items {
                    item.encode(proto, out);
                }
            }
            Self::Map(pairs) => {
                match proto {
                    Proto::Resp2 => header(out, b'*', 2 * pairs.len() as i64),
                    Proto::Resp3 => header(out, b'%', pairs.len() as i64),
                }
                for (key, value) in pairs {
                    key.encode(proto, out);
                    value.encode(proto, out);
                }
            }
        }
    }
}

/// `<kind><n>\r\n`, formatted without allocating.
fn header(out: &mut Vec<u8>, kind: u8, n: i64) {
    use std::io::Write as _;
    out.push(kind);
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{n}\r\n");
}

/// Encodes `args` as a multibulk command, as clients send them (for tests and the
/// fuzz-style round trip).
#[cfg(test)]
pub(crate) fn encode_command(args: &[&[u8]], out: &mut Vec<u8>) {
    header(out, b'*', args.len() as i64);
    for arg in args {
        header(out, b'$', arg.len() as i64);
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SMALL: Limits = Limits {
        max_bulk: 64,
        max_args: 8,
        max_inline: 128,
        max_command: 256,
    };

    fn words(args: &Args<'_>) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.to_vec()).collect()
    }

    #[test]
    fn multibulk_commands_parse_and_report_their_length() {
        let buf = b"*2\r\n$4\r\nINCR\r\n$1\r\nx\r\n*1\r\n$4\r\nPING\r\n";
        let (args, used) = parse(buf, &Limits::DEFAULT).unwrap().unwrap();
        assert_eq!(words(&args), vec![b"INCR".to_vec(), b"x".to_vec()]);
        let (args, rest) = parse(&buf[used..], &Limits::DEFAULT).unwrap().unwrap();
        assert_eq!(words(&args), vec![b"PING".to_vec()]);
        assert_eq!(used + rest, buf.len());
    }

    #[test]
    fn partial_commands_wait_for_more() {
        let buf = b"*2\r\n$4\r\nINCR\r\n$1\r\nx\r\n";
        for end in 0..buf.len() {
            assert_eq!(parse(&buf[..end], &Limits::DEFAULT), Ok(None), "{end}");
        }
    }

    #[test]
    fn inline_commands_split_and_unquote() {
        let (args, used) = parse(b"incrby  \"a b\" 5\r\nrest", &SMALL)
            .unwrap()
            .unwrap();
        assert_eq!(
            words(&args),
            vec![b"incrby".to_vec(), b"a b".to_vec(), b"5".to_vec()]
        );
        assert_eq!(used, 17);
        let (args, _) = parse(b"PING\n", &SMALL).unwrap().unwrap();
        assert_eq!(words(&args), vec![b"PING".to_vec()]);
        let (args, _) = parse(b"\r\n", &SMALL).unwrap().unwrap();
        assert!(args.is_empty());
        assert_eq!(
            parse(b"ECHO \"open\r\n", &SMALL),
            Err(ProtocolError::UnbalancedQuotes)
        );
    }

    #[test]
    fn limits_are_checked_from_the_headers() {
        // Refused on the header alone, before any of the announced bytes arrive.
        assert_eq!(
            parse(b"*9\r\n", &SMALL),
            Err(ProtocolError::MultibulkLength { max: 8 })
        );
        assert_eq!(
            parse(b"*1\r\n$65\r\n", &SMALL),
            Err(ProtocolError::BulkLength { max: 64 })
        );
        assert_eq!(
            parse(b"*5\r\n$64\r\n", &SMALL).unwrap(),
            None,
            "within limits so far"
        );
        let mut buf = b"*5\r\n".to_vec();
        for _ in 0..4 {
            buf.extend_from_slice(b"$64\r\n");
            buf.extend_from_slice(&[b'a'; 64]);
            buf.extend_from_slice(b"\r\n");
        }
        buf.extend_from_slice(b"$64\r\n");
        assert_eq!(
            parse(&buf, &SMALL),
            Err(ProtocolError::CommandTooLarge { max: 256 })
        );
        assert_eq!(
            parse(&[b'a'; 200], &SMALL),
            Err(ProtocolError::LineTooLong { max: 128 })
        );
        assert_eq!(
            parse(b"*1\r\n$-1\r\n", &SMALL),
            Err(ProtocolError::BulkLength { max: 64 })
        );
        assert_eq!(
            parse(b"*1\r\n:1\r\n", &SMALL),
            Err(ProtocolError::ExpectedBulk(':'))
        );
        assert_eq!(
            parse(b"*1\r\n$1\r\nab\r\n", &SMALL),
            Err(ProtocolError::MissingCrlf)
        );
        assert_eq!(
            parse(b"*+1\r\n", &SMALL),
            Err(ProtocolError::MultibulkLength { max: 8 })
        );
    }

    #[test]
    fn replies_encode_per_protocol() {
        let mut out = Vec::new();
        for proto in [Proto::Resp2, Proto::Resp3] {
            Reply::Array(vec![
                Reply::Simple("OK"),
                Reply::Integer(-5),
                Reply::bulk("hi"),
                Reply::Nil,
                Reply::err("bad\r\nline"),
                Reply::Map(vec![(Reply::bulk("k"), Reply::Integer(1))]),
            ])
            .encode(proto, &mut out);
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "*6\r\n+OK\r\n:-5\r\n$2\r\nhi\r\n$-1\r\n-ERR bad  line\r\n*2\r\n$1\r\nk\r\n:1\r\n\
             *6\r\n+OK\r\n:-5\r\n$2\r\nhi\r\n_\r\n-ERR bad  line\r\n%1\r\n$1\r\nk\r\n:1\r\n"
        );
    }

    proptest! {
        /// Random commands survive encoding and parsing, whole and fed in two parts
        /// split anywhere.
        #[test]
        fn commands_round_trip(
            commands in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 1..8),
                1..6,
            ),
            split in any::<prop::sample::Index>(),
        ) {
            let limits = Limits { max_bulk: 80, max_args: 8, max_inline: 64, max_command: 1024 };
            let mut buf = Vec::new();
            for command in &commands {
                let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
                encode_command(&args, &mut buf);
            }
            // A prefix is either incomplete or complete commands; never an error.
            let cut = split.index(buf.len() + 1);
            let mut at = 0;
            while let Some((_, used)) = parse(&buf[at..cut], &limits).unwrap() {
                at += used;
            }
            prop_assert!(at <= cut);
            let mut at = 0;
            for command in &commands {
                let (args, used) = parse(&buf[at..], &limits).unwrap().unwrap();
                prop_assert_eq!(&words(&args), command);
                at += used;
            }
            prop_assert_eq!(at, buf.len());
        }

        /// Arbitrary bytes never panic, never claim more bytes than given, and never
        /// yield more arguments or longer ones than the limits allow.
        #[test]
        fn arbitrary_bytes_are_handled(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut at = 0;
            while at < bytes.len() {
                match parse(&bytes[at..], &SMALL) {
                    Ok(Some((args, used))) => {
                        prop_assert!(used > 0 && at + used <= bytes.len());
                        prop_assert!(args.len() <= SMALL.max_args);
                        prop_assert!(args.iter().all(|a| a.len() <= SMALL.max_inline.max(SMALL.max_bulk)));
                        at += used;
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }

        /// Headers announcing any size are refused or waited on without allocating for
        /// the claim.
        #[test]
        fn huge_headers_are_refused(count in any::<u64>(), len in any::<u64>()) {
            let buf = format!("*{count}\r\n${len}\r\n");
            match parse(buf.as_bytes(), &SMALL) {
                Ok(None) => prop_assert!(count <= 8 && len <= 64),
                Ok(Some((args, _))) => prop_assert!(count == 0 && args.is_empty()),
                Err(_) => prop_assert!(count > 8 || len > 64),
            }
        }
    }
}
