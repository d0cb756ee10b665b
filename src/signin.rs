//! Sign-in of local users (`oauth-sidecar user add`, `server.users`) for the
//! sidecar's own routes that need a person: `/oauth/start/{client}` and the
//! admin pages. It reuses the authorization server's pieces: the same CSRF
//! form token, the same throttle settings and pages. Where the session
//! lives is the caller's [`CookieScope`]: under `/oauth/` a sign-in at
//! `/oauth/authorize` counts for `/oauth/start` too (the same cookie); the
//! admin pages keep their own stricter cookie with an idle timeout.
//! It works without a `server:` section: users live in the store either way.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::header::{LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::config::server::ServerConfig;
use crate::config::types::{HttpUrl, TrustedProxy};
use crate::proxy::ConnectionInfo;
use crate::server::consumer::{Secrets, random_token};
use crate::server::pages::{LoginView, Pages, TemplateError};
use crate::server::password;
use crate::server::session::{self, CSRF_COOKIE, CSRF_FIELD, SESSION_COOKIE};
use crate::store::{SessionRecord, Store, StoreError, UserRecord, token_hash};

/// Why sign-in could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A page template could not be loaded.
    #[error(transparent)]
    Templates(#[from] TemplateError),
    /// A password hash could not be made.
    #[error("cannot prepare password checks: {0}")]
    Hash(String),
}

/// Where a sign-in's session and CSRF cookies live and how long a session lasts.
#[derive(Debug, Clone)]
pub(crate) struct CookieScope {
    /// The session cookie's name.
    pub(crate) name: &'static str,
    /// The cookies' `Path`, ending in `/`.
    pub(crate) path: String,
    /// The session cookie's `SameSite`.
    pub(crate) same_site: &'static str,
    /// Seconds without a request after which the session ends; `None`: only
    /// the session lifetime counts.
    pub(crate) idle: Option<i64>,
    /// The session's longest life in seconds; `None`: `server.session_ttl`.
    pub(crate) ttl: Option<i64>,
}

impl CookieScope {
    /// The authorization server's session: `oauth_sidecar_session` on `/oauth/`.
    pub(crate) fn oauth() -> Self {
        CookieScope { name: SESSION_COOKIE, path: "/oauth/".into(), same_site: "Lax", idle: None, ttl: None }
    }
}

/// Local-user sign-in (see the module docs).
pub(crate) struct SignIn {
    store: Arc<dyn Store>,
    secrets: Secrets,
    pages: Pages,
    throttle: session::Throttle,
    session_ttl: i64,
    scope: CookieScope,
    secure: bool,
    trusted_proxies: Vec<TrustedProxy>,
    dummy_hash: String,
}

impl SignIn {
    /// Takes the page templates, throttle and session settings from the
    /// `server:` section when there is one, else its defaults.
    pub(crate) async fn new(
        store: Arc<dyn Store>,
        server: Option<&ServerConfig>,
        public_url: &HttpUrl,
        trusted_proxies: &[TrustedProxy],
        scope: CookieScope,
    ) -> Result<Self, SignInError> {
        let defaults = ServerConfig::default();
        let server = server.unwrap_or(&defaults);
        let pages = Pages::load(server.templates_dir.as_ref().map(|d| d.value.as_path()))?;
        let secrets = Secrets::load(store.as_ref()).await?;
        let dummy_hash = password::hash_blocking(random_token()).await.map_err(SignInError::Hash)?;
        Ok(SignIn {
            store,
            secrets,
            pages,
            throttle: session::Throttle::new(
                server.login_attempts,
                server.login_attempts_per_address,
                server.login_window.0,
            ),
            session_ttl: scope
                .ttl
                .unwrap_or_else(|| i64::try_from(server.session_ttl.0.as_secs()).unwrap_or(i64::MAX)),
            scope,
            secure: public_url.is_https(),
            trusted_proxies: trusted_proxies.to_vec(),
            dummy_hash,
        })
    }

    /// The pages, for the callers' own messages.
    pub(crate) fn pages(&self) -> &Pages {
        &self.pages
    }

    /// The signed-in, enabled user, from the session cookie. With an idle
    /// timeout, each call moves the session's end on (written when it moves
    /// by a quarter of the timeout or a minute), never past its longest life.
    pub(crate) async fn current_user(&self, headers: &HeaderMap) -> Result<Option<UserRecord>, StoreError> {
        let Some(value) = session::cookie(headers, self.scope.name).filter(|v| session::is_token(v)) else {
            return Ok(None);
        };
        let now = crate::clock::now();
        let id_hash = token_hash(value);
        let Some(found) = self.store.session(&id_hash, now).await? else {
            return Ok(None);
        };
        if let Some(idle) = self.scope.idle {
            // Written when it moves by a quarter of the timeout (a minute at most), not on every request.
            let step = (idle / 4).clamp(1, 60);
            let end = now.saturating_add(idle).min(found.auth_time.saturating_add(self.session_ttl));
            if end > found.expires_at.saturating_add(step) {
                self.store.touch_session(&id_hash, end).await?;
            }
        }
        Ok(self.store.user(&found.username).await?.filter(|u| !u.disabled))
    }

    /// Ends the browser's session; the `Set-Cookie` that clears it.
    pub(crate) async fn sign_out(&self, headers: &HeaderMap) -> Result<HeaderValue, StoreError> {
        if let Some(value) = session::cookie(headers, self.scope.name).filter(|v| session::is_token(v)) {
            self.store.delete_session(&token_hash(value)).await?;
        }
        Ok(self.set_cookie(self.scope.name, "", Some(0), self.scope.same_site))
    }

    fn set_cookie(&self, name: &str, value: &str, max_age: Option<u64>, same_site: &str) -> HeaderValue {
        session::set_cookie(&self.scope.path, name, value, max_age, same_site, self.secure)
    }

    /// The CSRF token for a form on a page, and the `Set-Cookie` the page
    /// needs when the browser has no CSRF cookie yet.
    pub(crate) fn csrf_token(&self, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
        let (token, new_cookie) = session::csrf_token(&self.secrets, headers);
        (token, new_cookie.map(|value| self.set_cookie(CSRF_COOKIE, &value, None, "Strict")))
    }

    /// True when a posted form's CSRF token matches the browser's cookie.
    pub(crate) fn csrf_ok(&self, headers: &HeaderMap, presented: Option<&str>) -> bool {
        session::csrf_ok(&self.secrets, headers, presented)
    }

    /// The sign-in page; its form posts to `action` (the page's own URL).
    pub(crate) fn login_page(
        &self,
        headers: &HeaderMap,
        action: &str,
        label: &str,
        username: &str,
        error: Option<&str>,
        status: StatusCode,
    ) -> Response {
        let (csrf_token, new_cookie) = self.csrf_token(headers);
        let view = LoginView { client_label: label, action, csrf_token: &csrf_token, username, error };
        let mut page = self.pages.login(&view, None);
        *page.status_mut() = status;
        if let Some(cookie) = new_cookie {
            page.headers_mut().append(SET_COOKIE, cookie);
        }
        page
    }

    /// Handles a posted sign-in form: on success a session is made and the
    /// browser is sent back to `action` with a GET; else the form again.
    pub(crate) async fn sign_in(
        &self,
        headers: &HeaderMap,
        conn: Option<&ConnectionInfo>,
        form: &[u8],
        action: &str,
        label: &str,
    ) -> Response {
        let fields: Vec<(String, String)> = url::form_urlencoded::parse(form).into_owned().collect();
        let field = |name: &str| {
            fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
        };
        if !self.csrf_ok(headers, field(CSRF_FIELD)) {
            return self.pages.error(
                StatusCode::FORBIDDEN,
                "Form expired",
                "The form expired or was not sent from this site. Open the page again.",
            );
        }
        let (Some(username), Some(presented)) = (field("username"), field("password")) else {
            return self.login_page(
                headers,
                action,
                label,
                "",
                Some("Enter your username and password."),
                StatusCode::BAD_REQUEST,
            );
        };
        let ip = session::client_ip(headers, conn, &self.trusted_proxies);
        if self.throttle.blocked(username, ip) {
            tracing::warn!(username, ip = ?ip, "sign-in refused: too many failed attempts");
            let minutes = self.throttle.window().as_secs().div_ceil(60);
            let message = format!("Too many failed sign-in attempts. Try again in {minutes} minutes.");
            return self.login_page(
                headers,
                action,
                label,
                username,
                Some(&message),
                StatusCode::TOO_MANY_REQUESTS,
            );
        }
        let stored = match self.store.user(username).await {
            Ok(u) => u,
            Err(e) => return self.failure(e),
        };
        let phc = stored.as_ref().map_or_else(|| self.dummy_hash.clone(), |u| u.password_hash.clone());
        let matches = password::verify_blocking(phc, presented.to_owned()).await;
        let user = match stored {
            Some(user) if matches && !user.disabled => user,
            Some(user) if matches => {
                tracing::warn!(username = %user.username, "sign-in refused: the account is disabled");
                return self.login_page(
                    headers,
                    action,
                    label,
                    username,
                    Some("This account is disabled."),
                    StatusCode::FORBIDDEN,
                );
            }
            _ => {
                self.throttle.failed(username, ip);
                tracing::warn!(username, ip = ?ip, "sign-in failed: wrong username or password");
                return self.login_page(
                    headers,
                    action,
                    label,
                    username,
                    Some("Wrong username or password."),
                    StatusCode::OK,
                );
            }
        };
        self.throttle.succeeded(username);
        let now = crate::clock::now();
        let id = random_token();
        let record = SessionRecord {
            id_hash: token_hash(&id),
            username: user.username.clone(),
            auth_time: now,
            expires_at: now
                .saturating_add(self.scope.idle.map_or(self.session_ttl, |i| i.min(self.session_ttl))),
        };
        if let Err(e) = self.store.add_session(&record).await {
            return self.failure(e);
        }
        tracing::info!(username = %user.username, "signed in");
        let mut res = StatusCode::SEE_OTHER.into_response();
        if let Ok(location) = HeaderValue::from_str(action) {
            res.headers_mut().insert(LOCATION, location);
        }
        res.headers_mut()
            .append(SET_COOKIE, self.set_cookie(self.scope.name, &id, None, self.scope.same_site));
        res
    }

    fn failure(&self, e: StoreError) -> Response {
        tracing::error!(error = %e, "sign-in failed");
        self.pages.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Server error",
            "The server could not handle the request. Try again later.",
        )
    }
}
