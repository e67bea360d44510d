//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and the inputs of crashes found
//! and fixed (`fuzz/regressions/<target>/`) through every target, so `cargo test` re-checks them
//! without a fuzzer.

#![expect(
    clippy::panic,
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a test: it fails loudly and says what it replayed"
)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use outpost_fuzz_targets::{TARGETS, Target};

/// The files of `fuzz/<kind>/<target>/`, if that folder exists.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(name: &str) {
    let target: Target = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .unwrap_or_else(|| panic!("no target {name}"));
    let corpus = inputs("corpus", name);
    // A missing or emptied corpus must fail, not pass having checked nothing.
    assert!(
        corpus.len() >= 5,
        "fuzz/corpus/{name} holds {} files; the replay needs the committed corpus",
        corpus.len()
    );
    let regressions = inputs("regressions", name);
    let mut failed = Vec::new();
    for file in corpus.iter().chain(&regressions) {
        let data = std::fs::read(file).unwrap();
        if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{name} panicked on: {failed:#?}");
    println!(
        "{name}: {} corpus and {} regression files replayed",
        corpus.len(),
        regressions.len()
    );
}

#[test]
fn every_target_has_a_replay_test() {
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "rum_report",
            "device_request_json",
            "device_request_xml",
            "signed_file",
            "ack_bundle",
            "usage_bundle",
            "netconf_framer"
        ]
    );
}

#[test]
fn rum_report() {
    replay("rum_report");
}

#[test]
fn device_request_json() {
    replay("device_request_json");
}

#[test]
fn device_request_xml() {
    replay("device_request_xml");
}

#[test]
fn signed_file() {
    replay("signed_file");
}

#[test]
fn ack_bundle() {
    replay("ack_bundle");
}

#[test]
fn usage_bundle() {
    replay("usage_bundle");
}

#[test]
fn netconf_framer() {
    replay("netconf_framer");
}
