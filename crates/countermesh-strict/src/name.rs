//! Counter names: which strings may name a counter znode.

use crate::error::StrictError;

/// The longest accepted name, in bytes. ZooKeeper itself allows far longer paths; this
/// bound keeps every request small and every name readable.
pub const MAX_NAME_LEN: usize = 128;

/// Checks that `name` can be used as a counter name.
///
/// A name is 1 to [`MAX_NAME_LEN`] ASCII letters, digits, `_`, `-` and `.`, and is not
/// `.` or `..`. The rule is deliberately narrower than ZooKeeper's (which also allows
/// most Unicode) so that a name is the same string in a URL, a shell and a log line.
pub fn validate_name(name: &str) -> Result<(), StrictError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("longer than 128 bytes")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are reserved by ZooKeeper")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        Some("only ASCII letters, digits, '_', '-' and '.' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StrictError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in ["tickets", "a", "rate-limit.eu_1", &"x".repeat(MAX_NAME_LEN)] {
            assert_eq!(validate_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        for name in [
            "",
            ".",
            "..",
            "a/b",
            "/a",
            "zoo keeper",
            "é",
            "a\0b",
            long.as_str(),
        ] {
            assert!(
                matches!(validate_name(name), Err(StrictError::InvalidName { .. })),
                "{name:?} was accepted"
            );
        }
    }
}
