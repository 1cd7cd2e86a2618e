//! [`Scenario`]: a simulation described as data (TOML), validated into virtual-time units.
//!
//! Every field has a documented default so that a scenario file only says what differs.
//! Unknown fields are refused, so a typo is an error instead of a silently ignored
//! setting. Times are seconds (`*_s`) or milliseconds (`*_ms`) as floats in the file and
//! nanoseconds of virtual time (`u64`) after validation.

use std::path::Path;

use serde::Deserialize;

use crate::nodes::{NodeRange, NodeRangeError};

/// Longest virtual time a scenario may describe (about 11.6 days), so that every
/// nanosecond count fits comfortably in a `u64`.
pub const MAX_VIRTUAL_S: f64 = 1_000_000.0;

/// Most nodes one scenario may start, join waves and churn joins together. Node
/// addresses are drawn from 198.18.0.0/15 (RFC 2544's benchmarking range), which holds
/// 131,072 addresses.
pub const MAX_NODES: usize = 131_000;

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not valid TOML for a scenario (unknown field, wrong type, ...).
    #[error("scenario is not valid: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value is out of range or inconsistent with another.
    #[error("scenario field `{field}`: {reason}")]
    Invalid {
        /// Which field (dotted path).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A node range does not parse or lies outside the scenario's nodes.
    #[error("scenario field `{field}`: {source}")]
    Range {
        /// Which field.
        field: String,
        /// What is wrong with it.
        source: NodeRangeError,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A scenario as written in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Name used for the output directory; default: the file stem.
    pub name: Option<String>,
    /// One line saying what the scenario shows.
    #[serde(default)]
    pub description: String,
    /// Seed used when none is given on the command line. Default 1.
    #[serde(default = "one")]
    pub seed: u64,
    /// Run length and measurement windows.
    #[serde(default)]
    pub run: RunFile,
    /// Protocol settings for every node.
    #[serde(default)]
    pub protocol: ProtocolFile,
    /// The network model.
    #[serde(default)]
    pub network: NetworkFile,
    /// Join waves; at least one.
    #[serde(default)]
    pub join: Vec<JoinFile>,
    /// The add workload.
    #[serde(default)]
    pub workload: WorkloadFile,
    /// Probe adds that measure propagation.
    #[serde(default)]
    pub probes: ProbesFile,
    /// Network partitions.
    #[serde(default)]
    pub partition: Vec<PartitionFile>,
    /// Directed (asymmetric) link faults.
    #[serde(default)]
    pub link: Vec<LinkFile>,
    /// Slow nodes.
    #[serde(default)]
    pub slow: Vec<SlowFile>,
    /// Crashes (with an optional restart).
    #[serde(default)]
    pub crash: Vec<CrashFile>,
    /// Graceful leaves.
    #[serde(default)]
    pub leave: Vec<LeaveFile>,
    /// Rolling restarts.
    #[serde(default)]
    pub rolling_restart: Vec<RollingFile>,
    /// Churn at a rate: one `[churn]` table, or several `[[churn]]` tables that run side
    /// by side (for example leave/join and crash/restart churn in one run).
    #[serde(default, deserialize_with = "one_or_many")]
    pub churn: Vec<ChurnFile>,
    /// Deliberate violations, to show that the checks catch them (tests use these).
    #[serde(default)]
    pub sabotage: Vec<SabotageFile>,
}

fn one() -> u64 {
    1
}

/// Accepts a single table (`[churn]`, the original form) or an array of tables
/// (`[[churn]]`), so older scenario files keep working.
fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// `[run]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunFile {
    /// Virtual seconds of the scheduled timeline. Default 60.
    pub duration_s: f64,
    /// After `duration_s`, at most this much more virtual time for convergence and the
    /// idle window. Default 120.
    pub settle_max_s: f64,
    /// Length of the idle-bandwidth window. Default 10.
    pub idle_window_s: f64,
    /// Time-series sampling period. Default 1.
    pub sample_interval_s: f64,
    /// Wall-clock budget in seconds; 0 means none. The command line overrides it.
    pub wall_budget_s: f64,
}

impl Default for RunFile {
    fn default() -> Self {
        Self {
            duration_s: 60.0,
            settle_max_s: 120.0,
            idle_window_s: 10.0,
            sample_interval_s: 1.0,
            wall_budget_s: 0.0,
        }
    }
}

/// `[protocol]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolFile {
    /// `Config::gossip_interval`. Default 100 ms.
    pub gossip_interval_ms: f64,
    /// `Config::fanout`. Default 3.
    pub fanout: usize,
    /// Cluster size given to `Config::for_cluster_size`; 0 = the scenario's node count.
    pub cluster_size_hint: u32,
    /// Whether nodes keep a (modelled) data directory: they commit on a timer, and a
    /// durable restart comes back under a new actor that restores the old actor's
    /// committed entries. Default false (in-memory nodes).
    pub data_dir: Option<bool>,
    /// Deprecated spelling of `data_dir`: `"required"` means `data_dir = true`, `"none"`
    /// means false. It dates from a core that gated gossip on persistence, which it no
    /// longer does, so the name promised something the nodes do not do; it is still
    /// accepted so that older scenario files load, with a note on stderr.
    pub persistence: Option<PersistenceFile>,
    /// `Config::prune`: `prune = false` turns pruning off, `prune = true` (or leaving it
    /// out) keeps the core's defaults, and a `[protocol.prune]` table overrides some of
    /// them.
    pub prune: PruneFile,
    /// How often a node with a data directory commits (the runtime's group committer).
    /// Default 50 ms, as in the runtime.
    pub commit_interval_ms: f64,
    /// `Config::max_datagram_bytes`; default the core's.
    pub max_datagram_bytes: Option<usize>,
    /// `Config::max_message_bytes`; default the core's.
    pub max_message_bytes: Option<usize>,
    /// How many of the first nodes every node joins through. Default 3.
    pub seeds: usize,
}

impl Default for ProtocolFile {
    fn default() -> Self {
        Self {
            gossip_interval_ms: 100.0,
            fanout: 3,
            cluster_size_hint: 0,
            data_dir: None,
            persistence: None,
            prune: PruneFile::default(),
            commit_interval_ms: 50.0,
            max_datagram_bytes: None,
            max_message_bytes: None,
            seeds: 3,
        }
    }
}

/// The deprecated `protocol.persistence` values (use `protocol.data_dir`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PersistenceFile {
    /// In-memory nodes: `data_dir = false`.
    #[default]
    None,
    /// Nodes with a data directory: `data_dir = true`.
    Required,
}

/// `protocol.prune`: on or off, or a table of settings.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PruneFile {
    /// `prune = true` (the core's defaults) or `prune = false` (`Config::prune = None`).
    Switch(bool),
    /// `[protocol.prune]`: settings that differ from the core's defaults.
    Settings(PruneSettingsFile),
}

impl Default for PruneFile {
    fn default() -> Self {
        Self::Switch(true)
    }
}

/// `[protocol.prune]`: `PruneConfig` in seconds; a missing field keeps the core's default.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PruneSettingsFile {
    /// `PruneConfig::after_down` (core default 3600 s).
    pub after_down_s: Option<f64>,
    /// `PruneConfig::after_replaced` (core default 60 s).
    pub after_replaced_s: Option<f64>,
    /// `PruneConfig::interval` (core default 5 s).
    pub interval_s: Option<f64>,
    /// `PruneConfig::intent_timeout` (core default 30 s).
    pub intent_timeout_s: Option<f64>,
}

/// `[network]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkFile {
    /// One-way latency distribution.
    pub latency: LatencyFile,
    /// Probability that a message is lost. Default 0.
    pub loss: f64,
    /// Loss for stream messages (sync, delta) if different from `loss`.
    pub stream_loss: Option<f64>,
    /// Probability that a message is delivered twice. Default 0.
    pub duplicate: f64,
    /// Probability that a message is held back by up to `reorder_delay_ms` extra.
    pub reorder: f64,
    /// Largest extra delay of a reordered message. Default 50 ms.
    pub reorder_delay_ms: f64,
}

impl Default for NetworkFile {
    fn default() -> Self {
        Self {
            latency: LatencyFile::Uniform {
                min_ms: 1.0,
                max_ms: 30.0,
            },
            loss: 0.0,
            stream_loss: None,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay_ms: 50.0,
        }
    }
}

/// A latency distribution.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(tag = "dist", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LatencyFile {
    /// Always the same.
    Fixed {
        /// The delay.
        ms: f64,
    },
    /// Uniform between two bounds.
    Uniform {
        /// Smallest delay.
        min_ms: f64,
        /// Largest delay.
        max_ms: f64,
    },
    /// Log-normal with the given median and shape, cut at `max_ms` (a long tail).
    LogNormal {
        /// The median delay.
        median_ms: f64,
        /// Standard deviation of the underlying normal.
        sigma: f64,
        /// Delays above this are cut to it.
        max_ms: f64,
    },
}

/// `[[join]]`: a wave of nodes that start and join.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinFile {
    /// When the wave starts. Default 0.
    #[serde(default)]
    pub at_s: f64,
    /// How many nodes.
    pub count: usize,
    /// The wave's starts are spread evenly over this long. Default 0 (simultaneous).
    #[serde(default)]
    pub spread_s: f64,
}

/// `[workload]`: adds at a steady rate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadFile {
    /// Number of workload counters (`c0`, `c1`, ...). Default 4.
    pub counters: usize,
    /// Fraction of nodes that add (the first ones by index). Default 1.
    pub writers: f64,
    /// Adds per writer per second. Default 1.
    pub adds_per_writer_per_s: f64,
    /// Each add is a uniform integer in `1..=amount_max`. Default 10.
    pub amount_max: u32,
    /// When adds start. Default 5.
    pub start_s: f64,
    /// When adds stop; default 2/3 of the duration.
    pub stop_s: Option<f64>,
    /// Adds are issued in batches this often. Default 10 ms.
    pub tick_ms: f64,
}

impl Default for WorkloadFile {
    fn default() -> Self {
        Self {
            counters: 4,
            writers: 1.0,
            adds_per_writer_per_s: 1.0,
            amount_max: 10,
            start_s: 5.0,
            stop_s: None,
            tick_ms: 10.0,
        }
    }
}

/// `[probes]`: single adds of 1 to fresh counters at random nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbesFile {
    /// One probe this often; 0 disables probes. Default 0.5.
    pub every_s: f64,
    /// First probe. Default: the workload's start.
    pub start_s: Option<f64>,
    /// No probe at or after this; default the workload's stop.
    pub stop_s: Option<f64>,
    /// A probe not seen by every target within this long has timed out. Default 60.
    pub timeout_s: f64,
}

impl Default for ProbesFile {
    fn default() -> Self {
        Self {
            every_s: 0.5,
            start_s: None,
            stop_s: None,
            timeout_s: 60.0,
        }
    }
}

/// `[[partition]]`: groups of nodes that only reach their own group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionFile {
    /// When the partition starts.
    pub at_s: f64,
    /// When it heals; default never.
    pub heal_at_s: Option<f64>,
    /// Node ranges, one per group; nodes in none of them form one more group.
    pub groups: Vec<String>,
}

/// `[[link]]`: a one-way fault from one set of nodes to another.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkFile {
    /// Senders.
    pub from: String,
    /// Receivers.
    pub to: String,
    /// Loss on this direction (replaces the network's). Default: the network's.
    pub loss: Option<f64>,
    /// Extra one-way latency on this direction. Default 0.
    #[serde(default)]
    pub extra_latency_ms: f64,
    /// From when. Default 0.
    #[serde(default)]
    pub at_s: f64,
    /// Until when; default forever.
    pub until_s: Option<f64>,
}

/// `[[slow]]`: nodes whose messages and timers are late.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowFile {
    /// Which nodes.
    pub nodes: String,
    /// Extra latency on every message to or from them.
    #[serde(default)]
    pub extra_latency_ms: f64,
    /// How late their timers fire.
    #[serde(default)]
    pub timer_lag_ms: f64,
    /// From when. Default 0.
    #[serde(default)]
    pub at_s: f64,
    /// Until when; default forever.
    pub until_s: Option<f64>,
}

/// `[[crash]]`: nodes stop without a goodbye.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashFile {
    /// When.
    pub at_s: f64,
    /// Which nodes (a range), or
    pub nodes: Option<String>,
    /// how many random running nodes.
    pub count: Option<usize>,
    /// Restart this long after the crash; default never.
    pub restart_after_s: Option<f64>,
    /// Whether the restart keeps the data directory. Default `protocol.data_dir`.
    pub durable: Option<bool>,
}

/// `[[leave]]`: nodes leave gracefully.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaveFile {
    /// When.
    pub at_s: f64,
    /// Which nodes (a range), or
    pub nodes: Option<String>,
    /// how many random running nodes.
    pub count: Option<usize>,
}

/// `[[rolling_restart]]`: nodes restart one after the other.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollingFile {
    /// When the first node goes down.
    pub at_s: f64,
    /// Which nodes, in index order. Default all initial nodes.
    pub nodes: Option<String>,
    /// Time between two nodes going down.
    pub every_s: f64,
    /// How long each node stays down.
    pub downtime_s: f64,
    /// Whether restarts keep the data directory (default: as for crashes).
    pub durable: Option<bool>,
}

/// `[churn]`: random nodes go and come at a steady rate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChurnFile {
    /// Churn events per second across the cluster.
    pub rate_per_s: f64,
    /// From when.
    pub start_s: f64,
    /// Until when.
    pub stop_s: f64,
    /// What one churn event does.
    pub mode: ChurnMode,
    /// How long a restarted node stays down. Default 5.
    #[serde(default = "five")]
    pub downtime_s: f64,
    /// Whether restarts keep the data directory (default: as for crashes).
    pub durable: Option<bool>,
}

fn five() -> f64 {
    5.0
}

/// What one churn event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChurnMode {
    /// A random running node crashes and restarts after `downtime_s`.
    CrashRestart,
    /// A random running node leaves gracefully and a brand-new node joins.
    LeaveJoin,
    /// A random running node crashes for good and a brand-new node joins.
    CrashJoin,
}

/// `[[sabotage]]`: a deliberate violation that a check must catch.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SabotageFile {
    /// An add made at a node without telling the oracle: convergence must fail.
    UnrecordedAdd {
        /// When.
        at_s: f64,
        /// Where.
        node: usize,
    },
    /// Node `node` crashes and restarts with an empty store but its old actor id (the
    /// documented hazard of reusing an actor after data loss): its new adds hide
    /// behind the maximum peers hold, so convergence must fail.
    WipeReusingActor {
        /// When.
        at_s: f64,
        /// Which node.
        node: usize,
    },
    /// The budget check uses this many bytes for stream messages instead of the
    /// node's own budget, so ordinary messages count as violations.
    StreamBudget {
        /// The (too small) budget the check enforces.
        bytes: usize,
    },
}

/// A validated scenario in virtual-time units (nanoseconds).
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The scenario's name.
    pub name: String,
    /// The file as written (for fields used as they are).
    pub file: ScenarioFile,
    /// Nodes started by join waves.
    pub initial_nodes: usize,
    /// `run.duration_s` in ns.
    pub duration: u64,
    /// `run.settle_max_s` in ns.
    pub settle_max: u64,
    /// `run.idle_window_s` in ns.
    pub idle_window: u64,
    /// `run.sample_interval_s` in ns.
    pub sample_interval: u64,
    /// Workload start, ns.
    pub adds_start: u64,
    /// Workload stop (and the end of probes by default), ns.
    pub adds_stop: u64,
    /// Time of the last scheduled lifecycle change (join, crash, restart, leave, churn).
    pub last_lifecycle: u64,
    /// Whether nodes keep a data directory (`protocol.data_dir`, or the deprecated
    /// `protocol.persistence`).
    pub data_dir: bool,
    /// `Config::prune` as the scenario sets it.
    pub prune: Option<countermesh_core::PruneConfig>,
    /// Notes about deprecated settings the file uses (printed by the binary).
    pub deprecations: Vec<String>,
}

/// Seconds (as written in a scenario) to nanoseconds, refusing negative, non-finite and
/// absurdly large values.
pub fn secs(field: &str, s: f64) -> Result<u64, ScenarioError> {
    if !s.is_finite() || !(0.0..=MAX_VIRTUAL_S).contains(&s) {
        return Err(invalid(
            field,
            format!("{s} s is not a time between 0 and {MAX_VIRTUAL_S} s"),
        ));
    }
    Ok((s * 1e9).round() as u64)
}

/// `protocol.prune` as the core's `Config::prune`.
fn prune_config(file: &PruneFile) -> Result<Option<countermesh_core::PruneConfig>, ScenarioError> {
    let settings = match *file {
        PruneFile::Switch(false) => return Ok(None),
        PruneFile::Switch(true) => PruneSettingsFile::default(),
        PruneFile::Settings(settings) => settings,
    };
    let mut config = countermesh_core::PruneConfig::default();
    let fields = [
        (
            "after_down_s",
            settings.after_down_s,
            &mut config.after_down,
        ),
        (
            "after_replaced_s",
            settings.after_replaced_s,
            &mut config.after_replaced,
        ),
        ("interval_s", settings.interval_s, &mut config.interval),
        (
            "intent_timeout_s",
            settings.intent_timeout_s,
            &mut config.intent_timeout,
        ),
    ];
    for (name, value, target) in fields {
        let Some(value) = value else { continue };
        let field = format!("protocol.prune.{name}");
        let ns = secs(&field, value)?;
        // A zero pruning interval or intent timeout would make the pruner spin on its
        // own timer, so both need a floor; zero delays are legitimate (prune at once).
        if (name == "interval_s" || name == "intent_timeout_s") && ns < 1_000_000 {
            return Err(invalid(field, "must be at least 1 ms"));
        }
        *target = std::time::Duration::from_nanos(ns);
    }
    Ok(Some(config))
}

/// Milliseconds to nanoseconds, with the same rules as [`secs`].
pub fn millis(field: &str, ms: f64) -> Result<u64, ScenarioError> {
    secs(field, ms / 1000.0)
}

fn probability(field: &str, p: f64) -> Result<f64, ScenarioError> {
    if !(0.0..=1.0).contains(&p) {
        return Err(invalid(
            field,
            format!("{p} is not a probability in [0, 1]"),
        ));
    }
    Ok(p)
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let stem = path.file_stem().map_or_else(
            || "scenario".to_owned(),
            |s| s.to_string_lossy().into_owned(),
        );
        Self::parse(&text, &stem)
    }

    /// Parses and validates scenario text; `default_name` names it if the text does not.
    pub fn parse(text: &str, default_name: &str) -> Result<Self, ScenarioError> {
        let file: ScenarioFile = toml::from_str(text)?;
        Self::validate(file, default_name)
    }

    /// Validates a parsed scenario.
    pub fn validate(file: ScenarioFile, default_name: &str) -> Result<Self, ScenarioError> {
        let name = file.name.clone().unwrap_or_else(|| default_name.to_owned());
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(invalid(
                "name",
                "use letters, digits, '-', '_' and '.' only (it names a directory)",
            ));
        }
        if file.join.is_empty() {
            return Err(invalid("join", "at least one [[join]] wave is needed"));
        }
        let initial_nodes: usize = file.join.iter().map(|j| j.count).sum();
        if initial_nodes == 0 || initial_nodes > MAX_NODES {
            return Err(invalid(
                "join",
                format!("{initial_nodes} nodes; between 1 and {MAX_NODES} are supported"),
            ));
        }
        let duration = secs("run.duration_s", file.run.duration_s)?;
        if duration == 0 {
            return Err(invalid("run.duration_s", "must be positive"));
        }
        let sample_interval = secs("run.sample_interval_s", file.run.sample_interval_s)?;
        if sample_interval < 1_000_000 {
            return Err(invalid("run.sample_interval_s", "must be at least 1 ms"));
        }
        secs("run.wall_budget_s", file.run.wall_budget_s)?;
        let adds_start = secs("workload.start_s", file.workload.start_s)?;
        let adds_stop = match file.workload.stop_s {
            Some(s) => secs("workload.stop_s", s)?,
            None => duration / 3 * 2,
        };
        if adds_stop > duration {
            return Err(invalid(
                "workload.stop_s",
                "must not be after run.duration_s",
            ));
        }
        let mut scenario = Scenario {
            name,
            initial_nodes,
            duration,
            settle_max: secs("run.settle_max_s", file.run.settle_max_s)?,
            idle_window: secs("run.idle_window_s", file.run.idle_window_s)?,
            sample_interval,
            adds_start,
            adds_stop,
            last_lifecycle: 0,
            data_dir: false,
            prune: None,
            deprecations: Vec::new(),
            file,
        };
        scenario.resolve_data_dir()?;
        scenario.prune = prune_config(&scenario.file.protocol.prune)?;
        scenario.validate_protocol()?;
        scenario.validate_network()?;
        scenario.validate_workload()?;
        scenario.last_lifecycle = scenario.validate_lifecycle()?;
        scenario.validate_sabotage()?;
        Ok(scenario)
    }

    /// Reads `protocol.data_dir` and its deprecated spelling `protocol.persistence`.
    fn resolve_data_dir(&mut self) -> Result<(), ScenarioError> {
        let p = &self.file.protocol;
        let old = p.persistence.map(|old| old == PersistenceFile::Required);
        self.data_dir = match (p.data_dir, old) {
            (Some(new), Some(old)) if new != old => {
                return Err(invalid(
                    "protocol.persistence",
                    "contradicts protocol.data_dir (persistence is its deprecated spelling; keep data_dir only)",
                ));
            }
            (Some(new), _) => new,
            (None, Some(old)) => old,
            (None, None) => false,
        };
        if let Some(old) = p.persistence {
            let value = if old == PersistenceFile::Required {
                "\"required\""
            } else {
                "\"none\""
            };
            self.deprecations.push(format!(
                "protocol.persistence = {value} is deprecated: write protocol.data_dir = {} (nodes never wait for their disk to gossip; a data directory only changes what a restart restores)",
                self.data_dir
            ));
        }
        Ok(())
    }

    fn validate_protocol(&self) -> Result<(), ScenarioError> {
        let p = &self.file.protocol;
        if millis("protocol.gossip_interval_ms", p.gossip_interval_ms)? < 1_000_000 {
            return Err(invalid(
                "protocol.gossip_interval_ms",
                "must be at least 1 ms",
            ));
        }
        if millis("protocol.commit_interval_ms", p.commit_interval_ms)? < 1_000_000 {
            return Err(invalid(
                "protocol.commit_interval_ms",
                "must be at least 1 ms",
            ));
        }
        if p.fanout == 0 {
            return Err(invalid("protocol.fanout", "must be at least 1"));
        }
        if p.seeds == 0 {
            return Err(invalid("protocol.seeds", "must be at least 1"));
        }
        // The core validates the rest of the config when the first node is built; do it
        // here so a bad value is a scenario error, not a failure in the middle of a run.
        let config = crate::engine::node_config(self);
        countermesh_core::Node::new(
            config,
            countermesh_core::NodeId::new(
                crate::nodes::address(0),
                countermesh_core::ActorId::from_u64(1),
                1,
            ),
            countermesh_core::Store::new(countermesh_core::ActorId::from_u64(1), 0),
            0,
            std::time::Instant::now(),
        )
        .map_err(|e| invalid("protocol", e.to_string()))?;
        Ok(())
    }

    fn validate_network(&self) -> Result<(), ScenarioError> {
        let n = &self.file.network;
        probability("network.loss", n.loss)?;
        if let Some(loss) = n.stream_loss {
            probability("network.stream_loss", loss)?;
        }
        probability("network.duplicate", n.duplicate)?;
        probability("network.reorder", n.reorder)?;
        millis("network.reorder_delay_ms", n.reorder_delay_ms)?;
        match n.latency {
            LatencyFile::Fixed { ms } => {
                millis("network.latency.ms", ms)?;
            }
            LatencyFile::Uniform { min_ms, max_ms } => {
                millis("network.latency.min_ms", min_ms)?;
                millis("network.latency.max_ms", max_ms)?;
                if max_ms < min_ms {
                    return Err(invalid("network.latency", "max_ms is below min_ms"));
                }
            }
            LatencyFile::LogNormal {
                median_ms,
                sigma,
                max_ms,
            } => {
                millis("network.latency.median_ms", median_ms)?;
                millis("network.latency.max_ms", max_ms)?;
                if !(0.0..=10.0).contains(&sigma) {
                    return Err(invalid("network.latency.sigma", "must be in [0, 10]"));
                }
            }
        }
        for (i, link) in self.file.link.iter().enumerate() {
            let field = format!("link[{i}]");
            self.range(&format!("{field}.from"), &link.from)?;
            self.range(&format!("{field}.to"), &link.to)?;
            if let Some(loss) = link.loss {
                probability(&format!("{field}.loss"), loss)?;
            }
            millis(&format!("{field}.extra_latency_ms"), link.extra_latency_ms)?;
            self.window(&field, link.at_s, link.until_s)?;
        }
        for (i, slow) in self.file.slow.iter().enumerate() {
            let field = format!("slow[{i}]");
            self.range(&format!("{field}.nodes"), &slow.nodes)?;
            millis(&format!("{field}.extra_latency_ms"), slow.extra_latency_ms)?;
            millis(&format!("{field}.timer_lag_ms"), slow.timer_lag_ms)?;
            self.window(&field, slow.at_s, slow.until_s)?;
        }
        for (i, partition) in self.file.partition.iter().enumerate() {
            let field = format!("partition[{i}]");
            if partition.groups.is_empty() {
                return Err(invalid(field, "needs at least one group"));
            }
            for group in &partition.groups {
                self.range(&format!("{field}.groups"), group)?;
            }
            self.window(&field, partition.at_s, partition.heal_at_s)?;
        }
        Ok(())
    }

    fn validate_workload(&self) -> Result<(), ScenarioError> {
        let w = &self.file.workload;
        probability("workload.writers", w.writers)?;
        if !(0.0..=1e6).contains(&w.adds_per_writer_per_s) {
            return Err(invalid(
                "workload.adds_per_writer_per_s",
                "must be in [0, 1e6]",
            ));
        }
        if w.amount_max == 0 {
            return Err(invalid("workload.amount_max", "must be at least 1"));
        }
        if !(1..=10_000).contains(&w.counters) {
            return Err(invalid("workload.counters", "must be between 1 and 10,000"));
        }
        if millis("workload.tick_ms", w.tick_ms)? < 100_000 {
            return Err(invalid("workload.tick_ms", "must be at least 0.1 ms"));
        }
        let p = &self.file.probes;
        secs("probes.every_s", p.every_s)?;
        if p.every_s > 0.0 && p.every_s < 0.001 {
            return Err(invalid("probes.every_s", "must be 0 or at least 1 ms"));
        }
        if let Some(s) = p.start_s {
            secs("probes.start_s", s)?;
        }
        if let Some(s) = p.stop_s
            && secs("probes.stop_s", s)? > self.duration
        {
            return Err(invalid("probes.stop_s", "must not be after run.duration_s"));
        }
        secs("probes.timeout_s", p.timeout_s)?;
        Ok(())
    }

    /// Validates the lifecycle tables; returns the time of the last change they make.
    fn validate_lifecycle(&self) -> Result<u64, ScenarioError> {
        let f = &self.file;
        let mut last = 0u64;
        for (i, j) in f.join.iter().enumerate() {
            let at = secs(&format!("join[{i}].at_s"), j.at_s)?;
            last = last.max(at + secs(&format!("join[{i}].spread_s"), j.spread_s)?);
        }
        let durable_default = self.data_dir;
        let check_durable = |field: &str, durable: Option<bool>| {
            if durable.unwrap_or(durable_default) && !durable_default {
                return Err(invalid(
                    field,
                    "a durable restart needs protocol.data_dir = true",
                ));
            }
            Ok(())
        };
        for (i, c) in f.crash.iter().enumerate() {
            let field = format!("crash[{i}]");
            let at = secs(&format!("{field}.at_s"), c.at_s)?;
            self.selection(&field, c.nodes.as_deref(), c.count)?;
            check_durable(&format!("{field}.durable"), c.durable)?;
            let restart = match c.restart_after_s {
                Some(s) => secs(&format!("{field}.restart_after_s"), s)?,
                None => 0,
            };
            last = last.max(at + restart);
        }
        for (i, l) in f.leave.iter().enumerate() {
            let field = format!("leave[{i}]");
            last = last.max(secs(&format!("{field}.at_s"), l.at_s)?);
            self.selection(&field, l.nodes.as_deref(), l.count)?;
        }
        for (i, r) in f.rolling_restart.iter().enumerate() {
            let field = format!("rolling_restart[{i}]");
            let at = secs(&format!("{field}.at_s"), r.at_s)?;
            let every = secs(&format!("{field}.every_s"), r.every_s)?;
            let down = secs(&format!("{field}.downtime_s"), r.downtime_s)?;
            let count = match &r.nodes {
                Some(range) => self.range(&format!("{field}.nodes"), range)?.len(),
                None => self.initial_nodes,
            };
            check_durable(&format!("{field}.durable"), r.durable)?;
            last = last.max(at + every * count.saturating_sub(1) as u64 + down);
        }
        let mut started = self.initial_nodes;
        for (i, c) in f.churn.iter().enumerate() {
            let field = if f.churn.len() == 1 {
                "churn".to_owned()
            } else {
                format!("churn[{i}]")
            };
            let start = secs(&format!("{field}.start_s"), c.start_s)?;
            let stop = secs(&format!("{field}.stop_s"), c.stop_s)?;
            if stop < start {
                return Err(invalid(format!("{field}.stop_s"), "is before start_s"));
            }
            if !(0.0..=1e4).contains(&c.rate_per_s) {
                return Err(invalid(
                    format!("{field}.rate_per_s"),
                    "must be in [0, 10,000]",
                ));
            }
            let down = secs(&format!("{field}.downtime_s"), c.downtime_s)?;
            check_durable(&format!("{field}.durable"), c.durable)?;
            if c.mode != ChurnMode::CrashRestart {
                started += (c.rate_per_s * (c.stop_s - c.start_s)).ceil() as usize + 1;
                if started > MAX_NODES {
                    return Err(invalid(field, "would start more than MAX_NODES nodes"));
                }
            }
            last = last.max(stop + down);
        }
        if last > self.duration {
            return Err(invalid(
                "run.duration_s",
                "every join, crash, restart and leave must happen within the duration",
            ));
        }
        Ok(last)
    }

    fn validate_sabotage(&self) -> Result<(), ScenarioError> {
        for (i, s) in self.file.sabotage.iter().enumerate() {
            let field = format!("sabotage[{i}]");
            match *s {
                SabotageFile::UnrecordedAdd { at_s, node }
                | SabotageFile::WipeReusingActor { at_s, node } => {
                    if secs(&format!("{field}.at_s"), at_s)? > self.duration {
                        return Err(invalid(field, "at_s is after the duration"));
                    }
                    if node >= self.initial_nodes {
                        return Err(invalid(field, "node is not one of the initial nodes"));
                    }
                }
                SabotageFile::StreamBudget { .. } => {}
            }
        }
        Ok(())
    }

    fn window(&self, field: &str, at_s: f64, until_s: Option<f64>) -> Result<(), ScenarioError> {
        let at = secs(&format!("{field}.at_s"), at_s)?;
        if let Some(until) = until_s
            && secs(&format!("{field}.until_s"), until)? < at
        {
            return Err(invalid(field, "ends before it starts"));
        }
        Ok(())
    }

    fn selection(
        &self,
        field: &str,
        nodes: Option<&str>,
        count: Option<usize>,
    ) -> Result<(), ScenarioError> {
        match (nodes, count) {
            (Some(range), None) => self.range(&format!("{field}.nodes"), range).map(|_| ()),
            (None, Some(count)) if count <= self.initial_nodes => Ok(()),
            (None, Some(_)) => Err(invalid(field, "count is larger than the node count")),
            _ => Err(invalid(field, "give exactly one of `nodes` and `count`")),
        }
    }

    /// Parses a node range of this scenario's initial nodes.
    pub fn range(&self, field: &str, text: &str) -> Result<NodeRange, ScenarioError> {
        NodeRange::parse(text, self.initial_nodes).map_err(|source| ScenarioError::Range {
            field: field.to_owned(),
            source,
        })
    }

    /// Whether restarts keep the data directory unless a table says otherwise.
    pub fn durable_default(&self) -> bool {
        self.data_dir
    }

    /// The gossip interval in ns.
    pub fn gossip_interval(&self) -> u64 {
        (self.file.protocol.gossip_interval_ms * 1e6).round() as u64
    }
}
