//! `ds4rs pull`: download one of ds4's published GGUFs from the Hugging Face
//! hub and point `./ds4flash.gguf` at it. This is the port of ds4's
//! `download_model.sh` (programs-and-tests.md §6): same repository, file
//! names, token lookup order, output directory variable, `.part` file with
//! resume, "already downloaded" skip and `ln -sfn` at the end.
//!
//! The script is a plain `curl -fL -C -` and verifies nothing, so the checks
//! added here follow what `huggingface_hub` does against the same hub:
//!
//! 1. `HEAD {endpoint}/{repo}/resolve/main/{file}`, redirects not followed
//!    blindly: for a file stored in LFS the hub answers `302` to its CDN and
//!    puts the file's size in `X-Linked-Size` and the LFS object id (the
//!    SHA-256 of the content) in `X-Linked-Etag`. Without those headers the
//!    size comes from `Content-Length` of the final `2xx` answer and the
//!    checksum from the hub's own `ETag` when it is 64 hex digits.
//! 2. `GET` of the same URL with `Range: bytes=N-` when `N` bytes are
//!    already in `<file>.part`; redirects are followed by hand so the `Range`
//!    header survives them and the token only goes to the hub's own origin
//!    (the CDN URL is pre-signed; a hub token has no business there).
//! 3. The SHA-256 is computed while streaming. When resuming, the bytes
//!    already in the `.part` file are hashed first, so the check covers the
//!    whole file.
//! 4. Only a file whose size and checksum matched is renamed to its final
//!    name. A checksum mismatch deletes the `.part` file: resuming from
//!    bytes known to be wrong would fail again, and keeping them under any
//!    name would leave something that looks like a model. A transfer that
//!    merely stops keeps the `.part` file so the next run resumes it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use ureq::http::Response;
use ureq::Body;

use super::synth::progress_bar;

/// The hub repository `download_model.sh` downloads from (§6.1).
const REPO: &str = "antirez/deepseek-v4-gguf";
/// The hub `huggingface_hub` talks to unless `HF_ENDPOINT` says otherwise.
const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// The default `-m` of every ds4 program (§0.1), relative to the CWD.
const LINK_NAME: &str = "ds4flash.gguf";
/// Redirect hops followed per request, as many as curl's `-L` default
/// would need for hub → CDN plus a renamed repository or two.
const MAX_REDIRECTS: usize = 10;
/// Streaming buffer: large enough that the per-read overhead vanishes at
/// hundreds of MB/s, small enough not to matter for memory.
const BUF_SIZE: usize = 1 << 20;

#[derive(clap::Args)]
pub struct Args {
    /// Which published file: q2-imatrix or q4-imatrix (preferred), q2, q4
    /// (legacy, no imatrix) or mtp (speculative-decoding support, not
    /// linked as ./ds4flash.gguf).
    pub target: Target,
    /// Directory the GGUF is written to, created if missing [env:
    /// DS4_GGUF_DIR; default: ./gguf].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Hub base URL [env: HF_ENDPOINT; default: https://huggingface.co].
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Access token, sent as `Authorization: Bearer` to the hub [else env
    /// HF_TOKEN, else ~/.cache/huggingface/token]. The files are public, so
    /// this is optional.
    #[arg(long)]
    pub token: Option<String>,
    /// How many times in a row a transfer that stops or fails with a
    /// network error or a 5xx is resumed within this run, waiting 1 s, 2 s,
    /// 4 s, ... between tries; a try that made progress resets the count.
    /// Rerunning the command resumes as well.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
}

/// The published files (programs-and-tests.md §6.1, gguf-and-quants.md §6.3).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Q2,
    Q2Imatrix,
    Q4,
    Q4Imatrix,
    Mtp,
}

impl Target {
    fn file_name(self) -> &'static str {
        match self {
            Target::Q2 => "DeepSeek-V4-Flash-IQ2XXS-w2Q2K-AProjQ8-SExpQ8-OutQ8-chat-v2.gguf",
            Target::Q2Imatrix => {
                "DeepSeek-V4-Flash-IQ2XXS-w2Q2K-AProjQ8-SExpQ8-OutQ8-chat-v2-imatrix.gguf"
            }
            Target::Q4 => "DeepSeek-V4-Flash-Q4KExperts-F16HC-F16Compressor-F16Indexer-Q8Attn-Q8Shared-Q8Out-chat-v2.gguf",
            Target::Q4Imatrix => "DeepSeek-V4-Flash-Q4KExperts-F16HC-F16Compressor-F16Indexer-Q8Attn-Q8Shared-Q8Out-chat-v2-imatrix.gguf",
            Target::Mtp => "DeepSeek-V4-Flash-MTP-Q4K-Q8_0-F32.gguf",
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let file = args.target.file_name();
    let links = args.target != Target::Mtp;
    // Refuse before spending hours on a download whose last step would fail.
    if links {
        check_link_replaceable(Path::new(LINK_NAME))?;
    }

    let endpoint = args
        .endpoint
        .clone()
        .or_else(|| non_empty_env("HF_ENDPOINT"))
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    let endpoint = endpoint.trim_end_matches('/');
    let url = format!("{endpoint}/{REPO}/resolve/main/{file}");
    let dir = args
        .dir
        .clone()
        .or_else(|| non_empty_env("DS4_GGUF_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("gguf"));
    fs::create_dir_all(&dir).with_context(|| format!("creating directory {}", dir.display()))?;
    let dest = dir.join(file);
    let part = dir.join(format!("{file}.part"));

    // download_model.sh refuses these: an aria2 download in progress keeps
    // its data under the final name, which would then look complete.
    let aria2 = dir.join(format!("{file}.aria2"));
    if aria2.exists() {
        bail!(
            "found incomplete aria2 download sidecar {}; finish that download with aria2 or \
             delete both it and {}, then rerun",
            aria2.display(),
            dest.display()
        );
    }

    match fs::metadata(&dest) {
        // Only this command renames a verified .part to the final name, so
        // (as in the script) a non-empty final file counts as done.
        Ok(m) if m.len() > 0 => eprintln!("Already downloaded: {}", dest.display()),
        Ok(_) => download(&args, endpoint, &url, &part, &dest)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            download(&args, endpoint, &url, &part, &dest)?
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", dest.display())),
    }

    let target =
        fs::canonicalize(&dest).with_context(|| format!("resolving {}", dest.display()))?;
    if links {
        link(&target, Path::new(LINK_NAME))?;
        println!("Linked ./{LINK_NAME} -> {}", target.display());
    } else {
        println!(
            "Downloaded {}; use it with --mtp {} --mtp-draft 2",
            target.display(),
            target.display()
        );
    }
    Ok(())
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Token lookup order of download_model.sh (§6.2): flag, `HF_TOKEN`, then
/// the file `huggingface-cli login` writes.
fn find_token(flag: Option<&str>) -> Option<String> {
    if let Some(t) = flag.filter(|t| !t.is_empty()) {
        return Some(t.to_string());
    }
    if let Some(t) = non_empty_env("HF_TOKEN") {
        return Some(t);
    }
    let home = non_empty_env("HOME")?;
    let text = fs::read_to_string(Path::new(&home).join(".cache/huggingface/token")).ok()?;
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// `./ds4flash.gguf` may be missing or a symlink (ours from an earlier
/// pull, or the script's); anything else is the user's own file.
fn check_link_replaceable(link: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(link) {
        Ok(m) if m.file_type().is_symlink() => Ok(()),
        Ok(_) => bail!(
            "./{} exists and is not a symlink; refusing to replace it. Move or delete it \
             (or run from another directory) and rerun",
            link.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("checking ./{}", link.display())),
    }
}

/// `ln -sfn target link`, made atomic: the new symlink is created under a
/// temporary name and renamed over the old one, so `./ds4flash.gguf` never
/// disappears for a running process that opens it.
fn link(target: &Path, link: &Path) -> anyhow::Result<()> {
    check_link_replaceable(link)?;
    let tmp = PathBuf::from(format!(".{}.tmp-{}", link.display(), std::process::id()));
    let _ = fs::remove_file(&tmp);
    make_symlink(target, &tmp)
        .with_context(|| format!("creating symlink {} -> {}", tmp.display(), target.display()))?;
    if let Err(e) = fs::rename(&tmp, link) {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("replacing ./{}", link.display()));
    }
    Ok(())
}

#[cfg(unix)]
fn make_symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn make_symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::windows::fs::symlink_file(target, link)
}

/// What the hub says about the file before any byte is fetched.
struct Remote {
    size: u64,
    /// Lowercase hex, when the hub published one.
    sha256: Option<String>,
}

/// A blocking HTTP client that follows redirects itself (see the module
/// comment for why).
struct Client {
    agent: ureq::Agent,
    /// `scheme://host[:port]` of the endpoint: the only origin that gets the
    /// token and whose `ETag` is trusted as a checksum.
    origin: String,
    token: Option<String>,
}

/// One request's outcome, with the URL it finally came from.
struct Reply {
    url: String,
    resp: Response<Body>,
}

impl Client {
    fn new(endpoint: &str, token: Option<String>) -> Self {
        let config = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .user_agent(concat!("ds4rs/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            // A stalled connection is an error (and then a resume), but a
            // slow one is not, so this is per read, not per transfer.
            .timeout_per_read(Some(Duration::from_secs(60)))
            .build();
        Client {
            agent: config.into(),
            origin: origin(endpoint).to_string(),
            token,
        }
    }

    /// Sends one request, no redirects followed.
    fn send(&self, head: bool, url: &str, from: u64) -> Result<Response<Body>, ureq::Error> {
        let auth = self
            .token
            .as_ref()
            .filter(|_| origin(url) == self.origin)
            .map(|t| format!("Bearer {t}"));
        if head {
            let mut req = self.agent.head(url).header("Accept-Encoding", "identity");
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.call()
        } else {
            let mut req = self.agent.get(url).header("Accept-Encoding", "identity");
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            if from > 0 {
                req = req.header("Range", format!("bytes={from}-"));
            }
            req.call()
        }
    }

    /// The file's size and checksum: step 1 of the module comment.
    fn metadata(&self, url: &str, file: &str) -> Result<Remote, Failure> {
        let mut url = url.to_string();
        let mut linked_size = None;
        let mut linked_sha = None;
        for _ in 0..=MAX_REDIRECTS {
            let resp = self.send(true, &url, 0).map_err(|e| {
                Failure::Retry(anyhow::Error::new(e).context(format!("HEAD {}", shown(&url))))
            })?;
            let status = resp.status().as_u16();
            if linked_size.is_none() {
                linked_size = header(&resp, "x-linked-size").and_then(|v| v.parse::<u64>().ok());
            }
            if linked_sha.is_none() {
                linked_sha = header(&resp, "x-linked-etag").and_then(sha256_of_etag);
            }
            if (300..400).contains(&status) {
                // The hub's answer for an LFS file: the metadata is on the
                // redirect itself, so the CDN need not be asked.
                if let Some(size) = linked_size {
                    return Ok(Remote {
                        size,
                        sha256: linked_sha,
                    });
                }
                url = next_url(&url, &resp)?;
                continue;
            }
            check_status(&resp, "HEAD", &url, file, self.token.is_some())?;
            let sha256 = linked_sha.or_else(|| {
                (origin(&url) == self.origin)
                    .then(|| header(&resp, "etag").and_then(sha256_of_etag))
                    .flatten()
            });
            let size = linked_size.or_else(|| header(&resp, "content-length")?.parse().ok());
            let Some(size) = size else {
                let url = shown(&url);
                return Err(Failure::Fatal(anyhow::anyhow!(
                    "HEAD {url}: the server reported no size (no X-Linked-Size or \
                     Content-Length); refusing to download without size verification"
                )));
            };
            return Ok(Remote { size, sha256 });
        }
        Err(Failure::Fatal(anyhow::anyhow!(
            "HEAD {}: more than {MAX_REDIRECTS} redirects",
            shown(&url)
        )))
    }

    /// `GET url` from byte `from`, following redirects; the answer's status
    /// is left to the caller.
    fn get(&self, url: &str, from: u64) -> Result<Reply, Failure> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let resp = self.send(false, &url, from).map_err(|e| {
                Failure::Retry(anyhow::Error::new(e).context(format!("GET {}", shown(&url))))
            })?;
            if (300..400).contains(&resp.status().as_u16()) {
                url = next_url(&url, &resp)?;
                continue;
            }
            return Ok(Reply { url, resp });
        }
        Err(Failure::Fatal(anyhow::anyhow!(
            "GET {}: more than {MAX_REDIRECTS} redirects",
            shown(&url)
        )))
    }
}

/// Why a download attempt stopped: worth resuming within this run, or not.
enum Failure {
    /// Network trouble or a 5xx; the `.part` file is intact.
    Retry(anyhow::Error),
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Fatal(e)
    }
}

fn header<'a>(resp: &'a Response<Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name)?.to_str().ok().map(str::trim)
}

/// An ETag names the content's SHA-256 when it is 64 hex digits (the hub's
/// LFS object id); git blob ids (40 digits) and CDN ETags are not checksums
/// this command can verify.
fn sha256_of_etag(etag: &str) -> Option<String> {
    let v = etag.trim().trim_start_matches("W/").trim_matches('"');
    (v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())).then(|| v.to_ascii_lowercase())
}

/// `scheme://authority` of an absolute URL (the whole string if it has no
/// path).
fn origin(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    &url[..end]
}

/// A URL as shown in messages: without its query, which for the hub's CDN
/// is a long, short-lived signature.
fn shown(url: &str) -> &str {
    &url[..url.find(['?', '#']).unwrap_or(url.len())]
}

/// The target of a redirect, resolved against the URL that answered it
/// (the hub uses both absolute and path-only `Location`s).
fn next_url(url: &str, resp: &Response<Body>) -> Result<String, Failure> {
    let Some(loc) = header(resp, "location") else {
        return Err(Failure::Fatal(anyhow::anyhow!(
            "{} answered {} without a Location header",
            shown(url),
            resp.status()
        )));
    };
    Ok(resolve(url, loc))
}

fn resolve(base: &str, loc: &str) -> String {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        loc.to_string()
    } else if let Some(rest) = loc.strip_prefix("//") {
        let scheme = base.split("://").next().unwrap_or("https");
        format!("{scheme}://{rest}")
    } else if loc.starts_with('/') {
        format!("{}{loc}", origin(base))
    } else {
        let o = origin(base);
        let path = &base[o.len()..];
        let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        let dir = if dir.is_empty() { "/" } else { dir };
        format!("{o}{dir}{loc}")
    }
}

/// Turns a non-2xx answer into an error that says what to do about it.
fn check_status(
    resp: &Response<Body>,
    method: &str,
    url: &str,
    file: &str,
    had_token: bool,
) -> Result<(), Failure> {
    let status = resp.status();
    let code = status.as_u16();
    if status.is_success() {
        return Ok(());
    }
    let what = format!("{method} {}: HTTP {status}", shown(url));
    let e = match code {
        401 | 403 if had_token => anyhow::anyhow!(
            "{what}: the hub rejected the token; check HF_TOKEN (or --token, or \
             ~/.cache/huggingface/token) can read {REPO}"
        ),
        401 | 403 => anyhow::anyhow!(
            "{what}: the hub wants authentication; set HF_TOKEN (or pass --token) to a token \
             that can read {REPO}"
        ),
        404 => anyhow::anyhow!("{what}: {file} was not found in {REPO}"),
        500..=599 => return Err(Failure::Retry(anyhow::anyhow!("{what}"))),
        _ => anyhow::anyhow!("{what}"),
    };
    Err(Failure::Fatal(e))
}

/// The `.part` file and the hash of the bytes in it, kept across attempts so
/// a retry within the run does not hash the prefix again.
struct Part {
    path: PathBuf,
    file: File,
    hasher: Option<Sha256>,
    have: u64,
}

impl Part {
    /// Opens (or creates) the `.part` file and hashes what it holds.
    fn open(path: &Path, remote: &Remote) -> anyhow::Result<Part> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut have = file
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        if have > remote.size {
            eprintln!(
                "{} holds {have} bytes, more than the {} published; starting over",
                path.display(),
                remote.size
            );
            file.set_len(0)
                .with_context(|| format!("truncating {}", path.display()))?;
            have = 0;
        }
        let mut hasher = remote.sha256.as_ref().map(|_| Sha256::new());
        if let (Some(h), true) = (hasher.as_mut(), have > 0) {
            eprintln!("Hashing the {have} bytes already in {}", path.display());
            let bar = progress_bar(have);
            file.seek(SeekFrom::Start(0))
                .with_context(|| format!("seeking in {}", path.display()))?;
            let mut reader = (&mut file).take(have);
            let mut buf = vec![0u8; BUF_SIZE];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
                };
                h.update(&buf[..n]);
                bar.inc(n as u64);
            }
            bar.finish_and_clear();
        }
        file.seek(SeekFrom::Start(have))
            .with_context(|| format!("seeking in {}", path.display()))?;
        Ok(Part {
            path: path.to_path_buf(),
            file,
            hasher,
            have,
        })
    }

    /// Drops everything: the server ignored the Range request.
    fn restart(&mut self) -> anyhow::Result<()> {
        self.file
            .set_len(0)
            .and_then(|_| self.file.seek(SeekFrom::Start(0)).map(|_| ()))
            .with_context(|| format!("truncating {}", self.path.display()))?;
        self.have = 0;
        if let Some(h) = self.hasher.as_mut() {
            *h = Sha256::new();
        }
        Ok(())
    }

    fn append(&mut self, bytes: &[u8], size: u64) -> anyhow::Result<()> {
        if let Err(e) = self.file.write_all(bytes) {
            let ctx = if e.kind() == io::ErrorKind::StorageFull {
                format!(
                    "disk full writing {} after {} of {size} bytes; free at least {} bytes \
                     there and rerun to resume",
                    self.path.display(),
                    self.have,
                    size - self.have
                )
            } else {
                format!("writing {}", self.path.display())
            };
            return Err(e).context(ctx);
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(bytes);
        }
        self.have += bytes.len() as u64;
        Ok(())
    }
}

fn download(
    args: &Args,
    endpoint: &str,
    url: &str,
    part: &Path,
    dest: &Path,
) -> anyhow::Result<()> {
    let file = args.target.file_name();
    let client = Client::new(endpoint, find_token(args.token.as_deref()));
    let mut retry = Retry {
        max: args.retries,
        tries: 0,
    };
    let remote = loop {
        match client.metadata(url, file) {
            Ok(r) => break r,
            Err(Failure::Retry(e)) if retry.wait(&e) => {}
            Err(Failure::Retry(e) | Failure::Fatal(e)) => return Err(e),
        }
    };
    eprintln!(
        "Downloading {}\n  -> {} ({} bytes, {:.2} GiB{})",
        shown(url),
        dest.display(),
        remote.size,
        remote.size as f64 / (1u64 << 30) as f64,
        if remote.sha256.is_some() {
            ", SHA-256 published"
        } else {
            ""
        }
    );
    let mut part_file = Part::open(part, &remote)?;
    loop {
        let before = part_file.have;
        match fetch(&client, url, file, &remote, &mut part_file) {
            Ok(()) => break,
            Err(Failure::Retry(e)) => {
                // A transfer that got somewhere is not the same failure
                // again: a long download may survive any number of them.
                if part_file.have > before {
                    retry.tries = 0;
                }
                if !retry.wait(&e) {
                    return Err(e.context(format!(
                        "{} kept with {} of {} bytes; rerun the same command to resume",
                        part.display(),
                        part_file.have,
                        remote.size
                    )));
                }
            }
            Err(Failure::Fatal(e)) => return Err(e),
        }
    }
    finish(part_file, &remote, file, dest)
}

/// In-run retries of transient failures, waiting 1 s, 2 s, 4 s, ... (at
/// most a minute) in between.
struct Retry {
    max: u32,
    tries: u32,
}

impl Retry {
    /// Reports `e` and sleeps, or says the retries are used up.
    fn wait(&mut self, e: &anyhow::Error) -> bool {
        if self.tries >= self.max {
            return false;
        }
        let wait = Duration::from_secs(1u64 << self.tries.min(6));
        self.tries += 1;
        eprintln!(
            "{e:#}; retrying in {} s ({}/{})",
            wait.as_secs(),
            self.tries,
            self.max
        );
        std::thread::sleep(wait);
        true
    }
}

/// One GET from where the `.part` file ends to the end of the file.
fn fetch(
    client: &Client,
    url: &str,
    file: &str,
    remote: &Remote,
    part: &mut Part,
) -> Result<(), Failure> {
    let size = remote.size;
    if part.have == size {
        return Ok(());
    }
    let from = part.have;
    let Reply { url: src, resp } = client.get(url, from)?;
    let src = shown(&src);
    match resp.status().as_u16() {
        206 => {
            let range = header(&resp, "content-range").unwrap_or("");
            let (start, total) = parse_content_range(range).ok_or_else(|| {
                anyhow::anyhow!("GET {src}: 206 with an unusable Content-Range {range:?}")
            })?;
            if start != from {
                return Err(anyhow::anyhow!(
                    "GET {src}: asked for bytes from {from}, got a range starting at {start}"
                )
                .into());
            }
            if let Some(total) = total.filter(|&t| t != size) {
                return Err(anyhow::anyhow!(
                    "GET {src}: the file is {total} bytes there but the hub said {size}; it may \
                     have changed since, rerun to start over"
                )
                .into());
            }
            eprintln!("Resuming at byte {from} of {size}");
        }
        200 => {
            if from > 0 {
                eprintln!("The server ignored the Range request; starting over");
                part.restart()?;
            }
            let len = header(&resp, "content-length").and_then(|v| v.parse::<u64>().ok());
            if let Some(len) = len.filter(|&l| l != size) {
                return Err(anyhow::anyhow!(
                    "GET {src}: Content-Length {len} but the hub said {size} bytes"
                )
                .into());
            }
        }
        416 => {
            return Err(anyhow::anyhow!(
                "GET {src}: the server refused bytes {from}- of a {size}-byte file; delete {} \
                 and rerun",
                part.path.display()
            )
            .into())
        }
        _ => {
            check_status(&resp, "GET", src, file, client.token.is_some())?;
            return Err(anyhow::anyhow!("GET {src}: unexpected HTTP {}", resp.status()).into());
        }
    }

    let bar = progress_bar(size);
    bar.set_position(part.have);
    let mut body = resp.into_body().into_reader();
    let mut buf = vec![0u8; BUF_SIZE];
    let result = loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                break Err(Failure::Retry(
                    anyhow::Error::new(e).context(format!("reading {src}")),
                ))
            }
        };
        if part.have + n as u64 > size {
            break Err(Failure::Fatal(anyhow::anyhow!(
                "GET {src}: the server sent more than the {size} bytes the hub announced"
            )));
        }
        if let Err(e) = part.append(&buf[..n], size) {
            break Err(Failure::Fatal(e));
        }
        bar.set_position(part.have);
    };
    bar.finish_and_clear();
    // What was written stays resumable whatever happened to the connection.
    part.file
        .sync_all()
        .with_context(|| format!("syncing {}", part.path.display()))?;
    result?;
    if part.have < size {
        return Err(Failure::Retry(anyhow::anyhow!(
            "GET {src}: the transfer stopped after {} of {size} bytes",
            part.have
        )));
    }
    Ok(())
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start.trim().parse().ok()?, total))
}

/// Verifies size and checksum, then gives the file its final name.
fn finish(part: Part, remote: &Remote, file: &str, dest: &Path) -> anyhow::Result<()> {
    let Part {
        path,
        file: f,
        hasher,
        ..
    } = part;
    let on_disk = f
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    drop(f);
    if on_disk != remote.size {
        bail!(
            "{} is {on_disk} bytes but {file} is {} bytes; delete it and rerun",
            path.display(),
            remote.size
        );
    }
    match (&remote.sha256, hasher) {
        (Some(want), Some(h)) => {
            let got: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            if &got != want {
                let removed = fs::remove_file(&path);
                bail!(
                    "SHA-256 mismatch for {file}: the hub published {want}, the download hashes \
                     to {got}; {} (rerun to download it again)",
                    match removed {
                        Ok(()) => format!("deleted {}", path.display()),
                        Err(e) => format!("could not delete {}: {e}; delete it", path.display()),
                    }
                );
            }
            eprintln!("SHA-256 verified: {got}");
        }
        _ => {
            eprintln!("warning: the hub published no SHA-256 for {file}; only its size was checked")
        }
    }
    fs::rename(&path, dest)
        .with_context(|| format!("renaming {} to {}", path.display(), dest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_resolve_like_a_browser() {
        let base = "https://huggingface.co/a/b/resolve/main/f.gguf?x=1";
        assert_eq!(origin(base), "https://huggingface.co");
        assert_eq!(origin("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(
            resolve(base, "https://cdn.example/x?sig=1"),
            "https://cdn.example/x?sig=1"
        );
        assert_eq!(resolve(base, "//cdn.example/x"), "https://cdn.example/x");
        assert_eq!(
            resolve(base, "/c/d/resolve/main/f.gguf"),
            "https://huggingface.co/c/d/resolve/main/f.gguf"
        );
        assert_eq!(
            resolve(base, "g.gguf"),
            "https://huggingface.co/a/b/resolve/main/g.gguf"
        );
        assert_eq!(resolve("http://h:1", "g"), "http://h:1/g");
    }

    #[test]
    fn only_64_hex_etags_are_checksums() {
        let sha = "A".repeat(64);
        assert_eq!(sha256_of_etag(&format!("\"{sha}\"")), Some("a".repeat(64)));
        assert_eq!(
            sha256_of_etag(&format!("W/\"{sha}\"")),
            Some("a".repeat(64))
        );
        assert_eq!(
            sha256_of_etag("\"0123456789012345678901234567890123456789\""),
            None
        );
        assert_eq!(sha256_of_etag(&"g".repeat(64)), None);
    }

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 10-99/100"),
            Some((10, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 10-99/*"), Some((10, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert_eq!(parse_content_range("bytes x-2/3"), None);
    }
}
