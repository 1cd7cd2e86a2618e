//! Store rules: versions, watermarks, change tracking, restore, limits, overflow, budgets.

use countermesh_core::{
    ActorId, CounterError, Delta, DeltaEntry, Digest, Limits, MIN_MESSAGE_BUDGET, Message,
    MessageBudget, NameError, RestoreError, Restored, Run, Store, StoredEntry, ValueOverflow,
};

fn budget(bytes: usize) -> MessageBudget {
    MessageBudget::new(bytes).unwrap()
}

fn sync(from: &Store, to: &mut Store, limit: usize) -> usize {
    let deltas = from.delta_for(&to.digest(), budget(limit));
    let mut bytes = 0;
    for delta in &deltas {
        let encoded = Message::Delta(delta.clone()).encode().unwrap();
        assert!(encoded.len() <= limit);
        bytes += encoded.len();
        to.apply_delta(delta).unwrap();
    }
    bytes
}

#[test]
fn bad_names_are_typed_errors() {
    let mut store = Store::new(ActorId::from_u64(1), 0);
    assert_eq!(
        store.counter("").unwrap_err(),
        CounterError::InvalidName(NameError::Empty)
    );
    assert!(matches!(
        store.counter(&"n".repeat(300)),
        Err(CounterError::InvalidName(NameError::TooLong {
            len: 300,
            max: 256
        }))
    ));
    assert!(store.is_empty());
}

#[test]
fn a_million_adds_make_the_same_delta_as_one() {
    let mut one = Store::new(ActorId::from_u64(1), 0);
    one.counter("sixteen-byte-nam").unwrap().add(1);
    one.flush();
    let mut many = Store::new(ActorId::from_u64(1), 0);
    let counter = many.counter("sixteen-byte-nam").unwrap();
    for _ in 0..1_000_000 {
        counter.add(1);
    }
    many.flush();
    let a = one.delta_for(&Digest::default(), budget(1200));
    let b = many.delta_for(&Digest::default(), budget(1200));
    assert_eq!(a.len(), 1);
    assert_eq!(b.len(), 1);
    assert_eq!(a[0].entry_count(), 1);
    assert_eq!(b[0].entry_count(), 1);
    // The totals differ (1 vs 1,000,000) and so does their varint width: 1 vs 5 bytes.
    assert_eq!(b[0].encoded_len() - a[0].encoded_len(), 4);
}

#[test]
fn flush_versions_only_changed_counters() {
    let mut store = Store::new(ActorId::from_u64(1), 0);
    let a = store.counter("a").unwrap();
    let b = store.counter("b").unwrap();
    a.add(1);
    b.add(1);
    assert_eq!(store.flush().changed, 2);
    assert_eq!(store.local_version(), 2);
    a.add(5);
    a.add(-5);
    assert_eq!(store.flush().changed, 0, "net zero changes nothing");
    b.add(-3);
    assert_eq!(store.flush().changed, 1);
    assert_eq!(store.local_version(), 3);
    let contributions = store.contributions("b").unwrap();
    assert_eq!((contributions[0].p, contributions[0].n), (1, 3));
    assert_eq!(store.value("b"), Some(-2));
}

/// Change tracking (a data directory) never holds own changes back from gossip: a
/// flushed change is servable at once, whether or not it has been committed.
#[test]
fn own_changes_are_servable_before_they_are_committed() {
    let mut store = Store::new(ActorId::from_u64(1), 0).with_change_tracking(true);
    let c = store.counter("c").unwrap();
    c.add(7);
    store.flush();
    let deltas = store.delta_for(&Digest::default(), budget(1200));
    assert_eq!(deltas[0].entry_count(), 1);
    // A later change re-stamps the entry; a peer gets the newest state at once.
    c.add(1);
    store.flush();
    let mut peer = Store::new(ActorId::from_u64(2), 0);
    sync(&store, &mut peer, 1200);
    assert_eq!(peer.value("c"), Some(8));
    assert_eq!(peer.watermark(ActorId::from_u64(1)), 2);
    // The committer still gets both changes' final state.
    let changes = store.take_changes();
    assert_eq!(changes.entries.len(), 1);
    assert_eq!(changes.local_version, 2);
}

fn entry(name: &str, version: u64, p: u64) -> DeltaEntry<'static> {
    DeltaEntry {
        name: name.to_owned().into(),
        version,
        p,
        n: 0,
    }
}

#[test]
fn a_gap_holds_the_watermark_until_filled() {
    let actor = ActorId::from_u64(5);
    let mut store = Store::new(ActorId::from_u64(1), 0);
    let late = Delta {
        runs: vec![Run {
            actor,
            after: 2,
            upto: 4,
            entries: vec![entry("x", 4, 10)],
        }],
    };
    let outcome = store.apply_delta(&late).unwrap();
    assert_eq!(outcome.changed, 1);
    assert_eq!(outcome.watermarks_advanced, 0);
    assert_eq!(store.watermark(actor), 0);
    assert_eq!(
        store.value("x"),
        Some(10),
        "entries merge even across a gap"
    );

    let early = Delta {
        runs: vec![Run {
            actor,
            after: 0,
            upto: 2,
            entries: vec![entry("y", 2, 1)],
        }],
    };
    let outcome = store.apply_delta(&early).unwrap();
    assert_eq!(outcome.watermarks_advanced, 1);
    assert_eq!(
        store.watermark(actor),
        4,
        "filling the gap absorbs the run that arrived early"
    );
    // Re-applying is a no-op.
    let again = store.apply_delta(&late).unwrap();
    assert_eq!(again.changed, 0);
    assert_eq!(again.watermarks_advanced, 0);
}

#[test]
fn limits_reject_without_claiming() {
    let limits = Limits {
        max_counters: 2,
        max_actors: 3,
        ..Limits::default()
    };
    let mut store = Store::new(ActorId::from_u64(1), 0).with_limits(limits);
    let delta = Delta {
        runs: vec![Run {
            actor: ActorId::from_u64(5),
            after: 0,
            upto: 3,
            entries: vec![entry("a", 1, 1), entry("b", 2, 1), entry("c", 3, 1)],
        }],
    };
    let outcome = store.apply_delta(&delta).unwrap();
    assert_eq!(outcome.rejected, 1);
    assert_eq!(store.len(), 2);
    assert_eq!(
        store.watermark(ActorId::from_u64(5)),
        0,
        "a run that was not fully stored must not advance the watermark"
    );
    assert_eq!(
        store.counter("d").unwrap_err(),
        CounterError::TooManyCounters { limit: 2 }
    );
    // Actor limit: this store's own actor plus two more.
    for id in 6..9 {
        let delta = Delta {
            runs: vec![Run {
                actor: ActorId::from_u64(id),
                after: 0,
                upto: 1,
                entries: vec![entry("a", 1, 1)],
            }],
        };
        let outcome = store.apply_delta(&delta).unwrap();
        assert_eq!(outcome.rejected, usize::from(id >= 7), "actor {id}");
    }
    assert_eq!(store.actor_count(), 3);
}

#[test]
fn values_beyond_i64_are_reported_not_wrapped() {
    let mut store = Store::new(ActorId::from_u64(1), 0);
    let c = store.counter("big").unwrap();
    c.add(i64::MAX);
    c.add(i64::MAX);
    let exact = 2 * i128::from(i64::MAX);
    assert_eq!(c.value(), Err(ValueOverflow { value: exact }));
    assert_eq!(c.value_i128(), exact);
    store.flush();
    assert_eq!(c.value_i128(), exact);
    c.add(i64::MIN);
    c.add(i64::MIN);
    assert_eq!(c.value(), Ok(-2));
    // Merged from another actor, the exact sum stays exact.
    let mut peer = Store::new(ActorId::from_u64(2), 0);
    let d = peer.counter("big").unwrap();
    d.add(i64::MAX);
    peer.flush();
    store.flush();
    sync(&peer, &mut store, 1200);
    assert_eq!(c.value(), Ok(i64::MAX - 2));
    assert_eq!(store.value("big"), Some(i128::from(i64::MAX) - 2));
}

#[test]
fn a_counter_saturates_instead_of_wrapping() {
    let mut store = Store::new(ActorId::from_u64(1), 0);
    let c = store.counter("s").unwrap();
    for _ in 0..3 {
        c.add(i64::MAX);
    }
    let outcome = store.flush();
    assert_eq!(outcome.saturated.len(), 1, "3 * (2^63 - 1) > u64::MAX");
    // Nothing is lost locally: the excess stays pending and still counts.
    assert_eq!(c.value_i128(), 3 * i128::from(i64::MAX));
    let contributions = store.contributions("s").unwrap();
    assert_eq!(contributions[0].p, u64::MAX);
}

#[test]
fn deltas_split_under_small_budgets_and_stay_complete() {
    let mut source = Store::new(ActorId::from_u64(1), 0);
    for i in 0..3000 {
        source
            .counter(&format!("counter-{i:08}"))
            .unwrap()
            .add(i + 1);
    }
    source.flush();
    let mut target = Store::new(ActorId::from_u64(2), 0);
    let deltas = source.delta_for(&target.digest(), budget(MIN_MESSAGE_BUDGET));
    assert!(deltas.len() > 100);
    for delta in &deltas {
        assert!(delta.encoded_len() <= MIN_MESSAGE_BUDGET);
        target.apply_delta(delta).unwrap();
    }
    assert_eq!(target.len(), 3000);
    assert_eq!(target.watermark(ActorId::from_u64(1)), 3000);
    for i in 0..3000 {
        assert_eq!(
            target.value(&format!("counter-{i:08}")),
            Some(i128::from(i) + 1)
        );
    }
    // Delivered in reverse: the watermark waits for the first message, then absorbs the
    // most recent out-of-order runs it remembered (a bounded number; the rest would be
    // offered again by the next anti-entropy round).
    let mut reversed = Store::new(ActorId::from_u64(3), 0);
    let tail: Vec<_> = deltas[..9].iter().rev().collect();
    for delta in tail {
        reversed.apply_delta(delta).unwrap();
    }
    assert_eq!(
        reversed.watermark(ActorId::from_u64(1)),
        deltas[8].runs[0].upto,
        "the first nine messages, delivered last-to-first, advance the watermark fully"
    );
}

#[test]
fn budget_below_minimum_is_an_error() {
    assert!(MessageBudget::new(100).is_err());
    assert!(MessageBudget::new(MIN_MESSAGE_BUDGET).is_ok());
    assert!(MessageBudget::new(countermesh_core::MAX_MESSAGE_BYTES + 1).is_err());
}

/// A store never adopts versions of its own actor from a peer: every start counts
/// under a fresh actor, so a peer can only hold versions this store issued, and a claim
/// of more is refused (it would otherwise raise the version and over-claim).
#[test]
fn own_versions_from_a_peer_are_never_adopted() {
    let me = ActorId::from_u64(1);
    let mut store = Store::new(me, 0);
    store.counter("c").unwrap().add(10);
    store.flush();
    let forged = Delta {
        runs: vec![Run {
            actor: me,
            after: 0,
            upto: 7,
            entries: vec![entry("c", 7, 99)],
        }],
    };
    let outcome = store.apply_delta(&forged).unwrap();
    assert_eq!(outcome.own_refused, 1);
    assert_eq!(store.local_version(), 1, "the version did not move");
    assert_eq!(store.value("c"), Some(10));
    // A run at or below what this store issued carries nothing new and is ignored.
    let echo = Delta {
        runs: vec![Run {
            actor: me,
            after: 0,
            upto: 1,
            entries: vec![entry("c", 1, 10)],
        }],
    };
    assert_eq!(store.apply_delta(&echo).unwrap(), Default::default());
}

/// Replays committed batches the way a data directory would: later values win.
fn committed_state(actor: ActorId, batches: &[countermesh_core::Changes]) -> Restored<'static> {
    use std::collections::BTreeMap;
    let mut entries = BTreeMap::new();
    let mut watermarks = BTreeMap::new();
    let mut local_version = 0;
    for batch in batches {
        for e in &batch.entries {
            entries.insert((e.name.to_string(), e.actor), e.clone());
        }
        for &(a, v) in &batch.watermarks {
            watermarks.insert(a, v);
        }
        local_version = batch.local_version;
    }
    Restored {
        actor,
        local_version,
        entries: entries.into_values().collect(),
        watermarks: watermarks.into_iter().collect(),
    }
}

#[test]
fn take_changes_and_restore_round_trip_the_durable_state() {
    let me = ActorId::from_u64(1);
    let mut a = Store::new(me, 0).with_change_tracking(true);
    let mut b = Store::new(ActorId::from_u64(2), 0);
    let hits = a.counter("hits").unwrap();
    hits.add(5);
    a.counter("misses").unwrap().add(-2);
    a.flush();
    b.counter("hits").unwrap().add(7);
    b.counter("b.only").unwrap().add(1);
    b.flush();
    sync(&b, &mut a, 1200);

    let first = a.take_changes();
    assert_eq!(first.entries.len(), 4, "two own and two learned entries");
    assert_eq!(
        first.watermarks,
        vec![(ActorId::from_u64(2), b.local_version())]
    );
    assert_eq!(first.local_version, 2);
    // Nothing changed since: the next batch is empty.
    assert!(a.take_changes().is_empty());

    // A second flush changes one entry; only it is handed out.
    hits.add(1);
    a.flush();
    let second = a.take_changes();
    assert_eq!(second.entries.len(), 1);
    assert_eq!(second.entries[0].name, "hits");
    assert_eq!(second.entries[0].version, 3);

    // The restarted node counts as a new actor; the old one's entries are a peer's.
    let restored = committed_state(me, &[first, second]);
    let new_actor = ActorId::from_u64(10);
    let r = Store::restore(&restored, new_actor, 9, Limits::default()).unwrap();
    assert_eq!(r.actor_id(), new_actor);
    assert_eq!(r.value("hits"), Some(13));
    assert_eq!(r.value("misses"), Some(-2));
    assert_eq!(r.value("b.only"), Some(1));
    assert_eq!(r.local_version(), 0, "a fresh actor starts at version 0");
    assert_eq!(
        r.watermark(me),
        3,
        "the old actor, complete up to its commit"
    );
    assert_eq!(r.watermark(ActorId::from_u64(2)), b.local_version());
    // Restoring hands nothing out as a change; new adds go to the new actor.
    let mut r = r.with_change_tracking(true);
    assert!(r.take_changes().is_empty());
    r.counter("hits").unwrap().add(1);
    r.flush();
    assert_eq!(r.local_version(), 1);
    let changes = r.take_changes();
    assert_eq!(changes.entries.len(), 1);
    assert_eq!(changes.entries[0].actor, new_actor);
    assert_eq!(r.value("hits"), Some(14));
    // The old actor's entries travel like any peer's.
    let mut fresh = Store::new(ActorId::from_u64(3), 0);
    sync(&r, &mut fresh, 1200);
    assert_eq!(fresh.value("hits"), Some(14));
    assert_eq!(fresh.watermark(me), 3);
}

#[test]
fn restore_refuses_inconsistent_state() {
    let me = ActorId::from_u64(1);
    let fresh = ActorId::from_u64(99);
    let bad_name = Restored {
        actor: me,
        local_version: 1,
        entries: vec![StoredEntry {
            name: "".into(),
            actor: me,
            version: 1,
            p: 1,
            n: 0,
        }],
        watermarks: vec![],
    };
    assert!(matches!(
        Store::restore(&bad_name, fresh, 0, Limits::default()),
        Err(RestoreError::InvalidName(_))
    ));
    let ahead = Restored {
        actor: me,
        local_version: 1,
        entries: vec![StoredEntry {
            name: "x".into(),
            actor: me,
            version: 5,
            p: 1,
            n: 0,
        }],
        watermarks: vec![],
    };
    assert!(matches!(
        Store::restore(&ahead, fresh, 0, Limits::default()),
        Err(RestoreError::VersionAhead { version: 5, .. })
    ));
    let conflict = Restored {
        actor: me,
        local_version: 2,
        entries: vec![
            StoredEntry {
                name: "x".into(),
                actor: me,
                version: 2,
                p: 1,
                n: 0,
            },
            StoredEntry {
                name: "y".into(),
                actor: me,
                version: 2,
                p: 1,
                n: 0,
            },
        ],
        watermarks: vec![],
    };
    assert!(matches!(
        Store::restore(&conflict, fresh, 0, Limits::default()),
        Err(RestoreError::Conflict { version: 2, .. })
    ));
    assert!(matches!(
        Store::restore(&ahead, me, 0, Limits::default()),
        Err(RestoreError::ActorReused(_))
    ));
}

#[test]
fn changes_are_not_tracked_by_default() {
    let mut a = Store::new(ActorId::from_u64(1), 0);
    a.counter("x").unwrap().add(1);
    a.flush();
    let changes = a.take_changes();
    assert!(changes.is_empty());
    assert_eq!(changes.local_version, 1);
}

/// A node gossips a change before committing it, then crashes. Its restart (a new
/// actor) restores the committed, older state of the old actor; the peer holds the
/// newer one. Nothing is lost and nothing is counted twice: the newer entry flows back.
#[test]
fn gossip_ahead_of_the_disk_is_recovered_after_a_crash() {
    let me = ActorId::from_u64(1);
    let mut a = Store::new(me, 0).with_change_tracking(true);
    let mut b = Store::new(ActorId::from_u64(2), 0);
    let k = a.counter("k").unwrap();
    let j = a.counter("j").unwrap();
    k.add(1);
    a.flush(); // k@1
    j.add(5);
    a.flush(); // j@2
    let committed = a.take_changes();
    k.add(1);
    a.flush(); // k@3, gossiped but never committed
    sync(&a, &mut b, 1200);
    assert_eq!(b.watermark(me), 3);

    let restored = committed_state(me, &[committed]);
    let mut a2 = Store::restore(&restored, ActorId::from_u64(11), 3, Limits::default()).unwrap();
    assert_eq!(a2.value("k"), Some(1), "the disk is behind the peer");
    sync(&b, &mut a2, 1200);
    sync(&a2, &mut b, 1200);
    for store in [&a2, &b] {
        assert_eq!(store.value("k"), Some(2));
        assert_eq!(store.value("j"), Some(5));
        assert_eq!(store.watermark(me), 3);
    }
}

/// Answering a digest scans the store, so a node answers a bounded number per sender
/// per gossip interval; the budget refills with the next interval.
#[test]
fn sync_requests_are_rate_limited_per_sender() {
    use countermesh_core::{
        ActorRange, Channel, Config, HandleError, MAX_SYNC_PER_INTERVAL, Node, NodeId, Part,
        SyncRequest, encode_sync,
    };
    let me = ActorId::from_u64(1);
    let addr: std::net::SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let from: std::net::SocketAddr = "127.0.0.1:7001".parse().unwrap();
    let now = std::time::Instant::now();
    let mut store = Store::new(me, 0);
    store.counter("x").unwrap().add(1);
    store.flush();
    let config = Config::default();
    let interval = config.gossip_interval;
    let mut node = Node::new(config, NodeId::new(addr, me, 1), store, 7, now).unwrap();
    // "I hold nothing": answered with a delta of everything, and no reply.
    let request = encode_sync(&SyncRequest {
        budget: 64 * 1024,
        reply_bytes: 1 << 20,
        parts: vec![Part::Pairs {
            range: ActorRange::ALL,
            versions: vec![],
        }],
    })
    .unwrap();
    let mut answered = 0;
    let mut refused = 0;
    for _ in 0..MAX_SYNC_PER_INTERVAL + 10 {
        match node.handle_message(from, Channel::Stream, &request, now) {
            Ok(()) => answered += 1,
            Err(HandleError::RateLimited(who)) => {
                assert_eq!(who, from);
                refused += 1;
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(answered, MAX_SYNC_PER_INTERVAL);
    assert_eq!(refused, 10);
    let replies = std::iter::from_fn(|| node.poll_transmit()).count();
    assert_eq!(
        replies as u32, MAX_SYNC_PER_INTERVAL,
        "one delta per answered request"
    );
    // The next interval has a fresh budget.
    assert!(
        node.handle_message(from, Channel::Stream, &request, now + interval)
            .is_ok()
    );
}
