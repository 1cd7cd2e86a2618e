//! Counter names: validated, UTF-8, bounded in length, free of control characters.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

/// The longest counter name accepted, in bytes of UTF-8.
///
/// The bound keeps every wire entry small enough to fit many per datagram and keeps
/// a hostile peer from making a node store arbitrarily large keys.
pub const MAX_NAME_LEN: usize = 256;

/// Why a string is not a valid counter name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is the empty string.
    #[error("counter name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("counter name is {len} bytes long; the maximum is {max}")]
    TooLong {
        /// Length of the rejected name in bytes.
        len: usize,
        /// The maximum, [`MAX_NAME_LEN`].
        max: usize,
    },
    /// The name contains a control character (such as a newline or NUL), which would
    /// corrupt logs, HTTP paths and metric labels that show it.
    #[error("counter name contains control character {ch:?} at byte {position}")]
    ControlCharacter {
        /// Byte offset of the offending character.
        position: usize,
        /// The offending character.
        ch: char,
    },
}

/// A validated counter name.
///
/// A name is 1 to [`MAX_NAME_LEN`] bytes of UTF-8 with no control characters. Names are
/// compared byte-wise: `"Views"` and `"views"` are different counters.
///
/// ```
/// use countermesh_core::{CounterName, NameError};
///
/// let name = CounterName::new("page_views")?;
/// assert_eq!(name.as_str(), "page_views");
/// assert_eq!(CounterName::new(""), Err(NameError::Empty));
/// assert!(matches!(CounterName::new("a\nb"), Err(NameError::ControlCharacter { .. })));
/// # Ok::<(), NameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CounterName(Box<str>);

impl CounterName {
    /// Validates `name` and wraps it.
    pub fn new(name: &str) -> Result<Self, NameError> {
        validate_name(name)?;
        Ok(Self(name.into()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A reserved record name (see [`is_reserved`]), which `new` refuses.
    pub(crate) fn reserved(name: &str) -> Self {
        debug_assert!(is_reserved(name));
        Self(name.into())
    }

    /// Whether this is a reserved record name rather than a counter.
    pub(crate) fn is_reserved(&self) -> bool {
        is_reserved(&self.0)
    }
}

/// The name of a sink's header entry: its `p` is the sink's final version, its `n` the
/// number of actors it covers. Names that start with a NUL cannot be counter names
/// (control characters are refused), so these never collide with a user's counter.
pub(crate) const SINK_HEADER: &str = "\0sink";
/// Prefix of a sink's record entries, one per covered actor: `"\0v/"` and the actor id
/// in 16 lowercase hex digits; its `p` is that actor's final version.
pub(crate) const SINK_VICTIM_PREFIX: &str = "\0v/";

/// Whether `name` is one of the reserved names of a sink's records.
pub(crate) fn is_reserved(name: &str) -> bool {
    name.starts_with('\0')
}

/// The victim a record entry names, if `name` is a well-formed record name.
pub(crate) fn victim_of(name: &str) -> Option<crate::ActorId> {
    let hex = name.strip_prefix(SINK_VICTIM_PREFIX)?;
    if hex.len() != 16
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(hex, 16)
        .ok()
        .map(crate::ActorId::from_u64)
}

/// The record name for `victim`.
pub(crate) fn victim_name(victim: crate::ActorId) -> String {
    format!("{SINK_VICTIM_PREFIX}{:016x}", victim.as_u64())
}

/// Checks the name of an entry of `actor`: a counter name, or for a sink also one of its
/// reserved record names.
pub(crate) fn validate_entry_name(actor: crate::ActorId, name: &str) -> Result<(), NameError> {
    if actor.is_sink() && (name == SINK_HEADER || victim_of(name).is_some()) {
        return Ok(());
    }
    validate_name(name)
}

/// Checks that `name` would be a valid [`CounterName`] without allocating.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            len: name.len(),
            max: MAX_NAME_LEN,
        });
    }
    if let Some((position, ch)) = name.char_indices().find(|(_, c)| c.is_control()) {
        return Err(NameError::ControlCharacter { position, ch });
    }
    Ok(())
}

impl Deref for CounterName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for CounterName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for CounterName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for CounterName {
    type Error = NameError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<String> for CounterName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        validate_name(&value)?;
        Ok(Self(value.into_boxed_str()))
    }
}

impl fmt::Debug for CounterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for CounterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_boundaries() {
        assert!(CounterName::new("a").is_ok());
        assert!(CounterName::new(&"x".repeat(MAX_NAME_LEN)).is_ok());
        // Multi-byte characters count in bytes, not characters.
        assert!(CounterName::new(&"é".repeat(MAX_NAME_LEN / 2)).is_ok());
        assert!(CounterName::new("zählwerk/γ 1").is_ok());
    }

    #[test]
    fn rejects_bad_names_with_typed_errors() {
        assert_eq!(CounterName::new(""), Err(NameError::Empty));
        assert_eq!(
            CounterName::new(&"x".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong {
                len: MAX_NAME_LEN + 1,
                max: MAX_NAME_LEN
            })
        );
        assert_eq!(
            CounterName::new(&"é".repeat(MAX_NAME_LEN / 2 + 1)),
            Err(NameError::TooLong {
                len: MAX_NAME_LEN + 2,
                max: MAX_NAME_LEN
            })
        );
        assert_eq!(
            CounterName::new("ab\0"),
            Err(NameError::ControlCharacter {
                position: 2,
                ch: '\0'
            })
        );
        assert!(matches!(
            CounterName::new("tab\there"),
            Err(NameError::ControlCharacter { position: 3, .. })
        ));
    }
}
