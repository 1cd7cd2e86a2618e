//! Shared code of the countermesh fuzz targets: the bodies of the targets (so tests and
//! seed replays run exactly what libFuzzer runs), the construction of protocol inputs,
//! and the invariant checks.
#![forbid(unsafe_code)]

pub mod check;
pub mod honest;
pub mod node_ops;
pub mod protocol;
pub mod swim;
pub mod wire;
