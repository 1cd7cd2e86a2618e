//! The integration-test binary: one process, many modules, shared helpers.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cluster;
mod decode;
mod delivery;
mod exchange;
mod hardening;
mod merge_laws;
mod prune_rules;
mod pruning;
mod store_rules;
mod support;
