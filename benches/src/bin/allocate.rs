//! samtal-allocate-bench: what one downlink estimate update costs the SFU's allocator.
//!
//! Every half second the media server re-spends each subscriber's estimate on the video it
//! receives (`samtal_sfu::forward::allocate`). This times that decision alone, with no I/O, for a
//! subscriber of a room of P publishers whose simulcast cameras (three layers) are shown in tiles of
//! mixed sizes, one of them the dominant speaker, at estimates from a thin VPN link to fibre.
//!
//!   cargo run -p samtal-bench --bin samtal-allocate-bench -- [--publishers 10] [--subscribers 20] [--rounds 20000]
//!
//! Prints one markdown table row: publishers, subscribers, allocations, ns per allocation (one
//! subscriber's update), µs per round (every subscriber once).

use clap::Parser;
use samtal_sfu::forward::allocate::{self, Want};
use std::hint::black_box;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// Publishers whose cameras each subscriber could receive.
    #[arg(long, default_value_t = 10)]
    publishers: usize,
    /// Subscribers re-allocated in one round.
    #[arg(long, default_value_t = 20)]
    subscribers: usize,
    /// Rounds to time.
    #[arg(long, default_value_t = 20_000)]
    rounds: usize,
}

fn main() {
    let args = Args::parse();
    // Each subscriber shows the publishers in its own tile sizes: a few large, most small, some
    // scrolled away; one publisher is the dominant speaker.
    let subscribers: Vec<Vec<Want<usize>>> = (0..args.subscribers)
        .map(|s| {
            (0..args.publishers)
                .map(|p| Want {
                    key: p,
                    priority: if p == 0 { allocate::SPEAKER } else { allocate::CAMERA },
                    max_layer: match (p + s) % 7 {
                        0 => None,
                        1 | 2 => Some(2),
                        3 => Some(1),
                        _ => Some(0),
                    },
                    costs: [
                        Some(120_000 + 1_000 * p as u64),
                        Some(450_000 + 3_000 * p as u64),
                        Some(1_400_000 + 9_000 * p as u64),
                    ],
                })
                .collect()
        })
        .collect();
    // Estimates from 400 kbit/s to 20 Mbit/s, changing every round.
    let budgets: Vec<u64> = (0..64).map(|i| 400_000 + i * 300_000).collect();
    let mut out = Vec::with_capacity(args.publishers);
    let started = Instant::now();
    for round in 0..args.rounds {
        for (s, wants) in subscribers.iter().enumerate() {
            let budget = budgets[(round + s) % budgets.len()];
            black_box(allocate::allocate(Some(black_box(budget)), black_box(wants), &mut out));
            black_box(&out);
        }
    }
    let elapsed = started.elapsed();
    let allocations = args.rounds * args.subscribers;
    println!("| publishers | subscribers | allocations | ns per allocation | µs per round |");
    println!("|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {:.0} | {:.1} |",
        args.publishers,
        args.subscribers,
        allocations,
        elapsed.as_nanos() as f64 / allocations as f64,
        elapsed.as_micros() as f64 / args.rounds as f64,
    );
}
