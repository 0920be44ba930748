//! Byte-pair encoding of one pre-tokenized piece: repeatedly merge the adjacent pair with the
//! lowest merge rank (leftmost on ties) until no pair has a rank — the result HF's BPE model
//! produces (its priority queue pops by (rank, position) and skips stale entries).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

/// Merge table keyed by the pair of token ids.
pub(crate) struct Merges {
    map: FxHashMap<u64, (u32, u32)>,
}

/// Pieces up to this many bytes use the simple quadratic loop; longer ones (long whitespace
/// or letter runs) use the heap so a pathological input stays O(n log n).
const SHORT_PIECE: usize = 64;

#[inline]
fn key(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

impl Merges {
    pub(crate) fn new() -> Self {
        Merges {
            map: FxHashMap::default(),
        }
    }

    /// Adds the merge `a b -> merged` with the given rank. A repeated pair keeps the later
    /// rank, as HF's map construction does.
    pub(crate) fn insert(&mut self, a: u32, b: u32, rank: u32, merged: u32) {
        self.map.insert(key(a, b), (rank, merged));
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    #[inline]
    fn get(&self, a: u32, b: u32) -> Option<(u32, u32)> {
        self.map.get(&key(a, b)).copied()
    }

    /// Encodes a piece given as its initial single-byte token ids, appending the result.
    pub(crate) fn apply(&self, symbols: &mut Vec<u32>, out: &mut Vec<u32>) {
        if symbols.len() <= SHORT_PIECE {
            self.apply_short(symbols);
            out.extend_from_slice(symbols);
        } else {
            self.apply_long(symbols, out);
        }
    }

    fn apply_short(&self, symbols: &mut Vec<u32>) {
        let mut n = symbols.len();
        if n < 2 {
            return;
        }
        let rank_of = |s: &[u32], i: usize| self.get(s[i], s[i + 1]).map_or(u32::MAX, |m| m.0);
        // ranks[i] is the rank of the pair (symbols[i], symbols[i + 1]); a stack array
        // because this runs once per word.
        let mut ranks = [u32::MAX; SHORT_PIECE];
        for (i, r) in ranks.iter_mut().enumerate().take(n - 1) {
            *r = rank_of(symbols, i);
        }
        loop {
            let mut best = u32::MAX;
            let mut at = 0;
            for (i, &r) in ranks[..n - 1].iter().enumerate() {
                if r < best {
                    best = r;
                    at = i;
                }
            }
            if best == u32::MAX {
                return;
            }
            let Some((_, merged)) = self.get(symbols[at], symbols[at + 1]) else {
                return;
            };
            symbols[at] = merged;
            symbols.remove(at + 1);
            ranks.copy_within(at + 1..n - 1, at);
            n -= 1;
            if n < 2 {
                return;
            }
            if at < n - 1 {
                ranks[at] = rank_of(symbols, at);
            }
            if at > 0 {
                ranks[at - 1] = rank_of(symbols, at - 1);
            }
        }
    }

    fn apply_long(&self, symbols: &[u32], out: &mut Vec<u32>) {
        const NONE: usize = usize::MAX;
        let n = symbols.len();
        let mut id = symbols.to_vec();
        let mut alive = vec![true; n];
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        prev[0] = NONE;
        let mut next: Vec<usize> = (1..=n).collect();
        next[n - 1] = NONE;
        // Entries: (rank, position, merged id), smallest first.
        let mut heap = BinaryHeap::new();
        for i in 0..n - 1 {
            if let Some((r, m)) = self.get(id[i], id[i + 1]) {
                heap.push(Reverse((r, i, m)));
            }
        }
        while let Some(Reverse((_, pos, merged))) = heap.pop() {
            if !alive[pos] || next[pos] == NONE {
                continue;
            }
            let right = next[pos];
            // Stale when the pair at `pos` changed since the entry was pushed.
            if self.get(id[pos], id[right]).map(|m| m.1) != Some(merged) {
                continue;
            }
            id[pos] = merged;
            alive[right] = false;
            next[pos] = next[right];
            if next[pos] != NONE {
                prev[next[pos]] = pos;
            }
            if prev[pos] != NONE {
                if let Some((r, m)) = self.get(id[prev[pos]], id[pos]) {
                    heap.push(Reverse((r, prev[pos], m)));
                }
            }
            if next[pos] != NONE {
                if let Some((r, m)) = self.get(id[pos], id[next[pos]]) {
                    heap.push(Reverse((r, pos, m)));
                }
            }
        }
        let mut i = 0;
        while i != NONE {
            out.push(id[i]);
            i = next[i];
        }
    }
}
