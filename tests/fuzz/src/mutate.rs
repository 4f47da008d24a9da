//! The short runs' mutator: without coverage feedback, a seeded generator that flips, inserts,
//! deletes, repeats and splices bytes of the seeds, and inserts tokens the parsers care about.
//! libFuzzer does this better with coverage; this keeps every target exercised on every test run.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Byte strings that take parsers down their rarer paths.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\u0000",
    b"\\ud800",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"null",
    b"1e999",
    b"-0",
    b"NaN",
    b"\r\n",
    b"\n",
    b"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
    b"a=mid:",
    b"a=msid:",
    b"a=ssrc:",
    b"a=rtpmap:",
    b"a=fingerprint:sha-256 ",
    b"a=setup:",
    b"a=group:BUNDLE ",
    b"-->",
    b"--",
    b"<v ",
    b"\x1b",
    "\u{202e}".as_bytes(),
    b"\xff\xff\xff\xff",
    b"\x80\x00",
    b"\x00",
    b".",
    b"eyJ",
    b"\"alg\":\"",
    b"\"kty\":\"",
    b"\"kid\":\"",
];

pub struct Mutator {
    rng: StdRng,
}

impl Mutator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// A new input made from `seeds` (at most `max_len` bytes).
    pub fn next(&mut self, seeds: &[Vec<u8>], max_len: usize) -> Vec<u8> {
        let mut input = if seeds.is_empty() {
            Vec::new()
        } else {
            seeds[self.rng.random_range(0..seeds.len())].clone()
        };
        for _ in 0..self.rng.random_range(1..=8) {
            self.mutate(&mut input, seeds);
        }
        input.truncate(max_len);
        input
    }

    fn mutate(&mut self, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
        let at = |rng: &mut StdRng, len: usize| if len == 0 { 0 } else { rng.random_range(0..=len) };
        match self.rng.random_range(0..7) {
            0 if !input.is_empty() => {
                let i = self.rng.random_range(0..input.len());
                input[i] ^= 1 << self.rng.random_range(0..8);
            }
            1 if !input.is_empty() => {
                let i = self.rng.random_range(0..input.len());
                input[i] = self.rng.random();
            }
            2 => {
                let i = at(&mut self.rng, input.len());
                let token = TOKENS[self.rng.random_range(0..TOKENS.len())];
                input.splice(i..i, token.iter().copied());
            }
            3 if !input.is_empty() => {
                let start = self.rng.random_range(0..input.len());
                let end = (start + self.rng.random_range(1..=32)).min(input.len());
                input.drain(start..end);
            }
            4 if !input.is_empty() => {
                let start = self.rng.random_range(0..input.len());
                let end = (start + self.rng.random_range(1..=64)).min(input.len());
                let chunk = input[start..end].to_vec();
                let i = at(&mut self.rng, input.len());
                for _ in 0..self.rng.random_range(1..=4) {
                    input.splice(i..i, chunk.iter().copied());
                }
            }
            5 if !seeds.is_empty() => {
                let other = &seeds[self.rng.random_range(0..seeds.len())];
                let from = at(&mut self.rng, other.len());
                let i = at(&mut self.rng, input.len());
                input.truncate(i);
                input.extend_from_slice(&other[from..]);
            }
            _ => {
                let i = at(&mut self.rng, input.len());
                let bytes: Vec<u8> = (0..self.rng.random_range(1..=16)).map(|_| self.rng.random()).collect();
                input.splice(i..i, bytes);
            }
        }
    }
}
