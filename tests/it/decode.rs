//! Decoding untrusted bytes: every failure is a typed error, never a panic.

use std::borrow::Cow;

use countermesh_core::{
    ActorId, ActorRange, DecodeError, Delta, DeltaEntry, DeltaError, MAX_MESSAGE_BYTES, Message,
    PROTOCOL_VERSION, Part, Run, SyncRequest, SyncRequestError,
};
use proptest::prelude::*;

fn sample_delta() -> Vec<u8> {
    Message::Delta(Delta {
        runs: vec![Run {
            actor: ActorId::from_u64(0xABCD),
            after: 3,
            upto: 9,
            entries: vec![
                DeltaEntry {
                    name: "page_views".into(),
                    version: 4,
                    p: 10,
                    n: 2,
                },
                DeltaEntry {
                    name: "logins".into(),
                    version: 9,
                    p: 1,
                    n: 0,
                },
            ],
        }],
    })
    .encode()
    .unwrap()
}

fn sample_sync() -> Vec<u8> {
    Message::Sync(SyncRequest {
        budget: 1200,
        reply_bytes: 4096,
        parts: vec![
            Part::Summary {
                range: ActorRange::new(1, 3).unwrap(),
                count: 17,
                hash: 0xdead_beef_0bad_cafe,
            },
            Part::Pairs {
                range: ActorRange::ALL,
                versions: vec![(ActorId::from_u64(5), 7), (ActorId::from_u64(9), 300)],
            },
            Part::Want {
                versions: vec![(ActorId::from_u64(5), 1)],
            },
        ],
    })
    .encode()
    .unwrap()
}

#[test]
fn valid_messages_round_trip() {
    let bytes = sample_delta();
    let Message::Delta(delta) = Message::decode(&bytes, 1200).unwrap() else {
        panic!("not a delta");
    };
    assert_eq!(delta.entry_count(), 2);
    assert_eq!(delta.encoded_len(), bytes.len());
    assert_eq!(delta.runs[0].entries[1].version, 9);

    let bytes = sample_sync();
    let Message::Sync(sync) = Message::decode(&bytes, 1200).unwrap() else {
        panic!("not a sync request");
    };
    assert_eq!(sync.encoded_len(), bytes.len());
    assert_eq!(sync.parts.len(), 3);

    let swim = Message::Swim(Cow::Borrowed(b"opaque")).encode().unwrap();
    assert_eq!(
        Message::decode(&swim, 1200).unwrap(),
        Message::Swim(Cow::Borrowed(b"opaque"))
    );
}

#[test]
fn every_truncation_is_a_typed_error() {
    for bytes in [sample_delta(), sample_sync()] {
        for len in 0..bytes.len() {
            let err = Message::decode(&bytes[..len], 1200).unwrap_err();
            assert!(
                matches!(err, DecodeError::Truncated { .. }),
                "prefix of {len} bytes gave {err:?}"
            );
        }
    }
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let mut bytes = sample_delta();
    bytes.resize(2000, 0);
    assert_eq!(
        Message::decode(&bytes, 1200),
        Err(DecodeError::Oversized {
            len: 2000,
            max: 1200
        })
    );
    let huge = vec![0u8; MAX_MESSAGE_BYTES + 1];
    assert!(matches!(
        Message::decode(&huge, usize::MAX),
        Err(DecodeError::Oversized { .. })
    ));
}

#[test]
fn wrong_magic_version_and_kind() {
    let mut bytes = sample_delta();
    bytes[0] = b'X';
    assert_eq!(
        Message::decode(&bytes, 1200),
        Err(DecodeError::BadMagic {
            found: [b'X', b'M']
        })
    );

    let mut bytes = sample_delta();
    bytes[2] = PROTOCOL_VERSION + 1;
    assert_eq!(
        Message::decode(&bytes, 1200),
        Err(DecodeError::UnsupportedVersion {
            found: PROTOCOL_VERSION + 1,
            supported: PROTOCOL_VERSION
        })
    );

    let mut bytes = sample_delta();
    bytes[3] = 77;
    assert_eq!(
        Message::decode(&bytes, 1200),
        Err(DecodeError::UnknownKind(77))
    );
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = sample_delta();
    bytes.extend_from_slice(&[0, 0, 0]);
    assert_eq!(
        Message::decode(&bytes, 1200),
        Err(DecodeError::TrailingBytes { extra: 3 })
    );
}

/// Builds a delta body by hand so that it can say things the encoder never would.
fn raw_delta(body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![b'C', b'M', PROTOCOL_VERSION, 3];
    bytes.extend_from_slice(body);
    bytes
}

#[test]
fn semantic_violations_are_typed() {
    // One run, actor 1, after 5, upto 2 (inverted), no entries.
    let inverted = raw_delta(&[1, 0, 0, 0, 0, 0, 0, 0, 1, 5, 2, 0]);
    assert_eq!(
        Message::decode(&inverted, 1200),
        Err(DecodeError::InvalidDelta(DeltaError::InvertedRange {
            actor: ActorId::from_u64(1),
            after: 5,
            upto: 2
        }))
    );
    // One entry with a zero version gap.
    let zero_gap = raw_delta(&[1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 1, 1, b'a', 0, 1, 1]);
    assert!(matches!(
        Message::decode(&zero_gap, 1200),
        Err(DecodeError::InvalidDelta(
            DeltaError::VersionsOutOfOrder { .. }
        ))
    ));
    // A gap that overflows the version.
    let mut overflow = vec![
        1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 2, 1, b'a', 1, 1, 1, 1, b'b', 253,
    ];
    overflow.extend_from_slice(&u64::MAX.to_le_bytes());
    overflow.extend_from_slice(&[1, 1]);
    assert_eq!(
        Message::decode(&raw_delta(&overflow), 1200),
        Err(DecodeError::InvalidDelta(DeltaError::VersionsOutOfOrder {
            actor: ActorId::from_u64(1)
        }))
    );
    // An empty counter name.
    let empty_name = raw_delta(&[1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 1, 0, 1, 1, 1]);
    assert!(matches!(
        Message::decode(&empty_name, 1200),
        Err(DecodeError::InvalidDelta(DeltaError::InvalidName(_)))
    ));
    // A name that is not UTF-8.
    let not_utf8 = raw_delta(&[1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 1, 1, 0xFF, 1, 1, 1]);
    assert!(matches!(
        Message::decode(&not_utf8, 1200),
        Err(DecodeError::Malformed { .. })
    ));
    // A name with a control character.
    let control = raw_delta(&[1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 1, 1, b'\n', 1, 1, 1]);
    assert!(matches!(
        Message::decode(&control, 1200),
        Err(DecodeError::InvalidDelta(DeltaError::InvalidName(_)))
    ));
    // The same actor twice.
    let twice = raw_delta(&[
        2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    ]);
    assert!(matches!(
        Message::decode(&twice, 1200),
        Err(DecodeError::InvalidDelta(DeltaError::DuplicateActor { .. }))
    ));
    // Sync requests: envelope, budget 1200 (varint 251 + u16), reply bytes 100, one part.
    let sync = |part: &[u8]| {
        let mut bytes = vec![b'C', b'M', PROTOCOL_VERSION, 2, 251, 0xB0, 0x04, 100, 1];
        bytes.extend_from_slice(part);
        bytes
    };
    // A want list (tag 2) with unsorted actors.
    let mut unsorted = vec![2, 2];
    unsorted.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9, 1]);
    unsorted.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 5, 1]);
    assert_eq!(
        Message::decode(&sync(&unsorted), 1200),
        Err(DecodeError::InvalidSync(SyncRequestError::Unsorted))
    );
    // A summary (tag 0) of a range at level 17 (deeper than actor ids go).
    let mut deep = vec![0, 17, 0, 1];
    deep.extend_from_slice(&[0; 8]);
    assert!(matches!(
        Message::decode(&sync(&deep), 1200),
        Err(DecodeError::InvalidSync(SyncRequestError::Range(_)))
    ));
    // Pairs (tag 1) for range level 1 prefix 0 listing an actor outside it.
    let mut outside = vec![1, 1, 0, 1];
    outside.extend_from_slice(&[0xF0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert!(matches!(
        Message::decode(&sync(&outside), 1200),
        Err(DecodeError::InvalidSync(SyncRequestError::OutOfRange(_)))
    ));
    // A want for a version above the maximum.
    let mut huge = vec![2, 1, 0, 0, 0, 0, 0, 0, 0, 1, 253];
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        Message::decode(&sync(&huge), 1200),
        Err(DecodeError::InvalidSync(SyncRequestError::VersionTooLarge(
            _
        )))
    ));
    // A budget below the minimum message budget.
    let tiny = [b'C', b'M', PROTOCOL_VERSION, 2, 100, 0, 0];
    assert!(matches!(
        Message::decode(&tiny, 1200),
        Err(DecodeError::InvalidSync(SyncRequestError::BudgetTooSmall(
            100
        )))
    ));
    // An enum tag out of range.
    assert!(matches!(
        Message::decode(&sync(&[9]), 1200),
        Err(DecodeError::Malformed { .. })
    ));
    // A delta version above the maximum.
    let mut big = vec![1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 253];
    big.extend_from_slice(&u64::MAX.to_le_bytes());
    big.push(0);
    assert!(matches!(
        Message::decode(&raw_delta(&big), 1200),
        Err(DecodeError::InvalidDelta(
            DeltaError::VersionTooLarge { .. }
        ))
    ));
}

#[test]
fn huge_length_prefixes_fail_fast() {
    // Claims 2^62 runs, provides none (253 marks an 8-byte varint).
    let mut claim = vec![253];
    claim.extend_from_slice(&(1u64 << 62).to_le_bytes());
    assert!(matches!(
        Message::decode(&raw_delta(&claim), 1200),
        Err(DecodeError::Truncated { .. })
    ));
    // One run whose single entry claims a 4 GiB name.
    let mut name = vec![1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 1, 252];
    name.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Message::decode(&raw_delta(&name), 1200),
        Err(DecodeError::Truncated { .. } | DecodeError::Oversized { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = Message::decode(&bytes, 1200);
    }

    #[test]
    fn random_bodies_behind_a_valid_envelope_never_panic(
        kind in 1u8..=4,
        body in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = vec![b'C', b'M', PROTOCOL_VERSION, kind];
        bytes.extend_from_slice(&body);
        match Message::decode(&bytes, 1200) {
            Ok(Message::Delta(delta)) => prop_assert!(delta.validate().is_ok()),
            Ok(Message::Sync(sync)) => prop_assert!(sync.validate().is_ok()),
            Ok(Message::Prune(prune)) => prop_assert!(prune.validate().is_ok()),
            Ok(Message::Swim(_)) | Err(_) => {}
        }
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        sync in any::<bool>(),
    ) {
        let mut bytes = if sync { sample_sync() } else { sample_delta() };
        for (index, value) in flips {
            let i = index.index(bytes.len());
            bytes[i] = value;
        }
        let _ = Message::decode(&bytes, 1200);
    }
}
