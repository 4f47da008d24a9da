//! Deadlines of many peer connections in one heap, so the loop sleeps until the earliest one.
//! Entries are never removed: an entry whose deadline no longer matches its peer's is stale and skipped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Timers {
    pub fn schedule(&mut self, at: Instant, key: usize) {
        self.heap.push(Reverse((at, key)));
    }

    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Pops every entry due at `now`.
    pub fn pop_due(&mut self, now: Instant, due: &mut Vec<(Instant, usize)>) {
        while let Some(Reverse((at, key))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            due.push((at, key));
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops stale entries when the heap grew far beyond the live peers.
    pub fn compact(&mut self, live: impl Fn(Instant, usize) -> bool) {
        self.heap.retain(|Reverse((at, key))| live(*at, *key));
    }
}
