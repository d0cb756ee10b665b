//! Sign-in of local users (`oauth-sidecar user add`, `server.users`), the
//! one way a person signs in to any of our pages: `/oauth/authorize`,
//! `/oauth/start/{client}` and the admin pages. Each caller has its own
//! `SignIn`, and so its own throttle counts and `CookieScope`: under
//! `/oauth/` a sign-in at `/oauth/authorize` counts for `/oauth/start` too
//! (the same cookie); the admin pages keep their own stricter cookie with an
//! idle timeout. It works without a `server:` section: users live in the
//! store either way, and the page templates, throttle and session settings
//! are then `server:`'s defaults.
//!
//! A session counts only while its user exists and is enabled: the session
//! of a user found disabled (or deleted) is deleted on the spot, so enabling
//! the user again does not bring it back.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::header::{LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::cookie::{self, CookieScope};
use super::csrf::{self, CSRF_FIELD};
use super::federated::Federation;
use super::pages::{LoginView, Pages, ProviderButton, TemplateError};
use super::password;
use super::secrets::{Secrets, is_token, random_token};
use super::throttle::{Throttle, client_ip};
use crate::clock;
use crate::config::server::ServerConfig;
use crate::config::types::{HttpUrl, TrustedProxy};
use crate::proxy::ConnectionInfo;
use crate::store::{SessionRecord, SignInStore, StoreError, UserRecord, token_hash};

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
    /// Sign-in through providers could not be set up.
    #[error("cannot prepare sign-in through providers: {0}")]
    Federation(String),
}

/// What the sign-in page shows and where its form posts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoginForm<'a> {
    /// The page's own URL, where the form posts.
    pub(crate) action: &'a str,
    /// What the user signs in to (a consumer's label, the admin pages).
    pub(crate) label: &'a str,
    /// Where a form post may end up after a redirect, for the page's CSP.
    pub(crate) form_target: Option<&'a str>,
}

/// What a posted sign-in came to.
pub(crate) enum SignedIn {
    /// The password matched: a session was made; `cookie` sets it.
    Yes {
        /// The signed-in user.
        user: UserRecord,
        /// When the session began, Unix seconds.
        auth_time: i64,
        /// The `Set-Cookie` value of the new session.
        cookie: HeaderValue,
    },
    /// Refused: the page to send (the sign-in page with its message).
    No(Response),
}

/// What checking a username and password came to
/// ([`SignIn::check_credentials`]).
pub(crate) enum Checked {
    /// The password matched an enabled user.
    Yes(UserRecord),
    /// The password matched, but the user is disabled.
    Disabled(UserRecord),
    /// Wrong username or password; the attempt stays counted.
    No,
    /// Too many attempts for the account or the address: refused without a
    /// check; the block ends after this long at most.
    Throttled(Duration),
    /// Every argon2 slot stayed busy: not checked, not counted.
    Busy,
}

/// The cookie value a `Set-Cookie` header sets.
fn set_cookie_value(header: &HeaderValue) -> Option<&str> {
    let (_, value) = header.to_str().ok()?.split(';').next()?.split_once('=')?;
    Some(value)
}

/// Local-user sign-in (see the module docs).
pub(crate) struct SignIn {
    pub(super) store: Arc<dyn SignInStore>,
    secrets: Secrets,
    pub(super) pages: Pages,
    throttle: Throttle,
    /// Sign-ins through a provider started per address and not completed
    /// (each start stores a state), at `server.login_attempts_per_address`
    /// per `server.login_window`.
    pub(super) starts: Throttle,
    session_ttl: i64,
    pub(super) scope: CookieScope,
    pub(super) secure: bool,
    /// Sign-in through outside providers (`server.login.providers`).
    pub(super) federation: Option<Federation>,
    trusted_proxies: Vec<TrustedProxy>,
    /// An argon2 hash checked for unknown users, so they cost the same.
    dummy_hash: String,
}

impl SignIn {
    /// Takes the page templates, throttle and session settings from the
    /// `server:` section when there is one, else its defaults.
    pub(crate) async fn new(
        store: Arc<dyn SignInStore>,
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
        let federation = Federation::new(&server.login, public_url, &format!("{}login", scope.home))
            .map_err(SignInError::Federation)?;
        Ok(SignIn {
            federation,
            store,
            secrets,
            pages,
            throttle: Throttle::new(
                server.login_attempts,
                server.login_attempts_per_address,
                server.login_window.0,
            ),
            starts: Throttle::new(u32::MAX, server.login_attempts_per_address, server.login_window.0),
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

    /// The server's keyed secrets (CSRF tokens, consumer secrets).
    pub(crate) fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// The signed-in, enabled user, from the session cookie.
    pub(crate) async fn current_user(&self, headers: &HeaderMap) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.current_session(headers).await?.map(|(user, _)| user))
    }

    /// The signed-in, enabled user and when the session began, from the
    /// session cookie; the session of a disabled or deleted user is deleted.
    /// With an idle timeout, each call moves the session's end on (written
    /// when it moves by a quarter of the timeout or a minute), never past its
    /// longest life.
    pub(crate) async fn current_session(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(UserRecord, i64)>, StoreError> {
        let Some(value) = self.session_value(headers) else {
            return Ok(None);
        };
        let now = clock::now();
        let id_hash = token_hash(value);
        let Some(found) = self.store.session(&id_hash, self.scope.kind, now).await? else {
            return Ok(None);
        };
        let user = match self.store.user(&found.username).await? {
            Some(user) if !user.disabled => user,
            _ => {
                self.store.delete_session(&id_hash).await?;
                return Ok(None);
            }
        };
        if let Some(idle) = self.scope.idle {
            // Written when it moves by a quarter of the timeout (a minute at most), not on every request.
            let step = (idle / 4).clamp(1, 60);
            let end = now.saturating_add(idle).min(found.auth_time.saturating_add(self.session_ttl));
            if end > found.expires_at.saturating_add(step) {
                self.store.touch_session(&id_hash, end).await?;
            }
        }
        Ok(Some((user, found.auth_time)))
    }

    /// Ends the browser's session; the `Set-Cookie` that clears it.
    pub(crate) async fn sign_out(&self, headers: &HeaderMap) -> Result<HeaderValue, StoreError> {
        if let Some(value) = self.session_value(headers) {
            self.store.delete_session(&token_hash(value)).await?;
        }
        Ok(self.set_cookie(&self.scope.name, "", Some(0), self.scope.same_site))
    }

    /// The session cookie's stored hash and the session's `sid`, for the
    /// session the request's cookie names, or the one `new_session` (the
    /// `Set-Cookie` of [`SignedIn::Yes`]) just made. The `sid` is a keyed
    /// hash of the stored one: it names the session to consumers (ID tokens,
    /// logout tokens) without revealing or matching the cookie.
    pub(crate) fn session_ids(
        &self,
        headers: &HeaderMap,
        new_session: Option<&HeaderValue>,
    ) -> Option<(String, String)> {
        let value = new_session.and_then(set_cookie_value).or_else(|| self.session_value(headers))?;
        let id_hash = token_hash(value);
        let sid = self.secrets.tag("sid", id_hash.as_bytes());
        Some((id_hash, sid))
    }

    /// The `Set-Cookie` that clears this sign-in's session cookie.
    pub(crate) fn clear_session_cookie(&self) -> HeaderValue {
        self.set_cookie(&self.scope.name, "", Some(0), self.scope.same_site)
    }

    /// The value of this sign-in's session cookie in the request, if sent.
    fn session_value<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        cookie::cookie(headers, &self.scope.name).filter(|v| is_token(v))
    }

    pub(super) fn set_cookie(
        &self,
        name: &str,
        value: &str,
        max_age: Option<u64>,
        same_site: &str,
    ) -> HeaderValue {
        cookie::set_cookie(&self.scope.path, name, value, max_age, same_site, self.secure)
    }

    /// The CSRF token for a form on a page, bound to the browser's session,
    /// and the `Set-Cookie` the page needs when the browser has no CSRF
    /// cookie yet.
    pub(crate) fn csrf_token(&self, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
        self.csrf_token_for(headers, None)
    }

    /// [`Self::csrf_token`] for a page answering a sign-in: bound to the
    /// session of `new_session`, the `Set-Cookie` of [`SignedIn::Yes`],
    /// when given, which the browser sends with the page's form.
    pub(crate) fn csrf_token_for(
        &self,
        headers: &HeaderMap,
        new_session: Option<&HeaderValue>,
    ) -> (String, Option<HeaderValue>) {
        let session = new_session.and_then(set_cookie_value).or_else(|| self.session_value(headers));
        let (token, new_cookie) = csrf::csrf_token(&self.secrets, headers, &self.scope.csrf_name, session);
        (token, new_cookie.map(|value| self.set_cookie(&self.scope.csrf_name, &value, None, "Strict")))
    }

    /// True when a posted form's CSRF token matches the browser's CSRF
    /// cookie and session.
    pub(crate) fn csrf_ok(&self, headers: &HeaderMap, presented: Option<&str>) -> bool {
        let session = self.session_value(headers);
        csrf::csrf_ok(&self.secrets, headers, &self.scope.csrf_name, session, presented)
    }

    /// The sign-in page for `form`, with the username typed before and why
    /// the last attempt failed.
    pub(crate) fn login_page(
        &self,
        headers: &HeaderMap,
        form: &LoginForm<'_>,
        username: &str,
        error: Option<&str>,
        status: StatusCode,
    ) -> Response {
        let buttons = self.federation.as_ref().map(|f| f.buttons(form.action)).unwrap_or_default();
        let password = self.password_form();
        if let ([(_, only)], false) = (buttons.as_slice(), password) {
            // One provider and no password form: straight there.
            let mut res = StatusCode::SEE_OTHER.into_response();
            if let Ok(location) = HeaderValue::from_str(only) {
                res.headers_mut().insert(LOCATION, location);
            }
            super::pages::framing_and_caching_headers(res.headers_mut());
            return res;
        }
        let providers: Vec<ProviderButton<'_>> =
            buttons.iter().map(|(label, href)| ProviderButton { label, href }).collect();
        let (csrf_token, new_cookie) = self.csrf_token(headers);
        let view = LoginView {
            client_label: form.label,
            action: form.action,
            csrf_token: &csrf_token,
            username,
            error,
            password,
            providers,
        };
        let mut page = self.pages.login(&view, form.form_target);
        *page.status_mut() = status;
        if let Some(cookie) = new_cookie {
            page.headers_mut().append(SET_COOKIE, cookie);
        }
        page
    }

    /// The client's address, as the throttle counts it.
    pub(crate) fn client_ip(&self, headers: &HeaderMap, conn: Option<&ConnectionInfo>) -> Option<IpAddr> {
        client_ip(headers, conn, &self.trusted_proxies)
    }

    /// Checks `username` and `presented` for a sign-in form or the
    /// `password` grant: the attempt is counted by the throttle first (and
    /// refused without a check when the account or `ip` used up theirs),
    /// then the password is checked. An unknown user costs the same argon2
    /// check as a known one, so the time taken does not tell which
    /// usernames exist.
    pub(crate) async fn check_credentials(
        &self,
        username: &str,
        presented: &str,
        ip: Option<IpAddr>,
    ) -> Result<Checked, StoreError> {
        if let Err(retry_after) = self.throttle.attempt(username, ip) {
            tracing::warn!(username, ip = ?ip, "sign-in refused: too many failed attempts");
            return Ok(Checked::Throttled(retry_after));
        }
        let stored = match self.store.user(username).await {
            Ok(stored) => stored,
            Err(e) => {
                self.throttle.not_checked(username, ip);
                return Err(e);
            }
        };
        let phc = stored.as_ref().map_or_else(|| self.dummy_hash.clone(), |u| u.password_hash.clone());
        let Ok(matches) = password::verify_blocking(phc, presented.to_owned()).await else {
            self.throttle.not_checked(username, ip);
            tracing::warn!(username, "sign-in not checked: every password check slot is busy");
            return Ok(Checked::Busy);
        };
        Ok(match stored {
            Some(user) if matches => {
                self.throttle.succeeded(username, ip);
                if user.disabled { Checked::Disabled(user) } else { Checked::Yes(user) }
            }
            _ => {
                tracing::warn!(username, ip = ?ip, "sign-in failed: wrong username or password");
                Checked::No
            }
        })
    }

    /// Signs a user in from a sign-in form's `username` and `password`
    /// (its CSRF token already checked): throttle, password, account state,
    /// then a new session. A refusal is the sign-in page again.
    pub(crate) async fn sign_in(
        &self,
        headers: &HeaderMap,
        conn: Option<&ConnectionInfo>,
        form: &LoginForm<'_>,
        username: Option<&str>,
        presented: Option<&str>,
    ) -> Result<SignedIn, StoreError> {
        let refuse = |username: &str, message: &str, status: StatusCode| {
            Ok(SignedIn::No(self.login_page(headers, form, username, Some(message), status)))
        };
        if !self.password_form() {
            return refuse("", "Sign-in with a password is off here: use a provider.", StatusCode::FORBIDDEN);
        }
        let (Some(username), Some(presented)) = (username, presented) else {
            return refuse("", "Enter your username and password.", StatusCode::BAD_REQUEST);
        };
        let ip = self.client_ip(headers, conn);
        let user = match self.check_credentials(username, presented, ip).await? {
            Checked::Yes(user) => user,
            Checked::Disabled(user) => {
                tracing::warn!(username = %user.username, "sign-in refused: the account is disabled");
                return refuse(username, "This account is disabled.", StatusCode::FORBIDDEN);
            }
            Checked::No => return refuse(username, "Wrong username or password.", StatusCode::OK),
            Checked::Throttled(_) => {
                let minutes = self.throttle.window().as_secs().div_ceil(60);
                let message = format!("Too many failed sign-in attempts. Try again in {minutes} minutes.");
                return refuse(username, &message, StatusCode::TOO_MANY_REQUESTS);
            }
            Checked::Busy => {
                let message = "The server is busy checking passwords. Try again in a moment.";
                return refuse(username, message, StatusCode::SERVICE_UNAVAILABLE);
            }
        };
        let (cookie, auth_time) = self.start_session(&user).await?;
        tracing::info!(username = %user.username, "signed in");
        Ok(SignedIn::Yes { user, auth_time, cookie })
    }

    /// Whether the sign-in page shows the password form (`server.login.password`).
    pub(crate) fn password_form(&self) -> bool {
        self.federation.as_ref().is_none_or(|f| f.password)
    }

    /// A new session for `user`: the `Set-Cookie` that holds it, and when it began.
    pub(super) async fn start_session(&self, user: &UserRecord) -> Result<(HeaderValue, i64), StoreError> {
        let now = clock::now();
        let id = random_token();
        let record = SessionRecord {
            id_hash: token_hash(&id),
            kind: self.scope.kind.to_owned(),
            username: user.username.clone(),
            auth_time: now,
            expires_at: now
                .saturating_add(self.scope.idle.map_or(self.session_ttl, |i| i.min(self.session_ttl))),
        };
        self.store.add_session(&record).await?;
        Ok((self.set_cookie(&self.scope.name, &id, None, self.scope.same_site), now))
    }

    /// Handles a posted sign-in form whose page shows nothing else: checks
    /// its CSRF token, then [`Self::sign_in`]; on success the browser is
    /// sent back to the form's `action` with a GET.
    pub(crate) async fn post_form(
        &self,
        headers: &HeaderMap,
        conn: Option<&ConnectionInfo>,
        body: &[u8],
        form: &LoginForm<'_>,
    ) -> Response {
        let fields: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
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
        match self.sign_in(headers, conn, form, field("username"), field("password")).await {
            Ok(SignedIn::Yes { cookie, .. }) => {
                let mut res = StatusCode::SEE_OTHER.into_response();
                if let Ok(location) = HeaderValue::from_str(form.action) {
                    res.headers_mut().insert(LOCATION, location);
                }
                res.headers_mut().append(SET_COOKIE, cookie);
                res
            }
            Ok(SignedIn::No(page)) => page,
            Err(e) => self.failure(&e),
        }
    }

    /// The 500 page for a store failure during sign-in (logged, not shown).
    pub(crate) fn failure(&self, e: &StoreError) -> Response {
        tracing::error!(error = %e, "sign-in failed");
        self.pages.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Server error",
            "The server could not handle the request. Try again later.",
        )
    }
}
