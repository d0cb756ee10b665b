//! The kill -9 durability check, run by `tests/kill9.sh`: while clients
//! redeem authorization codes, rotate refresh tokens and create consumers
//! through the admin API against the real binary on a SQLite file, the
//! sidecar is killed with SIGKILL and started again on the same file, and
//! every write whose request was answered with a 2xx must still be there:
//! each chain's last answered refresh token still refreshes, each created
//! consumer is still listed, and SQLite's `integrity_check` says `ok` after
//! every kill.
//!
//! A write whose request got no answer (it was in flight at the kill) may
//! or may not have happened; its chain is left out of the checks, and
//! counted as such.
//!
//! Usage: `kill9 SIDECAR_BINARY` (CYCLES and LOAD_MS in the environment
//! override the 4 kills and the 1500 ms of load before each).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

const SECRET: &str = "app-secret-0123456789abcdef";
const REDIRECT: &str = "http://127.0.0.1:9/cb";
/// Concurrent code-and-refresh clients.
const CHAINS: usize = 3;

/// What the clients were answered with 2xx, to check after each restart.
#[derive(Default)]
struct Answered {
    /// Per chain, its last answered refresh token.
    chains: HashMap<usize, String>,
    /// Client ids of consumers created with 201.
    consumers: Vec<String>,
    redeemed: usize,
    rotated: usize,
    created: usize,
    /// Chains whose last request got no answer (left out of the checks).
    unanswered: usize,
}

type Shared = Arc<Mutex<Answered>>;

struct World {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    admin_token: String,
}

impl World {
    fn config(&self) -> PathBuf {
        self.dir.path().join("sidecar.yaml")
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("sidecar.db")
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Starts the sidecar and waits for its `listening` line, so that the
    /// process answering on the port is this one (not another that took
    /// the port between a kill and the restart).
    fn start(&self) -> Running {
        let mut child = Command::new(&self.bin)
            .args(["serve", "--config"])
            .arg(self.config())
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the sidecar");
        let stdout = child.stdout.take().expect("stdout");
        let mut running = Running(child);
        let lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in lines.map_while(Result::ok) {
                if line.contains("\"listening\"")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            running.kill();
            panic!("the sidecar did not start listening on 127.0.0.1:{}", self.port);
        }
        running
    }
}

/// The sidecar process; killed (SIGKILL) when dropped, also when a check
/// fails.
struct Running(Child);

impl Running {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("HTTP client")
}

async fn wait_ready(world: &World) {
    let http = http();
    for _ in 0..300 {
        if let Ok(res) = http.get(world.url("/healthz")).send().await
            && res.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the sidecar did not answer /healthz");
}

/// A signed-in browser session: its cookies.
struct Session {
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

impl Session {
    async fn send(&mut self, req: reqwest::RequestBuilder) -> reqwest::Result<(u16, HeaderBag, String)> {
        let cookie = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let req = if cookie.is_empty() { req } else { req.header("cookie", cookie) };
        let res = req.send().await?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        for value in headers.get_all("set-cookie") {
            if let Some((name, value)) =
                value.to_str().unwrap_or("").split(';').next().and_then(|p| p.split_once('='))
            {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Ok((status, headers, res.text().await?))
    }

    /// Runs the front channel (signing in when asked); the code.
    async fn code(&mut self, world: &World, challenge: &str) -> reqwest::Result<Option<String>> {
        let mut url = url::Url::parse(&world.url("/oauth/authorize")).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", "app")
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("scope", "viewer")
            .append_pair("state", "s")
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        let req = self.http.get(url.as_str());
        let (mut status, mut headers, mut body) = self.send(req).await?;
        // The sign-in page, then the consent page, each a form to post.
        for _ in 0..2 {
            if status != 200 {
                break;
            }
            let field = |name: &str| {
                let marker = format!("name=\"{name}\" value=\"");
                let start = body.find(&marker).map(|i| i + marker.len())?;
                let end = body[start..].find('"')? + start;
                Some(unescape(&body[start..end]))
            };
            let start = body.find("action=\"").map_or(0, |i| i + 8);
            let action = unescape(body[start..].split('"').next().unwrap_or(""));
            let csrf = field("csrf_token").unwrap_or_default();
            let form: Vec<(&str, &str)> = if body.contains("name=\"password\"") {
                vec![
                    ("csrf_token", &csrf),
                    ("step", "login"),
                    ("username", "alice"),
                    ("password", "alice-password"),
                ]
            } else {
                vec![("csrf_token", &csrf), ("step", "consent"), ("decision", "allow")]
            };
            let encoded = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
            let req = self
                .http
                .post(world.url(&action))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(encoded);
            (status, headers, body) = self.send(req).await?;
        }
        if !(300..400).contains(&status) {
            return Ok(None);
        }
        let location = headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("");
        let location = url::Url::parse(location).ok();
        Ok(location.and_then(|l| l.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned())))
    }
}

type HeaderBag = reqwest::header::HeaderMap;

fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/").replace("&amp;", "&")
}

fn pkce() -> (String, String) {
    let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    (verifier, URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

/// POST /oauth/token as the `app` consumer: the status and the JSON.
async fn token(
    http: &reqwest::Client,
    world: &World,
    form: &[(&str, &str)],
) -> reqwest::Result<(u16, Value)> {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let res = http
        .post(world.url("/oauth/token"))
        .basic_auth("app", Some(SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

/// One client: code, redemption, then rotations, until `stop` or an error
/// (the sidecar is gone: the chain's last request got no answer).
async fn chain_client(world: Arc<World>, answered: Shared, stop: Arc<AtomicBool>, id: usize) {
    let http = http();
    let mut session = Session { http: http.clone(), cookies: HashMap::new() };
    while !stop.load(Ordering::Relaxed) {
        let (verifier, challenge) = pkce();
        let Ok(Some(code)) = session.code(&world, &challenge).await else { return };
        let redeemed = token(
            &http,
            &world,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &verifier),
            ],
        )
        .await;
        let key = id * 1_000_000 + answered.lock().unwrap().redeemed;
        let mut refresh = match redeemed {
            Ok((200, body)) => {
                let rt = body["refresh_token"].as_str().expect("a refresh token").to_owned();
                let mut a = answered.lock().unwrap();
                a.redeemed += 1;
                a.chains.insert(key, rt.clone());
                rt
            }
            Ok((status, body)) => panic!("code redemption answered {status}: {body}"),
            Err(_) => return,
        };
        for _ in 0..5 {
            match token(&http, &world, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await
            {
                Ok((200, body)) => {
                    refresh = body["refresh_token"].as_str().expect("a refresh token").to_owned();
                    let mut a = answered.lock().unwrap();
                    a.rotated += 1;
                    a.chains.insert(key, refresh.clone());
                }
                Ok((status, body)) => panic!("a refresh answered {status}: {body}"),
                Err(_) => {
                    // In flight at the kill: it may or may not have rotated.
                    let mut a = answered.lock().unwrap();
                    a.chains.remove(&key);
                    a.unanswered += 1;
                    return;
                }
            }
        }
    }
}

/// One admin: creates consumers until `stop` or an error.
async fn consumer_client(world: Arc<World>, answered: Shared, stop: Arc<AtomicBool>, made: Arc<AtomicUsize>) {
    let http = http();
    while !stop.load(Ordering::Relaxed) {
        let id = format!("c{}", made.fetch_add(1, Ordering::Relaxed));
        let spec = json!({ "client_id": id, "grant_types": ["client_credentials"], "scopes": ["viewer"] });
        let res = http
            .post(world.url("/admin/api/consumers"))
            .bearer_auth(&world.admin_token)
            .json(&spec)
            .send()
            .await;
        match res {
            Ok(res) if res.status().as_u16() == 201 => {
                let mut a = answered.lock().unwrap();
                a.created += 1;
                a.consumers.push(id);
            }
            Ok(res) => panic!(
                "consumer creation answered {}: {}",
                res.status(),
                res.text().await.unwrap_or_default()
            ),
            Err(_) => return,
        }
    }
}

/// Checks every answered write; rotating each chain's token once more
/// (itself an answered write). Returns how many were checked.
async fn verify(world: &World, answered: &Shared) -> usize {
    let http = http();
    let chains: Vec<(usize, String)> =
        answered.lock().unwrap().chains.iter().map(|(k, v)| (*k, v.clone())).collect();
    for (key, rt) in &chains {
        let (status, body) = token(&http, world, &[("grant_type", "refresh_token"), ("refresh_token", rt)])
            .await
            .expect("the token endpoint answers");
        assert_eq!(status, 200, "an answered refresh token was lost: {body}");
        let next = body["refresh_token"].as_str().expect("a refresh token").to_owned();
        let mut a = answered.lock().unwrap();
        a.rotated += 1;
        a.chains.insert(*key, next);
    }
    let consumers = answered.lock().unwrap().consumers.clone();
    let listed: Value = http
        .get(world.url("/admin/api/consumers"))
        .bearer_auth(&world.admin_token)
        .send()
        .await
        .expect("the admin API answers")
        .json()
        .await
        .expect("JSON");
    let ids: std::collections::HashSet<&str> =
        listed.as_array().expect("a list").iter().filter_map(|c| c["client_id"].as_str()).collect();
    for id in &consumers {
        assert!(ids.contains(id.as_str()), "an answered consumer creation was lost: {id}");
    }
    chains.len() + consumers.len()
}

async fn integrity_check(db: &Path) {
    use sqlx::Connection;
    let url = format!("sqlite://{}", db.display());
    let mut conn = sqlx::sqlite::SqliteConnection::connect(&url).await.expect("open the SQLite file");
    let result: String =
        sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut conn).await.expect("integrity_check");
    assert_eq!(result, "ok", "SQLite integrity_check after kill -9");
    conn.close().await.expect("close");
}

fn cli(world: &World, args: &[&str]) -> String {
    let out = Command::new(&world.bin)
        .args(args)
        .arg("--config")
        .arg(world.config())
        .output()
        .expect("run the CLI");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bin = PathBuf::from(std::env::args().nth(1).expect("usage: kill9 SIDECAR_BINARY"));
    let cycles: usize = std::env::var("CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let load =
        Duration::from_millis(std::env::var("LOAD_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1500));
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut world = World { bin, dir, port, admin_token: String::new() };
    let yaml = format!(
        r#"listen: 127.0.0.1:{port}
public_url: http://127.0.0.1:{port}
store: sqlite://{db}
log: {{ level: info, format: json, access: false }}
server:
  roles:
    viewer: {{ label: Viewer, description: Reads }}
  consumers:
    - client_id: app
      secret: {SECRET}
      confidential: true
      redirect_uris: [{REDIRECT}]
      scopes: [viewer]
      grant_types: [authorization_code, refresh_token]
  users:
    - username: alice
      password: alice-password
      roles: [viewer]
"#,
        db = world.db().display()
    );
    std::fs::write(world.config(), yaml).expect("write the config");
    let out =
        cli(&world, &["admin", "token", "create", "--label", "kill9", "--permission", "administer oauth"]);
    world.admin_token =
        out.lines().find_map(|l| l.strip_prefix("token: ")).expect("an admin token").to_owned();
    let world = Arc::new(world);
    let answered: Shared = Arc::default();
    let made = Arc::new(AtomicUsize::new(0));
    let mut checked = 0;

    for cycle in 1..=cycles {
        let mut child = world.start();
        wait_ready(&world).await;
        checked += verify(&world, &answered).await;
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for id in 0..CHAINS {
            clients.push(tokio::spawn(chain_client(
                world.clone(),
                answered.clone(),
                stop.clone(),
                cycle * 100 + id,
            )));
        }
        clients.push(tokio::spawn(consumer_client(
            world.clone(),
            answered.clone(),
            stop.clone(),
            made.clone(),
        )));
        tokio::time::sleep(load).await;
        // SIGKILL while the clients are sending.
        child.kill();
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            client.await.expect("a client panicked");
        }
        integrity_check(&world.db()).await;
        let a = answered.lock().unwrap();
        println!(
            "kill -9 #{cycle}: {} codes redeemed, {} refresh rotations, {} consumers created so far",
            a.redeemed, a.rotated, a.created
        );
    }
    let mut child = world.start();
    wait_ready(&world).await;
    checked += verify(&world, &answered).await;
    child.kill();
    let a = answered.lock().unwrap();
    let writes = a.redeemed + a.rotated + a.created;
    println!(
        "kill9: {writes} answered writes ({} code redemptions, {} refresh rotations, {} consumer creations) \
         across {cycles} kill -9 restarts; {checked} checks after restarts, all survived \
         ({} chains left out: their last request was in flight at a kill)",
        a.redeemed, a.rotated, a.created, a.unanswered
    );
}
