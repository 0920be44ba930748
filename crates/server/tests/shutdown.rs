//! Clean shutdown in process (spec §10.4; the binary's signal handling is
//! tested in crates/ds4rs/tests/serve_cli.rs): once shutdown begins the
//! running job stops at its next token with finish `error`, a queued job is
//! refused with 503 without being prefilled, and `serve_until` returns once
//! every response is finished.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{get, post, v4_tokenizer, Scripted};

#[test]
fn shutdown_stops_the_running_job_and_refuses_queued_ones() {
    let tok = v4_tokenizer();
    let eos = tok.token_to_id("<｜end▁of▁sentence｜>").unwrap();
    let mut backend = Scripted::new(&tok, &"word ".repeat(400), eos);
    backend.delay = Duration::from_millis(300);
    backend.step = Duration::from_millis(5);
    let app = server::app(Arc::new(backend), tok, eos, server::Config::new(4096)).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            server::serve_until(l, app, async {
                let _ = stop_rx.await;
            })
            .await
        })
    });
    let running = {
        let url = url.clone();
        std::thread::spawn(move || {
            post(
                &format!("{url}/v1/chat/completions"),
                r#"{"messages":[{"role":"user","content":"a"}],"think":false,"stream":true}"#,
            )
        })
    };
    // Let the first job start, then queue a second behind it.
    let t = Instant::now();
    while get(&format!("{url}/health")).json()["queued"] != 1 {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    let queued = {
        let url = url.clone();
        std::thread::spawn(move || {
            post(
                &format!("{url}/v1/chat/completions"),
                r#"{"messages":[{"role":"user","content":"b"}],"think":false}"#,
            )
        })
    };
    while get(&format!("{url}/health")).json()["queued"] != 2 {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(400)); // the first job is decoding
    let t0 = Instant::now();
    stop_tx.send(()).unwrap();

    let q = queued.join().unwrap();
    assert_eq!(q.status, 503, "{}", q.body);
    assert_eq!(q.json()["error"]["message"], "server shutting down");
    let r = running.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains(r#""finish_reason":"error""#), "{}", r.body);
    assert!(r.body.trim_end().ends_with("data: [DONE]"));
    // 400 words at 5 ms each would take 2 s: the job was cut short.
    assert!(r.body.matches("word").count() < 300);
    served.join().unwrap().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(std::net::TcpStream::connect(url.trim_start_matches("http://")).is_err());
}
