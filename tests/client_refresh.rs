//! Single-flight refresh and the token key, with the library over a real
//! SQLite store and an honest HTTP token endpoint that counts its calls;
//! and the `provider` and `client redirect-url` commands of the binary.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use oauth_sidecar::client::protocol::{Grant, Owner};
use oauth_sidecar::client::tokens::NewToken;
use oauth_sidecar::store::{SqliteStore, Store};

const KEY: &str = "3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs=";

fn config(dir: &std::path::Path, provider: SocketAddr, key: &str) -> oauth_sidecar::config::Loaded {
    let yaml = format!(
        "store: sqlite://{}/data/sidecar.db\nclient:\n  token_key: {key}\n  providers:\n    - name: counter\n      authorize_url: http://{provider}/authorize\n      token_url: http://{provider}/token\n  clients:\n    - name: api\n      provider: counter\n      client_id: me\n      client_secret: my-secret-0123456789\n",
        dir.display()
    );
    oauth_sidecar::config::parse(&yaml, "test.yaml").unwrap()
}

fn stale_grant() -> Grant {
    Grant {
        access_token: "at-0".into(),
        refresh_token: Some("rt-0".into()),
        token_type: "Bearer".into(),
        // Within the default 60 s skew: every caller needs a refresh.
        expires_at: Some(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 + 5,
        ),
        scopes: None,
        id_token: None,
        raw: serde_json::json!({}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_callers_needing_a_refresh_make_one_provider_call() {
    common::install_crypto();
    let calls = Arc::new(AtomicUsize::new(0));
    let provider = common::counting_provider(calls.clone(), ("at", "rt")).await;
    let dir = tempfile::tempdir().unwrap();
    let loaded = config(dir.path(), provider, KEY);
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("data/sidecar.db")).await.unwrap());
    let tokens = oauth_sidecar::client::open_tokens(&loaded, store.clone()).await.unwrap();
    tokens
        .save(NewToken {
            client: "api",
            tag: "box",
            grant_type: "authorization_code",
            asked: &[],
            grant: &stale_grant(),
            owner: &Owner::default(),
        })
        .await
        .unwrap();

    let barrier = Arc::new(tokio::sync::Barrier::new(1000));
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (tokens, barrier) = (tokens.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            tokens.access_token("api", "box").await.map(|t| t.access_token.expose().to_owned())
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), "at-1", "every caller gets the one refreshed token");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "exactly one call to the provider");
    let stored = store.provider_token_by_tag("api", "box").await.unwrap().unwrap();
    let (access, refresh, _) = tokens.open(&stored).unwrap();
    assert_eq!((access.expose(), refresh.unwrap().expose()), ("at-1", "rt-1"), "the rotated pair is stored");
}

#[tokio::test]
async fn a_wrong_token_key_stops_the_start_with_a_clear_error() {
    common::install_crypto();
    let provider = common::counting_provider(Arc::default(), ("at", "rt")).await;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("data/sidecar.db")).await.unwrap());
    let tokens =
        oauth_sidecar::client::open_tokens(&config(dir.path(), provider, KEY), store.clone()).await.unwrap();
    tokens
        .save(NewToken {
            client: "api",
            tag: "box",
            grant_type: "x",
            asked: &[],
            grant: &stale_grant(),
            owner: &Owner::default(),
        })
        .await
        .unwrap();
    let other = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let err =
        oauth_sidecar::client::open_tokens(&config(dir.path(), provider, other), store).await.unwrap_err();
    assert!(err.to_string().contains("not the key the stored provider tokens were encrypted with"), "{err}");

    // The binary says the same and exits non-zero.
    let yaml = format!(
        "listen: 127.0.0.1:0\nstore: sqlite://{}/data/sidecar.db\nclient:\n  token_key: {other}\n",
        dir.path().display()
    );
    std::fs::write(dir.path().join("sidecar.yaml"), yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oauth-sidecar"))
        .args(["serve", "--config"])
        .arg(dir.path().join("sidecar.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("not the key the stored provider tokens were encrypted with"), "{text}");
}

#[test]
fn provider_list_shows_the_seed_presets() {
    let out = Command::new(env!("CARGO_BIN_EXE_oauth-sidecar")).args(["provider", "list"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<String>> = text
        .lines()
        .map(|l| l.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "TITLE"], "a header line: {text}");
    for row in
        [["gmail", "Google Mail"], ["ms-exchange", "Microsoft Exchange Online"], ["demo", "Local Demo"]]
    {
        assert!(rows.contains(&row.map(str::to_owned).to_vec()), "{row:?} in {text}");
    }
    let title_at = text.lines().next().unwrap().find("TITLE").unwrap();
    assert!(
        text.lines().all(|l| l.char_indices().nth(title_at).is_some_and(|(_, c)| c != ' ')),
        "aligned: {text}"
    );
    let show = |json: bool| {
        let mut args = vec!["provider", "show", "demo"];
        args.extend(json.then_some("--json"));
        let out = Command::new(env!("CARGO_BIN_EXE_oauth-sidecar")).args(args).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let json: serde_json::Value = serde_json::from_str(&show(true)).unwrap();
    assert_eq!(json["options"]["scopes"], serde_json::json!(["read_mail", "openid"]));
    let text = show(false);
    assert!(text.lines().any(|l| l.starts_with("scopes:") && l.ends_with("read_mail, openid")), "{text}");
}

#[test]
fn redirect_url_warns_on_plain_http_for_a_public_host() {
    let dir = tempfile::tempdir().unwrap();
    let run = |public_url: &str, extra: &str| {
        let yaml = format!("public_url: {public_url}\nclient:\n  token_key: {KEY}\n{extra}");
        std::fs::write(dir.path().join("sidecar.yaml"), yaml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_oauth-sidecar"))
            .args(["client", "redirect-url", "--config"])
            .arg(dir.path().join("sidecar.yaml"))
            .output()
            .unwrap();
        assert!(out.status.success());
        (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let (url, warning) = run("http://crm.example.org", "");
    assert_eq!(url.trim(), "http://crm.example.org/oauth/return");
    assert!(warning.contains("plain http") && warning.contains("intermediate"), "{warning}");
    let (url, warning) = run("http://localhost:8080", "");
    assert_eq!(url.trim(), "http://localhost:8080/oauth/return");
    assert!(warning.is_empty(), "{warning}");
    let (url, warning) = run(
        "http://crm.example.org",
        "  redirect_url: https://relay.example.org/civicrm/oauth-client/return\n",
    );
    assert_eq!(url.trim(), "https://relay.example.org/civicrm/oauth-client/return");
    assert!(warning.is_empty(), "{warning}");

    // check-config warns too.
    std::fs::write(
        dir.path().join("sidecar.yaml"),
        format!("public_url: http://crm.example.org\nclient:\n  token_key: {KEY}\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oauth-sidecar"))
        .arg("check-config")
        .arg(dir.path().join("sidecar.yaml"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("warning:") && text.contains("plain http"), "{text}");
}
