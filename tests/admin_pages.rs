//! The admin pages over real sockets with the real binary, driven by a
//! cookie-keeping client without JavaScript (the browser tests in
//! `tests/e2e/` drive the same pages in chromium): sign-in and its cookie,
//! 403 for users who may not use the pages, CSRF, idle timeout, sign-out,
//! and what each page does to the store, checked through the OAuth
//! endpoints the changes affect.

mod common;

use std::time::Duration;

use common::Sidecar;
use common::browser::{Browser, Page, unescape};
use serde_json::Value;

const CONFIG: &str = r#"
server:
  roles:
    farm_viewer: { label: Viewer, description: Read farm records }
    farm_manager: { label: Manager, description: Create and edit farm records }
  consumers:
    - client_id: from-file
      secret: from-file-secret-0123456789
      scopes: [farm_viewer]
      grant_types: [client_credentials]
    - client_id: legacy
      secret: legacy-secret-0123456789
      scopes: [farm_viewer, farm_manager]
      grant_types: [password, refresh_token]
  users:
    - { username: root, password: root-password-1, admin: true, permissions: [administer oauth, manage oauth client secrets] }
    - { username: clerk, password: clerk-password-1, admin: true }
    - { username: keeper, password: keeper-password-1, admin: true, permissions: [manage oauth client secrets] }
    - { username: alice, password: alice-password-1, roles: [farm_viewer, farm_manager] }
admin:
  idle_timeout: 4s
"#;

fn start() -> Sidecar {
    Sidecar::start(CONFIG)
}

/// Signs in at the admin sign-in page; the page the browser lands on.
async fn sign_in(b: &mut Browser, s: &Sidecar, user: &str, password: &str) -> Page {
    sign_in_at(b, s, "/admin", user, password).await
}

/// [`sign_in`] with the admin pages at `base`, following our redirects.
async fn sign_in_at(b: &mut Browser, s: &Sidecar, base: &str, user: &str, password: &str) -> Page {
    let login = b.get(&s.url(&format!("{base}/login"))).await;
    let mut page = b.sign_in(s, &login, user, password).await;
    assert_eq!(page.status, 303, "{}", page.body);
    while page.status == 303 {
        let to = page.headers["location"].to_str().unwrap().to_owned();
        page = b.get(&s.url(&to)).await;
    }
    page
}

/// The page after following one redirect of ours.
async fn follow(b: &mut Browser, s: &Sidecar, page: Page) -> Page {
    assert_eq!(page.status, 303, "{}", page.body);
    let to = page.headers["location"].to_str().unwrap().to_owned();
    b.get(&s.url(&to)).await
}

async fn csrf(b: &mut Browser, s: &Sidecar, path: &str) -> String {
    let page = b.get(&s.url(path)).await;
    assert_eq!(page.status, 200, "{path}: {}", page.body);
    page.input("csrf_token")
}

/// POSTs a form to an OAuth endpoint `url` with Basic credentials `id:secret`.
async fn call_token((url, creds): (&str, &str), form: &[(&str, &str)]) -> (u16, Value) {
    common::post_form(url, creds.split_once(':').unwrap(), form).await
}

/// Text between `id="{id}"` and the end of its element.
fn element(body: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let start = body.find(&marker).unwrap_or_else(|| panic!("no #{id} in {body}"));
    let open_end = body[start..].find('>').unwrap() + start + 1;
    let end = body[open_end..].find('<').unwrap() + open_end;
    body[open_end..end].to_owned()
}

#[tokio::test]
async fn sign_in_sets_a_strict_admin_cookie_and_sign_out_ends_the_session() {
    let s = start();
    let mut b = Browser::new();
    let first = b.get(&s.url("/admin/consumers")).await;
    assert_eq!(first.status, 303);
    assert_eq!(first.headers["location"], "/admin/login?next=%2Fadmin%2Fconsumers");

    let login = b.get(&s.url("/admin/login?next=%2Fadmin%2Fusers")).await;
    let done = b.sign_in(&s, &login, "root", "root-password-1").await;
    let cookie =
        done.set_cookies().into_iter().find(|c| c.starts_with("oauth_sidecar_admin=")).expect("cookie");
    assert!(cookie.contains("Path=/admin/"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    let back = b.get(&s.url(done.headers["location"].to_str().unwrap())).await;
    let users = follow(&mut b, &s, back).await;
    assert_eq!(users.status, 200, "{}", users.body);
    assert!(users.body.contains("data-username=\"alice\""), "{}", users.body);
    let csp = users.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("style-src 'self'") && !csp.contains("script-src"), "{csp}");
    assert_eq!(users.headers["x-frame-options"], "DENY");

    // A redirect after sign-in stays on the admin pages.
    let mut other = Browser::new();
    let login = other.get(&s.url("/admin/login?next=https%3A%2F%2Fevil.example%2F")).await;
    let done = other.sign_in(&s, &login, "root", "root-password-1").await;
    let landed = other.get(&s.url(done.headers["location"].to_str().unwrap())).await;
    assert_eq!(landed.headers["location"], "/admin/consumers");

    let token = users.input("csrf_token");
    let out = b.post(&s, "/admin/logout", &[("csrf_token", &token)]).await;
    assert_eq!(out.status, 303);
    assert!(
        out.set_cookies().iter().any(|c| c.starts_with("oauth_sidecar_admin=;") && c.contains("Max-Age=0"))
    );
    // The old cookie value no longer opens a page either.
    let no_redirects =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let req = no_redirects.get(s.url("/admin/consumers")).header("cookie", cookie.split(';').next().unwrap());
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 303, "the session was deleted");
}

#[tokio::test]
async fn a_cross_site_navigation_without_the_strict_cookie_gets_a_link_back_not_the_sign_in_page() {
    let s = start();
    common::install_crypto();
    let no_redirects =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let back = no_redirects
        .get(s.url("/admin/clients/mail?x=1"))
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 200);
    let body = unescape(&back.text().await.unwrap());
    assert!(body.contains("href=\"/admin/clients/mail?x=1\""), "{body}");
    assert!(!body.contains("name=\"password\""), "{body}");
    // A same-site navigation without a session still gets the sign-in page.
    let same = no_redirects
        .get(s.url("/admin/clients/mail"))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 303);
}

#[tokio::test]
async fn without_a_client_section_the_provider_pages_say_how_to_turn_the_oauth_client_on() {
    let s = start();
    let mut b = Browser::new();
    sign_in(&mut b, &s, "root", "root-password-1").await;
    for path in ["/admin/providers", "/admin/providers/demo", "/admin/clients/mail"] {
        let page = b.get(&s.url(path)).await;
        assert_eq!(page.status, 200, "{path}");
        assert!(page.body.contains("add a <code>client:</code> section"), "{path}: {}", page.body);
    }
}

#[tokio::test]
async fn the_cookie_is_secure_when_the_public_url_is_https() {
    let s = Sidecar::start(&format!("public_url: https://sidecar.example\n{CONFIG}"));
    let mut b = Browser::new();
    let login = b.get(&s.url("/admin/login")).await;
    let done = b.sign_in(&s, &login, "root", "root-password-1").await;
    // `__Host-` names: set only by this host, over https, for the path `/`.
    let cookie =
        done.set_cookies().into_iter().find(|c| c.starts_with("__Host-oauth_sidecar_admin=")).unwrap();
    assert!(cookie.ends_with("; Secure") && cookie.contains("; Path=/;"), "{cookie}");
    let csrf = login.set_cookies().into_iter().find(|c| c.starts_with("__Host-oauth_sidecar_admin_csrf="));
    assert!(csrf.is_some_and(|c| c.ends_with("; Secure") && c.contains("; Path=/;")), "{:?}", login.headers);
}

/// The value of the cookie `name` the browser keeps.
fn cookie_value(b: &Browser, name: &str) -> String {
    let header = b.cookie_header();
    let found = header.split("; ").find_map(|pair| pair.strip_prefix(&format!("{name}=")));
    found.unwrap_or_else(|| panic!("no cookie {name} in {header}")).to_owned()
}

#[tokio::test]
async fn an_admin_session_is_no_oauth_session_and_the_other_way_round() {
    let config = CONFIG.replace(
        "  consumers:\n",
        "  consumers:\n    - { client_id: web, confidential: false, third_party: false, redirect_uris: [\"http://127.0.0.1:9/cb\"], scopes: [farm_viewer], grant_types: [authorization_code] }\n",
    );
    let s = Sidecar::start(&config);
    let authorize = "/oauth/authorize?response_type=code&client_id=web&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb\
                     &state=st&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256";
    common::install_crypto();
    let raw = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let get = |path: &str, cookie: String| raw.get(s.url(path)).header("cookie", cookie).send();

    // root signs in at the admin pages, and in another browser at /oauth/authorize.
    let mut admin = Browser::new();
    let login = admin.get(&s.url("/admin/login")).await;
    let before = login.input("csrf_token");
    sign_in(&mut admin, &s, "root", "root-password-1").await;
    let admin_value = cookie_value(&admin, "oauth_sidecar_admin");
    let mut user = Browser::new();
    let page = user.get(&s.url(authorize)).await;
    let back = user.sign_in(&s, &page, "root", "root-password-1").await;
    assert_eq!(back.status, 303, "{}", back.body);
    assert!(back.location().as_str().starts_with("http://127.0.0.1:9/cb?code="), "{:?}", back.headers);
    let oauth_value = cookie_value(&user, "oauth_sidecar_session");

    // Each value opens its own side.
    let res = get("/admin/users", format!("oauth_sidecar_admin={admin_value}")).await.unwrap();
    assert_eq!(res.status(), 200, "the admin session at the admin pages");
    let res = get(authorize, format!("oauth_sidecar_session={oauth_value}")).await.unwrap();
    assert_eq!(res.status(), 302, "the /oauth/ session at /oauth/authorize");
    assert!(res.headers()["location"].to_str().unwrap().starts_with("http://127.0.0.1:9/cb?code="));

    // And is refused on the other.
    let res = get(authorize, format!("oauth_sidecar_session={admin_value}")).await.unwrap();
    assert_eq!(res.status(), 200, "the sign-in page, not a code");
    assert!(res.text().await.unwrap().contains("name=\"password\""));
    let res = get("/admin/users", format!("oauth_sidecar_admin={oauth_value}")).await.unwrap();
    assert_eq!(res.status(), 303, "to the admin sign-in");
    assert_eq!(res.headers()["location"], "/admin/login?next=%2Fadmin%2Fusers");

    // A CSRF token from before the sign-in does not hold for the session.
    let refused = admin.post(&s, "/admin/logout", &[("csrf_token", &before)]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let now = csrf(&mut admin, &s, "/admin/users").await;
    assert_ne!(now, before);
    assert_eq!(admin.post(&s, "/admin/logout", &[("csrf_token", &now)]).await.status, 303);
}

/// Every page, and every form target, of the admin pages.
const GETS: &[&str] = &[
    "/admin",
    "/admin/",
    "/admin/login",
    "/admin/admin.css",
    "/admin/consumers",
    "/admin/consumers/new",
    "/admin/consumers/from-file",
    "/admin/consumers/from-file/delete",
    "/admin/users",
    "/admin/users/new",
    "/admin/users/root",
    "/admin/providers",
    "/admin/providers/demo",
    "/admin/clients/mail",
    "/admin/clients/mail/tokens/1",
    "/admin/grants",
    "/admin/no-such-page",
];
const POSTS: &[&str] = &[
    "/admin/consumers",
    "/admin/consumers/from-file",
    "/admin/consumers/from-file/delete",
    "/admin/users",
    "/admin/users/root",
    "/admin/providers/demo",
    "/admin/clients/mail/delete",
    "/admin/clients/mail/fetch",
    "/admin/clients/mail/tokens/1/delete",
    "/admin/grants/some-family/revoke",
];

#[tokio::test]
async fn users_who_may_not_administer_get_403_on_every_admin_url() {
    let s = start();
    for (user, password) in [("alice", "alice-password-1"), ("keeper", "keeper-password-1")] {
        let mut b = Browser::new();
        let landed = sign_in(&mut b, &s, user, password).await;
        assert_eq!(landed.status, 403, "{user}: {}", landed.body);
        let token = landed.input("csrf_token");
        for path in GETS {
            let page = b.get(&s.url(path)).await;
            assert_eq!(page.status, 403, "{user} GET {path}: {}", page.body);
        }
        for path in POSTS {
            let page = b.post(&s, path, &[("csrf_token", &token), ("label", "x"), ("client_id", "x")]).await;
            assert_eq!(page.status, 403, "{user} POST {path}: {}", page.body);
        }
        // They can sign out, and nothing was changed.
        assert_eq!(b.post(&s, "/admin/logout", &[("csrf_token", &token)]).await.status, 303);
    }
    let mut root = Browser::new();
    let consumers = sign_in(&mut root, &s, "root", "root-password-1").await;
    assert!(consumers.body.contains("data-client-id=\"from-file\""));
    assert!(!consumers.body.contains("data-client-id=\"x\""), "{}", consumers.body);
}

#[tokio::test]
async fn forms_without_a_matching_csrf_token_are_refused_and_change_nothing() {
    let s = start();
    let mut b = Browser::new();
    sign_in(&mut b, &s, "root", "root-password-1").await;
    let fields = [("label", "Sneaky"), ("client_id", "sneaky"), ("confidential", "1")];
    let page = b.post(&s, "/admin/consumers", &fields).await;
    assert_eq!(page.status, 403, "{}", page.body);
    let forged = [("csrf_token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), fields[0], fields[1]];
    assert_eq!(b.post(&s, "/admin/consumers", &forged).await.status, 403);
    // A token from another browser does not match this browser's cookie.
    let mut other = Browser::new();
    let theirs = other.get(&s.url("/admin/login")).await.input("csrf_token");
    let crossed = [("csrf_token", theirs.as_str()), fields[0], fields[1]];
    assert_eq!(b.post(&s, "/admin/consumers", &crossed).await.status, 403);
    let token = csrf(&mut b, &s, "/admin/grants").await;
    let huge = "x".repeat(300 << 10);
    let too_large = [("csrf_token", token.as_str()), ("label", huge.as_str()), ("client_id", "huge")];
    assert_eq!(b.post(&s, "/admin/consumers", &too_large).await.status, 413, "forms are read up to 256 KiB");
    assert_eq!(b.post(&s, "/admin/logout", &[]).await.status, 403, "sign-out needs the token too");
    let list = b.get(&s.url("/admin/consumers")).await;
    assert_eq!(list.status, 200, "still signed in");
    assert!(!list.body.contains("sneaky"), "{}", list.body);
    assert_eq!(b.post(&s, "/admin/logout", &[("csrf_token", &token)]).await.status, 303);
}

#[tokio::test]
async fn consumers_are_created_edited_and_deleted_with_every_field() {
    let s = start();
    let mut b = Browser::new();
    sign_in(&mut b, &s, "root", "root-password-1").await;
    let form = b.get(&s.url("/admin/consumers/new")).await;
    for help in
        ["A label used to identify the third party integration", "Never grant the consumer more access"]
    {
        assert!(form.body.contains(help), "help text {help:?}");
    }
    let token = form.input("csrf_token");
    let fields = [
        ("csrf_token", token.as_str()),
        ("label", "Reporting <tool>"),
        ("client_id", "reports"),
        ("confidential", "1"),
        ("user_id", "alice"),
        ("redirect_uris", "https://reports.example/cb\r\nhttps://reports.example/cb2"),
        ("allowed_origins", "https://reports.example"),
        ("scopes", "farm_viewer"),
        ("grant_types", "client_credentials"),
        ("grant_types", "authorization_code"),
        ("limit_user_access", "1"),
    ];
    let saved = b.post(&s, "/admin/consumers", &fields).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert!(saved.body.contains("Reporting &lt;tool&gt;"), "escaped: {}", saved.body);
    let secret = element(&saved.body, "secret");
    let endpoint = s.url("/oauth/token");
    let creds = format!("reports:{secret}");
    let (status, body) = call_token((&endpoint, &creds), &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "authenticated farm_viewer", "alice's roles within the consumer's: {body}");

    let list = b.get(&s.url("/admin/consumers")).await;
    assert!(list.body.contains("data-client-id=\"reports\""));
    assert!(unescape(&list.body).contains("https://reports.example"), "{}", list.body);
    let edit = b.get(&s.url("/admin/consumers/reports")).await;
    assert!(unescape(&edit.body).contains("https://reports.example/cb2"), "{}", edit.body);
    assert!(edit.body.contains("id=\"limit_user_access\" name=\"limit_user_access\" value=\"1\" checked"));

    // Edit: a new secret replaces the old one, fields are saved as sent.
    let token = edit.input("csrf_token");
    let update = [
        ("csrf_token", token.as_str()),
        ("label", "Reporting"),
        ("confidential", "1"),
        ("user_id", "alice"),
        ("redirect_uris", "https://reports.example/cb"),
        ("scopes", "farm_viewer"),
        ("grant_types", "client_credentials"),
        ("new_secret", "1"),
    ];
    let saved = b.post(&s, "/admin/consumers/reports", &update).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let renewed = element(&saved.body, "secret");
    assert_ne!(renewed, secret);
    tokio::time::sleep(Duration::from_millis(2100)).await; // the token endpoint's 2 s record cache
    let (status, _) = call_token((&endpoint, &creds), &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 401, "the old secret stopped working");
    let creds = format!("reports:{renewed}");
    assert_eq!(call_token((&endpoint, &creds), &[("grant_type", "client_credentials")]).await.0, 200);

    // Bad input: the form comes back with the reason and what was typed.
    let bad = [("csrf_token", token.as_str()), ("label", "Kept label"), ("client_id", "no spaces allowed")];
    let refused = b.post(&s, "/admin/consumers", &bad).await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("role=\"alert\"") && refused.body.contains("machine name"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("value=\"Kept label\""));

    // Grant types the consumer cannot serve are refused with what to change.
    let no_uri = [("csrf_token", token.as_str()), ("label", "Web"), ("grant_types", "authorization_code")];
    let refused = b.post(&s, "/admin/consumers", &no_uri).await;
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("needs at least one redirect URI"), "{}", refused.body);

    // A consumer from the file is shown read-only and cannot be changed here.
    let file = b.get(&s.url("/admin/consumers/from-file")).await;
    assert!(file.body.contains("comes from the configuration file"));
    let changed = b.post(&s, "/admin/consumers/from-file", &[("csrf_token", &token), ("label", "x")]).await;
    assert_eq!(changed.status, 400, "{}", changed.body);

    // Delete asks first, then the consumer and its secret are gone.
    let confirm = b.get(&s.url("/admin/consumers/reports/delete")).await;
    assert!(confirm.body.contains("Delete the consumer"), "{}", confirm.body);
    let gone = b.post(&s, "/admin/consumers/reports/delete", &[("csrf_token", &token)]).await;
    assert_eq!(gone.headers["location"], "/admin/consumers");
    assert!(!b.get(&s.url("/admin/consumers")).await.body.contains("data-client-id=\"reports\""));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(call_token((&endpoint, &creds), &[("grant_type", "client_credentials")]).await.0, 401);
}

#[tokio::test]
async fn new_secrets_are_shown_only_to_admins_with_the_secrets_permission() {
    let s = start();
    let mut b = Browser::new();
    sign_in(&mut b, &s, "clerk", "clerk-password-1").await;
    let token = csrf(&mut b, &s, "/admin/consumers/new").await;
    let fields = [
        ("csrf_token", token.as_str()),
        ("label", "Clerk's"),
        ("client_id", "clerks"),
        ("confidential", "1"),
        ("grant_types", "client_credentials"),
    ];
    let saved = b.post(&s, "/admin/consumers", &fields).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert!(!saved.body.contains("id=\"secret\""), "{}", saved.body);
    assert!(saved.body.contains("manage oauth client secrets"));
    let edit = b.get(&s.url("/admin/consumers/clerks")).await;
    assert!(!edit.body.contains("name=\"new_secret\""), "no box to tick");
    let renew = [fields[0], fields[1], fields[3], fields[4], ("new_secret", "1")];
    assert_eq!(b.post(&s, "/admin/consumers/clerks", &renew).await.status, 403);
}

#[tokio::test]
async fn users_are_added_given_roles_disabled_and_their_passwords_reset() {
    let s = start();
    let endpoint = s.url("/oauth/token");
    let legacy = "legacy:legacy-secret-0123456789";
    let password_grant = |user: &'static str, pw: &'static str| {
        let endpoint = endpoint.clone();
        async move {
            call_token(
                (&endpoint, legacy),
                &[("grant_type", "password"), ("username", user), ("password", pw)],
            )
            .await
        }
    };
    let mut b = Browser::new();
    sign_in(&mut b, &s, "root", "root-password-1").await;
    let token = csrf(&mut b, &s, "/admin/users/new").await;
    let add = [
        ("csrf_token", token.as_str()),
        ("username", "dave"),
        ("password", "dave-password-1"),
        ("roles", "farm_viewer"),
    ];
    assert_eq!(b.post(&s, "/admin/users", &add).await.headers["location"], "/admin/users");
    let (status, body) = password_grant("dave", "dave-password-1").await;
    assert_eq!(status, 200, "{body}");

    let roles = [
        ("csrf_token", token.as_str()),
        ("roles", "farm_viewer"),
        ("roles", "farm_manager"),
        ("admin", "1"),
        ("new_password", "dave-password-2"),
    ];
    assert_eq!(b.post(&s, "/admin/users/dave", &roles).await.status, 303);
    tokio::time::sleep(Duration::from_millis(2100)).await; // the token endpoint's 2 s record cache
    let listed = b.get(&s.url("/admin/users")).await;
    let row = &listed.body[listed.body.find("data-username=\"dave\"").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("farm_viewer, farm_manager"), "{row}");
    assert!(row.contains("administer oauth"), "an admin gets `administer oauth`: {row}");
    assert_eq!(password_grant("dave", "dave-password-1").await.0, 400, "the old password");
    let (status, body) = password_grant("dave", "dave-password-2").await;
    assert_eq!(status, 200, "the new password: {body}");

    let disable = [("csrf_token", token.as_str()), ("roles", "farm_viewer"), ("disabled", "1")];
    assert_eq!(b.post(&s, "/admin/users/dave", &disable).await.status, 303);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(password_grant("dave", "dave-password-2").await.0, 400, "disabled");

    // An admin cannot lock themselves out.
    let myself =
        [("csrf_token", token.as_str()), ("admin", "1"), ("permissions", "manage oauth client secrets")];
    let refused = b.post(&s, "/admin/users/root", &myself).await;
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("cannot disable yourself"), "{}", refused.body);
    assert_eq!(b.get(&s.url("/admin/users")).await.status, 200, "still an admin");
}

#[tokio::test]
async fn grants_are_listed_and_revoked() {
    let s = start();
    let endpoint = s.url("/oauth/token");
    let legacy = "legacy:legacy-secret-0123456789";
    let form = [("grant_type", "password"), ("username", "alice"), ("password", "alice-password-1")];
    let (status, issued) = call_token((&endpoint, legacy), &form).await;
    assert_eq!(status, 200, "{issued}");
    let refresh = issued["refresh_token"].as_str().unwrap().to_owned();
    let access = issued["access_token"].as_str().unwrap().to_owned();
    let introspect = s.url("/oauth/introspect");
    let active = |body: Value| body["active"].as_bool();
    assert_eq!(active(call_token((&introspect, legacy), &[("token", &access)]).await.1), Some(true));

    let mut b = Browser::new();
    sign_in(&mut b, &s, "root", "root-password-1").await;
    let grants = b.get(&s.url("/admin/grants")).await;
    let start = grants.body.find("data-grant=\"").expect("a grant row") + 12;
    let family = grants.body[start..start + grants.body[start..].find('"').unwrap()].to_owned();
    let row = &grants.body[start..];
    assert!(row.contains("legacy") && row.contains("alice"), "{row}");
    let token = grants.input("csrf_token");
    let revoked = b.post(&s, &format!("/admin/grants/{family}/revoke"), &[("csrf_token", &token)]).await;
    assert_eq!(revoked.headers["location"], "/admin/grants");
    assert!(!b.get(&s.url("/admin/grants")).await.body.contains("data-grant="));
    let (status, body) = token_refresh(&endpoint, legacy, &refresh).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    let (_, body) = call_token((&introspect, legacy), &[("token", &access)]).await;
    assert_eq!(active(body), Some(false), "the access token issued with the grant is revoked too");
}

async fn token_refresh(endpoint: &str, client: &str, refresh: &str) -> (u16, Value) {
    call_token((endpoint, client), &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await
}

#[tokio::test]
async fn a_session_ends_after_the_idle_timeout_and_requests_keep_it_alive() {
    let s = start();
    let mut b = Browser::new();
    sign_in(&mut b, &s, "root", "root-password-1").await;
    // Requests 1.5 s apart, for longer than the 4 s timeout: still signed in.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let page = b.get(&s.url("/admin/grants")).await;
        assert_eq!(page.status, 200, "kept alive by use");
    }
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let page = b.get(&s.url("/admin/grants")).await;
    assert_eq!(page.status, 303, "idle for longer than admin.idle_timeout");
    assert_eq!(page.headers["location"], "/admin/login?next=%2Fadmin%2Fgrants");
}

#[tokio::test]
async fn the_admin_pages_can_move_or_be_turned_off() {
    let moved = Sidecar::start(&format!("{CONFIG}  path: /manage\n"));
    let mut b = Browser::new();
    let landed = b.get(&moved.url("/manage/consumers")).await;
    assert_eq!(landed.headers["location"], "/manage/login?next=%2Fmanage%2Fconsumers");
    let consumers = sign_in_at(&mut b, &moved, "/manage", "root", "root-password-1").await;
    assert_eq!(consumers.status, 200, "{}", consumers.body);
    assert!(consumers.body.contains("href=\"&#x2f;manage/users\""), "{}", consumers.body);
    let app = b.get(&moved.url("/admin/consumers")).await;
    assert!(!app.body.contains("oauth-sidecar admin"), "the app's own /admin: {}", app.body);

    let off = Sidecar::start(&format!("{CONFIG}  enabled: false\n"));
    let page = Browser::new().get(&off.url("/admin/login")).await;
    assert!(!page.body.contains("name=\"password\""), "proxied to the app: {}", page.body);
}

#[tokio::test]
async fn an_administer_only_admin_grants_nothing_they_lack_nor_resets_who_holds_more() {
    let s = start();
    let mut b = Browser::new();
    sign_in(&mut b, &s, "clerk", "clerk-password-1").await;
    let token = csrf(&mut b, &s, "/admin/users/new").await;
    let t = token.as_str();
    let secrets = "manage oauth client secrets";
    let attempts: [(&str, Vec<(&str, &str)>); 5] = [
        (
            "/admin/users/clerk",
            vec![("admin", "1"), ("permissions", "administer oauth"), ("permissions", secrets)],
        ),
        ("/admin/users/alice", vec![("admin", "1"), ("permissions", secrets)]),
        (
            "/admin/users",
            vec![("username", "mallory"), ("password", "mallory-pw-1"), ("permissions", secrets)],
        ),
        (
            "/admin/users/root",
            vec![("admin", "1"), ("permissions", "administer oauth"), ("new_password", "taken-over-pw-1")],
        ),
        ("/admin/users/keeper", vec![("admin", "1"), ("permissions", secrets), ("disabled", "1")]),
    ];
    for (path, fields) in attempts {
        let mut form = vec![("csrf_token", t)];
        form.extend(fields);
        let page = b.post(&s, path, &form).await;
        assert_eq!(page.status, 403, "{path}: {}", page.body);
        assert!(page.body.contains("do not hold"), "the page says why: {}", page.body);
    }
    // Nothing changed: root signs in with the old password and sees the users as they were.
    let mut root = Browser::new();
    sign_in(&mut root, &s, "root", "root-password-1").await;
    let users = root.get(&s.url("/admin/users")).await;
    assert_eq!(users.status, 200, "{}", users.body);
    assert!(!users.body.contains("mallory"), "{}", users.body);
    for name in ["clerk", "alice"] {
        let row = &users.body[users.body.find(&format!("data-username=\"{name}\"")).unwrap()..];
        let row = &row[..row.find("</tr>").unwrap()];
        assert!(!row.contains(secrets), "{name}: {row}");
    }
    let logs = s.logs();
    let refusals = logs.iter().filter(|l| l.contains("user change refused") && l.contains("clerk")).count();
    assert_eq!(refusals, 5, "{logs:#?}");
    assert!(logs.iter().all(|l| !l.contains("taken-over-pw-1") && !l.contains("mallory-pw-1")));
}
