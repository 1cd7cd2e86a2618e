//! Strict-mode tests against real ZooKeeper servers spawned by the harness: one test
//! binary (one link) with a module per concern.
// The tests report what they saw (seeds, fault counts, ambiguous writes) on stdout,
// which the test runner shows for failures and with --nocapture.
#![allow(clippy::print_stdout)]

mod ambiguity;
mod basic;
mod checker;
mod concurrency;
mod errors;
mod expiry;
mod faults;
mod op_ids;
mod security;
mod support;
mod sweep;
mod wrap;
