//! Fuzz target: SWIM packets to a real node (see `countermesh_fuzz::swim`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| countermesh_fuzz::swim::run(data));
