//! End-to-end tests of `countermesh agent`: the built binary runs as child processes on
//! loopback and every assertion goes through real HTTP (and, for strict routes, a real
//! ZooKeeper from the strict crate's harness). One test binary, a module per concern.
// Tests say what they skip or saw on stdout, which the runner shows on failure.
#![allow(clippy::print_stdout)]

mod certs;
mod config;
mod durable;
mod errors;
mod eventual;
mod eventual_keys;
mod limits;
mod metrics;
mod packaging;
mod resp;
mod security;
mod status_page;
mod strict;
mod strict_keys;
mod support;
