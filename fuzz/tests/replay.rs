//! Replays every committed seed of every target through the target's body, without
//! libFuzzer, so the seeds and the harness stay valid on any toolchain
//! (`cargo test --manifest-path fuzz/Cargo.toml`), and replays every crash ever kept in
//! `fuzz/artifacts/` as a regression input (FUZZING.md lists them).

use std::fs;
use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use countermesh_fuzz::{node_ops, swim, wire};

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("readable corpus directory").path();
            let bytes = fs::read(&path).expect("readable seed");
            (path.display().to_string(), bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

#[test]
fn wire_decode_seeds_pass() {
    for (name, bytes) in seeds("wire_decode") {
        eprintln!("{name}");
        wire::run(&bytes, |f| {
            f();
            0
        });
    }
}

#[test]
fn swim_seeds_pass() {
    for (name, bytes) in seeds("swim") {
        eprintln!("{name}");
        swim::run(&bytes);
    }
}

#[test]
fn node_ops_seeds_pass() {
    for (name, bytes) in seeds("node_ops") {
        eprintln!("{name}");
        // What libfuzzer-sys does for a typed target.
        if let Ok(scenario) = node_ops::Scenario::arbitrary_take_rest(Unstructured::new(&bytes)) {
            node_ops::run(&scenario);
        }
    }
}

/// Every kept crash input runs without a panic now. An input written for an older
/// `Scenario` layout may no longer parse as one; it is then also delivered to a node as
/// raw bytes on both channels, so its bytes still exercise the decoder and the node.
#[test]
fn every_artifact_runs_without_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts");
    let mut replayed = 0;
    for target in ["wire_decode", "swim", "node_ops"] {
        let Ok(dir) = fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in dir {
            let path = entry.expect("readable artifact directory").path();
            let bytes = fs::read(&path).expect("readable artifact");
            eprintln!("{}", path.display());
            match target {
                "wire_decode" => wire::run(&bytes, |f| {
                    f();
                    0
                }),
                "swim" => swim::run(&bytes),
                _ => {
                    if let Ok(scenario) =
                        node_ops::Scenario::arbitrary_take_rest(Unstructured::new(&bytes))
                    {
                        node_ops::run(&scenario);
                    }
                    node_ops::run(&node_ops::Scenario {
                        setup: countermesh_fuzz::protocol::Setup::plain(),
                        ops: [true, false]
                            .into_iter()
                            .map(|stream| node_ops::Op::Raw {
                                peer: 0,
                                stream,
                                bytes: bytes.clone(),
                            })
                            .collect(),
                    });
                }
            }
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no artifacts under {}", root.display());
}

#[test]
fn swim_framing_round_trips() {
    let packets = [
        swim::Packet {
            peer: 2,
            wait: std::time::Duration::from_millis(150),
            payload: b"abc",
        },
        swim::Packet {
            peer: 0,
            wait: std::time::Duration::ZERO,
            payload: b"",
        },
    ];
    assert_eq!(swim::parse(&swim::frame(&packets)), packets);
}
