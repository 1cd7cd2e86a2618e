//! The wire-decoding target: `Message::decode` on arbitrary bytes under every channel's
//! budget. It must never panic, never allocate far beyond the input's size, agree with
//! itself across budgets, and round-trip every message it accepts (SWIM packets, sync
//! requests, deltas and prune messages).

use countermesh_core::{
    DecodeError, MAX_MESSAGE_BYTES, MAX_VERSION, MIN_DATAGRAM_BYTES, MIN_MESSAGE_BUDGET, Message,
    PruneMessage, encode_delta, encode_prune, encode_swim, encode_sync,
};

/// The budgets decoding is tried under: the smallest and default datagram budgets, the
/// smallest and default stream budgets, and the hard maximum.
pub const BUDGETS: [usize; 5] = [
    MIN_DATAGRAM_BYTES,
    1150,
    MIN_MESSAGE_BUDGET,
    64 * 1024,
    MAX_MESSAGE_BYTES,
];

/// Allocation allowed per input byte. The densest wire item is an entry with an empty
/// name (4 bytes) that decodes to 48 bytes, first as a wire entry and then as a delta
/// entry, in vectors that may hold up to twice their length while growing.
pub const ALLOC_PER_BYTE: usize = 64;

/// Allocation allowed whatever the input: sequences may reserve 64 elements before
/// their bytes arrive (the wire module's `PREALLOCATE_AT_MOST`), and errors carry text.
pub const ALLOC_SLACK: usize = 16 * 1024;

/// Runs the target. `allocated_by` runs a closure and returns how many bytes it
/// allocated (the fuzz binary counts them with an instrumented global allocator).
pub fn run(data: &[u8], allocated_by: impl Fn(&mut dyn FnMut()) -> usize) {
    let mut accepted: Option<Message<'_>> = None;
    let mut first_fit: Option<Result<Message<'_>, DecodeError>> = None;
    for budget in BUDGETS {
        let mut result = None;
        let allocated = allocated_by(&mut || result = Some(Message::decode(data, budget)));
        let result = result.expect("the closure ran");
        assert!(
            allocated <= ALLOC_SLACK + ALLOC_PER_BYTE * data.len(),
            "decoding {} bytes under a budget of {budget} allocated {allocated} bytes",
            data.len()
        );
        if data.len() > budget {
            assert!(
                matches!(result, Err(DecodeError::Oversized { .. })),
                "{} bytes over a budget of {budget} gave {result:?}",
                data.len()
            );
            continue;
        }
        // Within its budget, decoding does not depend on the budget.
        match &first_fit {
            Some(first) => assert_eq!(first, &result, "decoding depends on the budget"),
            None => first_fit = Some(result.clone()),
        }
        if let Ok(message) = result {
            accepted = Some(message);
        }
    }
    if let Some(message) = accepted {
        round_trip(data, &message);
    }
}

/// A message that decoded encodes again, no longer than it arrived, with an exact
/// announced size, and decodes back to itself.
fn round_trip(data: &[u8], message: &Message<'_>) {
    let encoded = match message {
        Message::Swim(payload) => encode_swim(payload),
        Message::Sync(request) => {
            let bytes = encode_sync(request).expect("an accepted request re-encodes");
            assert_eq!(
                bytes.len(),
                request.encoded_len(),
                "SyncRequest::encoded_len"
            );
            bytes
        }
        Message::Delta(delta) => {
            let bytes = encode_delta(delta).expect("an accepted delta re-encodes");
            assert_eq!(bytes.len(), delta.encoded_len(), "Delta::encoded_len");
            bytes
        }
        Message::Prune(prune) => {
            if let PruneMessage::Intent { victims, .. } = prune {
                assert!(
                    victims.iter().all(|&(_, v)| v > 0 && v <= MAX_VERSION),
                    "an intent with a final version out of range decoded"
                );
            }
            encode_prune(prune).expect("an accepted prune message re-encodes")
        }
    };
    assert_eq!(
        encoded,
        message.encode().expect("encodes"),
        "Message::encode"
    );
    assert!(
        encoded.len() <= data.len(),
        "re-encoding {} bytes gave {} bytes",
        data.len(),
        encoded.len()
    );
    let back = Message::decode(&encoded, MAX_MESSAGE_BYTES).expect("a re-encoded message decodes");
    assert_eq!(&back, message, "decode(encode(m)) differs from m");
}
