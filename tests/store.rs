//! The SQLite store on disk: created with its folder on first open, migrated
//! once, and left as it was when a migration fails. The last test starts the
//! real binary and checks that `serve` creates the store on first start.

use std::borrow::Cow;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use oauth_sidecar::store::{Migration, SqliteStore, StoreBase, StoreError, migrations};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

fn embedded_versions() -> Vec<i64> {
    migrations().iter().map(|m| m.version).collect()
}

/// The embedded migrations plus one whose SQL breaks after a first statement
/// that would have worked.
fn with_broken_migration() -> (Vec<Migration>, i64) {
    let mut list = migrations();
    let version = list.iter().map(|m| m.version).max().unwrap_or(0) + 1;
    list.push(Migration {
        version,
        description: "broken",
        sql: Cow::Borrowed("CREATE TABLE t1(x); THIS IS NOT SQL;"),
    });
    (list, version)
}

/// The store file and the files SQLite keeps beside it in WAL mode.
fn files_of(db: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut p = db.as_os_str().to_owned();
            p.push(suffix);
            PathBuf::from(p)
        })
        .collect()
}

/// Everything that describes the database: its schema, its migration
/// records and its metadata, read with sqlx past the store.
async fn snapshot(db: &Path) -> Vec<String> {
    let options = SqliteConnectOptions::new().filename(db).read_only(true);
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
    let mut out = Vec::new();
    for row in sqlx::query("SELECT type, name, COALESCE(sql, '') FROM sqlite_master ORDER BY type, name")
        .fetch_all(&pool)
        .await
        .unwrap()
    {
        let (kind, name, sql): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        out.push(format!("{kind} {name}: {sql}"));
    }
    for row in sqlx::query(
        "SELECT version, description, success, hex(checksum) FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    {
        let (version, description, success, checksum): (i64, String, bool, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        out.push(format!("migration {version} {description} {success} {checksum}"));
    }
    for row in sqlx::query("SELECT key, value FROM sidecar_meta ORDER BY key").fetch_all(&pool).await.unwrap()
    {
        let (key, value): (String, String) = (row.get(0), row.get(1));
        out.push(format!("meta {key}={value}"));
    }
    pool.close().await;
    out
}

#[tokio::test]
async fn first_open_creates_folder_and_file_and_applies_every_migration() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("missing").join("nested").join("sidecar.db");

    let store = SqliteStore::open(&db).await.unwrap();
    assert!(db.is_file(), "the store file is created with its folders");
    assert_eq!(store.path(), db);
    assert_eq!(store.backend(), "sqlite");
    store.ping().await.unwrap();
    assert_eq!(store.applied_migrations().await.unwrap(), embedded_versions());
    store.close().await;
    assert!(db.is_file(), "the file stays after close");
}

#[tokio::test]
async fn second_open_finds_the_migrations_applied_and_applies_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("sidecar.db");
    let store = SqliteStore::open(&db).await.unwrap();
    store.close().await;
    let before = snapshot(&db).await;

    let store = SqliteStore::open(&db).await.unwrap();
    assert_eq!(store.applied_migrations().await.unwrap(), embedded_versions());
    store.close().await;
    assert!(db.is_file());
    assert_eq!(snapshot(&db).await, before, "reopening changes nothing, created_at included");
}

#[tokio::test]
async fn failing_migration_names_its_version_and_leaves_the_store_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sidecar.db");
    SqliteStore::open(&db).await.unwrap().close().await;
    let before = snapshot(&db).await;

    let (list, version) = with_broken_migration();
    let err = SqliteStore::open_with_migrations(&db, list).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Migration { version: v, description, .. } if *v == version && description == "broken"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.starts_with(&format!("migration {version} (broken) failed: ")), "{message}");
    assert!(message.ends_with("the store was left as it was"), "{message}");

    assert!(db.is_file(), "an existing store is never removed");
    let after = snapshot(&db).await;
    assert_eq!(after, before, "schema, migration records and metadata are unchanged");
    assert!(
        !after.iter().any(|line| line.contains("t1")),
        "the broken migration's first statement was rolled back"
    );

    // The store still opens with the migrations this binary knows.
    let store = SqliteStore::open(&db).await.unwrap();
    assert_eq!(store.applied_migrations().await.unwrap(), embedded_versions());
    store.close().await;
}

#[tokio::test]
async fn failing_migration_on_a_new_path_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fresh").join("sidecar.db");

    let (list, version) = with_broken_migration();
    let err = SqliteStore::open_with_migrations(&db, list).await.unwrap_err();
    assert!(matches!(err, StoreError::Migration { version: v, .. } if v == version), "{err:?}");
    for file in files_of(&db) {
        assert!(!file.exists(), "{} was left behind", file.display());
    }
}

#[tokio::test]
async fn store_url_opens_the_sqlite_backend() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("via-url").join("sidecar.db");
    let store =
        oauth_sidecar::store::open(&oauth_sidecar::config::StoreUrl::Sqlite(db.clone())).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    assert_eq!(store.applied_migrations().await.unwrap(), embedded_versions());
    store.close().await;
    assert!(db.is_file());
}

/// Waits for `child` to exit, killing it after `limit`.
fn wait_for_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the sidecar did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_creates_the_store_file_on_first_start_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state").join("sidecar.db");
    let config = dir.path().join("sidecar.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nupstream: demo\nstore: sqlite://{}\nlog: {{ level: info }}\nshutdown_grace: 5s\n",
            db.display()
        ),
    )
    .unwrap();
    assert!(!db.exists());

    let mut child = Command::new(env!("CARGO_BIN_EXE_oauth-sidecar"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Log lines go to stdout; read them on a thread so the pipe never fills.
    let (lines_tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("listening")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no `listening` log line; output so far:\n{}", seen.join("\n"));
            }
        }
    }
    assert!(db.is_file(), "the store file exists once the sidecar listens");

    let kill = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(kill.success());
    let status = wait_for_exit(&mut child, Duration::from_secs(20));
    reader.join().unwrap();
    seen.extend(lines.try_iter());
    assert!(status.success(), "exit status {status:?}; output:\n{}", seen.join("\n"));
    assert!(seen.iter().any(|l| l.contains("stopped")), "output:\n{}", seen.join("\n"));
    assert!(db.is_file(), "the store file stays after shutdown");
}
