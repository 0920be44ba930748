//! Exact-DSML replay memory (kv-cache.md §4): tool-call id → the DSML block
//! the model sampled for that turn. Clients send calls back as JSON, whose
//! canonical rendering can differ from the sampled bytes; rendering the
//! remembered block instead keeps the next prompt a token-for-token
//! extension of the live session, so an agent's tool loop only prefills each
//! new tool result instead of everything after the first call.
//!
//! Bounded by an id count and by accounted bytes (id + block + a fixed
//! per-entry overhead, as ds4 counts them; a coding agent's calls can carry
//! whole files); the least recently used ids go first. Blocks are shared
//! between the ids of one turn.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use text::render::{DsmlReplay, ToolCall};

/// ds4's byte budget for the memory.
pub const MAX_BYTES: usize = 512 << 20;

/// Bytes accounted per entry besides its id and block.
const ENTRY_OVERHEAD: usize = 64;

/// The id → block map, shared by every connection task.
pub struct ToolMemory {
    max_ids: usize,
    max_bytes: usize,
    inner: Mutex<Inner>,
    /// Assistant turns rendered from their sampled block.
    exact: AtomicU64,
    /// Assistant turns with calls rendered from JSON (some id unknown).
    canonical: AtomicU64,
}

#[derive(Default)]
struct Inner {
    /// id → (block, recency tick).
    blocks: HashMap<String, (Arc<str>, u64)>,
    /// recency tick → id, oldest first.
    order: BTreeMap<u64, String>,
    tick: u64,
    /// Accounted bytes of the entries held.
    bytes: usize,
}

fn cost(id: &str, block: &str) -> usize {
    id.len() + block.len() + ENTRY_OVERHEAD
}

impl Inner {
    /// Marks `id` (and its block) as just used.
    fn touch(&mut self, id: &str) {
        self.tick += 1;
        let tick = self.tick;
        if let Some((_, t)) = self.blocks.get_mut(id) {
            self.order.remove(t);
            *t = tick;
            self.order.insert(tick, id.to_string());
        }
    }
}

impl ToolMemory {
    /// A memory of at most `max_ids` ids and [`MAX_BYTES`]; 0 ids disables
    /// it (nothing is kept).
    pub fn new(max_ids: usize) -> Self {
        Self::with_budget(max_ids, MAX_BYTES)
    }

    /// A memory of at most `max_ids` ids and `max_bytes` accounted bytes.
    pub fn with_budget(max_ids: usize, max_bytes: usize) -> Self {
        ToolMemory {
            max_ids,
            max_bytes,
            inner: Mutex::new(Inner::default()),
            exact: AtomicU64::new(0),
            canonical: AtomicU64::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.max_ids > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves a usable map.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers `raw` as the block of every id in `ids`.
    pub fn remember(&self, ids: &[String], raw: &str) {
        if !self.enabled() || ids.is_empty() || raw.is_empty() {
            return;
        }
        let block: Arc<str> = Arc::from(raw);
        let mut m = self.lock();
        for id in ids {
            // One block over the whole budget would only empty the memory.
            if cost(id, raw) > self.max_bytes {
                continue;
            }
            m.tick += 1;
            let tick = m.tick;
            m.bytes += cost(id, &block);
            if let Some((old_block, old)) = m.blocks.insert(id.clone(), (block.clone(), tick)) {
                m.order.remove(&old);
                m.bytes -= cost(id, &old_block);
            }
            m.order.insert(tick, id.clone());
        }
        while m.blocks.len() > self.max_ids || m.bytes > self.max_bytes {
            let Some((_, oldest)) = m.order.pop_first() else {
                break;
            };
            if let Some((b, _)) = m.blocks.remove(&oldest) {
                m.bytes -= cost(&oldest, &b);
            }
        }
    }

    /// Whether `id` was issued for a remembered block.
    pub fn knows(&self, id: &str) -> bool {
        self.lock().blocks.contains_key(id)
    }

    /// The block for `calls` when every call has an id, all are known and
    /// all map to the same block (one assistant turn replayed whole).
    pub fn lookup(&self, calls: &[ToolCall]) -> Option<String> {
        if !self.enabled() || calls.is_empty() {
            return None;
        }
        let mut m = self.lock();
        let mut found: Option<Arc<str>> = None;
        for c in calls {
            let (block, _) = m.blocks.get(c.id.as_deref()?)?;
            match &found {
                Some(f) if **f != **block => return None,
                Some(_) => {}
                None => found = Some(block.clone()),
            }
        }
        for c in calls {
            if let Some(id) = c.id.as_deref() {
                m.touch(id);
            }
        }
        found.map(|b| b.to_string())
    }

    /// Ids held.
    pub fn len(&self) -> usize {
        self.lock().blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ToolMemory {
    /// (exact, canonical): how past tool-call turns were rendered.
    pub fn replay_counts(&self) -> (u64, u64) {
        (
            self.exact.load(Ordering::Relaxed),
            self.canonical.load(Ordering::Relaxed),
        )
    }
}

/// The renderer's hook; counts which way each turn went.
impl DsmlReplay for ToolMemory {
    fn block(&self, calls: &[ToolCall]) -> Option<String> {
        let found = self.lookup(calls);
        let counter = if found.is_some() {
            &self.exact
        } else {
            &self.canonical
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str) -> ToolCall {
        ToolCall {
            id: Some(id.into()),
            name: "f".into(),
            arguments: "{}".into(),
        }
    }

    #[test]
    fn a_turn_replays_only_when_every_id_maps_to_one_block() {
        let m = ToolMemory::new(10);
        m.remember(&["a".into(), "b".into()], "BLOCK1");
        m.remember(&["c".into()], "BLOCK2");
        assert_eq!(m.lookup(&[call("a"), call("b")]).as_deref(), Some("BLOCK1"));
        assert_eq!(m.lookup(&[call("c")]).as_deref(), Some("BLOCK2"));
        assert_eq!(m.lookup(&[call("a"), call("c")]), None);
        assert_eq!(m.lookup(&[call("a"), call("zz")]), None);
        let no_id = ToolCall {
            id: None,
            ..call("a")
        };
        assert_eq!(m.lookup(&[no_id]), None);
    }

    #[test]
    fn least_recently_used_ids_are_pruned_first() {
        let m = ToolMemory::new(2);
        m.remember(&["a".into()], "A");
        m.remember(&["b".into()], "B");
        assert!(m.lookup(&[call("a")]).is_some()); // refreshes a
        m.remember(&["c".into()], "C");
        assert_eq!(m.len(), 2);
        assert!(m.knows("a") && m.knows("c") && !m.knows("b"));
    }

    #[test]
    fn the_byte_budget_prunes_too() {
        let m = ToolMemory::with_budget(100, 2 * (1 + 1000 + ENTRY_OVERHEAD));
        let big = "x".repeat(1000);
        m.remember(&["a".into()], &big);
        m.remember(&["b".into()], &big);
        assert_eq!(m.len(), 2);
        m.remember(&["c".into()], &big);
        assert!(!m.knows("a") && m.knows("b") && m.knows("c"));
        // Re-remembering an id replaces its cost rather than adding to it.
        m.remember(&["c".into()], &big);
        assert!(m.knows("b") && m.knows("c"));
        // A block over the whole budget is not kept, nor evicts the rest.
        m.remember(&["d".into()], &"y".repeat(5000));
        assert!(!m.knows("d") && m.knows("b") && m.knows("c"));
    }

    #[test]
    fn a_zero_limit_disables_the_memory() {
        let m = ToolMemory::new(0);
        m.remember(&["a".into()], "A");
        assert!(m.is_empty());
        assert_eq!(m.lookup(&[call("a")]), None);
    }
}
