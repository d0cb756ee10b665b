//! The start and return of a sign-in through an outside provider, for each
//! [`SignIn`] (see [`super::federated`] for the protocol): the state bound
//! to the browser, `allow`, the local user linked to (provider, `sub`), the
//! roles from the rules, and the session.

use axum::response::{IntoResponse, Response};
use http::header::{LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::claims::{ADMIN_ROLE, apply_rules, first_match, verified_email};
use super::cookie;
use super::federated::{Refusal, Started, Verified, refusal};
use super::secrets::{is_token, random_token};
use super::signin::SignIn;
use crate::clock;
use crate::proxy::ConnectionInfo;
use crate::store::{
    ADMINISTER_OAUTH, FederatedIdentityRecord, LoginStateRecord, StoreError, UserRecord, token_hash,
};

/// The cookie that binds a started sign-in to the browser.
const LOGIN_COOKIE: &str = "oauth_sidecar_login";

/// The longest `next` kept for after the sign-in.
const MAX_NEXT: usize = 2048;

impl SignIn {
    /// The start and return paths when providers are configured, for the
    /// role that mounts this sign-in's routes.
    pub(crate) fn federation_paths(&self) -> Option<(String, String)> {
        self.federation.as_ref().map(|f| (f.start_path(), f.return_path()))
    }

    fn login_cookie_name(&self) -> String {
        if self.secure { format!("__Host-{LOGIN_COOKIE}") } else { LOGIN_COOKIE.to_owned() }
    }

    fn refused(&self, r: &Refusal) -> Response {
        self.pages.error(r.status, r.title, &r.message)
    }

    /// `GET {base}/start?provider=NAME&next=PATH`: stores a new state and
    /// sends the browser to the provider.
    pub(crate) async fn federated_start(
        &self,
        headers: &HeaderMap,
        conn: Option<&ConnectionInfo>,
        query: &str,
    ) -> Response {
        let Some(federation) = &self.federation else {
            return self.pages.error(
                StatusCode::NOT_FOUND,
                "Not found",
                "No sign-in providers are configured.",
            );
        };
        let params: Vec<(String, String)> =
            url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let Some(provider) = param("provider").and_then(|name| federation.provider(name)) else {
            return self.pages.error(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "The sign-in names no known provider.",
            );
        };
        let home = &self.scope.home;
        let next = param("next").unwrap_or(home);
        if !next.starts_with(home.as_str())
            || next.starts_with("//")
            || next.contains(['\\', '\r', '\n'])
            || next.len() > MAX_NEXT
        {
            return self.pages.error(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "The sign-in would not come back to this site. Start again from the application.",
            );
        }
        // Each start stores a state until it is used or expires: an address
        // that starts many and completes none is refused for a while.
        let ip = self.client_ip(headers, conn);
        if let Err(retry_after) = self.starts.attempt("", ip) {
            tracing::warn!(ip = ?ip, "too many sign-ins through providers started from one address; refused");
            let minutes = retry_after.as_secs().div_ceil(60);
            let mut res = self.pages.error(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many sign-ins",
                &format!("Too many sign-ins were started from your address. Try again in {minutes} minutes."),
            );
            res.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs()));
            return res;
        }
        let (url, state, started) = match federation.authorization(provider, self.scope.kind, next).await {
            Ok(found) => found,
            Err(r) => return self.refused(&r),
        };
        let name = self.login_cookie_name();
        let browser =
            cookie::cookie(headers, &name).filter(|v| is_token(v)).map_or_else(random_token, str::to_owned);
        let record = LoginStateRecord {
            state_hash: token_hash(&state),
            browser_hash: token_hash(&browser),
            data: serde_json::to_string(&started).unwrap_or_default(),
            expires_at: clock::now().saturating_add(federation.state_ttl),
        };
        if let Err(e) = self.store.add_login_state(&record).await {
            return self.failure(&e);
        }
        tracing::info!(provider = %provider.name.value, kind = self.scope.kind, "federated sign-in started");
        let mut res = StatusCode::SEE_OTHER.into_response();
        match HeaderValue::from_str(url.as_str()) {
            Ok(location) => res.headers_mut().insert(LOCATION, location),
            Err(_) => {
                return self.refused(&refusal(
                    StatusCode::BAD_GATEWAY,
                    "Provider unavailable",
                    "The provider's address cannot be used.",
                ));
            }
        };
        let max_age = u64::try_from(federation.state_ttl).unwrap_or(600);
        res.headers_mut().append(SET_COOKIE, self.set_cookie(&name, &browser, Some(max_age), "Lax"));
        super::pages::framing_and_caching_headers(res.headers_mut());
        res
    }

    /// `GET {base}/return`: checks the state, then the provider's answer;
    /// signs the user in and sends the browser on to where the sign-in
    /// began. Every refusal is a page, and stores nothing.
    pub(crate) async fn federated_return(
        &self,
        headers: &HeaderMap,
        conn: Option<&ConnectionInfo>,
        query: &str,
    ) -> Response {
        match self.finish(headers, query).await {
            Ok(Ok((cookie, next))) => {
                // A completed sign-in gives its start back to the address.
                self.starts.succeeded("", self.client_ip(headers, conn));
                self.signed_in(cookie, &next)
            }
            Ok(Err(r)) => self.refused(&r),
            Err(e) => self.failure(&e),
        }
    }

    async fn finish(
        &self,
        headers: &HeaderMap,
        query: &str,
    ) -> Result<Result<(HeaderValue, String), Refusal>, StoreError> {
        let Some(federation) = &self.federation else {
            return Ok(Err(refusal(
                StatusCode::NOT_FOUND,
                "Not found",
                "No sign-in providers are configured.",
            )));
        };
        let params: Vec<(String, String)> =
            url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let param = |name: &str| {
            params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
        };
        let again = "Go back to the application and sign in again.";
        let Some(state) = param("state") else {
            return Ok(Err(refusal(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                format!("The answer carries no state. {again}"),
            )));
        };
        let Some(record) = self.store.take_login_state(&token_hash(state), clock::now()).await? else {
            tracing::warn!("federated sign-in refused: unknown or used state");
            return Ok(Err(refusal(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                format!("This sign-in is unknown or was already used. {again}"),
            )));
        };
        let started: Option<Started> = serde_json::from_str(&record.data).ok();
        let Some(started) = started.filter(|s| s.kind == self.scope.kind) else {
            return Ok(Err(refusal(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                format!("This sign-in was started for another page. {again}"),
            )));
        };
        if record.expires_at <= clock::now() {
            return Ok(Err(refusal(
                StatusCode::BAD_REQUEST,
                "Sign-in expired",
                format!("This sign-in took too long and expired. {again}"),
            )));
        }
        let browser = cookie::cookie(headers, &self.login_cookie_name()).filter(|v| is_token(v));
        if browser.is_none_or(|b| token_hash(b) != record.browser_hash) {
            tracing::warn!(provider = %started.provider, "federated sign-in refused: the state was started in another browser");
            return Ok(Err(refusal(
                StatusCode::FORBIDDEN,
                "Sign-in refused",
                format!("This sign-in was started in another browser. {again}"),
            )));
        }
        if let Some(error) = param("error") {
            let description = param("error_description").map(|d| format!(" ({d})")).unwrap_or_default();
            tracing::info!(provider = %started.provider, error, "federated sign-in: the provider answered with an error");
            return Ok(Err(refusal(
                StatusCode::FORBIDDEN,
                "Sign-in cancelled",
                format!("The provider {} did not sign you in: `{error}`{description}.", started.provider),
            )));
        }
        let verified = match federation.verify(&started, param("code"), param("iss")).await {
            Ok(verified) => verified,
            Err(r) => return Ok(Err(r)),
        };
        let user = match self.link(&verified).await? {
            Ok(user) => user,
            Err(r) => return Ok(Err(r)),
        };
        let (cookie, _) = self.start_session(&user).await?;
        tracing::info!(username = %user.username, provider = %started.provider, "signed in through a provider");
        Ok(Ok((cookie, started.next)))
    }

    /// `allow`, then the local user linked to (provider, `sub`), found or
    /// created, with the roles of the rules; stored only when allowed.
    async fn link(&self, v: &Verified<'_>) -> Result<Result<UserRecord, Refusal>, StoreError> {
        let provider = &v.provider.name.value;
        let email = verified_email(&v.claims);
        let who = email.clone().unwrap_or_else(|| format!("the account `{}`", v.subject));
        if first_match(&v.provider.allow, &v.claims).is_none() {
            tracing::warn!(
                provider = %provider,
                subject = %v.subject,
                "federated sign-in refused: not allowed by the provider's `allow`"
            );
            return Ok(Err(refusal(
                StatusCode::FORBIDDEN,
                "Not allowed",
                format!("{who} at {provider} may not sign in here. Ask an administrator for access."),
            )));
        }
        let (roles, admin, role_sources) = apply_rules(provider, &v.provider.roles, &v.claims);
        let linked = self.store.federated_identity(provider, &v.subject).await?;
        let (mut user, create) = match &linked {
            Some(link) => match self.store.user(&link.username).await? {
                Some(user) => (user, false),
                None => (new_user(&link.username), true),
            },
            None => match self.unlinked_user(v, email.as_deref()).await? {
                Some(found) => found,
                None => {
                    return Ok(Err(refusal(
                        StatusCode::CONFLICT,
                        "Sign-in failed",
                        format!("No user name is free for {who} at {provider}. Ask an administrator."),
                    )));
                }
            },
        };
        if user.disabled {
            tracing::warn!(username = %user.username, "federated sign-in refused: the account is disabled");
            return Ok(Err(refusal(StatusCode::FORBIDDEN, "Not allowed", "This account is disabled.")));
        }
        user.roles = roles;
        user.admin = admin;
        user.permissions = if admin { vec![ADMINISTER_OAUTH.to_owned()] } else { Vec::new() };
        let identity = FederatedIdentityRecord {
            provider: provider.clone(),
            subject: v.subject.clone(),
            username: user.username.clone(),
            email,
            role_sources,
            last_sign_in: clock::now(),
        };
        debug_assert!(identity.role_sources.iter().all(|s| s.role != ADMIN_ROLE || admin));
        self.store.save_federated_sign_in(&user, create, &identity).await?;
        Ok(Ok(user))
    }

    /// The user for a first sign-in of (provider, `sub`): the local user
    /// named by the verified email when the entry says `match_email`, else
    /// a new `{provider}:{email}` (or `{provider}:{sub}` when that is taken);
    /// `None` when both names are taken.
    async fn unlinked_user(
        &self,
        v: &Verified<'_>,
        email: Option<&str>,
    ) -> Result<Option<(UserRecord, bool)>, StoreError> {
        let provider = &v.provider.name.value;
        if v.provider.match_email
            && let Some(email) = email
            && let Some(user) = self.store.user(email).await?
        {
            return Ok(Some((user, false)));
        }
        let mut names = vec![format!("{provider}:{}", v.subject)];
        if let Some(email) = email {
            names.insert(0, format!("{provider}:{email}"));
        }
        for name in names {
            if self.store.user(&name).await?.is_none() {
                return Ok(Some((new_user(&name), true)));
            }
        }
        Ok(None)
    }

    /// The answer once signed in: straight on to `next` when the session
    /// cookie is `SameSite=Lax`; a page with a link when it is `Strict`
    /// (the admin pages), since the browser leaves it out of the rest of a
    /// navigation that came from the provider's site.
    fn signed_in(&self, cookie: HeaderValue, next: &str) -> Response {
        let next = &without_prompt_login(next);
        let mut res = if self.scope.same_site == "Lax" {
            let mut res = StatusCode::SEE_OTHER.into_response();
            if let Ok(location) = HeaderValue::from_str(next) {
                res.headers_mut().insert(LOCATION, location);
            }
            super::pages::framing_and_caching_headers(res.headers_mut());
            res
        } else {
            self.pages.message(StatusCode::OK, "Signed in", "You are signed in.", &[("Continue", next)])
        };
        res.headers_mut().append(SET_COOKIE, cookie);
        res
    }
}

/// `next` without the `login` value of its `prompt` parameter: the user
/// has just signed in, so `/oauth/authorize?prompt=login` must not show
/// the sign-in page again (with one provider and no password form that
/// would send the browser round in a loop).
fn without_prompt_login(next: &str) -> String {
    let Some((path, query)) = next.split_once('?') else { return next.to_owned() };
    if !url::form_urlencoded::parse(query.as_bytes())
        .any(|(k, v)| k == "prompt" && v.split(' ').any(|p| p == "login"))
    {
        return next.to_owned();
    }
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k == "prompt" {
            let rest: Vec<&str> = v.split(' ').filter(|p| *p != "login" && !p.is_empty()).collect();
            if !rest.is_empty() {
                out.append_pair(&k, &rest.join(" "));
            }
        } else {
            out.append_pair(&k, &v);
        }
    }
    format!("{path}?{}", out.finish())
}

/// A user made by a first sign-in through a provider: no password (the
/// password form never matches it), roles set by the rules.
fn new_user(username: &str) -> UserRecord {
    UserRecord {
        username: username.to_owned(),
        password_hash: String::new(),
        roles: Vec::new(),
        admin: false,
        permissions: Vec::new(),
        disabled: false,
    }
}

#[cfg(test)]
mod tests {
    use super::without_prompt_login;

    #[test]
    fn a_fresh_sign_in_answers_prompt_login() {
        assert_eq!(without_prompt_login("/oauth/authorize?a=1&prompt=login&b=2"), "/oauth/authorize?a=1&b=2");
        assert_eq!(
            without_prompt_login("/oauth/authorize?prompt=login+consent&state=x"),
            "/oauth/authorize?prompt=consent&state=x"
        );
        assert_eq!(
            without_prompt_login("/oauth/authorize?prompt=consent"),
            "/oauth/authorize?prompt=consent"
        );
        assert_eq!(without_prompt_login("/admin/login?next=%2Fadmin%2F"), "/admin/login?next=%2Fadmin%2F");
        assert_eq!(without_prompt_login("/oauth/start/mail"), "/oauth/start/mail");
    }
}
