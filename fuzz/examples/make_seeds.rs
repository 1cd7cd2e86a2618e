//! Writes the seed corpora of the byte-oriented targets from real nodes' traffic:
//! `corpus/wire_decode` gets distinct messages of a recorded exchange (plus one prune
//! message of each kind, which a ten-second exchange never sends), and `corpus/swim`
//! gets the SWIM packets the fuzzed node received, framed as the swim target reads them. Run from `fuzz/` after a wire-format change:
//! `cargo run --release --example make-seeds`.

use std::fs;
use std::path::Path;
use std::time::Duration;

use countermesh_core::{ActorId, Channel, PruneMessage};
use countermesh_fuzz::protocol::{
    NODE_ACTOR, encode_valid_prune, node_addr, peer_actor, peer_addr, recorded_exchange,
};
use countermesh_fuzz::swim::{Packet, frame};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::write(dir.join(name), bytes)
}

fn main() -> std::io::Result<()> {
    let log = recorded_exchange(Duration::from_secs(10));
    let wire = Path::new("corpus/wire_decode");
    let mut seen = std::collections::HashSet::new();
    let mut kinds = [0usize; 4];
    for (_, _, _, bytes, _) in &log {
        let kind = usize::from(bytes[3]).saturating_sub(1).min(3);
        // A handful of each kind is plenty; the fuzzer mutates from there.
        if kinds[kind] < 12 && seen.insert(bytes.clone()) {
            kinds[kind] += 1;
            write(wire, &format!("recorded-{kind}-{}", kinds[kind]), bytes)?;
        }
    }

    // Pruning only starts after members have been down for a while, so its messages
    // are built here rather than recorded.
    let prunes = [
        PruneMessage::Intent {
            owner: peer_actor(0),
            id: 1,
            victims: vec![(ActorId::from_u64(7), 3), (peer_actor(2), 300)],
        },
        PruneMessage::Ack {
            id: 1,
            accepted: vec![ActorId::from_u64(7)],
            refused: vec![peer_actor(2)],
        },
        PruneMessage::Done {
            owner: NODE_ACTOR,
            id: 1,
            folded: vec![ActorId::from_u64(7)],
        },
    ];
    for (i, prune) in prunes.iter().enumerate() {
        write(wire, &format!("prune-{i}"), &encode_valid_prune(prune))?;
    }

    // SWIM packets to the fuzzed node, in order, with their real timing, cut into a few
    // inputs; senders are renumbered to the swim target's fake peers.
    let mut to_node: Vec<Packet<'_>> = Vec::new();
    let mut last = Duration::ZERO;
    for (from, to, channel, bytes, at) in &log {
        if *to != node_addr() || *channel != Channel::Datagram {
            continue;
        }
        let peer = (0..4u8).find(|&i| peer_addr(i) == *from).unwrap_or(0);
        to_node.push(Packet {
            peer,
            wait: at.saturating_sub(last),
            payload: &bytes[countermesh_core::HEADER_LEN..],
        });
        last = *at;
    }
    let swim = Path::new("corpus/swim");
    for (i, chunk) in to_node.chunks(6).enumerate().take(16) {
        write(swim, &format!("recorded-{i}"), &frame(chunk))?;
    }
    println!(
        "wrote {} wire seeds (3 of them prune messages) and {} swim seeds from {} messages",
        kinds.iter().sum::<usize>() + prunes.len(),
        to_node.chunks(6).len().min(16),
        log.len()
    );
    Ok(())
}
