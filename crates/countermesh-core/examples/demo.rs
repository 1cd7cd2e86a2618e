//! A local demo mesh: eight protocol nodes on the deterministic in-memory network.
//!
//! Every node adds to shared counters while the network loses, duplicates and reorders
//! messages; the cluster is partitioned and healed, one node crashes and a new one
//! joins late. The demo prints each node's view as it converges and ends with a
//! summary. Time is virtual, so the run takes about a second of wall time and is the
//! same on every machine for the same seed.
//!
//! Run it with `./scripts/demo` (or `cargo run --release -p countermesh-core --features
//! testkit --example demo -- [--seed N] [--nodes N]`).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use countermesh_core::testkit::{Cluster, Faults};
use countermesh_core::{Config, MessageKind};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

const COUNTERS: [&str; 3] = ["page_views", "api_calls", "quota_used"];

struct Args {
    seed: u64,
    nodes: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seed: 2026,
        nodes: 8,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))?
                .parse::<u64>()
                .map_err(|e| format!("{name}: {e}"))
        };
        match flag.as_str() {
            "--seed" => args.seed = value("--seed")?,
            "--nodes" => args.nodes = value("--nodes")? as usize,
            "-h" | "--help" => {
                println!("usage: demo [--seed N] [--nodes N (2..=200, default 8)]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if !(2..=200).contains(&args.nodes) {
        return Err(format!(
            "--nodes must be between 2 and 200, got {}",
            args.nodes
        ));
    }
    Ok(args)
}

struct Demo {
    cluster: Cluster,
    rng: SmallRng,
    expected: HashMap<String, i128>,
    adds: u64,
}

impl Demo {
    fn random_adds(&mut self, count: usize) {
        let alive = self.cluster.alive();
        for _ in 0..count {
            let node = alive[self.rng.random_range(0..alive.len())];
            let name = COUNTERS[self.rng.random_range(0..COUNTERS.len())];
            let delta = self.rng.random_range(-3i64..=10);
            self.cluster.add(node, name, delta);
            *self.expected.entry(name.to_owned()).or_default() += i128::from(delta);
            self.adds += 1;
        }
    }

    /// One line: virtual time, then each node's `page_views` (`*` marks the exact total).
    fn show(&self, label: &str) {
        let target = self.expected.get("page_views").copied().unwrap_or(0);
        let mut line = format!(
            "{:>7.1}s  {label:<24}",
            self.cluster.elapsed().as_secs_f64()
        );
        let mut exact = 0;
        let alive = self.cluster.alive();
        for i in 0..self.cluster.len() {
            if !alive.contains(&i) {
                line.push_str("     down ");
                continue;
            }
            let v = self.cluster.value(i, "page_views").unwrap_or(0);
            let mark = if v == target { '*' } else { ' ' };
            exact += usize::from(v == target);
            line.push_str(&format!("{v:>8}{mark} "));
        }
        println!("{line} | {exact}/{} exact (total {target})", alive.len());
    }

    fn run_showing(&mut self, label: &str, duration: Duration, adds_per_tick: usize) {
        let tick = Duration::from_millis(250);
        let mut left = duration;
        while !left.is_zero() {
            let step = tick.min(left);
            self.random_adds(adds_per_tick);
            self.cluster.run_for(step);
            left -= step;
            self.show(label);
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::from(2);
        }
    };
    let wall = Instant::now();
    let mut demo = Demo {
        cluster: Cluster::new(args.seed, Config::default()),
        rng: SmallRng::seed_from_u64(args.seed),
        expected: HashMap::new(),
        adds: 0,
    };
    println!(
        "countermesh demo: {} nodes, gossip every {:?}, seed {} (virtual time; rerun with --seed {} to replay)",
        args.nodes,
        Config::default().gossip_interval,
        args.seed,
        args.seed
    );
    println!("columns: each node's view of page_views; * = the exact total\n");
    demo.cluster.add_nodes(args.nodes);
    demo.cluster.run_for(Duration::from_secs(2));
    demo.show("joined");

    demo.cluster.set_faults(Faults::lossy(0.05, 0.05));
    demo.run_showing("adds, 5% loss+dup", Duration::from_secs(1), 400);

    let half: Vec<usize> = (0..args.nodes / 2).collect();
    demo.cluster.partition(&[&half]);
    demo.run_showing("partitioned", Duration::from_secs(1), 400);
    demo.cluster.heal();
    demo.run_showing("healed", Duration::from_millis(750), 0);

    let victim = args.nodes - 1;
    demo.random_adds(200);
    demo.cluster.run_for(Duration::from_secs(1));
    demo.cluster.crash(victim);
    demo.show(&format!("node {victim} crashed"));
    demo.cluster.add_node();
    demo.run_showing("late joiner", Duration::from_millis(750), 0);

    demo.random_adds(500);
    let last_add = demo.cluster.elapsed();
    let expected = demo.expected.clone();
    let took = demo
        .cluster
        .run_until(Duration::from_secs(60), |c| c.converged(&expected));
    demo.show("final");

    let totals = demo.cluster.wire_totals();
    let alive = demo.cluster.alive();
    let node_bytes = |kind: MessageKind| -> u64 {
        alive
            .iter()
            .map(|&i| demo.cluster.node(i).stats().sent(kind).1)
            .sum()
    };
    println!();
    println!("summary");
    println!(
        "  adds:              {} ({} counters)",
        demo.adds,
        COUNTERS.len()
    );
    for name in COUNTERS {
        println!(
            "  {name:<18} expected {:>8}, every node reads it: {}",
            demo.expected.get(name).copied().unwrap_or(0),
            alive
                .iter()
                .all(|&i| demo.cluster.value(i, name) == demo.expected.get(name).copied())
        );
    }
    match took {
        Some(took) => println!(
            "  converged:         {:.0} ms of virtual time after the last add (at {:.1}s)",
            took.as_secs_f64() * 1e3,
            last_add.as_secs_f64()
        ),
        None => println!("  converged:         NO (within 60 s of virtual time)"),
    }
    println!(
        "  wire:              {} messages, {} bytes ({} lost, {} duplicated)",
        totals.sent, totals.bytes, totals.dropped, totals.duplicated
    );
    println!(
        "  bytes by kind:     swim {}, sync {}, delta {} (running nodes)",
        node_bytes(MessageKind::Swim),
        node_bytes(MessageKind::Sync),
        node_bytes(MessageKind::Delta)
    );
    println!(
        "  virtual time:      {:.1}s in {:.0} ms of wall time",
        demo.cluster.elapsed().as_secs_f64(),
        wall.elapsed().as_secs_f64() * 1e3
    );
    if took.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
