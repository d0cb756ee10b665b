//! The admin page of an OAuth client, over real sockets with the real
//! binary (the browser tests in `tests/e2e/outside_provider.test.mjs` drive
//! it in chromium): "Add (Auth Code)" with a tag, its CSP allowing the
//! provider's origin, "Delete client" only for clients not from the file,
//! and form errors with `code` instead of raw backticks.

mod common;

use common::Sidecar;
use common::browser::{Browser, Page};

/// The `demo` provider pointed at another origin (nothing needs to listen
/// there: the page only names it).
const CONFIG: &str = r#"
client:
  token_key: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
  providers:
    - { name: demo, issuer: "http://127.0.0.1:9" }
  clients:
    - { name: mail, label: Mailbox, provider: demo, client_id: mailapp }
server:
  users:
    - { username: root, password: root-password-1, admin: true, permissions: [administer oauth, manage oauth client secrets] }
"#;

async fn signed_in(s: &Sidecar) -> Browser {
    let mut b = Browser::new();
    let login = b.get(&s.url("/admin/login")).await;
    let page = b.sign_in(s, &login, "root", "root-password-1").await;
    assert_eq!(page.status, 303, "{}", page.body);
    b
}

/// The `<form ...>` start tag with `id="{id}"` and everything up to `</form>`.
fn form(page: &Page, id: &str) -> String {
    let at = page.body.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in {}", page.body));
    let start = page.body[..at].rfind("<form").unwrap();
    let end = at + page.body[at..].find("</form>").unwrap();
    page.body[start..end].to_owned()
}

#[tokio::test]
async fn add_auth_code_is_a_form_with_a_tag_that_leads_to_the_start_confirmation() {
    let s = Sidecar::start(CONFIG);
    let mut b = signed_in(&s).await;
    let page = b.get(&s.url("/admin/clients/mail")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let start = form(&page, "add-auth-code");
    assert!(start.contains("method=\"get\""), "{start}");
    assert!(start.contains("action=\"&#x2f;oauth&#x2f;start&#x2f;mail\""), "{start}");
    assert!(start.contains("name=\"tag\""), "a tag field: {start}");
    assert!(start.contains("<label for=\"ac-tag\">Tag</label>"), "{start}");
    assert!(start.contains("name=\"return_to\" value=\"&#x2f;admin&#x2f;clients&#x2f;mail\""), "{start}");
    assert!(start.contains(">Add (Auth Code)</button>"), "{start}");
    // The form's GET shows /oauth/start's confirmation, on this site; only
    // that page's own form goes on to the provider.
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.ends_with("form-action 'self'"), "{csp}");
    assert!(csp.contains("style-src 'self'"), "still the admin pages' own policy: {csp}");
}

#[tokio::test]
async fn delete_client_is_offered_only_for_clients_not_defined_in_the_file() {
    let s = Sidecar::start(CONFIG);
    let mut b = signed_in(&s).await;
    let page = b.get(&s.url("/admin/clients/mail")).await;
    assert!(!page.body.contains("Delete client"), "{}", page.body);
    assert!(page.body.contains("defined in the configuration file"), "{}", page.body);

    // A client registered on the provider page can be deleted here.
    let provider = b.get(&s.url("/admin/providers/demo")).await;
    let csrf = provider.input("csrf_token");
    let fields = [("csrf_token", csrf.as_str()), ("name", "other"), ("client_id", "other-id")];
    let saved = b.post(&s, "/admin/providers/demo", &fields).await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let page = b.get(&s.url("/admin/clients/other")).await;
    assert!(page.body.contains("Delete client"), "{}", page.body);
    assert!(!page.body.contains("defined in the configuration file"), "{}", page.body);
}

#[tokio::test]
async fn form_errors_show_names_as_code_not_backticks() {
    let s = Sidecar::start(CONFIG);
    let mut b = signed_in(&s).await;
    let provider = b.get(&s.url("/admin/providers/demo")).await;
    let csrf = provider.input("csrf_token");
    let fields = [("csrf_token", csrf.as_str()), ("name", "mail"), ("client_id", "again")];
    let page = b.post(&s, "/admin/providers/demo", &fields).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("client <code>mail</code> exists already"), "{}", page.body);
    assert!(!page.body.contains('`'), "no raw backtick: {}", page.body);
}
