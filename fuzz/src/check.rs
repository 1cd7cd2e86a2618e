//! Invariants on what a node emits and what its store holds, checked through the public
//! API only. Each check panics with a message that says which invariant broke.

use std::collections::{HashMap, HashSet};

use countermesh_core::{
    ActorId, ActorRange, Channel, Delta, Event, Message, MessageKind, Node, Part, PruneMessage,
    Store, SyncRequest, Transmit,
};

use crate::protocol::{NODE_ACTOR, budget};

/// Drains every message the node queued and checks each one: it fits its channel's
/// budget, decodes with `Message::decode` under that budget, travels on the channel its
/// kind needs, is labelled with its kind, and tells the truth about what the node holds.
/// Returns the drained messages.
pub fn drain_transmits(node: &mut Node) -> Vec<Transmit> {
    drain_checked(node, true)
}

/// [`drain_transmits`], with the summaries and pair lists of sync requests compared to
/// the store only when `exact`: a gossip round starts an exchange and then may fold
/// actors into a new sink, after which the request it queued describes an older state.
pub fn drain_checked(node: &mut Node, exact: bool) -> Vec<Transmit> {
    let mut out = Vec::new();
    while let Some(transmit) = node.poll_transmit() {
        out.push(transmit);
    }
    // Deltas to one destination, grouped so a run's claim can be checked against all
    // the messages of the answer it belongs to.
    let mut deltas: HashMap<_, Vec<Delta<'_>>> = HashMap::new();
    for transmit in &out {
        let max = budget(node.config(), transmit.channel);
        assert!(
            transmit.payload.len() <= max,
            "{:?} message of {} bytes exceeds the {:?} budget of {max}",
            transmit.kind,
            transmit.payload.len(),
            transmit.channel,
        );
        let message = Message::decode(&transmit.payload, max).unwrap_or_else(|e| {
            panic!(
                "the node emitted a {:?} message that does not decode: {e}",
                transmit.kind
            )
        });
        let (kind, channel) = match &message {
            Message::Swim(_) => (MessageKind::Swim, Channel::Datagram),
            Message::Sync(_) => (MessageKind::Sync, Channel::Stream),
            Message::Delta(_) => (MessageKind::Delta, Channel::Stream),
            Message::Prune(_) => (MessageKind::Prune, Channel::Stream),
        };
        assert_eq!(transmit.kind, kind, "transmit labelled with the wrong kind");
        assert_eq!(
            transmit.channel, channel,
            "{kind:?} sent on the wrong channel"
        );
        match message {
            Message::Swim(_) => {}
            Message::Sync(request) => check_sync_request(node, &request, exact),
            Message::Prune(prune) => check_prune(&prune),
            Message::Delta(delta) => {
                delta
                    .validate()
                    .unwrap_or_else(|e| panic!("the node emitted an invalid delta: {e}"));
                check_delta_entries(node.store(), &delta);
                deltas
                    .entry(transmit.destination)
                    .or_default()
                    .push(delta.into_owned());
            }
        }
    }
    for answer in deltas.values() {
        check_run_claims(node.store(), answer);
    }
    out
}

/// Drains the node's events. An `InternalError` is a message the node built and could
/// not encode: a bug, which the core reports instead of panicking, so here it is made a
/// crash. Returns whether a sink was refused as a double fold (which makes a restore
/// count differently, see `node_ops`).
pub fn drain_events(node: &mut Node) -> bool {
    let mut refused_sink = false;
    while let Some(event) = node.poll_event() {
        match event {
            Event::InternalError(what) => panic!("the node reported an internal error: {what}"),
            Event::SinkRefused(_) => refused_sink = true,
            _ => {}
        }
    }
    refused_sink
}

/// Every entry a node sends is one it holds, exactly as it holds it, and its own
/// entries and runs never above its local version.
fn check_delta_entries(store: &Store, delta: &Delta<'_>) {
    for run in &delta.runs {
        if run.actor == store.actor_id() {
            assert!(
                run.upto <= store.local_version(),
                "own run claims upto {} above the local version {}",
                run.upto,
                store.local_version()
            );
        }
        for entry in &run.entries {
            let held = store
                .contributions(&entry.name)
                .and_then(|c| c.into_iter().find(|c| c.actor == run.actor))
                .unwrap_or_else(|| {
                    panic!(
                        "sent an entry of {} for {:?} that the store does not hold",
                        run.actor, entry.name
                    )
                });
            assert_eq!(
                (held.version, held.p, held.n),
                (entry.version, entry.p, entry.n),
                "sent entry of {} for {:?} differs from the held one",
                run.actor,
                entry.name
            );
            if run.actor == store.actor_id() {
                assert!(
                    entry.version <= store.local_version(),
                    "sent own entry version {} above the local version {}",
                    entry.version,
                    store.local_version()
                );
            }
        }
    }
}

/// A run `(after, upto]` claims the sender holds no other entry of its actor in that
/// range: so `upto` is at most the sender's watermark, and every held entry of the
/// actor in the range is in one of the answer's messages.
fn check_run_claims(store: &Store, answer: &[Delta<'_>]) {
    let mut sent: HashSet<(ActorId, &str, u64)> = HashSet::new();
    for delta in answer {
        for run in &delta.runs {
            for e in &run.entries {
                sent.insert((run.actor, &e.name, e.version));
            }
        }
    }
    for delta in answer {
        for run in &delta.runs {
            let watermark = store.watermark(run.actor);
            assert!(
                run.upto <= watermark,
                "run of {} claims upto {} above the sender's watermark {watermark}",
                run.actor,
                run.upto
            );
            if run.upto == run.after {
                continue;
            }
            for name in names(store, answer) {
                let Some(held) = store
                    .contributions(&name)
                    .and_then(|c| c.into_iter().find(|c| c.actor == run.actor))
                else {
                    continue;
                };
                if held.version > run.after && held.version <= run.upto {
                    assert!(
                        sent.contains(&(run.actor, name.as_str(), held.version)),
                        "run of {} claims ({}, {}] but leaves out {name:?}@{}",
                        run.actor,
                        run.after,
                        run.upto,
                        held.version
                    );
                }
            }
        }
    }
}

/// Every counter name the store lists, plus the reserved names (sink headers and
/// records) the answer carries or the store's sinks hold, which `values` leaves out.
fn names(store: &Store, answer: &[Delta<'_>]) -> Vec<String> {
    let mut names: HashSet<String> = store.values().map(|(n, _)| n.to_string()).collect();
    names.insert(crate::protocol::SINK_HEADER.to_owned());
    for delta in answer {
        for run in &delta.runs {
            names.extend(run.entries.iter().map(|e| e.name.to_string()));
        }
    }
    names.into_iter().collect()
}

/// A sync request a node sends tells the truth about its state at the time: summaries
/// are its own, pair lists are exactly its watermarks in their range, wants state its
/// watermarks, and the limits announced are its own configuration's.
fn check_sync_request(node: &Node, request: &SyncRequest, exact: bool) {
    let store = node.store();
    assert_eq!(
        request.budget as usize,
        node.config().max_message_bytes,
        "sync request announces a budget other than the node's"
    );
    assert_eq!(
        request.reply_bytes as usize,
        node.config().max_sync_reply_bytes.min(u32::MAX as usize),
        "sync request announces a reply limit other than the node's"
    );
    if !exact {
        return;
    }
    let digest = store.digest();
    for part in &request.parts {
        match part {
            Part::Summary { range, count, hash } => {
                let mine = store.range_summary(*range);
                assert_eq!(
                    (mine.count, mine.hash),
                    (*count, *hash),
                    "sync request summarises {range:?} unlike the store"
                );
            }
            Part::Pairs { range, versions } => {
                let mine: Vec<(ActorId, u64)> =
                    digest.iter().filter(|(a, _)| range.contains(*a)).collect();
                assert_eq!(
                    versions, &mine,
                    "sync request lists pairs of {range:?} unlike the store"
                );
            }
            Part::Want { versions } => {
                for &(actor, version) in versions {
                    assert_eq!(
                        version,
                        store.watermark(actor),
                        "sync request wants {actor} above {version}, the store's watermark differs"
                    );
                }
            }
            Part::MemberSummary { .. } | Part::MemberList { .. } | Part::MemberNews { .. } => {}
        }
    }
}

/// A prune message the node sends is its own: intents and dones name it as the owner,
/// and an answer does not both accept and refuse one actor.
fn check_prune(message: &PruneMessage) {
    match message {
        PruneMessage::Intent { owner, victims, .. } => {
            assert_eq!(*owner, NODE_ACTOR, "intent sent for another owner");
            assert!(
                victims.iter().all(|(a, _)| *a != NODE_ACTOR),
                "the node proposes to prune its own actor"
            );
        }
        PruneMessage::Done { owner, .. } => {
            assert_eq!(*owner, NODE_ACTOR, "done sent for another owner");
        }
        PruneMessage::Ack {
            accepted, refused, ..
        } => {
            assert!(
                !accepted.contains(&NODE_ACTOR),
                "the node accepted a seal of its own actor"
            );
            assert!(
                accepted.iter().all(|a| !refused.contains(a)),
                "an answer both accepts and refuses one actor"
            );
        }
    }
}

/// Store-wide consistency: `Store::check_invariants` holds; every counter's value is
/// the sum of its counted contributions (every actor's but incomplete or refused sinks')
/// plus `pending(name)` (the local adds not yet folded, when the caller knows them);
/// the digest lists each actor at its watermark; the own watermark is the local
/// version and no own entry is above it.
pub fn check_store(store: &Store, pending: impl Fn(&str) -> Option<i128>) {
    if let Err(broken) = store.check_invariants() {
        panic!("Store::check_invariants: {broken}");
    }
    assert_eq!(
        store.watermark(NODE_ACTOR),
        store.local_version(),
        "own watermark differs from the local version"
    );
    for (actor, version) in store.digest().iter() {
        assert!(version > 0, "digest lists {actor} at version 0");
        assert_eq!(
            version,
            store.watermark(actor),
            "digest differs from watermark"
        );
    }
    assert_eq!(
        store.range_summary(ActorRange::ALL).count as usize,
        store.digest().len(),
        "the summary of every actor counts other actors than the digest"
    );
    let uncounted: HashSet<ActorId> = store
        .sinks()
        .filter(|(_, complete)| !complete)
        .map(|(s, _)| s)
        .collect();
    for (name, value) in store.values() {
        let contributions = store.contributions(name).expect("listed counters exist");
        let mut actors: Vec<ActorId> = contributions.iter().map(|c| c.actor).collect();
        actors.dedup();
        assert_eq!(
            actors.len(),
            contributions.len(),
            "{name:?} holds two entries of one actor: {contributions:?}"
        );
        for c in &contributions {
            if c.actor == NODE_ACTOR {
                assert!(
                    c.version <= store.local_version(),
                    "own entry of {name:?} at {} above the local version {}",
                    c.version,
                    store.local_version()
                );
            }
        }
        let sum: i128 = contributions
            .iter()
            .filter(|c| !uncounted.contains(&c.actor))
            .map(|c| i128::from(c.p) - i128::from(c.n))
            .sum();
        if let Some(pending) = pending(name) {
            assert_eq!(
                value,
                sum + pending,
                "{name:?}: value differs from the sum of contributions {contributions:?} plus {pending} pending"
            );
        }
    }
}
