//! `ds4rs pull` against a stand-in for the Hugging Face hub on 127.0.0.1.
//!
//! The stand-in copies what the hub does for an LFS file: `HEAD`/`GET` of
//! `/{repo}/resolve/main/{file}` answer `302` to a CDN (here a second
//! listener, so a second origin) with `X-Linked-Size` and `X-Linked-Etag`
//! (the SHA-256); the CDN serves the bytes and honours `Range`. Every
//! request is logged so the tests can check what the client sent. Each run
//! of the binary is killed after a deadline, and the server only listens on
//! 127.0.0.1.
#![cfg(unix)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const REPO: &str = "antirez/deepseek-v4-gguf";
const Q2I: &str = "DeepSeek-V4-Flash-IQ2XXS-w2Q2K-AProjQ8-SExpQ8-OutQ8-chat-v2-imatrix.gguf";
const MTP: &str = "DeepSeek-V4-Flash-MTP-Q4K-Q8_0-F32.gguf";
const SIZE: usize = 300_000;
/// Far above what any run here needs; only a hang reaches it.
const DEADLINE: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
struct Req {
    cdn: bool,
    method: String,
    path: String,
    headers: HashMap<String, String>,
}

struct Setup {
    data: Vec<u8>,
    /// What `X-Linked-Etag` announces.
    sha256: String,
    /// The first CDN GET sends this many body bytes, then hangs up.
    cut_first_get_after: Option<usize>,
    /// When set, the hub answers 401 unless `Authorization: Bearer <it>`.
    token: Option<String>,
    /// What `X-Linked-Size` announces, when not the true size.
    linked_size: Option<usize>,
}

struct State {
    setup: Setup,
    cdn_url: String,
    cut_pending: AtomicBool,
    log: Mutex<Vec<Req>>,
}

struct Hub {
    endpoint: String,
    state: Arc<State>,
}

impl Hub {
    fn start(setup: Setup) -> Hub {
        let hub = TcpListener::bind("127.0.0.1:0").unwrap();
        let cdn = TcpListener::bind("127.0.0.1:0").unwrap();
        let state = Arc::new(State {
            cut_pending: AtomicBool::new(setup.cut_first_get_after.is_some()),
            setup,
            cdn_url: format!("http://{}/blob?sig=s3cr3t", cdn.local_addr().unwrap()),
            log: Mutex::new(Vec::new()),
        });
        let endpoint = format!("http://{}", hub.local_addr().unwrap());
        for (listener, is_cdn) in [(hub, false), (cdn, true)] {
            let st = state.clone();
            thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let st = st.clone();
                    thread::spawn(move || serve(&st, stream, is_cdn));
                }
            });
        }
        Hub { endpoint, state }
    }

    fn requests(&self) -> Vec<Req> {
        self.state.log.lock().unwrap().clone()
    }
}

fn serve(st: &State, mut stream: TcpStream, cdn: bool) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let req = Req {
        cdn,
        method,
        path,
        headers,
    };
    st.log.lock().unwrap().push(req.clone());
    let head = req.method == "HEAD";
    let s = &st.setup;

    if !cdn {
        if req.path != format!("/{REPO}/resolve/main/{Q2I}") {
            return respond(&mut stream, "404 Not Found", &[], b"Entry not found", head);
        }
        if let Some(t) = &s.token {
            if req.headers.get("authorization") != Some(&format!("Bearer {t}")) {
                return respond(&mut stream, "401 Unauthorized", &[], b"", head);
            }
        }
        let hdrs = [
            ("Location", st.cdn_url.clone()),
            (
                "X-Linked-Size",
                s.linked_size.unwrap_or(s.data.len()).to_string(),
            ),
            ("X-Linked-Etag", format!("\"{}\"", s.sha256)),
            ("X-Repo-Commit", "0".repeat(40)),
        ];
        return respond(&mut stream, "302 Found", &hdrs, b"", head);
    }

    if req.path != "/blob?sig=s3cr3t" {
        return respond(&mut stream, "404 Not Found", &[], b"", head);
    }
    let len = s.data.len();
    let from = req.headers.get("range").and_then(|r| {
        r.strip_prefix("bytes=")?
            .strip_suffix('-')?
            .parse::<usize>()
            .ok()
    });
    let (status, body, mut hdrs) = match from {
        Some(f) if f < len => (
            "206 Partial Content",
            &s.data[f..],
            vec![("Content-Range", format!("bytes {f}-{}/{len}", len - 1))],
        ),
        Some(_) => return respond(&mut stream, "416 Range Not Satisfiable", &[], b"", head),
        None => ("200 OK", &s.data[..], vec![]),
    };
    hdrs.push(("ETag", "\"not-a-sha256\"".to_string()));
    if !head && st.cut_pending.swap(false, Ordering::SeqCst) {
        let n = s.cut_first_get_after.unwrap_or(0).min(body.len());
        // Announce the whole body, send part of it, hang up.
        let _ = write_head(&mut stream, status, &hdrs, body.len());
        let _ = stream.write_all(&body[..n]);
        let _ = stream.flush();
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    }
    respond(&mut stream, status, &hdrs, body, head)
}

fn write_head(
    stream: &mut TcpStream,
    status: &str,
    hdrs: &[(&str, String)],
    len: usize,
) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in hdrs {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {len}\r\nConnection: close\r\n\r\n"
    ));
    stream.write_all(out.as_bytes())
}

fn respond(stream: &mut TcpStream, status: &str, hdrs: &[(&str, String)], body: &[u8], head: bool) {
    let _ = write_head(stream, status, hdrs, body.len());
    if !head {
        let _ = stream.write_all(body);
    }
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Deterministic noise (xorshift64*), different per seed.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn setup(seed: u64) -> Setup {
    let data = noise(seed, SIZE);
    Setup {
        sha256: sha256_hex(&data),
        data,
        cut_first_get_after: None,
        token: None,
        linked_size: None,
    }
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `ds4rs pull ARGS --endpoint HUB --dir models` in `cwd`.
fn pull(cwd: &Path, hub: &Hub, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut all = vec!["pull"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--endpoint", &hub.endpoint, "--dir", "models"]);
    ds4rs(cwd, &all, env)
}

/// Runs `ds4rs ARGS` in `cwd` with a clean environment (no token, no
/// proxy, HOME inside the temp dir) plus `env`, killed after `DEADLINE`.
fn ds4rs(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = cwd.join("stdout.txt");
    let err = cwd.join("stderr.txt");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ds4rs"));
    cmd.args(args)
        .current_dir(cwd)
        .env("HOME", cwd)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    for v in [
        "HF_TOKEN",
        "HF_ENDPOINT",
        "DS4_GGUF_DIR",
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ds4rs {args:?} ran past {DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Run {
        ok: status.success(),
        stdout: std::fs::read_to_string(out).unwrap(),
        stderr: std::fs::read_to_string(err).unwrap(),
    }
}

fn dest(cwd: &Path) -> PathBuf {
    cwd.join("models").join(Q2I)
}

fn part(cwd: &Path) -> PathBuf {
    cwd.join("models").join(format!("{Q2I}.part"))
}

fn assert_linked(cwd: &Path) {
    let link = cwd.join("ds4flash.gguf");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        std::fs::canonicalize(dest(cwd)).unwrap()
    );
}

fn cdn_gets(hub: &Hub) -> Vec<Req> {
    hub.requests()
        .into_iter()
        .filter(|r| r.cdn && r.method == "GET")
        .collect()
}

#[test]
fn full_download_verifies_and_replaces_an_old_link() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let s = setup(1);
    let data = s.data.clone();
    let hub = Hub::start(s);
    std::os::unix::fs::symlink("old-model.gguf", cwd.join("ds4flash.gguf")).unwrap();

    let r = pull(cwd, &hub, &["q2-imatrix"], &[]);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(std::fs::read(dest(cwd)).unwrap(), data);
    assert!(!part(cwd).exists());
    assert!(r.stderr.contains("SHA-256 verified"), "{}", r.stderr);
    assert!(
        r.stdout.contains("Linked ./ds4flash.gguf -> "),
        "{}",
        r.stdout
    );
    assert_linked(cwd);

    let reqs = hub.requests();
    let path = format!("/{REPO}/resolve/main/{Q2I}");
    assert!(reqs
        .iter()
        .any(|r| !r.cdn && r.method == "HEAD" && r.path == path));
    assert!(reqs
        .iter()
        .any(|r| !r.cdn && r.method == "GET" && r.path == path));
    let gets = cdn_gets(&hub);
    assert_eq!(gets.len(), 1);
    assert!(!gets[0].headers.contains_key("range"));

    // Second run: nothing to fetch, the link is made again.
    let n = hub.requests().len();
    let r = pull(cwd, &hub, &["q2-imatrix"], &[]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stderr.contains("Already downloaded"), "{}", r.stderr);
    assert_eq!(hub.requests().len(), n);
    assert_linked(cwd);
}

/// `HF_ENDPOINT` and `DS4_GGUF_DIR` stand in for `--endpoint` and `--dir`,
/// as in `huggingface_hub` and download_model.sh.
#[test]
fn endpoint_and_dir_from_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let s = setup(12);
    let data = s.data.clone();
    let hub = Hub::start(s);
    let endpoint = format!("{}/", hub.endpoint);

    let r = ds4rs(
        cwd,
        &["pull", "q2-imatrix"],
        &[("HF_ENDPOINT", &endpoint), ("DS4_GGUF_DIR", "models")],
    );
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(std::fs::read(dest(cwd)).unwrap(), data);
    assert_linked(cwd);
}

#[test]
fn interrupted_transfer_resumes_on_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let mut s = setup(2);
    s.cut_first_get_after = Some(100_000);
    let data = s.data.clone();
    let hub = Hub::start(s);

    let r = pull(cwd, &hub, &["q2-imatrix", "--retries", "0"], &[]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains("rerun the same command to resume"),
        "{}",
        r.stderr
    );
    assert!(!dest(cwd).exists());
    assert!(std::fs::symlink_metadata(cwd.join("ds4flash.gguf")).is_err());
    let have = std::fs::metadata(part(cwd)).unwrap().len() as usize;
    assert!(have > 0 && have < SIZE, "{have}");
    assert_eq!(std::fs::read(part(cwd)).unwrap(), data[..have]);

    let r = pull(cwd, &hub, &["q2-imatrix", "--retries", "0"], &[]);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(std::fs::read(dest(cwd)).unwrap(), data);
    assert!(!part(cwd).exists());
    assert_linked(cwd);
    let gets = cdn_gets(&hub);
    assert_eq!(gets.len(), 2);
    assert_eq!(
        gets[1].headers.get("range"),
        Some(&format!("bytes={have}-"))
    );
}

#[test]
fn interrupted_transfer_resumes_within_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let mut s = setup(3);
    s.cut_first_get_after = Some(50_000);
    let data = s.data.clone();
    let hub = Hub::start(s);

    let r = pull(cwd, &hub, &["q2-imatrix", "--retries", "1"], &[]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stderr.contains("retrying"), "{}", r.stderr);
    assert_eq!(std::fs::read(dest(cwd)).unwrap(), data);
    let gets = cdn_gets(&hub);
    assert_eq!(gets.len(), 2);
    assert!(gets[1]
        .headers
        .get("range")
        .is_some_and(|r| r != "bytes=0-"));
}

#[test]
fn checksum_mismatch_leaves_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let mut s = setup(4);
    s.sha256 = sha256_hex(b"something else");
    let hub = Hub::start(s);

    let r = pull(cwd, &hub, &["q2-imatrix"], &[]);
    assert!(!r.ok);
    assert!(r.stderr.contains("SHA-256 mismatch"), "{}", r.stderr);
    assert!(!dest(cwd).exists());
    assert!(!part(cwd).exists());
    assert!(std::fs::symlink_metadata(cwd.join("ds4flash.gguf")).is_err());
}

#[test]
fn size_mismatch_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let mut s = setup(11);
    s.linked_size = Some(SIZE + 10);
    let hub = Hub::start(s);

    let r = pull(cwd, &hub, &["q2-imatrix"], &[]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains(&format!(
            "Content-Length {SIZE} but the hub said {} bytes",
            SIZE + 10
        )),
        "{}",
        r.stderr
    );
    assert!(!dest(cwd).exists());
    assert!(std::fs::metadata(part(cwd)).map_or(true, |m| m.len() == 0));
}

/// The bytes already in a `.part` file are hashed too: a corrupt prefix is
/// caught even though only the tail was fetched.
#[test]
fn corrupt_part_prefix_is_caught_on_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let s = setup(5);
    let mut prefix = s.data[..120_000].to_vec();
    prefix[7] ^= 0xff;
    let hub = Hub::start(s);
    std::fs::create_dir(cwd.join("models")).unwrap();
    std::fs::write(part(cwd), &prefix).unwrap();

    let r = pull(cwd, &hub, &["q2-imatrix"], &[]);
    assert!(!r.ok);
    assert!(r.stderr.contains("SHA-256 mismatch"), "{}", r.stderr);
    assert_eq!(
        cdn_gets(&hub)[0].headers.get("range").map(String::as_str),
        Some("bytes=120000-")
    );
    assert!(!dest(cwd).exists());
    assert!(!part(cwd).exists());
}

#[test]
fn missing_file_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let hub = Hub::start(setup(6));

    let r = pull(cwd, &hub, &["mtp"], &[]);
    assert!(!r.ok);
    assert!(r.stderr.contains("404"), "{}", r.stderr);
    assert!(r.stderr.contains(MTP), "{}", r.stderr);
    assert!(!cwd.join("models").join(MTP).exists());
}

#[test]
fn token_goes_to_the_hub_only() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let mut s = setup(7);
    s.token = Some("hf_sekrit".into());
    let data = s.data.clone();
    let hub = Hub::start(s);

    let r = pull(cwd, &hub, &["q2-imatrix"], &[]);
    assert!(!r.ok);
    assert!(r.stderr.contains("401"), "{}", r.stderr);
    assert!(r.stderr.contains("set HF_TOKEN"), "{}", r.stderr);

    let r = pull(cwd, &hub, &["q2-imatrix"], &[("HF_TOKEN", "hf_sekrit")]);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(std::fs::read(dest(cwd)).unwrap(), data);
    let reqs = hub.requests();
    let auth = |r: &Req| r.headers.get("authorization").cloned();
    assert!(reqs
        .iter()
        .filter(|r| !r.cdn)
        .skip(1)
        .all(|r| auth(r).as_deref() == Some("Bearer hf_sekrit")));
    assert!(reqs.iter().filter(|r| r.cdn).all(|r| auth(r).is_none()));
}

#[test]
fn token_file_is_read_when_no_env() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let mut s = setup(8);
    s.token = Some("hf_fromfile".into());
    let hub = Hub::start(s);
    std::fs::create_dir_all(cwd.join(".cache/huggingface")).unwrap();
    std::fs::write(cwd.join(".cache/huggingface/token"), "hf_fromfile\n").unwrap();

    let r = pull(cwd, &hub, &["q2-imatrix"], &[]);
    assert!(r.ok, "{}", r.stderr);
}

#[test]
fn refuses_to_replace_a_regular_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let hub = Hub::start(setup(9));
    std::fs::write(cwd.join("ds4flash.gguf"), b"mine").unwrap();

    let r = pull(cwd, &hub, &["q2-imatrix"], &[]);
    assert!(!r.ok);
    assert!(r.stderr.contains("not a symlink"), "{}", r.stderr);
    assert_eq!(std::fs::read(cwd.join("ds4flash.gguf")).unwrap(), b"mine");
    assert!(hub.requests().is_empty());
}

#[test]
fn unknown_target_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(setup(10));
    let r = pull(tmp.path(), &hub, &["q3"], &[]);
    assert!(!r.ok);
    assert!(r.stderr.contains("q2-imatrix"), "{}", r.stderr);
    assert!(hub.requests().is_empty());
}
