//! Real meshes over QUIC on 127.0.0.1 (ports from the OS): convergence, restarts from
//! the data directory, late joiners, partitions and loss through the fault-injecting
//! socket, mutual-TLS enforcement, and garbage from an authenticated peer.
//!
//! Randomized tests print their seed; rerun one with `COUNTERMESH_SEED=<seed>`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bad_input;
mod convergence;
mod hardening;
mod partition;
mod pruning;
mod restart;
mod security;
mod support;
