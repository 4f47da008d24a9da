//! Every fuzz target, run briefly: first on its seeds (`corpus/<target>/`, which include the inputs
//! that once crashed a target), then on seeded mutations of them for `SAMTAL_FUZZ_SECONDS`
//! (default 4) per target. A panic fails the test and prints the input as hex, to add to the seeds.
//! The long coverage-guided runs use libFuzzer: see `libfuzzer/` and the README.

use samtal_fuzz::TARGETS;
use samtal_fuzz::mutate::Mutator;
use std::path::Path;
use std::time::{Duration, Instant};

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

fn run(name: &str) {
    let target = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no target {name}"))
        .1;
    let seeds = seeds(name);
    assert!(!seeds.is_empty(), "{name} has no seeds");
    let run_one = |input: &[u8]| {
        if std::panic::catch_unwind(|| target(input)).is_err() {
            panic!(
                "{name} failed on input (hex) {}",
                input.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
        }
    };
    for seed in &seeds {
        run_one(seed);
    }
    let seconds: u64 = std::env::var("SAMTAL_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut mutator = Mutator::new(0x5a17a1 ^ name.len() as u64);
    let mut runs = 0u64;
    while Instant::now() < deadline {
        run_one(&mutator.next(&seeds, 64 * 1024));
        runs += 1;
    }
    println!("{name}: {} seeds and {runs} mutated inputs, no failure", seeds.len());
}

#[test]
fn signaling_message() {
    run("signaling_message");
}

#[test]
fn session_rooms() {
    run("session_rooms");
}

#[test]
fn sdp_publish() {
    run("sdp_publish");
}

#[test]
fn rtp_forward() {
    run("rtp_forward");
}

#[test]
fn jwt() {
    run("jwt");
}

#[test]
fn jwks() {
    run("jwks");
}

#[test]
fn export() {
    run("export");
}

#[test]
fn every_target_has_a_test_here() {
    let source = include_str!("smoke.rs");
    for (name, _) in TARGETS {
        assert!(source.contains(&format!("fn {name}()")), "no smoke test for {name}");
    }
}
