//! The `consumer`, `user`, `keys` and `admin token` commands of the real binary on a temp
//! config and SQLite store, then the sidecar started on that store serving
//! tokens to what the commands made.

mod common;

use std::path::Path;
use std::process::Output;

use common::{Sidecar, cli};
use oauth_sidecar::store::{AdminStore, SqliteStore, StoreBase};
use serde_json::{Value, json};

const SERVER: &str = r#"
server:
  roles:
    farm_viewer: { label: Viewer, description: Read farm records }
    farm_manager: { label: Manager, description: Create and edit farm records }
  consumers:
    - client_id: farm
      confidential: false
      third_party: false
      redirect_uris: [http://127.0.0.1/authorized]
      scopes: [farm_manager]
      grant_types: [authorization_code, refresh_token]
"#;

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}

/// The rows of a list command run with `--json`.
fn rows(dir: &Path, args: &[&str]) -> Vec<Value> {
    let out = stdout(&cli(dir, &[args, &["--json"]].concat(), ""));
    serde_json::from_str::<Value>(&out).expect("a JSON array").as_array().expect("an array").clone()
}

/// The row of `rows` whose `key` is `value`.
fn row<'a>(rows: &'a [Value], key: &str, value: &str) -> &'a Value {
    rows.iter().find(|r| r[key] == value).unwrap_or_else(|| panic!("no {key} = {value} in {rows:?}"))
}

async fn token(sidecar: &Sidecar, form: &[(&str, &str)]) -> (u16, Value) {
    // Every value here is URL-safe (names, base64url secrets), so no escaping.
    let body: Vec<String> = form.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let res = common::client()
        .post(sidecar.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.join("&"))
        .send()
        .await
        .expect("token");
    (res.status().as_u16(), res.json().await.expect("json"))
}

/// The password grant for `reporter` through the `reporting` consumer.
async fn password_grant(sidecar: &Sidecar, secret: &str) -> (u16, Value) {
    let form = [
        ("grant_type", "password"),
        ("client_id", "reporting"),
        ("client_secret", secret),
        ("username", "reporter"),
        ("password", "reporter-password"),
    ];
    token(sidecar, &form).await
}

/// Creates the `reporting` consumer and the `reporter` user with the CLI;
/// returns the printed secret.
fn create_reporting(dir: &Path) -> String {
    let out = cli(
        dir,
        &[
            "consumer",
            "create",
            "--client-id",
            "reporting",
            "--user-id",
            "reporter",
            "--scope",
            "farm_viewer",
            "--grant-type",
            "client_credentials",
            "--grant-type",
            "password",
        ],
        "",
    );
    let text = stdout(&out);
    let secret = text
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .expect("the secret is printed")
        .to_owned();
    assert!(secret.len() >= 43, "256 bits, base64url");
    stdout(&cli(dir, &["user", "add", "reporter", "--role", "farm_viewer"], "reporter-password\n"));
    secret
}

#[tokio::test]
async fn consumer_and_user_made_by_the_cli_get_tokens() {
    let dir = common::write_config(SERVER, "listen: 127.0.0.1:0\n");
    let secret = create_reporting(dir.path());
    let sidecar = Sidecar::start_in(dir);

    let (status, body) = token(
        &sidecar,
        &[("grant_type", "client_credentials"), ("client_id", "reporting"), ("client_secret", &secret)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["scope"].as_str().unwrap().contains("farm_viewer"), "{body}");

    let (status, body) = password_grant(&sidecar, &secret).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string());

    let (status, body) = token(
        &sidecar,
        &[("grant_type", "client_credentials"), ("client_id", "reporting"), ("client_secret", "wrong")],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_client")));
}

#[tokio::test]
async fn show_and_list_never_print_the_secret_or_its_hash() {
    let dir = common::write_config(SERVER, "listen: 127.0.0.1:0\n");
    let secret = create_reporting(dir.path());
    for args in [&["consumer", "show", "reporting"][..], &["consumer", "list"][..]] {
        let text = stdout(&cli(dir.path(), args, ""));
        assert!(text.contains("reporting"), "{text}");
        assert!(!text.contains(&secret), "{text}");
        assert!(!text.contains("hmac-sha256:"), "{text}");
    }
    let again = cli(dir.path(), &["consumer", "create", "--client-id", "reporting"], "");
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
}

#[tokio::test]
async fn config_managed_consumers_cannot_be_deleted_or_updated() {
    let dir = common::write_config(SERVER, "listen: 127.0.0.1:0\n");
    // A first start syncs the file's consumers into the store.
    let dir = Sidecar::start_in(dir).stop();
    for args in [&["consumer", "delete", "farm"][..], &["consumer", "update", "farm", "--label", "x"][..]] {
        let out = cli(dir.path(), args, "");
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("managed by the configuration file"), "{err}");
    }
    let farm = row(&rows(dir.path(), &["consumer", "list"]), "client_id", "farm").clone();
    assert_eq!((&farm["kind"], &farm["source"]), (&json!("public"), &json!("config")), "{farm}");
}

#[tokio::test]
async fn bad_arguments_exit_with_status_2() {
    let dir = common::write_config(SERVER, "listen: 127.0.0.1:0\n");
    let out = cli(dir.path(), &["consumer", "create", "--scope", "not_a_role"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_a_role"));
    let out = cli(dir.path(), &["consumer", "create", "--grant-type", "implicit"], "");
    assert_eq!(out.status.code(), Some(2));
    let out = cli(dir.path(), &["consumer", "create", "--public", "--grant-type", "client_credentials"], "");
    assert_eq!(out.status.code(), Some(2));
    let out = cli(dir.path(), &["user", "add", "bob"], "");
    assert_eq!(out.status.code(), Some(2), "an empty password is refused");
}

#[tokio::test]
async fn a_disabled_user_gets_no_password_grant() {
    let dir = common::write_config(SERVER, "listen: 127.0.0.1:0\n");
    let secret = create_reporting(dir.path());
    stdout(&cli(dir.path(), &["user", "disable", "reporter"], ""));
    assert_eq!(row(&rows(dir.path(), &["user", "list"]), "username", "reporter")["disabled"], true);
    let sidecar = Sidecar::start_in(dir);
    let (status, body) = password_grant(&sidecar, &secret).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn keys_rotate_adds_a_kid_published_after_restart() {
    let dir = common::write_config(SERVER, "listen: 127.0.0.1:0\n");
    let sidecar = Sidecar::start_in(dir);
    let jwks = |s: &Sidecar| {
        let url = s.url("/.well-known/jwks.json");
        async move { common::client().get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let before = jwks(&sidecar).await;
    let dir = sidecar.stop();
    let kid = stdout(&cli(dir.path(), &["keys", "rotate"], "")).trim().to_owned();
    assert!(!before.to_string().contains(&kid));
    assert_eq!(row(&rows(dir.path(), &["keys", "list"]), "kid", &kid)["alg"], "EdDSA");
    let listed = stdout(&cli(dir.path(), &["keys", "list"], ""));
    let header: Vec<&str> = listed.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["KID", "ALG", "CREATED", "AT", "STATE"], "{listed}");
    let line = listed.lines().find(|l| l.starts_with(&kid)).expect("the new key's row");
    assert!(line.contains(" UTC ") && line.ends_with("active"), "a readable time and the state: {listed}");
    let sidecar = Sidecar::start_in(dir);
    let after = jwks(&sidecar).await;
    let kids: Vec<&str> =
        after["keys"].as_array().unwrap().iter().filter_map(|k| k["kid"].as_str()).collect();
    assert!(kids.contains(&kid.as_str()), "{after}");
    assert_eq!(kids.len(), 3, "the old EdDSA key stays published: {after}");
}

#[test]
fn consumers_are_third_party_unless_made_first_party() {
    let dir = common::write_config(SERVER, "listen: 127.0.0.1:0\n");
    let redirect = ["--redirect-uri", "https://app.example/cb"];
    stdout(&cli(
        dir.path(),
        &[&["consumer", "create", "--client-id", "outside"][..], &redirect].concat(),
        "",
    ));
    let third_party = |id: &str| {
        let shown = stdout(&cli(dir.path(), &["consumer", "show", id, "--json"], ""));
        serde_json::from_str::<Value>(&shown).unwrap()["third_party"].as_bool().expect("a boolean")
    };
    assert!(third_party("outside"), "the file's default too");
    let text = stdout(&cli(dir.path(), &["consumer", "show", "outside"], ""));
    assert!(text.lines().any(|l| l.starts_with("third_party:") && l.ends_with(" yes")), "{text}");
    let args = [&["consumer", "create", "--client-id", "own", "--first-party"][..], &redirect].concat();
    stdout(&cli(dir.path(), &args, ""));
    assert!(!third_party("own"));
    stdout(&cli(dir.path(), &["consumer", "update", "own", "--third-party"], ""));
    assert!(third_party("own"));
    stdout(&cli(dir.path(), &["consumer", "update", "own", "--first-party"], ""));
    assert!(!third_party("own"));
}

#[tokio::test]
async fn admin_tokens_are_printed_once_stored_hashed_listed_and_deleted() {
    use base64::Engine;
    // Admin tokens need no `server:` section.
    let dir = common::write_config("", "listen: 127.0.0.1:0\n");
    let created = stdout(&cli(dir.path(), &["admin", "token", "create", "--label", "deploy bot"], ""));
    let field = |name: &str| created.lines().find_map(|l| l.strip_prefix(name)).expect(name).to_owned();
    let (id, token) = (field("id: "), field("token: "));
    let random = token.strip_prefix("osa_").expect("the osa_ prefix");
    assert_eq!(random.len(), 43, "256 bits, base64url");
    assert!(random.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{token}");
    let both = ["--permission", "administer oauth", "--permission", "manage oauth client secrets"];
    let second = stdout(&cli(
        dir.path(),
        &[&["admin", "token", "create", "--label", "vault"][..], &both].concat(),
        "",
    ));
    assert!(!second.contains(&token), "each token is new");

    // Only the SHA-256 is stored.
    let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()));
    let store = SqliteStore::open(&dir.path().join("data/sidecar.db")).await.expect("store");
    let stored = store.admin_tokens().await.unwrap();
    store.close().await;
    let (first, other): (Vec<_>, Vec<_>) = stored.into_iter().partition(|t| t.id == id);
    assert_eq!(first[0].token_hash, hash);
    assert_eq!(first[0].permissions, ["administer oauth"], "the default permission");
    assert_eq!(other[0].permissions, ["administer oauth", "manage oauth client secrets"]);

    let listed = rows(dir.path(), &["admin", "token", "list"]);
    let deploy = row(&listed, "id", &id);
    assert_eq!(
        (&deploy["label"], &deploy["permissions"]),
        (&json!("deploy bot"), &json!(["administer oauth"]))
    );
    assert!(deploy["created_at"].as_i64().unwrap() > 1_700_000_000, "{deploy}");
    let vault = row(&listed, "label", "vault");
    assert_eq!(vault["permissions"], json!(["administer oauth", "manage oauth client secrets"]));
    let listed = stdout(&cli(dir.path(), &["admin", "token", "list"], ""));
    assert!(listed.starts_with("ID "), "{listed}");
    assert!(!listed.contains(&token) && !listed.contains(&hash) && !listed.contains("osa_"), "{listed}");

    assert!(stdout(&cli(dir.path(), &["admin", "token", "delete", &id], "")).contains(&id));
    let listed = stdout(&cli(dir.path(), &["admin", "token", "list"], ""));
    assert!(!listed.contains(&id) && listed.contains("vault"), "{listed}");
    let again = cli(dir.path(), &["admin", "token", "delete", &id], "");
    assert_eq!(again.status.code(), Some(1), "an unknown id");

    let unknown = cli(dir.path(), &["admin", "token", "create", "--label", "x", "--permission", "root"], "");
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown permission"));
    let unlabelled = cli(dir.path(), &["admin", "token", "create"], "");
    assert_eq!(unlabelled.status.code(), Some(2), "--label is required");
}

#[test]
fn user_admin_permissions_are_given_replaced_and_checked() {
    let dir = common::write_config("server: {}\n", "listen: 127.0.0.1:0\n");
    stdout(&cli(dir.path(), &["user", "add", "root", "--admin"], "root-password\n"));
    let args = ["user", "add", "keeper", "--permission", "manage oauth client secrets"];
    stdout(&cli(dir.path(), &args, "keeper-password\n"));
    let listed = rows(dir.path(), &["user", "list"]);
    assert_eq!(
        row(&listed, "username", "root")["admin_permissions"],
        json!(["administer oauth"]),
        "--admin alone"
    );
    assert_eq!(
        row(&listed, "username", "keeper")["admin_permissions"],
        json!(["manage oauth client secrets"]),
        "a permission makes an admin"
    );

    let unknown = cli(dir.path(), &["user", "permissions", "keeper", "root"], "");
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown permission \"root\""));
    let said = stdout(&cli(dir.path(), &["user", "permissions", "keeper"], ""));
    assert_eq!(said.trim(), "keeper now has the admin permissions: none");
    let listed = rows(dir.path(), &["user", "list"]);
    assert_eq!(row(&listed, "username", "keeper")["admin_permissions"], json!([]), "no longer an admin");
    let said = stdout(&cli(dir.path(), &["user", "roles", "keeper"], ""));
    assert_eq!(said.trim(), "keeper now has the roles: none");
}

#[tokio::test]
async fn a_deleted_user_loses_their_refresh_tokens_and_a_consumer_keeps_its_user() {
    let dir = common::write_config(SERVER, "listen: 127.0.0.1:0\n");
    let secret = create_reporting(dir.path());
    let grants = ["client_credentials", "password", "refresh_token"].map(|g| ["--grant-type", g]).concat();
    stdout(&cli(dir.path(), &[&["consumer", "update", "reporting"][..], &grants].concat(), ""));
    stdout(&cli(dir.path(), &["user", "add", "visitor", "--role", "farm_viewer"], "visitor-password\n"));
    let said = stdout(&cli(dir.path(), &["user", "roles", "visitor", "farm_viewer", "farm_manager"], ""));
    assert_eq!(said.trim(), "visitor now has the roles: farm_viewer, farm_manager");
    let sidecar = Sidecar::start_in(dir);
    let form = [
        ("grant_type", "password"),
        ("client_id", "reporting"),
        ("client_secret", secret.as_str()),
        ("username", "visitor"),
        ("password", "visitor-password"),
    ];
    let (status, body) = token(&sidecar, &form).await;
    assert_eq!(status, 200, "{body}");
    let refresh = body["refresh_token"].as_str().expect("a refresh token").to_owned();

    let dir = sidecar.dir.path();
    let out = cli(dir, &["user", "delete", "reporter"], "");
    assert_eq!(out.status.code(), Some(2), "reporting acts as reporter");
    assert!(String::from_utf8_lossy(&out.stderr).contains("consumer reporting acts as reporter"));
    assert_eq!(stdout(&cli(dir, &["user", "delete", "visitor"], "")).trim(), "deleted user visitor");
    assert!(rows(dir, &["user", "list"]).iter().all(|u| u["username"] != "visitor"));
    assert_eq!(cli(dir, &["user", "delete", "visitor"], "").status.code(), Some(1), "no such user");

    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", "reporting"),
        ("client_secret", secret.as_str()),
        ("refresh_token", refresh.as_str()),
    ];
    let (status, body) = token(&sidecar, &form).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
}

#[tokio::test]
async fn a_consumer_can_be_given_a_chosen_secret_from_a_file() {
    let dir = common::write_config(SERVER, "listen: 127.0.0.1:0\n");
    let file = dir.path().join("reporting.secret");
    std::fs::write(&file, "short\n").unwrap();
    let file = file.to_str().unwrap();
    let args =
        ["consumer", "create", "--client-id", "reporting", "--user-id", "reporter", "--scope", "farm_viewer"];
    let grant = ["--grant-type", "client_credentials", "--secret-file", file];
    let out = cli(dir.path(), &[&args[..], &grant].concat(), "");
    assert_eq!(out.status.code(), Some(2), "too short");
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16 characters"));

    std::fs::write(file, "a-chosen-secret-of-some-length\n").unwrap();
    let made = stdout(&cli(dir.path(), &[&args[..], &grant].concat(), ""));
    assert!(!made.contains("client_secret") && !made.contains("a-chosen-secret"), "nothing to show: {made}");
    let shown = stdout(&cli(dir.path(), &["consumer", "show", "reporting", "--json"], ""));
    assert_eq!(
        serde_json::from_str::<Value>(&shown).unwrap()["secret"],
        "set by hand (stored as an argon2 hash)"
    );
    stdout(&cli(dir.path(), &["user", "add", "reporter", "--role", "farm_viewer"], "reporter-password\n"));
    let public = cli(dir.path(), &["consumer", "create", "--public", "--secret-file", file], "");
    assert_eq!(public.status.code(), Some(2), "a public consumer takes no secret");

    let sidecar = Sidecar::start_in(dir);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "reporting"),
        ("client_secret", "a-chosen-secret-of-some-length"),
    ];
    let (status, body) = token(&sidecar, &form).await;
    assert_eq!(status, 200, "{body}");
}

#[test]
fn consumer_logout_uris_are_set_shown_and_cleared() {
    let dir = common::write_config(SERVER, "listen: 127.0.0.1:0\n");
    let args = [
        "consumer",
        "create",
        "--client-id",
        "web",
        "--redirect-uri",
        "https://app.example/cb",
        "--post-logout-redirect-uri",
        "https://app.example/bye",
        "--post-logout-redirect-uri",
        "https://app.example/later",
        "--backchannel-logout-uri",
        "https://app.example/backchannel",
    ];
    stdout(&cli(dir.path(), &args, ""));
    let shown = || {
        let json = stdout(&cli(dir.path(), &["consumer", "show", "web", "--json"], ""));
        serde_json::from_str::<Value>(&json).unwrap()
    };
    let c = shown();
    assert_eq!(
        c["post_logout_redirect_uris"],
        serde_json::json!(["https://app.example/bye", "https://app.example/later"])
    );
    assert_eq!(c["backchannel_logout_uri"], "https://app.example/backchannel");
    let refused =
        cli(dir.path(), &["consumer", "update", "web", "--backchannel-logout-uri", "not a url"], "");
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    stdout(&cli(dir.path(), &["consumer", "update", "web", "--backchannel-logout-uri", ""], ""));
    assert_eq!(shown()["backchannel_logout_uri"], "", "cleared");
}
