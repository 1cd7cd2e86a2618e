//! `countermesh`: the agent (HTTP API, metrics, status page), client commands that talk
//! to an agent, certificate helpers, a load generator and the one-command demo.
#![forbid(unsafe_code)]

mod agent;
mod api;
mod bench;
mod certs;
mod client;
mod config;
mod demo;
mod exit;
mod resp;
mod zookeeper_security;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Counters for the edge: eventually consistent counters gossiped over QUIC, and
/// linearizable counters on ZooKeeper when a round trip is worth it.
#[derive(Debug, Parser)]
#[command(name = "countermesh", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a mesh node with its HTTP API, Prometheus metrics and status page.
    Agent(Box<config::AgentArgs>),
    /// Start a local mesh on loopback, drive adds, and watch totals converge.
    Demo(demo::DemoArgs),
    /// Add to an eventually consistent counter through an agent.
    Add(client::AddArgs),
    /// Read an eventually consistent counter through an agent.
    Get(client::GetArgs),
    /// List counters (optionally by prefix) through an agent.
    List(client::ListArgs),
    /// Show the agent's mesh members and their state.
    Members(client::MembersArgs),
    /// Linearizable counters on ZooKeeper, through an agent configured with one.
    #[command(subcommand)]
    Strict(client::StrictCommand),
    /// Create a cluster CA and node certificates for mutual TLS.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Drive load against an agent or an in-process mesh; print throughput and
    /// convergence.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return exit::report(anyhow::anyhow!("cannot start the runtime: {error}")),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Agent(args) => agent::run(*args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Add(args) => client::add(args).await,
            Command::Get(args) => client::get(args).await,
            Command::List(args) => client::list(args).await,
            Command::Members(args) => client::members(args).await,
            Command::Strict(command) => client::strict(command).await,
            Command::Certs(command) => certs::run(command),
            Command::Bench(args) => bench::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => exit::report(error),
    }
}
