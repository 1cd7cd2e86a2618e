//! Invariants on what a node emits and what its store holds, checked through the public
//! API only. Each check panics with a message that says which invariant broke.

use std::collections::{HashMap, HashSet};

use countermesh_core::{
    ActorId, Channel, Delta, Message, MessageKind, Node, Scope, Store, SyncRequest, Transmit,
};

use crate::protocol::{NODE_ACTOR, budget};

/// Drains every message the node queued and checks each one: it fits its channel's
/// budget, decodes with `Message::decode` under that budget, travels on the channel its
/// kind needs, is labelled with its kind, and, for deltas and sync requests, tells the
/// truth about what the node holds. Returns the drained messages.
pub fn drain_transmits(node: &mut Node) -> Vec<Transmit> {
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
        };
        assert_eq!(transmit.kind, kind, "transmit labelled with the wrong kind");
        assert_eq!(
            transmit.channel, channel,
            "{kind:?} sent on the wrong channel"
        );
        match message {
            Message::Swim(_) => {}
            Message::Sync(request) => check_sync_request(node.store(), &request),
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

/// Every entry a node sends is one it holds, exactly as it holds it, and its own
/// entries only up to the version it may gossip.
fn check_delta_entries(store: &Store, delta: &Delta<'_>) {
    for run in &delta.runs {
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
                    entry.version <= store.stable_version(),
                    "sent own entry version {} above the stable version {}",
                    entry.version,
                    store.stable_version()
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
            for (name, _) in store.values() {
                let Some(held) = store
                    .contributions(name)
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

/// A sync request a node sends states its own watermarks, and a range-scoped one lists
/// every actor of the range that it holds something of.
fn check_sync_request(store: &Store, request: &SyncRequest) {
    for &(actor, version) in &request.versions {
        assert_eq!(
            version,
            store.watermark(actor),
            "sync request states {version} for {actor}, the store's watermark differs"
        );
    }
    if let Scope::Range { first, last } = request.scope {
        for (actor, version) in store.digest().iter() {
            if actor >= first && actor <= last {
                assert!(
                    request.versions.contains(&(actor, version)),
                    "range-scoped request leaves out {actor}@{version}"
                );
            }
        }
    }
}

/// Store-wide consistency: every counter's value is the sum of its contributions plus
/// `pending(name)` (the local adds not yet folded, when the caller knows them), the
/// digest lists each actor at its watermark, and the own watermark is the stable version,
/// never above the local version.
pub fn check_store(store: &Store, pending: impl Fn(&str) -> Option<i128>) {
    assert!(
        store.stable_version() <= store.local_version(),
        "stable version {} above local version {}",
        store.stable_version(),
        store.local_version()
    );
    assert_eq!(
        store.watermark(NODE_ACTOR),
        store.stable_version(),
        "own watermark differs from the stable version"
    );
    for (actor, version) in store.digest().iter() {
        assert!(version > 0, "digest lists {actor} at version 0");
        assert_eq!(
            version,
            store.watermark(actor),
            "digest differs from watermark"
        );
    }
    for (name, value) in store.values() {
        let contributions = store.contributions(name).expect("listed counters exist");
        let mut actors: Vec<ActorId> = contributions.iter().map(|c| c.actor).collect();
        actors.dedup();
        assert_eq!(
            actors.len(),
            contributions.len(),
            "{name:?} holds two entries of one actor: {contributions:?}"
        );
        let sum: i128 = contributions
            .iter()
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
