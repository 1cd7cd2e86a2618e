//! [`Config`]: protocol tunables for a [`Node`](crate::Node), with documented defaults.

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use crate::{HEADER_LEN, MAX_MESSAGE_BYTES};

/// Protocol tunables. [`Config::default`] suits a LAN cluster of up to a few hundred
/// nodes; [`Config::for_cluster_size`] adapts SWIM's timings to larger ones.
#[derive(Debug, Clone)]
pub struct Config {
    /// How often a node flushes, pushes its fresh changes and runs one anti-entropy
    /// exchange. Default 100 ms.
    pub gossip_interval: Duration,
    /// How many random peers receive this node's fresh changes each round. Default 3.
    pub fanout: usize,
    /// Largest datagram the transport can carry, envelope included; SWIM packets are
    /// sized to fit. Default 1150 bytes: a fresh QUIC path carries datagrams of about
    /// 1160 bytes before path-MTU discovery raises the limit, so foca's default of 1400
    /// would not fit.
    pub max_datagram_bytes: usize,
    /// Largest counter message (sync request or delta), envelope included. Default
    /// 64 KiB; at least [`MIN_MESSAGE_BUDGET`], at most [`MAX_MESSAGE_BYTES`].
    pub max_message_bytes: usize,
    /// Most delta bytes sent in answer to one sync request; a peer that is further
    /// behind catches up over several rounds. Default 4 MiB.
    pub max_sync_reply_bytes: usize,
    /// Most delta bytes accepted from one peer per gossip interval (all non-members
    /// share one allowance); more is refused with
    /// [`HandleError::RateLimited`](crate::HandleError::RateLimited) and re-offered by
    /// a later exchange. Bounds what a faulty peer can make this node merge. Default
    /// 16 MiB, four full sync answers.
    pub max_delta_bytes_per_peer: usize,
    /// While a node has no live member, it re-announces itself to its seeds this often,
    /// so a lost join packet or a long partition does not leave it alone for good.
    /// Default 1 s.
    pub rejoin_interval: Duration,
    /// SWIM (foca) settings. `max_packet_size` is overwritten to fit
    /// `max_datagram_bytes` when the node starts.
    pub swim: foca::Config,
    /// When actors of departed nodes are folded into sinks and forgotten (see
    /// [`PruneConfig`](crate::PruneConfig)); `None` turns pruning off (this node then
    /// refuses every pruner's intent, so no actor is pruned anywhere). Default on.
    pub prune: Option<crate::PruneConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self::for_cluster_size(64)
    }
}

impl Config {
    /// Defaults with SWIM timings for about `nodes` members (memberlist's LAN profile).
    pub fn for_cluster_size(nodes: u32) -> Self {
        let nodes = NonZeroU32::new(nodes.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            gossip_interval: Duration::from_millis(100),
            fanout: 3,
            max_datagram_bytes: 1150,
            max_message_bytes: 64 * 1024,
            max_sync_reply_bytes: 4 * 1024 * 1024,
            max_delta_bytes_per_peer: 16 * 1024 * 1024,
            rejoin_interval: Duration::from_secs(1),
            swim: swim_config(nodes),
            prune: Some(crate::PruneConfig::default()),
        }
    }

    /// Checks the settings and returns what the node will actually use.
    pub(crate) fn validate(&self) -> Result<Validated, ConfigError> {
        if self.gossip_interval.is_zero() {
            return Err(ConfigError::ZeroGossipInterval);
        }
        if self.rejoin_interval.is_zero() {
            return Err(ConfigError::ZeroRejoinInterval);
        }
        if self.fanout == 0 {
            return Err(ConfigError::ZeroFanout);
        }
        if !(MIN_DATAGRAM_BYTES..=MAX_MESSAGE_BYTES).contains(&self.max_datagram_bytes) {
            return Err(ConfigError::DatagramSize {
                got: self.max_datagram_bytes,
                min: MIN_DATAGRAM_BYTES,
                max: MAX_MESSAGE_BYTES,
            });
        }
        if !(MIN_MESSAGE_BUDGET..=MAX_MESSAGE_BYTES).contains(&self.max_message_bytes) {
            return Err(ConfigError::MessageSize {
                got: self.max_message_bytes,
                min: MIN_MESSAGE_BUDGET,
                max: MAX_MESSAGE_BYTES,
            });
        }
        if self.max_sync_reply_bytes < self.max_message_bytes {
            return Err(ConfigError::SyncReplySmallerThanMessage);
        }
        if self.max_delta_bytes_per_peer < self.max_sync_reply_bytes {
            return Err(ConfigError::PeerAllowanceSmallerThanReply);
        }
        let budget =
            MessageBudget::new(self.max_message_bytes).map_err(|e| ConfigError::MessageSize {
                got: e.budget,
                min: e.min,
                max: e.max,
            })?;
        let mut swim = self.swim.clone();
        swim.max_packet_size = NonZeroUsize::new(self.max_datagram_bytes - HEADER_LEN).ok_or(
            ConfigError::DatagramSize {
                got: self.max_datagram_bytes,
                min: MIN_DATAGRAM_BYTES,
                max: MAX_MESSAGE_BYTES,
            },
        )?;
        if swim.probe_rtt >= swim.probe_period || swim.probe_period.is_zero() {
            return Err(ConfigError::Swim(
                "probe_rtt must be below probe_period, which must not be zero",
            ));
        }
        Ok(Validated { swim, budget })
    }
}

/// A [`Config`] after validation: what a node runs with.
#[derive(Debug, Clone)]
pub(crate) struct Validated {
    pub(crate) swim: foca::Config,
    pub(crate) budget: MessageBudget,
}

/// foca's LAN profile, with down members re-announced to every 10 s instead of 65 s: after
/// a partition heals, each side still holds the other as down until such an announce
/// reaches it, and that time counts against [`PruneConfig::after_down`](crate::PruneConfig)
/// (a member down for longer may be pruned). It costs two small datagrams per 10 s.
fn swim_config(nodes: NonZeroU32) -> foca::Config {
    let mut swim = foca::Config::new_lan(nodes);
    swim.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(10),
        num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
    });
    swim
}

/// Smallest datagram budget: SWIM needs room for a header and a few member updates.
pub const MIN_DATAGRAM_BYTES: usize = 256;

/// The smallest message budget: room for the envelope, one run header and one entry
/// with a maximum-length name.
pub const MIN_MESSAGE_BUDGET: usize = 512;

/// A validated size limit for one counter message (sync request or delta), envelope
/// included: between [`MIN_MESSAGE_BUDGET`] and [`MAX_MESSAGE_BYTES`]. Validated once,
/// so code that builds messages never has to check it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageBudget(usize);

/// A message budget outside the allowed range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("message budget {budget} is outside {min}..={max} bytes")]
pub struct InvalidBudget {
    /// The budget that was given.
    pub budget: usize,
    /// [`MIN_MESSAGE_BUDGET`].
    pub min: usize,
    /// [`MAX_MESSAGE_BYTES`].
    pub max: usize,
}

impl MessageBudget {
    /// The smallest budget.
    pub const MIN: MessageBudget = MessageBudget(MIN_MESSAGE_BUDGET);

    /// Validates `bytes` as a budget.
    pub fn new(bytes: usize) -> Result<Self, InvalidBudget> {
        if (MIN_MESSAGE_BUDGET..=MAX_MESSAGE_BYTES).contains(&bytes) {
            Ok(Self(bytes))
        } else {
            Err(InvalidBudget {
                budget: bytes,
                min: MIN_MESSAGE_BUDGET,
                max: MAX_MESSAGE_BYTES,
            })
        }
    }

    /// The budget in bytes.
    pub fn get(self) -> usize {
        self.0
    }

    /// The budget as it travels in a sync request (it always fits: at most 1 MiB).
    pub(crate) fn wire(self) -> u32 {
        u32::try_from(self.0).unwrap_or(u32::MAX)
    }

    /// A peer's budget as it arrived, clamped into the allowed range.
    pub(crate) fn from_wire(bytes: u32) -> Self {
        Self((bytes as usize).clamp(MIN_MESSAGE_BUDGET, MAX_MESSAGE_BYTES))
    }
}

/// A [`Config`] value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `gossip_interval` is zero.
    #[error("gossip_interval must be greater than zero")]
    ZeroGossipInterval,
    /// `rejoin_interval` is zero.
    #[error("rejoin_interval must be greater than zero")]
    ZeroRejoinInterval,
    /// `fanout` is zero.
    #[error("fanout must be at least 1")]
    ZeroFanout,
    /// `max_datagram_bytes` is out of range.
    #[error("max_datagram_bytes is {got}; it must be between {min} and {max}")]
    DatagramSize {
        /// The configured value.
        got: usize,
        /// Smallest allowed.
        min: usize,
        /// Largest allowed.
        max: usize,
    },
    /// `max_message_bytes` is out of range.
    #[error("max_message_bytes is {got}; it must be between {min} and {max}")]
    MessageSize {
        /// The configured value.
        got: usize,
        /// Smallest allowed.
        min: usize,
        /// Largest allowed.
        max: usize,
    },
    /// `max_sync_reply_bytes` is below `max_message_bytes`.
    #[error("max_sync_reply_bytes must be at least max_message_bytes")]
    SyncReplySmallerThanMessage,
    /// `max_delta_bytes_per_peer` is below `max_sync_reply_bytes`.
    #[error("max_delta_bytes_per_peer must be at least max_sync_reply_bytes")]
    PeerAllowanceSmallerThanReply,
    /// The SWIM settings are inconsistent.
    #[error("invalid SWIM settings: {0}")]
    Swim(&'static str),
    /// The node's actor has the top bit set, which marks sinks (use
    /// [`ActorId::random`](crate::ActorId::random)).
    #[error("actor {0} is a sink id (top bit set) and cannot be a node's actor")]
    SinkActor(crate::ActorId),
    /// The node identity's actor is not the store's actor.
    #[error("node identity carries actor {identity} but the store belongs to {store}")]
    ActorMismatch {
        /// Actor in the [`NodeId`](crate::NodeId).
        identity: crate::ActorId,
        /// Actor of the [`Store`](crate::Store).
        store: crate::ActorId,
    },
}
