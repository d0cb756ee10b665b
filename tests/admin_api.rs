//! The admin JSON API of the real binary over real sockets: admin tokens
//! made with `oauth-sidecar admin token create`, every operation of the
//! served OpenAPI document refused without a token (401) and with a token
//! lacking a permission (403), the happy path of each operation with its
//! effect seen from outside (a consumer made here gets a token at
//! `/oauth/token`, a revoked grant's refresh token is refused), and the
//! session-cookie rules: reads only, for admins only.
//!
//! The sidecar is its own provider: the `demo` preset points at this
//! sidecar's authorization server, so provider tokens are fetched from it.

mod common;

use common::Sidecar;
use common::browser::Browser;
use oauth_sidecar::server::cache::RECORD_TTL;
use reqwest::Method;
use serde_json::{Value, json};

const TOKEN_KEY: &str = "3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs=";
const ADMINISTER: &str = "administer oauth";
const SECRETS: &str = "manage oauth client secrets";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs the binary's CLI on a config folder: (success, stdout, stderr).
fn cli(dir: &tempfile::TempDir, args: &[&str]) -> (bool, String, String) {
    let out = common::cli(dir.path(), args, "");
    let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8");
    (out.status.success(), text(out.stdout), text(out.stderr))
}

/// An admin API token made with the CLI: (id, token).
fn admin_token(dir: &tempfile::TempDir, label: &str, permissions: &[&str]) -> (String, String) {
    let mut args = vec!["admin", "token", "create", "--label", label];
    for p in permissions {
        args.extend(["--permission", p]);
    }
    let (ok, out, err) = cli(dir, &args);
    assert!(ok, "admin token create: {err}");
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .to_owned()
    };
    (field("id: "), field("token: "))
}

/// The tokens of one world: every permission, `administer oauth` only,
/// the secrets permission only.
struct Tokens {
    full: String,
    admin: String,
    admin_id: String,
    secrets_only: String,
}

impl Tokens {
    fn all(&self) -> [&str; 3] {
        [&self.full, &self.admin, &self.secrets_only]
    }
}

/// A sidecar with the authorization server (role `read_mail`; users alice,
/// an admin, a user who is not one and an admin without `administer
/// oauth`), the OAuth client role and three admin tokens.
fn world() -> (Sidecar, Tokens) {
    let port = free_port();
    let config = format!(
        r#"
server:
  roles:
    read_mail: {{ label: Read mail, description: Read your mailbox }}
  users:
    - {{ username: alice, password: alice-password, roles: [read_mail] }}
    - {{ username: admin, password: admin-password, admin: true }}
    - {{ username: bob, password: bob-password }}
    - {{ username: keeper, password: keeper-password, admin: true, permissions: ["{SECRETS}"] }}
client:
  token_key: {TOKEN_KEY}
"#
    );
    let dir = common::write_config(
        &config,
        &format!("listen: 127.0.0.1:{port}\npublic_url: http://127.0.0.1:{port}\n"),
    );
    let (_, full) = admin_token(&dir, "full", &[ADMINISTER, SECRETS]);
    let (admin_id, admin) = admin_token(&dir, "automation", &[]);
    let (_, secrets_only) = admin_token(&dir, "secrets only", &[SECRETS]);
    (Sidecar::start_in(dir), Tokens { full, admin, admin_id, secrets_only })
}

/// An answer: status, headers, JSON body (`Null` when not JSON).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

/// Sends `method path` under `/admin/api` with a bearer token and a JSON body.
async fn api(
    sidecar: &Sidecar,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    let mut req = common::client().request(method, sidecar.url(&format!("/admin/api{path}")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    answer(req.send().await.expect("request")).await
}

async fn answer(res: reqwest::Response) -> Answer {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.expect("body");
    Answer { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
}

/// [`api`], expecting `status`; the JSON body.
async fn expect(
    sidecar: &Sidecar,
    status: u16,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Value {
    let a = api(sidecar, method, path, Some(token), body).await;
    assert_eq!(a.status, status, "{method} {path}: {}", a.body);
    a.body
}

/// Every operation of the served OpenAPI document: (method, path with
/// each `{parameter}` filled in, whether it takes a body, its permissions).
async fn operations(sidecar: &Sidecar) -> Vec<(String, String, bool, Vec<String>)> {
    let res = common::client().get(sidecar.url("/admin/api/openapi.json")).send().await.expect("openapi");
    assert_eq!(res.status(), 200, "openapi.json needs no credentials");
    let doc: Value = res.json().await.expect("JSON");
    assert_eq!(doc["servers"][0]["url"], "/admin/api");
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if op["security"] == json!([]) {
                continue;
            }
            let filled: Vec<String> = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "1".to_owned() } else { seg.to_owned() })
                .collect();
            let permissions = op["x-permissions"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path} names its permissions"))
                .iter()
                .map(|p| p.as_str().unwrap().to_owned())
                .collect();
            out.push((method.clone(), filled.join("/"), op.get("requestBody").is_some(), permissions));
        }
    }
    out
}

/// No log line holds any of the tokens.
fn assert_no_token_logged(sidecar: &Sidecar, tokens: &[&str]) {
    for line in sidecar.logs() {
        for t in tokens {
            assert!(!line.contains(t), "a token reached the log: {line}");
        }
    }
}

/// Waits until a change to a consumer or user reaches the token endpoint,
/// which keeps the records it reads for `RECORD_TTL`.
async fn seen_by_token_endpoint() {
    tokio::time::sleep(RECORD_TTL + std::time::Duration::from_millis(200)).await;
}

/// `req` with `fields` as an `application/x-www-form-urlencoded` body.
fn with_form<K: AsRef<str>, V: AsRef<str>>(
    req: reqwest::RequestBuilder,
    fields: &[(K, V)],
) -> reqwest::RequestBuilder {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
        .finish();
    req.header("content-type", "application/x-www-form-urlencoded").body(body)
}

/// The token endpoint with a form; (status, JSON).
async fn oauth_token(sidecar: &Sidecar, form: &[(&str, &str)]) -> (u16, Value) {
    let res =
        with_form(common::client().post(sidecar.url("/oauth/token")), form).send().await.expect("token");
    (res.status().as_u16(), res.json().await.expect("JSON"))
}

#[tokio::test]
async fn every_operation_refuses_missing_unknown_and_unpermitted_tokens() {
    let (sidecar, tokens) = world();
    let ops = operations(&sidecar).await;
    assert!(ops.len() >= 22, "the document lists the operations: {ops:?}");
    for (method, path, has_body, permissions) in &ops {
        let body = has_body.then(|| json!({}));
        let none = api(&sidecar, method, path, None, body.clone()).await;
        assert_eq!(none.status, 401, "{method} {path} without a token: {}", none.body);
        assert_eq!(none.headers["www-authenticate"], r#"Bearer realm="oauth-sidecar admin""#);
        assert_eq!(none.body["error"], "unauthorized", "{method} {path}");
        assert!(none.body["error_description"].is_string());

        let unknown = api(&sidecar, method, path, Some("osa_not-a-token"), body.clone()).await;
        assert_eq!(unknown.status, 401, "{method} {path} with an unknown token");
        assert!(unknown.headers["www-authenticate"].to_str().unwrap().contains(r#"error="invalid_token""#));

        let refused = api(&sidecar, method, path, Some(&tokens.secrets_only), body.clone()).await;
        assert_eq!(refused.status, 403, "{method} {path} without `administer oauth`: {}", refused.body);
        assert_eq!(refused.body["error"], "forbidden");

        let admin = api(&sidecar, method, path, Some(&tokens.admin), body.clone()).await;
        if permissions.iter().any(|p| p == SECRETS) {
            assert_eq!(admin.status, 403, "{method} {path} needs the secrets permission too");
        } else {
            assert_ne!(admin.status, 403, "{method} {path}: {}", admin.body);
        }
        let full = api(&sidecar, method, path, Some(&tokens.full), body.clone()).await;
        assert!(
            ![401, 403, 405, 415].contains(&full.status),
            "{method} {path} is routed and accepts the token: {} {}",
            full.status,
            full.body
        );
        assert!(full.body["error"].is_string() || full.status < 300, "JSON out: {method} {path}");
        if *has_body {
            let verb = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let req = common::client().request(verb, sidecar.url(&format!("/admin/api{path}")));
            let fields =
                [("client_id", "from-a-form"), ("username", "from-a-form"), ("grant", "client_credentials")];
            let form = with_form(req.bearer_auth(&tokens.full), &fields).send().await.unwrap();
            let form = answer(form).await;
            assert_eq!(form.status, 415, "{method} {path} with a form body: {}", form.body);
            assert_eq!(form.body["error"], "unsupported_media_type");
        }
    }
    // The refusals and the form posts changed nothing.
    let consumers = expect(&sidecar, 200, "GET", "/consumers", &tokens.full, None).await;
    assert_eq!(consumers, json!([]), "no consumer was made");
    let users = expect(&sidecar, 200, "GET", "/users", &tokens.full, None).await;
    assert!(!users.to_string().contains("from-a-form"));
    let refused = api(
        &sidecar,
        "POST",
        "/consumers",
        Some(&tokens.secrets_only),
        Some(json!({ "client_id": "sneaky" })),
    )
    .await;
    assert_eq!(refused.status, 403);
    expect(&sidecar, 404, "GET", "/consumers/sneaky", &tokens.full, None).await;

    // Unknown paths and methods answer JSON, after the token is checked.
    assert_eq!(api(&sidecar, "GET", "/nothing/here", None, None).await.status, 401);
    let missing = expect(&sidecar, 404, "GET", "/nothing/here", &tokens.admin, None).await;
    assert_eq!(missing["error"], "not_found");
    let wrong = expect(&sidecar, 405, "PATCH", "/consumers", &tokens.admin, None).await;
    assert_eq!(wrong["error"], "method_not_allowed");
    assert_no_token_logged(&sidecar, &tokens.all());
}

#[tokio::test]
async fn consumers_users_and_grants_change_what_the_authorization_server_does() {
    let (sidecar, tokens) = world();
    let full = tokens.full.as_str();

    // A consumer made here gets a client_credentials token; its secret is
    // answered to the token holding the secrets permission.
    let spec = json!({
        "client_id": "reporting", "label": "Reporting", "user_id": "alice", "scopes": ["read_mail"],
        "grant_types": ["client_credentials", "password", "refresh_token"], "third_party": false,
    });
    let created = expect(&sidecar, 201, "POST", "/consumers", full, Some(spec.clone())).await;
    assert_eq!(created["consumer"]["client_id"], "reporting");
    assert_eq!(created["consumer"]["confidential"], true);
    assert!(created["consumer"].get("secret_hash").is_none());
    let secret = created["client_secret"].as_str().expect("the secret, once").to_owned();
    let cc = [("grant_type", "client_credentials"), ("client_id", "reporting"), ("client_secret", &secret)];
    let (status, granted) = oauth_token(&sidecar, &cc).await;
    assert_eq!(status, 200, "{granted}");
    assert!(granted["scope"].as_str().unwrap().split(' ').any(|s| s == "read_mail"), "{granted}");
    let again = expect(&sidecar, 409, "POST", "/consumers", full, Some(spec)).await;
    assert_eq!(again["error"], "conflict");
    let bad = expect(&sidecar, 400, "POST", "/consumers", full, Some(json!({ "scopes": ["nope"] }))).await;
    assert_eq!(bad["error"], "invalid_request");
    expect(&sidecar, 400, "POST", "/consumers", full, Some(json!({ "colour": "blue" }))).await;

    // Without the secrets permission, a note says a secret was made.
    let other = json!({ "client_id": "other", "grant_types": ["client_credentials"] });
    let made = expect(&sidecar, 201, "POST", "/consumers", &tokens.admin, Some(other)).await;
    assert!(made.get("client_secret").is_none(), "{made}");
    assert!(made["note"].as_str().unwrap().contains(SECRETS));

    let listed = expect(&sidecar, 200, "GET", "/consumers", &tokens.admin, None).await;
    let ids: Vec<&str> =
        listed.as_array().unwrap().iter().map(|c| c["client_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["other", "reporting"]);
    let shown = expect(&sidecar, 200, "GET", "/consumers/reporting", &tokens.admin, None).await;
    assert_eq!(shown["label"], "Reporting");

    // A new secret replaces the old one.
    let change = json!({ "label": "Reporting (nightly)", "new_secret": true });
    let changed = expect(&sidecar, 200, "PUT", "/consumers/reporting", full, Some(change)).await;
    assert_eq!(changed["consumer"]["label"], "Reporting (nightly)");
    assert_eq!(changed["consumer"]["user_id"], "alice", "fields left out stay");
    let renewed = changed["client_secret"].as_str().expect("the new secret").to_owned();
    seen_by_token_endpoint().await;
    assert_eq!(oauth_token(&sidecar, &cc).await.1["error"], "invalid_client", "the old secret stops working");
    let cc_new =
        [("grant_type", "client_credentials"), ("client_id", "reporting"), ("client_secret", &renewed)];
    assert_eq!(oauth_token(&sidecar, &cc_new).await.0, 200);
    let renew = json!({ "new_secret": true });
    let refused = expect(&sidecar, 403, "PUT", "/consumers/other", &tokens.admin, Some(renew)).await;
    assert!(refused["error_description"].as_str().unwrap().contains(SECRETS), "{refused}");
    expect(&sidecar, 400, "PUT", "/consumers/other", full, Some(json!({ "client_id": "renamed" }))).await;
    expect(&sidecar, 404, "PUT", "/consumers/missing", full, Some(json!({ "label": "x" }))).await;

    let deleted = expect(&sidecar, 200, "DELETE", "/consumers/other", full, None).await;
    assert_eq!(deleted["deleted"], "other");
    expect(&sidecar, 404, "GET", "/consumers/other", full, None).await;
    expect(&sidecar, 404, "DELETE", "/consumers/other", full, None).await;

    // Users: added, disabled, enabled with a new password; never a hash.
    let carol = json!({ "username": "carol", "password": "carol-password", "roles": ["read_mail"] });
    let added = expect(&sidecar, 201, "POST", "/users", full, Some(carol.clone())).await;
    assert_eq!(
        added,
        json!({ "username": "carol", "roles": ["read_mail"], "admin": false, "permissions": [], "disabled": false })
    );
    expect(&sidecar, 409, "POST", "/users", full, Some(carol)).await;
    let password = |user: &'static str, pw: &'static str| {
        [("grant_type", "password"), ("client_id", "reporting"), ("username", user), ("password", pw)]
    };
    let with_secret = |form: [(&'static str, &'static str); 4]| {
        let mut f: Vec<(&str, String)> = form.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        f.push(("client_secret", renewed.clone()));
        f
    };
    let grant = |form: Vec<(&'static str, String)>| {
        let sidecar = &sidecar;
        async move {
            let res =
                with_form(common::client().post(sidecar.url("/oauth/token")), &form).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, first) = grant(with_secret(password("carol", "carol-password"))).await;
    assert_eq!(status, 200, "{first}");
    let disabled =
        expect(&sidecar, 200, "PUT", "/users/carol", full, Some(json!({ "disabled": true }))).await;
    assert_eq!(disabled["disabled"], true);
    seen_by_token_endpoint().await;
    let (status, refused) = grant(with_secret(password("carol", "carol-password"))).await;
    assert_eq!((status, refused["error"].as_str()), (400, Some("invalid_grant")));
    let families = |grants: &Value| -> Vec<String> {
        grants.as_array().unwrap().iter().map(|g| g["family_id"].as_str().unwrap().to_owned()).collect()
    };
    let before = families(&expect(&sidecar, 200, "GET", "/grants", &tokens.admin, None).await);
    let enable = json!({ "disabled": false, "password": "carol-new-password", "admin": true });
    let enabled = expect(&sidecar, 200, "PUT", "/users/carol", full, Some(enable)).await;
    assert_eq!(enabled["permissions"], json!([ADMINISTER]));
    seen_by_token_endpoint().await;
    assert_eq!(grant(with_secret(password("carol", "carol-password"))).await.0, 400, "the old password");
    let (status, carol_grant) = grant(with_secret(password("carol", "carol-new-password"))).await;
    assert_eq!(status, 200, "{carol_grant}");
    expect(&sidecar, 400, "PUT", "/users/carol", full, Some(json!({ "roles": ["nope"], "disabled": true })))
        .await;
    let unchanged = expect(&sidecar, 200, "GET", "/users/carol", &tokens.admin, None).await;
    assert_eq!(unchanged["disabled"], false, "nothing is written when a value is refused");
    let users = expect(&sidecar, 200, "GET", "/users", &tokens.admin, None).await;
    assert!(users.as_array().unwrap().iter().any(|u| u["username"] == "carol"));
    assert!(!users.to_string().contains("argon2"), "no password hash: {users}");
    expect(&sidecar, 404, "GET", "/users/nobody", full, None).await;

    // Grants: carol's refresh token is listed; once revoked it is refused.
    let refresh = carol_grant["refresh_token"].as_str().expect("a refresh token").to_owned();
    let grants = expect(&sidecar, 200, "GET", "/grants", &tokens.admin, None).await;
    let new: Vec<&Value> = grants
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| !before.contains(&g["family_id"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(new.len(), 1, "carol's new grant in {grants}");
    assert_eq!(
        (new[0]["username"].as_str(), new[0]["client_id"].as_str()),
        (Some("carol"), Some("reporting"))
    );
    let family = new[0]["family_id"].as_str().unwrap().to_owned();
    let revoked = expect(&sidecar, 200, "DELETE", &format!("/grants/{family}"), full, None).await;
    assert_eq!(revoked["revoked"], family.as_str());
    let form = vec![
        ("grant_type", "refresh_token".to_owned()),
        ("client_id", "reporting".to_owned()),
        ("client_secret", renewed.clone()),
        ("refresh_token", refresh),
    ];
    let (status, refused) = grant(form).await;
    assert_eq!((status, refused["error"].as_str()), (400, Some("invalid_grant")), "{refused}");
    let access = carol_grant["access_token"].as_str().unwrap().to_owned();
    let introspect =
        vec![("client_id", "reporting".to_owned()), ("client_secret", renewed.clone()), ("token", access)];
    let res =
        with_form(common::client().post(sidecar.url("/oauth/introspect")), &introspect).send().await.unwrap();
    let seen: Value = res.json().await.unwrap();
    assert_eq!(seen["active"], false, "the access token issued with the grant is revoked too: {seen}");
    expect(&sidecar, 404, "DELETE", &format!("/grants/{family}"), full, None).await;

    // Each change is logged with the admin token's id, never the token.
    sidecar.wait_for_log(&["consumer created", &tokens.admin_id]);
    sidecar.wait_for_log(&["grant revoked"]);
    assert_no_token_logged(&sidecar, &tokens.all());

    // A deleted admin token is refused at once.
    let (ok, out, err) = cli(&sidecar.dir, &["admin", "token", "delete", &tokens.admin_id]);
    assert!(ok, "{err}");
    assert!(out.contains(&tokens.admin_id));
    let gone = api(&sidecar, "GET", "/consumers", Some(&tokens.admin), None).await;
    assert_eq!(gone.status, 401);
    assert_eq!(api(&sidecar, "GET", "/consumers", Some(full), None).await.status, 200);
}

#[tokio::test]
async fn providers_clients_and_provider_tokens_through_the_api() {
    let (sidecar, tokens) = world();
    let full = tokens.full.as_str();
    let spec = json!({
        "client_id": "mailapp", "user_id": "alice", "scopes": ["read_mail"], "third_party": false,
        "grant_types": ["client_credentials", "password", "refresh_token"],
    });
    let made = expect(&sidecar, 201, "POST", "/consumers", full, Some(spec)).await;
    let secret = made["client_secret"].as_str().unwrap().to_owned();

    let providers = expect(&sidecar, 200, "GET", "/providers", &tokens.admin, None).await;
    assert!(providers.as_array().unwrap().iter().any(|p| p["name"] == "demo" && p["title"] == "Local Demo"));
    let demo = expect(&sidecar, 200, "GET", "/providers/demo", &tokens.admin, None).await;
    assert_eq!(demo["scopes"], json!(["read_mail", "openid"]));
    assert_eq!(demo["redirect_url"], sidecar.url("/oauth/return"));
    assert_eq!(demo["redirect_url_warning"], Value::Null, "loopback http needs no warning");
    expect(&sidecar, 404, "GET", "/providers/nope", &tokens.admin, None).await;

    let client = json!({ "name": "mail", "provider": "demo", "client_id": "mailapp", "client_secret": secret, "label": "Mail" });
    let registered = expect(&sidecar, 201, "POST", "/clients", full, Some(client.clone())).await;
    assert_eq!(registered["name"], "mail");
    assert_eq!(registered["start_url"], "/oauth/start/mail");
    assert!(!registered.to_string().contains(&secret), "the client secret is never answered");
    expect(&sidecar, 400, "POST", "/clients", full, Some(client)).await;
    let listed = expect(&sidecar, 200, "GET", "/clients", &tokens.admin, None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let shown = expect(&sidecar, 200, "GET", "/clients/mail", &tokens.admin, None).await;
    assert_eq!(shown["client_id"], "mailapp");
    let demo = expect(&sidecar, 200, "GET", "/providers/demo", &tokens.admin, None).await;
    assert_eq!(demo["clients"][0]["name"], "mail");

    // Client credentials: the token is stored, listed without itself,
    // inspected in clear with the secrets permission only, refreshed.
    let fetched = expect(
        &sidecar,
        201,
        "POST",
        "/clients/mail/tokens",
        &tokens.admin,
        Some(json!({ "grant": "client_credentials" })),
    )
    .await;
    assert_eq!((fetched["tag"].as_str(), fetched["status"].as_str()), (Some("default"), Some("active")));
    let id = fetched["id"].as_i64().expect("an id");
    let listed = expect(&sidecar, 200, "GET", "/clients/mail/tokens", &tokens.admin, None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(listed[0].get("access_token").is_none(), "{listed}");
    let refused = expect(&sidecar, 403, "GET", &format!("/tokens/{id}"), &tokens.admin, None).await;
    assert_eq!(refused["error"], "forbidden");
    let seen = expect(&sidecar, 200, "GET", &format!("/tokens/{id}"), full, None).await;
    let access = seen["access_token"].as_str().expect("the raw token").to_owned();
    assert_eq!(seen["access_token_jwt"]["verified"], false);
    assert_eq!(seen["access_token_jwt"]["claims"]["sub"], "alice");
    assert!(!listed.to_string().contains(&access));
    let refreshed =
        expect(&sidecar, 200, "POST", &format!("/tokens/{id}/refresh"), &tokens.admin, None).await;
    assert_eq!(refreshed["id"], id);
    let seen = expect(&sidecar, 200, "GET", &format!("/tokens/{id}"), full, None).await;
    assert_ne!(seen["access_token"], access.as_str(), "a new access token");
    expect(&sidecar, 404, "GET", "/tokens/999", full, None).await;
    expect(&sidecar, 404, "GET", "/tokens/not-a-number", full, None).await;

    // The password grant: tagged with the username, with a refresh token.
    let owner = json!({ "grant": "password", "username": "alice", "password": "alice-password" });
    let by_password = expect(&sidecar, 201, "POST", "/clients/mail/tokens", full, Some(owner)).await;
    assert_eq!(by_password["tag"], "alice");
    let pid = by_password["id"].as_i64().unwrap();
    let seen = expect(&sidecar, 200, "GET", &format!("/tokens/{pid}"), full, None).await;
    assert!(seen["refresh_token"].is_string());
    expect(&sidecar, 200, "POST", &format!("/tokens/{pid}/refresh"), full, None).await;
    let wrong = json!({ "grant": "password", "username": "alice", "password": "wrong" });
    let failed = expect(&sidecar, 502, "POST", "/clients/mail/tokens", full, Some(wrong)).await;
    assert_eq!(failed["error"], "provider_error");
    expect(&sidecar, 400, "POST", "/clients/mail/tokens", full, Some(json!({ "grant": "password" }))).await;
    expect(
        &sidecar,
        404,
        "POST",
        "/clients/nope/tokens",
        full,
        Some(json!({ "grant": "client_credentials" })),
    )
    .await;

    let deleted = expect(&sidecar, 200, "DELETE", &format!("/tokens/{id}"), full, None).await;
    assert_eq!(deleted["deleted"], id);
    assert!(deleted["notes"].to_string().contains("revoked"), "{deleted}");
    let listed = expect(&sidecar, 200, "GET", "/clients/mail/tokens", full, None).await;
    let left: Vec<i64> = listed.as_array().unwrap().iter().map(|t| t["id"].as_i64().unwrap()).collect();
    assert_eq!(left, [pid]);

    expect(&sidecar, 200, "DELETE", "/clients/mail", full, None).await;
    expect(&sidecar, 404, "GET", "/clients/mail", full, None).await;
    expect(&sidecar, 404, "GET", "/clients/mail/tokens", full, None).await;
    sidecar.wait_for_log(&["provider token inspected"]);
    assert_no_token_logged(&sidecar, &[&tokens.full, &tokens.admin, &tokens.secrets_only, &access]);
}

/// A browser signed in to the admin pages as `user`.
async fn signed_in(sidecar: &Sidecar, user: &str, password: &str) -> Browser {
    let mut browser = Browser::new();
    let page = browser.get(&sidecar.url("/admin/login")).await;
    let done = browser.sign_in(sidecar, &page, user, password).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(browser.cookie_header().contains("oauth_sidecar_admin="));
    browser
}

/// `method url` with the browser's cookies and `body` as JSON.
async fn with_cookie(browser: &mut Browser, method: &str, url: &str, body: Option<Value>) -> (u16, String) {
    let mut req =
        common::client().request(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(), url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let page = browser.send(req).await;
    (page.status, page.body)
}

#[tokio::test]
async fn the_session_cookie_reads_for_admins_and_never_changes() {
    let (sidecar, tokens) = world();
    let ops = operations(&sidecar).await;
    let openapi = sidecar.url("/admin/api/openapi.json");

    // Users who may not use the admin pages get 403 on every API URL.
    for (user, password) in [("bob", "bob-password"), ("keeper", "keeper-password")] {
        let mut browser = signed_in(&sidecar, user, password).await;
        assert_eq!(with_cookie(&mut browser, "GET", &openapi, None).await.0, 403, "{user}: openapi.json");
        for (method, path, has_body, _) in &ops {
            let (status, body) = with_cookie(
                &mut browser,
                method,
                &sidecar.url(&format!("/admin/api{path}")),
                has_body.then(|| json!({})),
            )
            .await;
            assert_eq!(status, 403, "{user}: {method} {path}: {body}");
            assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "forbidden");
        }
        let (status, _) = with_cookie(&mut browser, "GET", &sidecar.url("/admin/api/nothing"), None).await;
        assert_eq!(status, 403, "{user}: an unknown API path");
    }

    // An admin's cookie reads, but every change without a token is refused.
    let mut browser = signed_in(&sidecar, "admin", "admin-password").await;
    assert_eq!(with_cookie(&mut browser, "GET", &openapi, None).await.0, 200);
    for (method, path, has_body, permissions) in &ops {
        let url = sidecar.url(&format!("/admin/api{path}"));
        let (status, body) = with_cookie(&mut browser, method, &url, has_body.then(|| json!({}))).await;
        if method != "get" {
            assert_eq!(status, 403, "{method} {path} with the cookie: {body}");
            assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "csrf");
        } else if permissions.iter().any(|p| p == SECRETS) {
            assert_eq!(status, 403, "{method} {path}: the admin lacks the secrets permission");
        } else {
            assert!(![401, 403].contains(&status), "{method} {path} reads with the cookie: {status} {body}");
        }
    }
    let (status, body) = with_cookie(&mut browser, "GET", &sidecar.url("/admin/api/consumers"), None).await;
    assert_eq!((status, body.as_str()), (200, "[]"));
    // A cross-site form post carries the cookie, never a token.
    let form = common::client()
        .post(sidecar.url("/admin/api/consumers"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("client_id=forged&grant_types=client_credentials");
    let forged = browser.send(form).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let consumers = expect(&sidecar, 200, "GET", "/consumers", &tokens.full, None).await;
    assert_eq!(consumers, json!([]), "nothing was made");
    assert_no_token_logged(&sidecar, &tokens.all());
}

#[tokio::test]
async fn an_administer_only_token_grants_nothing_it_lacks_nor_changes_who_holds_more() {
    let (sidecar, tokens) = world();
    let both = json!([ADMINISTER, SECRETS]);
    let refused = [
        ("PUT", "/users/alice", json!({ "permissions": both })),
        ("PUT", "/users/alice", json!({ "admin": true, "permissions": [SECRETS] })),
        ("POST", "/users", json!({ "username": "mallory", "password": "mallory-pw-1", "permissions": both })),
        ("PUT", "/users/keeper", json!({ "password": "taken-over-pw-1" })),
        ("PUT", "/users/keeper", json!({ "disabled": true })),
        ("PUT", "/users/keeper", json!({ "admin": false })),
    ];
    for (method, path, body) in refused {
        let a = api(&sidecar, method, path, Some(&tokens.admin), Some(body.clone())).await;
        assert_eq!(a.status, 403, "{method} {path} {body}: {}", a.body);
        assert_eq!(a.body["error"], "forbidden");
    }
    // Nothing changed: alice holds no permission, mallory does not exist,
    // keeper signs in with the old password.
    let alice = expect(&sidecar, 200, "GET", "/users/alice", &tokens.full, None).await;
    assert_eq!(alice["permissions"], json!([]), "{alice}");
    expect(&sidecar, 404, "GET", "/users/mallory", &tokens.full, None).await;
    let keeper = expect(&sidecar, 200, "GET", "/users/keeper", &tokens.full, None).await;
    assert_eq!(keeper["disabled"], false, "{keeper}");
    let login = signed_in(&sidecar, "keeper", "keeper-password").await;
    drop(login);
    // What the token holds it may give, and a token holding both may do all of the above.
    let a = api(&sidecar, "PUT", "/users/alice", Some(&tokens.admin), Some(json!({ "admin": true }))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a =
        api(&sidecar, "PUT", "/users/alice", Some(&tokens.full), Some(json!({ "permissions": both }))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = api(
        &sidecar,
        "PUT",
        "/users/keeper",
        Some(&tokens.full),
        Some(json!({ "password": "new-keeper-pw" })),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // Each refusal is logged with the caller, never the password sent.
    let logs = sidecar.logs();
    let refusals: Vec<_> = logs.iter().filter(|l| l.contains("user change refused")).collect();
    assert_eq!(refusals.len(), 6, "{logs:#?}");
    assert!(refusals.iter().all(|l| l.contains(&tokens.admin_id)), "{refusals:#?}");
    assert!(logs.iter().all(|l| !l.contains("taken-over-pw-1") && !l.contains("mallory-pw-1")));
    assert_no_token_logged(&sidecar, &tokens.all());
}

#[tokio::test]
async fn consumer_logout_uris_are_set_through_the_api_and_checked() {
    let (sidecar, tokens) = world();
    let full = tokens.full.as_str();
    let spec = json!({
        "client_id": "web", "confidential": false, "redirect_uris": ["https://app.example/cb"],
        "post_logout_redirect_uris": ["https://app.example/bye"],
        "backchannel_logout_uri": "https://app.example/backchannel",
    });
    let created = expect(&sidecar, 201, "POST", "/consumers", full, Some(spec)).await;
    assert_eq!(created["consumer"]["post_logout_redirect_uris"], json!(["https://app.example/bye"]));
    assert_eq!(created["consumer"]["backchannel_logout_uri"], "https://app.example/backchannel");
    let bad = json!({ "backchannel_logout_uri": "javascript:alert(1)" });
    let refused = expect(&sidecar, 400, "PUT", "/consumers/web", full, Some(bad)).await;
    assert_eq!(refused["error"], "invalid_request");
    let bad = json!({ "post_logout_redirect_uris": ["/relative"] });
    expect(&sidecar, 400, "PUT", "/consumers/web", full, Some(bad)).await;
    let cleared = json!({ "backchannel_logout_uri": "", "post_logout_redirect_uris": [] });
    let changed = expect(&sidecar, 200, "PUT", "/consumers/web", full, Some(cleared)).await;
    assert_eq!(changed["consumer"]["backchannel_logout_uri"], Value::Null);
    assert_eq!(changed["consumer"]["post_logout_redirect_uris"], json!([]));
}

#[tokio::test]
async fn a_user_is_signed_out_everywhere_through_the_api() {
    let (sidecar, tokens) = world();
    let mut browser = signed_in(&sidecar, "admin", "admin-password").await;
    let users = sidecar.url("/admin/users");
    let signed_in_page = |(status, page): (u16, String)| status == 200 && !page.contains("name=\"password\"");
    assert!(signed_in_page(with_cookie(&mut browser, "GET", &users, None).await));
    let refused = expect(&sidecar, 403, "POST", "/users/keeper/sign-out", &tokens.admin, None).await;
    assert_eq!(refused["error"], "forbidden", "{refused}");
    expect(&sidecar, 404, "POST", "/users/nobody/sign-out", &tokens.full, None).await;
    assert!(signed_in_page(with_cookie(&mut browser, "GET", &users, None).await), "nothing ended yet");
    let done = expect(&sidecar, 200, "POST", "/users/admin/sign-out", &tokens.admin, None).await;
    assert_eq!(done["signed_out"], "admin");
    let (status, page) = with_cookie(&mut browser, "GET", &users, None).await;
    assert!(status == 200 && page.contains("name=\"password\""), "the sign-in page again: {status} {page}");
}
