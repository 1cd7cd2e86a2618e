//! Fuzz target: `Message::decode` under every channel budget (see `countermesh_fuzz::wire`).
#![no_main]

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

// Counts the bytes decoding allocates; libFuzzer's own allocations go through malloc,
// not through Rust's global allocator, so they are not counted.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn allocated_by(f: &mut dyn FnMut()) -> usize {
    let region = Region::new(GLOBAL);
    f();
    let change = region.change();
    change.bytes_allocated + usize::try_from(change.bytes_reallocated).unwrap_or(0)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| countermesh_fuzz::wire::run(data, allocated_by));
