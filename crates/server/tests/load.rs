//! Many concurrent clients against the tiny CPU model: every request is
//! answered (or rejected with its 4xx) while one engine worker serves them
//! in turn, streams that clients abandon are cancelled, and the queue and
//! metrics settle back to idle.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{get, post, tiny_server};

const CLIENTS: usize = 32;
const ROUNDS: usize = 3;

#[test]
fn thirty_two_concurrent_clients_are_all_answered() {
    let url = tiny_server(2048);
    let t0 = Instant::now();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let url = url.clone();
            std::thread::spawn(move || {
                for r in 0..ROUNDS {
                    let user = format!("client {c} round {r}");
                    match (c + r) % 4 {
                        0 => {
                            let body = format!(
                                r#"{{"messages":[{{"role":"user","content":"{user}"}}],"max_tokens":4,"think":false}}"#
                            );
                            let v = post(&format!("{url}/v1/chat/completions"), &body);
                            assert_eq!(v.status, 200, "{}", v.body);
                            let u = &v.json()["usage"];
                            assert!(u["completion_tokens"].as_u64().unwrap() <= 4);
                        }
                        1 => {
                            let body = format!(
                                r#"{{"max_tokens":4,"stream":true,"messages":[{{"role":"user","content":"{user}"}}]}}"#
                            );
                            let v = post(&format!("{url}/v1/messages"), &body);
                            assert_eq!(v.status, 200);
                            assert_eq!(v.events().last().unwrap().0.as_deref(), Some("message_stop"));
                        }
                        2 => {
                            let v = post(&format!("{url}/v1/chat/completions"), r#"{"messages":5}"#);
                            assert_eq!(v.status, 400);
                        }
                        _ => abandon_stream(&url, &user),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
    let t = Instant::now();
    while get(&format!("{url}/health")).json()["queued"] != 0 {
        assert!(t.elapsed() < Duration::from_secs(30), "queue never drained");
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = get(&format!("{url}/metrics")).body;
    let total = |name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let per_kind = (CLIENTS * ROUNDS / 4) as f64;
    assert_eq!(
        total(r#"ds4rs_requests_total{endpoint="messages"}"#),
        per_kind
    );
    assert_eq!(
        total(r#"ds4rs_requests_total{endpoint="chat"}"#),
        3.0 * per_kind
    );
    assert_eq!(total("ds4rs_rejected_requests_total"), per_kind);
    assert_eq!(total("ds4rs_queue_depth"), 0.0);
    // Every abandoned stream was cut short (or skipped while queued).
    assert_eq!(total("ds4rs_cancelled_total"), per_kind);
    eprintln!("{} requests in {:?}", CLIENTS * ROUNDS, t0.elapsed());
}

/// Starts a long streaming generation and hangs up once it has begun or
/// after a moment in the queue.
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
