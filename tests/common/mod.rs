//! Shared test harness: runs the real `oauth-sidecar` binary on a config in a
//! temporary folder, finds its port from the JSON "listening" log line, and
//! keeps its log lines for assertions. Also small real upstream servers.
#![allow(dead_code)]

pub mod browser;
pub mod stores;

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A `server:` section whose `legacy` consumer (secret
/// `legacy-secret-0123456789`) has the password and refresh grants, for
/// `alice` (password `alice-password`, role `farm_viewer`).
pub const LEGACY_SERVER: &str = r#"
server:
  roles:
    farm_viewer: { label: Viewer, description: Read farm records }
  consumers:
    - client_id: legacy
      secret: legacy-secret-0123456789
      scopes: [farm_viewer]
      grant_types: [password, refresh_token]
  users:
    - username: alice
      password: alice-password
      roles: [farm_viewer]
"#;

/// A running sidecar process.
pub struct Sidecar {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    pub dir: tempfile::TempDir,
}

impl Sidecar {
    /// Starts the binary on `listen: 127.0.0.1:0`, a store in a temp folder,
    /// JSON logs, and the YAML lines in `extra` (which must not repeat those keys).
    pub fn start(extra: &str) -> Sidecar {
        Self::start_with(extra, "listen: 127.0.0.1:0\n")
    }

    /// Like [`Sidecar::start`] with a custom `listen:` (and anything else) prefix.
    pub fn start_with(extra: &str, prefix: &str) -> Sidecar {
        let dir = write_config(extra, prefix);
        Self::start_in(dir)
    }

    /// Starts the binary on the `sidecar.yaml` of a folder made by
    /// [`write_config`] (so a test can run CLI commands on it first, or
    /// start again on the same store).
    pub fn start_in(dir: tempfile::TempDir) -> Sidecar {
        let config = dir.path().join("sidecar.yaml");
        let mut child = Command::new(env!("CARGO_BIN_EXE_oauth-sidecar"))
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn oauth-sidecar");
        let stdout = child.stdout.take().expect("stdout");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("\"listening\"")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(line.clone());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("the sidecar did not log `listening`; logs: {:?}", logs.lock().unwrap());
            }
        };
        let json: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        let addr = json["fields"]["addr"].as_str().expect("addr field").parse().expect("socket address");
        Sidecar { child, addr, logs, dir }
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The log lines written so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits up to 5 s for a log line containing every one of `needles`.
    pub fn wait_for_log(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(line) = self.logs().into_iter().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line;
            }
            assert!(Instant::now() < deadline, "no log line with {needles:?} in {:#?}", self.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The egress listener's address, from its "egress ready" log line
    /// (an unspecified address, as `0.0.0.0:PORT`, is reached on loopback).
    pub fn egress_addr(&self) -> std::net::SocketAddr {
        let line = self.wait_for_log(&["egress ready"]);
        let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
        let addr: std::net::SocketAddr =
            json["fields"]["addr"].as_str().expect("the egress address").parse().expect("an address");
        if addr.ip().is_unspecified() {
            std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
        } else {
            addr
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the sidecar did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak resident memory of the process in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("data/sidecar.db")
    }

    /// Stops the process and hands back its folder, to start again on it.
    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }
}

/// Starts the binary on `listen: 127.0.0.1:0`, the store at `store` (a
/// `sqlite://` or `postgres://` URL, shared with other processes), JSON
/// logs and `extra`.
pub fn start_on_store(store: &str, extra: &str) -> Sidecar {
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml =
        format!("listen: 127.0.0.1:0\nstore: \"{store}\"\nlog: {{ level: info, format: json }}\n{extra}");
    std::fs::write(dir.path().join("sidecar.yaml"), yaml).expect("write config");
    Sidecar::start_in(dir)
}

/// A temp folder with `sidecar.yaml` as [`Sidecar::start_with`] writes it:
/// `prefix`, a store at `data/sidecar.db`, JSON logs, then `extra`.
pub fn write_config(extra: &str, prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("data/sidecar.db");
    let yaml =
        format!("{prefix}store: sqlite://{}\nlog: {{ level: info, format: json }}\n{extra}", store.display());
    std::fs::write(dir.path().join("sidecar.yaml"), yaml).expect("write config");
    dir
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary's CLI (`ARGS --config DIR/sidecar.yaml`) with `stdin`
/// on a folder made by [`write_config`].
pub fn cli(dir: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oauth-sidecar"))
        .args(args)
        .arg("--config")
        .arg(dir.join("sidecar.yaml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn oauth-sidecar");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// Sends raw bytes on a new connection and reads the whole answer (the
/// request should carry `Connection: close`, or the server must close).
pub fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request).expect("write");
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one response (head and a `Content-Length` body) from a kept-alive
/// connection; what came when the peer closes or sends nothing for 10 s.
pub fn read_response(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return text;
            }
        }
        match stream.read(&mut byte) {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&buf).into_owned(),
            Ok(n) => buf.extend_from_slice(&byte[..n]),
        }
    }
}

/// POSTs a form to `url` with HTTP Basic `(id, secret)`, as OAuth clients
/// call the token, revoke and introspect endpoints; the status and the
/// JSON body (`null` when it is not JSON).
pub async fn post_form(
    url: &str,
    (id, secret): (&str, &str),
    form: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let res = client()
        .post(url)
        .basic_auth(id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

/// Stores a provider token for client `api`, tag `box` (an
/// authorization-code grant with `access` and `refresh`, expiring at
/// `expires_at`), encrypted under the configuration's token key, as the
/// OAuth client role would after `/oauth/return`.
pub async fn save_provider_token(
    tokens: &oauth_sidecar::client::tokens::Tokens,
    access: &str,
    refresh: &str,
    expires_at: i64,
) {
    use oauth_sidecar::client::protocol::{Grant, Owner};
    let grant = Grant {
        access_token: access.into(),
        refresh_token: Some(refresh.into()),
        token_type: "Bearer".into(),
        expires_at: Some(expires_at),
        scopes: None,
        id_token: None,
        raw: serde_json::json!({}),
    };
    let new = oauth_sidecar::client::tokens::NewToken {
        client: "api",
        tag: "box",
        grant_type: "authorization_code",
        asked: &[],
        grant: &grant,
        owner: &Owner::default(),
    };
    tokens.save(new).await.expect("save the provider token");
}

/// A reqwest client with the ring crypto provider installed.
pub fn client() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder().build().expect("client")
}

/// The `oauth2` (and `openidconnect`) crates' async HTTP client, over our reqwest.
pub async fn oauth_http(req: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, reqwest::Error> {
    let (parts, body) = req.into_parts();
    let res = client()
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut out = http::Response::builder().status(res.status());
    for (k, v) in res.headers() {
        out = out.header(k, v);
    }
    Ok(out.body(res.bytes().await?.to_vec()).expect("response"))
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub type TestBody = BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).boxed()
}

/// A real HTTP/1.1 upstream for tests, answering:
/// - `/echo`: JSON `{method, path, headers}` of what it received, plus a
///   `Connection: x-upstream-hop` + `X-Upstream-Hop` + `Keep-Alive` pair;
/// - `/upload`: reads the whole body and answers its length;
/// - `/download?bytes=N`: streams N bytes in 64 KiB chunks;
/// - `/slow?ms=N`: answers `slow done` after N ms.
pub async fn spawn_upstream() -> SocketAddr {
    spawn_upstream_on("127.0.0.1:0".parse().unwrap()).await
}

/// [`spawn_upstream`] on a given address.
pub async fn spawn_upstream_on(addr: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let _ =
                    http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(answer)).await;
            });
        }
    });
    addr
}

fn query_number(req: &Request<Incoming>, key: &str) -> u64 {
    req.uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn answer(req: Request<Incoming>) -> Result<Response<TestBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let res = match path.as_str() {
        "/upload" => {
            let mut body = req.into_body();
            let mut total = 0u64;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => total += f.data_ref().map_or(0, |d| d.len() as u64),
                    Err(_) => break,
                }
            }
            Response::new(full(total.to_string()))
        }
        "/download" => {
            let n = query_number(&req, "bytes");
            let chunk = Bytes::from(vec![b'x'; 64 << 10]);
            let stream = futures_util::stream::unfold(n, move |left| {
                let chunk = chunk.clone();
                async move {
                    if left == 0 {
                        return None;
                    }
                    let take = left.min(chunk.len() as u64);
                    Some((Ok::<_, Infallible>(Frame::data(chunk.slice(..take as usize))), left - take))
                }
            });
            let mut res = Response::new(BodyExt::boxed(StreamBody::new(stream)));
            res.headers_mut().insert("content-length", n.into());
            res
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(query_number(&req, "ms"))).await;
            Response::new(full("slow done"))
        }
        _ => {
            let mut headers = serde_json::Map::new();
            for (k, v) in req.headers() {
                let entry = headers.entry(k.as_str()).or_insert_with(|| serde_json::Value::Array(vec![]));
                if let serde_json::Value::Array(a) = entry {
                    a.push(String::from_utf8_lossy(v.as_bytes()).into());
                }
            }
            let body = serde_json::json!({
                "method": req.method().as_str(),
                "path": req.uri().path(),
                "headers": headers,
            });
            let mut res = Response::new(full(body.to_string()));
            let h = res.headers_mut();
            h.insert("content-type", "application/json".parse().unwrap());
            h.insert("connection", "x-upstream-hop".parse().unwrap());
            h.insert("x-upstream-hop", "secret".parse().unwrap());
            h.insert("keep-alive", "timeout=5".parse().unwrap());
            h.insert("x-upstream-kept", "yes".parse().unwrap());
            res
        }
    };
    Ok(res)
}

/// A provider's token endpoint that counts its calls and answers each,
/// after 50 ms (so that concurrent callers would overlap), with a new token
/// `{access}-N` and refresh token `{refresh}-N`, N the call's number.
pub async fn counting_provider(
    calls: Arc<std::sync::atomic::AtomicUsize>,
    (access, refresh): (&'static str, &'static str),
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let calls = calls.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<Incoming>| {
                    let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let body = format!(
                            r#"{{"access_token":"{access}-{n}","token_type":"Bearer","expires_in":3600,"refresh_token":"{refresh}-{n}"}}"#
                        );
                        let mut res = Response::new(Full::new(Bytes::from(body)));
                        res.headers_mut().insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, Infallible>(res)
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    addr
}
