//! The allocation counting the `wire_decode` target relies on really counts: decoding a
//! recorded delta allocates, and the target's bound holds for every wire seed. (Its own
//! binary: a counting global allocator sees every thread of the process.)

use std::alloc::System;
use std::fs;
use std::path::Path;

use countermesh_core::{MAX_MESSAGE_BYTES, Message};
use countermesh_fuzz::wire;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The same measurement as `fuzz_targets/wire_decode.rs`.
fn allocated_by(f: &mut dyn FnMut()) -> usize {
    let region = Region::new(GLOBAL);
    f();
    let change = region.change();
    change.bytes_allocated + usize::try_from(change.bytes_reallocated).unwrap_or(0)
}

#[test]
fn decoding_a_delta_is_counted_and_every_seed_stays_in_bound() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/wire_decode");
    let mut counted_a_delta = false;
    for entry in fs::read_dir(&dir).expect("wire corpus") {
        let bytes = fs::read(entry.expect("entry").path()).expect("seed");
        let mut decoded = None;
        let allocated = allocated_by(&mut || {
            decoded = Some(matches!(
                Message::decode(&bytes, MAX_MESSAGE_BYTES),
                Ok(Message::Delta(d)) if d.entry_count() > 0
            ));
        });
        if decoded == Some(true) {
            assert!(
                allocated > 0,
                "a delta with entries decoded without allocating"
            );
            counted_a_delta = true;
        }
        wire::run(&bytes, allocated_by);
    }
    assert!(counted_a_delta, "no wire seed is a delta with entries");
}
