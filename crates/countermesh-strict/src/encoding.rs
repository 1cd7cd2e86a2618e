//! The bytes a counter znode and a receipt znode hold.
//!
//! Both hold exactly one `i64` as 8 bytes, big-endian two's complement (network byte
//! order, the order `java.nio.ByteBuffer#getLong` reads). A counter znode holds the
//! counter's value; a receipt holds the counter's value right before the write that
//! created it (the base of that batch), from which every result of the batch follows.

use crate::error::StrictError;

/// The encoded size of a value.
pub(crate) const VALUE_LEN: usize = 8;

/// Encodes a value for a znode.
pub(crate) fn encode(value: i64) -> [u8; VALUE_LEN] {
    value.to_be_bytes()
}

/// Decodes a znode's data, or says why it is not ours.
pub(crate) fn decode(path: &str, data: &[u8]) -> Result<i64, StrictError> {
    let bytes: [u8; VALUE_LEN] = data.try_into().map_err(|_| StrictError::Corrupt {
        path: path.to_owned(),
        len: data.len(),
    })?;
    Ok(i64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_extremes() {
        for v in [0, 1, -1, i64::MIN, i64::MAX, 0x0102_0304_0506_0708] {
            assert_eq!(decode("/x", &encode(v)), Ok(v));
        }
    }

    #[test]
    fn is_big_endian() {
        assert_eq!(encode(1), [0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(encode(-2), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
    }

    #[test]
    fn rejects_other_lengths() {
        assert_eq!(
            decode("/counters/a", b"42"),
            Err(StrictError::Corrupt {
                path: "/counters/a".into(),
                len: 2
            })
        );
        assert!(decode("/x", &[]).is_err());
        assert!(decode("/x", &[0; 9]).is_err());
    }
}
