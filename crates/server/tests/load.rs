//! Many concurrent clients against the tiny CPU model for a while: every
//! request is answered (or rejected with its 4xx) while one engine worker
//! serves them in turn, streams that clients abandon mid-way are cancelled,
//! and afterwards the queue, the in-flight gauge and the counters settle to
//! exactly what the clients did.
//!
//! `DS4RS_LOAD_SECS` sets how long the clients keep going (default 60, the
//! CI budget); the run prints requests, rejections and latency percentiles.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{get, post, tiny_server};

const CLIENTS: usize = 32;

/// What the clients did, for checking against /metrics.
#[derive(Default)]
struct Tally {
    chat: AtomicU64,
    messages: AtomicU64,
    responses: AtomicU64,
    rejected: AtomicU64,
    abandoned: AtomicU64,
    /// Latencies of answered requests, in milliseconds.
    latencies: Mutex<Vec<u64>>,
}

fn seconds() -> u64 {
    std::env::var("DS4RS_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

#[test]
fn thirty_two_concurrent_clients_are_all_answered() {
    let url = tiny_server(2048);
    let run_for = Duration::from_secs(seconds());
    let t0 = Instant::now();
    let tally = Arc::new(Tally::default());
    let handles: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (url, tally) = (url.clone(), tally.clone());
            std::thread::spawn(move || {
                let mut r = 0;
                while t0.elapsed() < run_for {
                    one_request(&url, c, r, &tally);
                    r += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
    let elapsed = t0.elapsed();
    let t = Instant::now();
    loop {
        let h = get(&format!("{url}/health")).json();
        if h["queued"] == 0 && h["in_flight"] == 0 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "never settled: {h}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = get(&format!("{url}/metrics")).body;
    let total = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name}")) as u64
    };
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    assert_eq!(
        total(r#"ds4rs_requests_total{endpoint="chat"}"#),
        n(&tally.chat)
    );
    assert_eq!(
        total(r#"ds4rs_requests_total{endpoint="messages"}"#),
        n(&tally.messages)
    );
    assert_eq!(
        total(r#"ds4rs_requests_total{endpoint="responses"}"#),
        n(&tally.responses)
    );
    assert_eq!(total("ds4rs_rejected_requests_total"), n(&tally.rejected));
    assert_eq!(total("ds4rs_queue_depth"), 0);
    assert_eq!(total("ds4rs_requests_in_flight"), 0);
    // Every abandoned stream was cut short (or skipped while queued), and
    // nothing else was.
    assert_eq!(total("ds4rs_cancelled_total"), n(&tally.abandoned));
    assert!(n(&tally.abandoned) > 0 && n(&tally.rejected) > 0);

    let mut lat = tally.latencies.lock().unwrap().clone();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    let requests = n(&tally.chat) + n(&tally.messages) + n(&tally.responses);
    eprintln!(
        "load: {CLIENTS} clients for {:.0} s: {requests} requests ({} answered, {} rejected with 400, \
         {} abandoned and cancelled); answered latency p50 {} ms, p90 {} ms, p99 {} ms, max {} ms; \
         {} prompt tokens ({} reused), {} generated",
        elapsed.as_secs_f64(),
        lat.len(),
        n(&tally.rejected),
        n(&tally.abandoned),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        lat.last().unwrap(),
        total("ds4rs_prompt_tokens_total"),
        total("ds4rs_cached_prompt_tokens_total"),
        total("ds4rs_completion_tokens_total"),
    );
}

/// Client `c`'s request number `r`: the kinds rotate so every client does
/// each in turn.
fn one_request(url: &str, c: usize, r: usize, tally: &Tally) {
    let user = format!("client {c} round {r}");
    let t = Instant::now();
    let count = |c: &AtomicU64| c.fetch_add(1, Ordering::Relaxed);
    match (c + r) % 5 {
        0 => {
            count(&tally.chat);
            let body = format!(
                r#"{{"messages":[{{"role":"user","content":"{user}"}}],"max_tokens":4,"think":false}}"#
            );
            let v = post(&format!("{url}/v1/chat/completions"), &body);
            assert_eq!(v.status, 200, "{}", v.body);
            assert!(v.json()["usage"]["completion_tokens"].as_u64().unwrap() <= 4);
        }
        1 => {
            count(&tally.messages);
            let body = format!(
                r#"{{"max_tokens":4,"stream":true,"messages":[{{"role":"user","content":"{user}"}}]}}"#
            );
            let v = post(&format!("{url}/v1/messages"), &body);
            assert_eq!(v.status, 200);
            assert_eq!(
                v.events().last().unwrap().0.as_deref(),
                Some("message_stop"),
                "{}",
                v.body
            );
        }
        2 => {
            count(&tally.responses);
            let body = format!(
                r#"{{"input":"{user}","max_output_tokens":4,"stream":{}}}"#,
                r.is_multiple_of(2)
            );
            let v = post(&format!("{url}/v1/responses"), &body);
            assert_eq!(v.status, 200, "{}", v.body);
            let done = if r.is_multiple_of(2) {
                v.events().last().unwrap().1.contains("\"response.")
            } else {
                v.json()["object"] == "response"
            };
            assert!(done, "{}", v.body);
        }
        3 => {
            count(&tally.rejected);
            let (path, endpoint) = match r % 3 {
                0 => ("/v1/chat/completions", &tally.chat),
                1 => ("/v1/messages", &tally.messages),
                _ => ("/v1/responses", &tally.responses),
            };
            count(endpoint);
            let v = post(&format!("{url}{path}"), r#"{"messages":5,"input":5}"#);
            assert_eq!(v.status, 400, "{}", v.body);
            return;
        }
        _ => {
            count(&tally.chat);
            count(&tally.abandoned);
            abandon_stream(url, &user);
            return;
        }
    }
    let ms = t.elapsed().as_millis() as u64;
    tally.latencies.lock().unwrap().push(ms);
}

/// Starts a long streaming generation and hangs up once it has begun or
/// after a moment in the queue (a client killed mid-stream).
fn abandon_stream(url: &str, user: &str) {
    let addr = url.trim_start_matches("http://");
    let body = format!(
        r#"{{"messages":[{{"role":"user","content":"{user}"}}],"stream":true,"max_tokens":1500,"think":false}}"#
    );
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 256];
    let _ = s.read(&mut buf);
}
