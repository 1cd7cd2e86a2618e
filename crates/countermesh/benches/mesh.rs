//! Mesh benchmarks (written below).
fn main() {}
