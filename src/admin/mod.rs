//! The admin pages and JSON API, under `admin.path` (default `/admin`): what
//! CiviCRM's "Administer => System Settings => OAuth" and farmOS's consumer
//! form are for the seeds, for the sidecar's consumers, users, OAuth client
//! registrations, provider tokens and issued grants.
//!
//! Access: a local user with the `admin` flag signs in at `{path}/login`
//! (the one sign-in of [`crate::web::signin`]: its page, throttle and argon2
//! check); `administer oauth` opens every page, `manage oauth client
//! secrets` also shows raw provider tokens and new client secrets; nobody
//! grants a permission they do not hold, or changes a user who holds one
//! they lack (`privilege`). The session cookie (`oauth_sidecar_admin`) is
//! `HttpOnly`, `SameSite=Strict`, scoped to the admin path, and ends after
//! `admin.idle_timeout` without a request or `admin.session_ttl` after
//! sign-in; on https it is `__Host-oauth_sidecar_admin`, `Secure`, on `/`.
//! Its sessions are admin sessions: the value of an `/oauth/` session
//! cookie is refused here, and this one's there. Every form carries a CSRF
//! token bound to the session. A signed-in user who may not use the pages gets 403
//! on every admin URL but sign-out.
//!
//! The pages are minijinja templates built in from `templates/admin/`,
//! replaceable file by file from `server.templates_dir/admin/`; they need
//! no JavaScript and load one stylesheet, `{path}/admin.css`.

mod api;
mod auth;
mod forms;
mod privilege;
mod records;
mod view;
mod web;

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::routing::{any, delete, get, post};

use crate::client::tokens::Tokens;
use crate::config::Loaded;
use crate::config::server::ServerConfig;
use crate::mount::Mount;
use crate::store::Store;
use crate::web::cookie::CookieScope;
use crate::web::signin::{SignIn, SignInError};

pub use api::{NewAdminToken, TOKEN_PREFIX, create_token, delete_token, list_tokens};
pub use view::AdminTemplates;

/// The admin session cookie's name (`__Host-` before it when `public_url` is https).
pub const SESSION_COOKIE: &str = "oauth_sidecar_admin";

/// The admin pages' CSRF cookie's name (`__Host-` before it when `public_url` is https).
const CSRF_COOKIE: &str = "oauth_sidecar_admin_csrf";

/// Why the admin pages could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AdminStartError {
    /// Sign-in could not be set up (store, templates, password hashing).
    #[error(transparent)]
    SignIn(#[from] SignInError),
    /// An admin page template does not load.
    #[error(transparent)]
    Templates(#[from] crate::web::pages::TemplateError),
}

/// The admin pages and API, ready to be routed.
#[derive(Clone)]
pub struct AdminSite {
    site: Arc<Site>,
}

impl std::fmt::Debug for AdminSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSite").field("base", &self.site.base).finish_non_exhaustive()
    }
}

/// What every admin handler reads.
pub(crate) struct Site {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) signin: SignIn,
    pub(crate) templates: AdminTemplates,
    /// The admin path without a trailing `/`, such as `/admin`.
    pub(crate) base: String,
    /// `public_url`: a page asked for under another loopback name is sent
    /// there first ([`crate::web::origin`]).
    pub(crate) public_url: String,
    /// Roles and defaults of the authorization server (its defaults without
    /// `server:`), replaced on reload ([`AdminSite::reload`]).
    pub(crate) server: ArcSwap<ServerConfig>,
    /// The OAuth client role's token store, with a `client:` section.
    pub(crate) tokens: Option<Arc<Tokens>>,
    /// The OAuth client's Redirect URL and the warning it needs, if any.
    pub(crate) redirect: Option<(String, Option<String>)>,
    /// The routes that send a client's tokens on, for its page; replaced
    /// on reload.
    pub(crate) token_routes: ArcSwap<Vec<TokenRoute>>,
}

/// A route of the configuration file that sends a client's tokens on: a
/// gate rule's `upstream_token` (to the upstream) or an egress route (to
/// an outside API).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct TokenRoute {
    /// The client registration.
    pub(crate) client: String,
    /// `upstream` or `egress`.
    pub(crate) kind: &'static str,
    /// The rule's path pattern and methods, or the egress prefix.
    pub(crate) route: String,
    /// The tag, or its template.
    pub(crate) tag: String,
}

/// Every route of `config` that sends a client's tokens on.
fn token_routes(config: &crate::config::Config) -> Vec<TokenRoute> {
    let mut out = Vec::new();
    for rule in config.gate.iter().flat_map(|g| &g.rules) {
        if let Some(u) = &rule.upstream_token {
            let methods: Vec<&str> = rule.methods.iter().map(|m| m.value.as_str()).collect();
            let route = if methods.is_empty() {
                rule.path.value.clone()
            } else {
                format!("{} {}", methods.join(","), rule.path.value)
            };
            let (client, tag) = (u.value.client.value.clone(), u.value.tag.value.clone());
            out.push(TokenRoute { client, kind: "upstream", route, tag });
        }
    }
    for r in config.egress.iter().flat_map(|e| &e.routes) {
        let (client, route) = (r.client.value.clone(), r.prefix.value.clone());
        out.push(TokenRoute { client, kind: "egress", route, tag: r.tag.clone() });
    }
    out
}

impl AdminSite {
    /// Sets the pages up unless `admin.enabled` is off; `tokens` is the
    /// OAuth client role's token store when it runs.
    pub async fn start(
        loaded: &Loaded,
        store: Arc<dyn Store>,
        tokens: Option<Arc<Tokens>>,
    ) -> Result<Option<Self>, AdminStartError> {
        let config = &loaded.config.admin;
        if !config.enabled {
            return Ok(None);
        }
        let base = config.path.value.0.trim_end_matches('/').to_owned();
        let secs = |d: &crate::config::types::Duration| i64::try_from(d.0.as_secs()).unwrap_or(i64::MAX);
        let scope = CookieScope {
            idle: Some(secs(&config.idle_timeout)),
            ttl: Some(secs(&config.session_ttl)),
            ..CookieScope::new(
                "admin",
                (SESSION_COOKIE, CSRF_COOKIE),
                format!("{base}/"),
                "Strict",
                loaded.public_url.is_https(),
            )
        };
        let server = loaded.config.server.clone().unwrap_or_default();
        let signin = SignIn::new(
            store.clone(),
            loaded.config.server.as_ref(),
            &loaded.public_url,
            &loaded.config.proxy.trusted_proxies,
            scope,
        )
        .await?;
        let templates =
            AdminTemplates::load(server.templates_dir.as_ref().map(|d| d.value.join("admin")).as_deref())?
                .at(&base);
        let redirect = crate::client::admin::redirect_url(loaded).ok();
        let public_url = loaded.public_url.base();
        let token_routes = ArcSwap::from_pointee(token_routes(&loaded.config));
        let server = ArcSwap::from_pointee(server);
        let site =
            Site { store, signin, templates, base, public_url, server, tokens, redirect, token_routes };
        Ok(Some(AdminSite { site: Arc::new(site) }))
    }

    /// Takes the roles of a reloaded `server:` section, so that users and
    /// consumers are checked against them, and the reloaded file's routes
    /// that send a client's tokens on.
    pub fn reload(&self, config: &crate::config::Config) {
        self.site.server.store(Arc::new(config.server.clone().unwrap_or_default()));
        self.site.token_routes.store(Arc::new(token_routes(config)));
    }

    /// The routes, owning the admin path and everything under it.
    pub fn mount(&self) -> Mount {
        let b = &self.site.base;
        let r = |p: &str| format!("{b}{p}");
        let mut mount = Mount::new();
        if let Some((start, back)) = self.site.signin.federation_paths() {
            mount = mount.route(&start, get(web::login_start)).route(&back, get(web::login_return));
        }
        mount
            .route(b, get(web::home))
            .route(&r("/"), get(web::home))
            .route(&r("/admin.css"), get(web::stylesheet))
            .route(&r("/login"), get(web::login_page).post(web::login))
            .route(&r("/logout"), post(web::logout))
            .route(&r("/consumers"), get(web::consumers::list).post(web::consumers::create))
            .route(&r("/consumers/new"), get(web::consumers::new_form))
            .route(&r("/consumers/{client_id}"), get(web::consumers::edit_form).post(web::consumers::update))
            .route(
                &r("/consumers/{client_id}/delete"),
                get(web::consumers::delete_form).post(web::consumers::delete),
            )
            .route(&r("/users"), get(web::users::list).post(web::users::create))
            .route(&r("/users/new"), get(web::users::new_form))
            .route(&r("/users/{username}"), get(web::users::edit_form).post(web::users::update))
            .route(&r("/users/{username}/sign-out"), post(web::users::sign_out_everywhere))
            .route(&r("/providers"), get(web::providers::list))
            .route(&r("/providers/{provider}"), get(web::providers::show).post(web::providers::register))
            .route(&r("/clients/{client}"), get(web::providers::client))
            .route(&r("/clients/{client}/delete"), post(web::providers::delete_client))
            .route(&r("/clients/{client}/fetch"), post(web::providers::fetch))
            .route(&r("/clients/{client}/tokens/{id}"), get(web::providers::inspect))
            .route(&r("/clients/{client}/tokens/{id}/delete"), post(web::providers::delete_token))
            .route(&r("/grants"), get(web::grants::list))
            .route(&r("/grants/{family}/revoke"), post(web::grants::revoke))
            .route(&r("/{*rest}"), get(web::not_found).post(web::not_found))
            .merge(self.api_mount())
            .with_state(self.site.clone())
    }

    /// The JSON API's routes, under `{base}/api/`: a method a path has no
    /// operation for answers 405, an unknown path 404 (both after the
    /// caller is checked, as every operation does).
    fn api_mount(&self) -> Mount<Arc<Site>> {
        let a = |p: &str| format!("{}/api{p}", self.site.base);
        let no = api::method_not_allowed;
        Mount::new()
            .route(&a("/openapi.json"), get(api::openapi).fallback(no))
            .route(&a("/consumers"), get(api::consumers).post(api::create_consumer).fallback(no))
            .route(
                &a("/consumers/{client_id}"),
                get(api::consumer).put(api::update_consumer).delete(api::delete_consumer).fallback(no),
            )
            .route(&a("/users"), get(api::users).post(api::create_user).fallback(no))
            .route(&a("/users/{username}"), get(api::user).put(api::update_user).fallback(no))
            .route(&a("/users/{username}/sign-out"), post(api::sign_out_user).fallback(no))
            .route(&a("/providers"), get(api::providers).fallback(no))
            .route(&a("/providers/{name}"), get(api::provider).fallback(no))
            .route(&a("/clients"), get(api::clients).post(api::create_client).fallback(no))
            .route(&a("/clients/{name}"), get(api::client).delete(api::delete_client).fallback(no))
            .route(&a("/clients/{name}/tokens"), get(api::tokens).post(api::fetch_token).fallback(no))
            .route(
                &a("/tokens/{id}"),
                get(api::inspect_token).delete(api::delete_provider_token).fallback(no),
            )
            .route(&a("/tokens/{id}/refresh"), post(api::refresh_token).fallback(no))
            .route(&a("/grants"), get(api::grants).fallback(no))
            .route(&a("/grants/{family_id}"), delete(api::revoke_grant).fallback(no))
            .route(&a(""), any(api::not_found))
            .route(&a("/"), any(api::not_found))
            .route(&a("/{*rest}"), any(api::not_found))
    }
}
