//! The HTML pages every sign-in shares: sign-in, errors and messages, and
//! the template of the authorization server's consent page (which the
//! server fills in through `Pages::render`).
//!
//! The pages are minijinja templates, built in from the crate's `templates/`
//! folder. An operator restyles them by setting `server.templates_dir` to a
//! folder holding any of `base.html`, `login.html`, `consent.html`,
//! `error.html`, `message.html`, `start.html` and `logout.html`; a file found there replaces the built-in one. Templates are
//! compiled at start, so a syntax error stops the start with its file and line.
//! Values are HTML-escaped.
//!
//! Every page is sent with a Content Security Policy that allows no script,
//! no framing (`frame-ancestors 'none'`, clickjacking) and form posts only to
//! the server itself and to where the form's redirects end: the client's
//! redirect URI after a consent post, the provider's authorization endpoint
//! after the sign-in before `/oauth/start` and after its confirmation (`form_target`,
//! `allow_form_target`); plus `Cache-Control: no-store`.
//!
//! The templates see these values:
//!
//! | template | values |
//! |---|---|
//! | every page | `title` |
//! | `login.html` | `client_label`, `action`, `csrf_token`, `username`, `error`, `password` (show the form), `providers` (each `label`, `href`) |
//! | `consent.html` | `client_label`, `username`, `action`, `csrf_token`, `choice`, `scopes` (each `name`, `label`, `description`) |
//! | `error.html` | `message` |
//! | `message.html` | `message`, `links` (each `label`, `href`): the OAuth client's landing page |
//! | `logout.html` | `username`, `client_label`, `action`, `csrf_token`, `fields` (each `name`, `value`): the confirmation before RP-initiated logout ends the session |
//! | `start.html` | `username`, `client`, `client_label`, `provider`, `tag`, `scopes`, `replaces`, `replaces_owner`, `action`, `csrf_token`: the confirmation before `/oauth/start` goes to the provider |

use std::path::Path;

use axum::response::{Html, IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, HeaderValue, REFERRER_POLICY, X_FRAME_OPTIONS};
use http::{HeaderMap, StatusCode};
use minijinja::Environment;
use serde::Serialize;

/// The page templates, by name, as built in.
const BUILT_IN: [(&str, &str); 7] = [
    ("base.html", include_str!("../../templates/base.html")),
    ("login.html", include_str!("../../templates/login.html")),
    ("consent.html", include_str!("../../templates/consent.html")),
    ("error.html", include_str!("../../templates/error.html")),
    ("message.html", include_str!("../../templates/message.html")),
    ("start.html", include_str!("../../templates/start.html")),
    ("logout.html", include_str!("../../templates/logout.html")),
];

/// Why the templates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A file in `templates_dir` could not be read.
    #[error("cannot read template {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// What the system said.
        reason: String,
    },
    /// A template does not compile.
    #[error("template {name}: {reason}")]
    Syntax {
        /// The template's name or file.
        name: String,
        /// minijinja's message, with the line.
        reason: String,
    },
}

/// The compiled page templates.
#[derive(Debug)]
pub struct Pages {
    env: Environment<'static>,
}

/// The values of the sign-in page.
#[derive(Debug, Serialize)]
pub struct LoginView<'a> {
    /// The consumer's label.
    pub client_label: &'a str,
    /// Where the form posts (the authorization request's own URL).
    pub action: &'a str,
    /// The form's CSRF token.
    pub csrf_token: &'a str,
    /// The username typed before, after a failed attempt.
    pub username: &'a str,
    /// Why the last attempt failed.
    pub error: Option<&'a str>,
    /// Whether the username and password form is shown.
    pub password: bool,
    /// A button per outside provider (`server.login.providers`).
    pub providers: Vec<ProviderButton<'a>>,
}

/// A provider's button on the sign-in page.
#[derive(Debug, Serialize)]
pub struct ProviderButton<'a> {
    /// The button's text.
    pub label: &'a str,
    /// Where it leads: the sign-in's start, naming the provider.
    pub href: &'a str,
}

impl Pages {
    /// Compiles the built-in templates, each replaced by the file of the
    /// same name in `dir` when there is one.
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        Ok(Pages { env: environment(dir, &BUILT_IN)? })
    }

    /// The sign-in page.
    pub fn login(&self, view: &LoginView<'_>, form_target: Option<&str>) -> Response {
        self.render("login.html", "Sign in", view, StatusCode::OK, form_target)
    }

    /// An error page: the request cannot be sent back to the client.
    pub fn error(&self, status: StatusCode, title: &str, message: &str) -> Response {
        self.render("error.html", title, &minijinja::context! { message }, status, None)
    }

    /// A page that reports how something ended (the OAuth client's landing
    /// page), with links to go on from there (`(label, href)`).
    pub fn message(
        &self,
        status: StatusCode,
        title: &str,
        message: &str,
        links: &[(&str, &str)],
    ) -> Response {
        let links: Vec<_> = links
            .iter()
            .map(|(label, href)| minijinja::context! { label => *label, href => *href })
            .collect();
        self.render("message.html", title, &minijinja::context! { message, links }, status, None)
    }

    /// Renders the template `name` with `title` and `view`'s values, with
    /// the page headers (see the module docs).
    pub(crate) fn render(
        &self,
        name: &str,
        title: &str,
        view: &impl Serialize,
        status: StatusCode,
        form_target: Option<&str>,
    ) -> Response {
        let ctx = minijinja::context! { title, ..minijinja::Value::from(minijinja::value::Serde(view)) };
        match self.env.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(html) => {
                let mut res = (status, Html(html)).into_response();
                page_headers(res.headers_mut(), form_target);
                res
            }
            Err(e) => {
                tracing::error!(template = name, error = %e, "a page template failed to render");
                let mut res =
                    (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered\n").into_response();
                page_headers(res.headers_mut(), None);
                res
            }
        }
    }
}

/// Compiles the `built_in` templates, each replaced by the file of the same
/// name under `dir` when there is one, and renders each once with empty
/// values, so that a template that only fails when rendered (an unknown
/// filter, a bad `extends`) stops the start instead of a request.
pub(crate) fn environment(
    dir: Option<&Path>,
    built_in: &[(&'static str, &'static str)],
) -> Result<Environment<'static>, TemplateError> {
    let mut env = Environment::new();
    // Missing values read as empty, also through `a.b` (pages share templates).
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    env.add_filter("code", code_spans);
    for (name, source) in built_in {
        let source = match dir.map(|d| d.join(name)).filter(|p| p.exists()) {
            Some(path) => std::fs::read_to_string(&path).map_err(|e| TemplateError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?,
            None => (*source).to_owned(),
        };
        let shown = dir.map_or_else(|| (*name).to_owned(), |d| d.join(name).display().to_string());
        env.add_template_owned(*name, source)
            .map_err(|e| TemplateError::Syntax { name: shown, reason: e.to_string() })?;
    }
    for (name, _) in built_in {
        env.get_template(name)
            .and_then(|t| t.render(minijinja::context! {}))
            .map_err(|e| TemplateError::Syntax { name: (*name).to_owned(), reason: e.to_string() })?;
    }
    Ok(env)
}

/// The `code` filter: the text HTML-escaped, with each `` `span` `` as
/// `<code>span</code>`, so a message naming a field or value reads as it
/// does in the docs (a lone backtick stays as it is).
fn code_spans(text: Option<String>) -> minijinja::Value {
    let text = text.unwrap_or_default();
    let parts: Vec<&str> = text.split('`').collect();
    let mut html = String::with_capacity(text.len() + 16);
    for (i, part) in parts.iter().enumerate() {
        let escaped = minijinja::HtmlEscape(part).to_string();
        if i % 2 == 0 {
            html.push_str(&escaped);
        } else if i + 1 < parts.len() || parts.len() % 2 == 1 {
            html.push_str(&format!("<code>{escaped}</code>"));
        } else {
            html.push('`');
            html.push_str(&escaped);
        }
    }
    minijinja::Value::from_safe_string(html)
}

/// The headers of every page. `form_target` is the origin (or `scheme:` of
/// a private-use URI) a form post may end up at after a redirect.
pub(crate) fn page_headers(headers: &mut HeaderMap, form_target: Option<&str>) {
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; \
             frame-ancestors 'none'; form-action 'self'",
        ),
    );
    if let Some(target) = form_target {
        allow_form_target(headers, target);
    }
    framing_and_caching_headers(headers);
}

/// Where a redirect to `uri` lands, as a CSP source: the origin of an http(s)
/// URI, or the scheme of a private-use one (`com.example.app:`).
///
/// Chromium applies `form-action` to every redirect that follows a form
/// post, so a page whose form ends (after redirects) at another site must
/// name that site: the consent page its consumer's redirect URI, the
/// sign-in before `/oauth/start` the provider's authorization endpoint.
pub(crate) fn form_target(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    match url.scheme() {
        "http" | "https" => Some(url.origin().ascii_serialization()),
        scheme => Some(format!("{scheme}:")),
    }
}

/// Adds `target` (from [`form_target`]) to the `form-action` directive of
/// the page's Content Security Policy, which every page of ours ends with.
/// A value that could add a directive of its own is left out.
pub(crate) fn allow_form_target(headers: &mut HeaderMap, target: &str) {
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic() && b != b';' && b != b',') {
        return;
    }
    let Some(csp) = headers.get(CONTENT_SECURITY_POLICY).and_then(|v| v.to_str().ok()) else { return };
    let ends_with_form_action =
        csp.rsplit(';').next().is_some_and(|d| d.trim_start().starts_with("form-action "));
    if !ends_with_form_action {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&format!("{csp} {target}")) {
        headers.insert(CONTENT_SECURITY_POLICY, value);
    }
}

/// The headers every HTML page of ours carries besides its CSP: no
/// framing, no caching, no referrer, no MIME sniffing.
pub(crate) fn framing_and_caching_headers(headers: &mut HeaderMap) {
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(http::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(res: Response) -> String {
        String::from_utf8(axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn built_in_pages_escape_values() {
        let pages = Pages::load(None).unwrap();
        let view = LoginView {
            client_label: "<script>x</script>",
            action: "/oauth/authorize?a=1&b=2",
            csrf_token: "t",
            username: "\"quoted\"",
            error: Some("wrong"),
            password: true,
            providers: vec![ProviderButton {
                label: "Sign in with <Corp>",
                href: "/oauth/login/start?provider=corp",
            }],
        };
        let res = pages.login(&view, Some("https://app.example"));
        let csp = res.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.ends_with("form-action 'self' https://app.example"), "{csp}");
        let html = body(res).await;
        assert!(html.contains("&lt;script&gt;x&lt;&#x2f;script&gt;"), "{html}");
        assert!(html.contains("action=\"&#x2f;oauth&#x2f;authorize?a=1&amp;b=2\""), "{html}");
        assert!(!html.contains("\"quoted\""), "{html}");
        assert!(html.contains("Sign in with &lt;Corp&gt;"), "{html}");
        assert!(html.contains("type=\"password\""), "{html}");
    }

    #[tokio::test]
    async fn a_template_folder_replaces_pages_and_bad_templates_stop_the_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("error.html"), "<p>custom: {{ message }}</p>").unwrap();
        let pages = Pages::load(Some(dir.path())).unwrap();
        let res = pages.error(StatusCode::BAD_REQUEST, "t", "boom");
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(body(res).await, "<p>custom: boom</p>");

        std::fs::write(dir.path().join("login.html"), "{% if %}").unwrap();
        let err = Pages::load(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("login.html"), "{err}");
    }

    #[test]
    fn form_targets_cannot_inject_directives() {
        let mut headers = HeaderMap::new();
        page_headers(&mut headers, Some("https://a.example; script-src *"));
        let csp = headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(!csp.contains("script-src"), "{csp}");
        assert!(csp.ends_with("form-action 'self'"), "{csp}");
    }

    #[test]
    fn form_targets_are_origins_or_schemes() {
        assert_eq!(
            form_target("https://app.example:8443/cb?x=1").as_deref(),
            Some("https://app.example:8443")
        );
        assert_eq!(form_target("http://127.0.0.1:5000/cb").as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(form_target("com.example.app:/oauth").as_deref(), Some("com.example.app:"));
        assert_eq!(form_target("not a uri"), None);
    }

    #[test]
    fn backticks_become_code_and_the_rest_is_escaped() {
        let html = |s: &str| code_spans(Some(s.to_owned())).to_string();
        assert_eq!(
            html("unknown field `tag`, expected `name`"),
            "unknown field <code>tag</code>, expected <code>name</code>"
        );
        assert_eq!(html("`<b>` & `x"), "<code>&lt;b&gt;</code> &amp; `x");
        assert_eq!(html("plain"), "plain");
        assert_eq!(code_spans(None).to_string(), "");
    }

    #[test]
    fn a_form_target_is_added_to_form_action_of_any_page() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("style-src 'self'; form-action 'self'"),
        );
        allow_form_target(&mut headers, "http://127.0.0.1:9000");
        assert_eq!(
            headers[CONTENT_SECURITY_POLICY],
            "style-src 'self'; form-action 'self' http://127.0.0.1:9000"
        );
    }
}
