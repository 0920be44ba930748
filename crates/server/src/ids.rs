//! Identifiers handed to clients: tool-call ids from the OS RNG (agents key
//! tool results on them, so they must not repeat across turns) and the
//! process-wide request counter.

use std::fmt::Write;

/// `prefix` + 32 hex digits of 16 random bytes (`call_…`, `toolu_…`).
pub fn random_id(prefix: &str) -> String {
    random_hex::<16>(prefix)
}

/// `prefix` + 24 hex digits of 12 random bytes: the Responses API's
/// response and item ids (`resp_…`, `msg_…`, `rs_…`, `fc_…`).
pub fn item_id(prefix: &str) -> String {
    random_hex::<12>(prefix)
}

fn random_hex<const N: usize>(prefix: &str) -> String {
    let mut bytes = [0u8; N];
    // The OS RNG failing is not worth failing a reply over: the id then
    // still differs per call through the clock and a counter.
    if getrandom::fill(&mut bytes).is_err() {
        let fallback = fallback_seed().to_le_bytes();
        let n = N.min(8);
        bytes[..n].copy_from_slice(&fallback[..n]);
    }
    let mut s = String::with_capacity(prefix.len() + 2 * N);
    s.push_str(prefix);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A sampling seed for requests that give none.
pub fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => fallback_seed(),
    }
}

fn fallback_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ N
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Seconds since the Unix epoch (`created` fields).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
