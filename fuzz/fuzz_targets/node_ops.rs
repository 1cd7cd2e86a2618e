//! Fuzz target: a stateful sequence of operations on a node (see
//! `countermesh_fuzz::node_ops`).
#![no_main]

libfuzzer_sys::fuzz_target!(|scenario: countermesh_fuzz::node_ops::Scenario| {
    countermesh_fuzz::node_ops::run(&scenario);
});
