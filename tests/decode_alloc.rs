//! Decoding hostile bytes allocates in proportion to the input, not to its claims.
//!
//! This binary holds one test so the instrumented global allocator sees no other work.
#![allow(clippy::print_stdout)]

use std::alloc::System;

use countermesh_core::{Message, PROTOCOL_VERSION};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn peak_bytes_to_decode(bytes: &[u8]) -> usize {
    let region = Region::new(GLOBAL);
    let result = Message::decode(bytes, usize::MAX);
    assert!(result.is_err(), "hostile input decoded: {result:?}");
    drop(result);
    region.change().bytes_allocated
}

#[test]
fn hostile_length_prefixes_do_not_allocate_their_claims() {
    let envelope = |kind: u8, body: &[u8]| {
        let mut bytes = vec![b'C', b'M', PROTOCOL_VERSION, kind];
        bytes.extend_from_slice(body);
        bytes
    };
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // 2^40 runs claimed.
    let mut runs = vec![253];
    runs.extend_from_slice(&(1u64 << 40).to_le_bytes());
    cases.push(("run count", envelope(3, &runs)));
    // One run claiming 2^40 entries.
    let mut entries = vec![1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 253];
    entries.extend_from_slice(&(1u64 << 40).to_le_bytes());
    cases.push(("entry count", envelope(3, &entries)));
    // One entry claiming a 1 GiB name.
    let mut name = vec![1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 1, 252];
    name.extend_from_slice(&(1u32 << 30).to_le_bytes());
    cases.push(("name length", envelope(3, &name)));
    // A sync request claiming 2^40 versions.
    let mut versions = vec![1, 253];
    versions.extend_from_slice(&(1u64 << 40).to_le_bytes());
    cases.push(("digest length", envelope(2, &versions)));

    for (what, bytes) in &cases {
        let allocated = peak_bytes_to_decode(bytes);
        println!(
            "{what}: {} input bytes, {allocated} bytes allocated",
            bytes.len()
        );
        // 64 preallocated elements of the largest wire type is the most the bounded
        // decoder reserves before bytes arrive.
        assert!(
            allocated <= 16 * 1024,
            "{what}: {allocated} bytes allocated for {} input bytes",
            bytes.len()
        );
    }
}
