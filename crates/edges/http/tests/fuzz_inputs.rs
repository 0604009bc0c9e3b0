//! The fuzz targets (`fuzz/`, libFuzzer on nightly) run on stable for a CI-length while: each
//! target gets its seed corpus, then inputs made by mutating the seeds (bit flips, byte
//! insertions and deletions, splices, cut-offs, interesting bytes) and plain random bytes.
//! A panic anywhere fails the test and prints the input and the seed. `FUZZ_ITERATIONS`
//! (default 20,000 per target) sets the length; `FUZZ_SEED` replays a run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jitgate_server::fuzzing;
use std::path::Path;

/// xorshift64*: enough randomness to mutate with, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\0",
    b"\xff",
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b"=",
    b"%",
    b"\n",
    b"\r\n",
    b"[[workflow]]\n",
    b"1e999",
    b"-1",
    b"18446744073709551616",
    b"\xf0\x9f\x92\xa5",
    b"\xc3\x28",
    b"null",
    b"true",
    b"\xe2\x80\xae",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if rng.below(10) == 0 {
        let len = rng.below(256);
        return (0..len).map(|_| rng.next() as u8).collect();
    }
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(8) {
        let at = rng.below(data.len() + 1);
        match rng.below(6) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => data.insert(at, rng.next() as u8),
            2 if at < data.len() => {
                let end = (at + 1 + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            3 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                let end = (from + rng.below(64)).min(other.len());
                data.splice(at..at, other[from..end].iter().copied());
            }
            4 => data.truncate(at),
            _ => {
                let bytes = INTERESTING[rng.below(INTERESTING.len())];
                data.splice(at..at, bytes.iter().copied());
            }
        }
    }
    data
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../fuzz/corpus")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|n| n.parse().ok())
}

fn run(target: &str, body: fn(&[u8])) {
    assert!(
        fuzzing::fixtures_loaded(),
        "the quickstart policy must load for the targets to check against it"
    );
    let iterations = env_number("FUZZ_ITERATIONS").unwrap_or(20_000);
    let seed = env_number("FUZZ_SEED").unwrap_or_else(fresh_seed);
    let seeds = corpus(target);
    let mut rng = Rng(seed | 1);
    for n in 0..seeds.len() as u64 + iterations {
        let input = match seeds.get(n as usize) {
            Some(seed) => seed.clone(),
            None => mutate(&mut rng, &seeds),
        };
        if std::panic::catch_unwind(|| body(&input)).is_err() {
            panic!(
                "{target} panicked (FUZZ_SEED={seed}, input {n}): {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}

fn fresh_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

#[test]
fn policy_loader() {
    run("policy", fuzzing::policy);
}

#[test]
fn durations() {
    run("duration", fuzzing::duration);
}

#[test]
fn json_bodies() {
    run("json_bodies", fuzzing::json_bodies);
}

#[test]
fn bearer_tokens() {
    run("bearer", fuzzing::bearer);
}

#[test]
fn slack_payloads() {
    run("slack", fuzzing::slack);
}
