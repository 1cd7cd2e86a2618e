//! countermesh-sim: a deterministic simulator that drives thousands of real
//! `countermesh_core::Node`s on a seeded virtual network.
//!
//! There is no model of the protocol here: every node is the real sans-io state machine,
//! fed through `handle_message` / `handle_timeout` and drained through `poll_transmit`,
//! exactly as the runtime drives it. The simulator supplies virtual time, a network that
//! loses, delays, duplicates, reorders and partitions messages, node lifecycles (join
//! waves, crashes, restarts with and without durable state, leaves, churn), a workload
//! of adds, and an independent oracle of every add. A run is a function of its
//! scenario and seed.
//!
//! ```no_run
//! use countermesh_sim::{RunOptions, Scenario, run};
//!
//! let scenario = Scenario::load("sim/scenarios/steady-100.toml".as_ref())?;
//! let report = run(&scenario, &RunOptions::default());
//! println!("{report}");
//! assert!(report.passed(), "rerun with --seed {}", report.seed);
//! # Ok::<(), countermesh_sim::ScenarioError>(())
//! ```
#![forbid(unsafe_code)]

mod engine;
pub mod inflight;
pub mod latency;
mod lifecycle;
pub mod metrics;
pub mod names;
pub mod network;
pub mod nodes;
mod observe;
pub mod oracle;
pub mod output;
pub mod plots;
pub mod probes;
mod progress;
pub mod report;
pub mod restart;
pub mod scenario;
pub mod standard;
pub mod timers;
pub mod usage;
mod workload;

pub use crate::engine::{RunOptions, node_config, run};
pub use crate::observe::Idle;
pub use crate::report::{Failure, Figures, Perf, Report};
pub use crate::scenario::{Scenario, ScenarioError};
