//! A foca [`Codec`](foca::Codec) on bincode 2 (foca 2 only ships a postcard codec).

use bytes::{Buf, BufMut};
use foca::{Header, Member};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::NodeId;

/// Bound on what one SWIM item may make the decoder allocate. Headers and members hold
/// two identities at most, well under 200 bytes.
const ITEM_LIMIT: usize = 4096;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<ITEM_LIMIT>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<ITEM_LIMIT>()
}

/// Why a SWIM item could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwimCodecError {
    /// The packet has no room left for this item; foca stops adding items.
    #[error("no room left in the SWIM packet")]
    NoRoom,
    /// bincode could not encode the item.
    #[error("cannot encode SWIM item: {0}")]
    Encode(String),
    /// The bytes are not a valid SWIM item.
    #[error("cannot decode SWIM item: {0}")]
    Decode(String),
}

/// Encodes SWIM headers and members with bincode 2 (standard config, byte-limited).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SwimCodec;

impl SwimCodec {
    fn put<T: Serialize>(value: &T, mut buf: impl BufMut) -> Result<(), SwimCodecError> {
        let bytes = bincode::serde::encode_to_vec(value, config())
            .map_err(|e| SwimCodecError::Encode(e.to_string()))?;
        // foca requires that a failed encode leaves the buffer untouched, and `put_slice`
        // past the buffer's limit would panic, so check the room first.
        if buf.remaining_mut() < bytes.len() {
            return Err(SwimCodecError::NoRoom);
        }
        buf.put_slice(&bytes);
        Ok(())
    }

    fn take<T: DeserializeOwned>(mut buf: impl Buf) -> Result<T, SwimCodecError> {
        // foca hands us a contiguous buffer, so the first chunk is all of it.
        let (value, used) = bincode::serde::decode_from_slice(buf.chunk(), config())
            .map_err(|e| SwimCodecError::Decode(e.to_string()))?;
        buf.advance(used);
        Ok(value)
    }
}

impl foca::Codec<NodeId> for SwimCodec {
    type Error = SwimCodecError;

    fn encode_header(
        &mut self,
        header: &Header<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        Self::put(header, buf)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<NodeId>, Self::Error> {
        Self::take(buf)
    }

    fn encode_member(
        &mut self,
        member: &Member<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        Self::put(member, buf)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<NodeId>, Self::Error> {
        Self::take(buf)
    }
}
