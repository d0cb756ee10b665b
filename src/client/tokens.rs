//! The provider token store in use: tokens by client and tag, decrypted in
//! memory only, refreshed before use when within `client.refresh_skew` of
//! expiry and in the background ahead of expiry.
//!
//! Refresh is single flight per token: callers that find the token stale
//! queue on the token's own async lock; the first refreshes, the others find
//! the fresh token when they get the lock. Across processes sharing the store
//! (replicas on one PostgreSQL database) the refresher also takes the
//! token's lease in the store ([`ClientStore::lease_provider_token`], at most
//! [`LEASE_SECS`]); a replica that finds it taken waits for the new token to
//! appear in the store instead of refreshing with the same refresh token. A refresh the provider refuses
//! with `invalid_grant` marks the token `needs_reauthorization` (shown by
//! `token list`, logged, counted in `oauth_sidecar_client_refresh_total`) and
//! is not tried again until a new authorization replaces the token. A
//! provider that cannot be reached is tried again after a growing pause
//! (1 s doubling up to 5 minutes); meanwhile the old token is used while it
//! has not expired. Decrypted tokens are kept in memory for 5 seconds, so a
//! token deleted or refreshed by another process is picked up quickly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ClientError;
use super::crypto::{CryptoError, TokenCipher, token_place};
use super::protocol::{Grant, Http, Owner};
use super::registry::{Registration, Registry};
use crate::clock::now;
use crate::config::Secret;
use crate::store::{ClientStore, ProviderTokenRecord, StoreError};

/// How long a refresh lease lasts at most, in seconds: a replica that died
/// while refreshing blocks the token no longer than this.
pub const LEASE_SECS: i64 = 30;

/// Status of a usable token.
pub const STATUS_OK: &str = "ok";
/// Status of a token whose refresh the provider refused.
pub const STATUS_REAUTH: &str = "needs_reauthorization";

/// An access token ready to send. Its `Debug` hides the token.
#[derive(Clone)]
pub struct LiveToken {
    /// The store id.
    pub id: i64,
    /// The access token.
    pub access_token: Secret,
    /// Usually `Bearer`.
    pub token_type: String,
    /// Unix expiry, if known.
    pub expires_at: Option<i64>,
    /// The resource owner's email, for XOAUTH2.
    pub owner_email: Option<String>,
}

impl std::fmt::Debug for LiveToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveToken")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// No token for this client and tag.
    #[error(
        "no token for client `{client}` and tag `{tag}`: authorize it at /oauth/start/{client}?tag={}",
        url::form_urlencoded::byte_serialize(.tag.as_bytes()).collect::<String>()
    )]
    NotFound {
        /// The client.
        client: String,
        /// The tag.
        tag: String,
    },
    /// The provider refused the refresh: a person must authorize again.
    #[error("the token for client `{client}` and tag `{tag}` needs re-authorization ({reason})")]
    NeedsReauthorization {
        /// The client.
        client: String,
        /// The tag.
        tag: String,
        /// The provider's refusal.
        reason: String,
    },
    /// The token expired and the provider could not refresh it now.
    #[error("the token for client `{client}` and tag `{tag}` could not be refreshed: {reason}")]
    Unavailable {
        /// The client.
        client: String,
        /// The tag.
        tag: String,
        /// What went wrong.
        reason: String,
    },
    /// Something else failed (store, key, registration).
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        TokenError::Internal(e.to_string())
    }
}

impl From<CryptoError> for TokenError {
    fn from(e: CryptoError) -> Self {
        TokenError::Internal(e.to_string())
    }
}

impl From<ClientError> for TokenError {
    fn from(e: ClientError) -> Self {
        TokenError::Internal(e.to_string())
    }
}

type Key = (String, String);

/// What a refresh under the lease came to.
enum Leased {
    /// Another process had refreshed meanwhile: its token, usable.
    Current(LiveToken),
    /// We refreshed (or tried) the record shown.
    Attempted(Box<ProviderTokenRecord>, Result<LiveToken, RefreshFailure>),
}

/// How long a decrypted token is used from memory before the store is read again.
const LIVE_TTL: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
struct Backoff {
    until: Instant,
    pause: Duration,
}

/// The token store in use (see the module docs).
pub struct Tokens {
    store: Arc<dyn ClientStore>,
    cipher: TokenCipher,
    http: Http,
    registry: Arc<Registry>,
    skew: i64,
    locks: moka::sync::Cache<Key, Arc<tokio::sync::Mutex<()>>>,
    live: moka::sync::Cache<Key, LiveToken>,
    backoff: moka::sync::Cache<Key, Backoff>,
    /// This process's name in refresh leases.
    holder: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("skew", &self.skew).finish_non_exhaustive()
    }
}

/// What a new token is made from.
pub struct NewToken<'a> {
    /// The client.
    pub client: &'a str,
    /// The tag.
    pub tag: &'a str,
    /// The grant used.
    pub grant_type: &'a str,
    /// Scopes asked for (used when the provider does not say what it granted).
    pub asked: &'a [String],
    /// The provider's answer.
    pub grant: &'a Grant,
    /// The resource owner.
    pub owner: &'a Owner,
}

impl Tokens {
    /// A token store over `store`, encrypting with `cipher`.
    pub fn new(
        store: Arc<dyn ClientStore>,
        cipher: TokenCipher,
        http: Http,
        registry: Arc<Registry>,
        skew: Duration,
    ) -> Self {
        Tokens {
            store,
            cipher,
            http,
            registry,
            skew: i64::try_from(skew.as_secs()).unwrap_or(60),
            locks: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            // Kept briefly, so a token deleted or replaced by another process
            // (the CLI, another replica) stops being used within seconds.
            live: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(LIVE_TTL).build(),
            backoff: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(600))
                .build(),
            holder: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// The registry of clients.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The provider HTTP client.
    pub fn http(&self) -> &Http {
        &self.http
    }

    /// The cipher for secrets at rest.
    pub fn cipher(&self) -> &TokenCipher {
        &self.cipher
    }

    /// The origin of `reg`'s authorization endpoint, as a CSP source
    /// ([`crate::web::pages::form_target`]): a page whose form leads, through
    /// `/oauth/start`, to the provider names it in its `form-action`. `None`
    /// when the endpoints cannot be had (the start then says why).
    pub(crate) async fn authorize_target(&self, reg: &Registration) -> Option<String> {
        let ep = self.http.endpoints(&reg.provider, reg.tenant.as_deref()).await.ok()?;
        crate::web::pages::form_target(ep.authorize.as_deref()?)
    }

    /// Encrypts and stores a new token (replacing the client's token with
    /// the same tag); returns its id.
    pub async fn save(&self, new: NewToken<'_>) -> Result<i64, TokenError> {
        let (client, tag) = (new.client, new.tag);
        let g = new.grant;
        let now = now();
        let raw = serde_json::to_vec(&g.raw).unwrap_or_default();
        let record = ProviderTokenRecord {
            id: 0,
            client: client.to_owned(),
            tag: tag.to_owned(),
            grant_type: new.grant_type.to_owned(),
            scopes: g.scopes.clone().unwrap_or_else(|| new.asked.to_vec()),
            token_type: g.token_type.clone(),
            access_token: self.cipher.seal(&token_place(client, tag, "access"), g.access_token.as_bytes()),
            refresh_token: g
                .refresh_token
                .as_ref()
                .map(|r| self.cipher.seal(&token_place(client, tag, "refresh"), r.as_bytes())),
            expires_at: g.expires_at,
            owner_id: new.owner.id.clone(),
            owner_name: new.owner.name.clone(),
            owner_email: new.owner.email.clone(),
            raw: self.cipher.seal(&token_place(client, tag, "raw"), &raw),
            status: STATUS_OK.to_owned(),
            last_error: None,
            created_at: now,
            updated_at: now,
        };
        let id = self.store.save_provider_token(&record).await?;
        let key = (client.to_owned(), tag.to_owned());
        self.backoff.invalidate(&key);
        self.live.insert(key, self.live_of(id, &record, g.access_token.clone()));
        Ok(id)
    }

    fn live_of(&self, id: i64, r: &ProviderTokenRecord, access: String) -> LiveToken {
        LiveToken {
            id,
            access_token: Secret::new(access),
            token_type: r.token_type.clone(),
            expires_at: r.expires_at,
            owner_email: r.owner_email.clone(),
        }
    }

    /// The decrypted access and refresh tokens and raw response of a record.
    pub fn open(
        &self,
        r: &ProviderTokenRecord,
    ) -> Result<(Secret, Option<Secret>, serde_json::Value), CryptoError> {
        let access = self.cipher.open_text(&token_place(&r.client, &r.tag, "access"), &r.access_token)?;
        let refresh = match &r.refresh_token {
            Some(sealed) => {
                Some(Secret::new(self.cipher.open_text(&token_place(&r.client, &r.tag, "refresh"), sealed)?))
            }
            None => None,
        };
        let raw = self.cipher.open_bytes(&token_place(&r.client, &r.tag, "raw"), &r.raw)?;
        Ok((Secret::new(access), refresh, serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null)))
    }

    fn fresh(&self, t: &LiveToken, margin: i64) -> bool {
        t.expires_at.is_none_or(|exp| exp > now().saturating_add(margin))
    }

    /// The access token of `client` + `tag`, refreshed first when it is
    /// within the skew of its expiry.
    pub async fn access_token(&self, client: &str, tag: &str) -> Result<LiveToken, TokenError> {
        self.ensure(client, tag, self.skew, None).await
    }

    /// Called after an API refused `rejected` with 401: refreshes unless
    /// someone already replaced that token, and returns the current one.
    pub async fn after_rejection(
        &self,
        client: &str,
        tag: &str,
        rejected: &str,
    ) -> Result<LiveToken, TokenError> {
        self.ensure(client, tag, self.skew, Some(rejected)).await
    }

    /// Refreshes now, whatever the expiry (the `token refresh` command).
    pub async fn refresh_now(&self, client: &str, tag: &str) -> Result<LiveToken, TokenError> {
        self.ensure(client, tag, i64::MAX / 4, None).await
    }

    async fn ensure(
        &self,
        client: &str,
        tag: &str,
        margin: i64,
        rejected: Option<&str>,
    ) -> Result<LiveToken, TokenError> {
        let key = (client.to_owned(), tag.to_owned());
        let usable =
            |t: &LiveToken| self.fresh(t, margin) && rejected.is_none_or(|r| t.access_token.expose() != r);
        if let Some(t) = self.live.get(&key)
            && usable(&t)
        {
            return Ok(t);
        }
        let lock = self.locks.get_with(key.clone(), || Arc::new(tokio::sync::Mutex::new(())));
        let _guard = lock.lock().await;
        if let Some(t) = self.live.get(&key)
            && usable(&t)
        {
            return Ok(t);
        }
        let Some(record) = self.store.provider_token_by_tag(client, tag).await? else {
            self.live.invalidate(&key);
            return Err(TokenError::NotFound { client: client.into(), tag: tag.into() });
        };
        if record.status == STATUS_REAUTH {
            self.live.invalidate(&key);
            return Err(TokenError::NeedsReauthorization {
                client: client.into(),
                tag: tag.into(),
                reason: record.last_error.clone().unwrap_or_default(),
            });
        }
        let (access, refresh, _) = self.open(&record)?;
        let current = self.live_of(record.id, &record, access.expose().to_owned());
        if usable(&current) {
            self.live.insert(key, current.clone());
            return Ok(current);
        }
        if let Some(b) = self.backoff.get(&key)
            && b.until > Instant::now()
        {
            if self.fresh(&current, 0) && rejected.is_none() {
                return Ok(current);
            }
            return Err(TokenError::Unavailable {
                client: client.into(),
                tag: tag.into(),
                reason: record.last_error.clone().unwrap_or_else(|| "waiting before the next attempt".into()),
            });
        }
        // One process refreshes at a time: the others wait for its result.
        if !self.store.lease_provider_token(record.id, &self.holder, now() + LEASE_SECS, now()).await? {
            return self.after_other_refresh(&key, &record, margin, rejected).await;
        }
        let refreshed = self.refresh_leased(&key, &record, refresh.as_ref(), &usable).await;
        if let Err(e) = self.store.release_provider_token(record.id, &self.holder).await {
            tracing::warn!(client, tag, token_id = record.id, error = %e, "cannot release the refresh lease; it ends by itself");
        }
        let (record, refreshed) = match refreshed? {
            Leased::Current(t) => return Ok(t),
            Leased::Attempted(record, outcome) => (*record, outcome),
        };
        match refreshed {
            Ok(live) => {
                self.backoff.invalidate(&key);
                metrics::counter!("oauth_sidecar_client_refresh_total", "outcome" => "ok").increment(1);
                Ok(live)
            }
            Err(RefreshFailure::Refused(reason)) => {
                metrics::counter!("oauth_sidecar_client_refresh_total", "outcome" => "invalid_grant")
                    .increment(1);
                tracing::warn!(client, tag, token_id = record.id, reason = %reason, "the provider refused the refresh; the token needs re-authorization");
                self.store.set_provider_token_status(record.id, STATUS_REAUTH, Some(&reason), now()).await?;
                self.live.invalidate(&key);
                Err(TokenError::NeedsReauthorization { client: client.into(), tag: tag.into(), reason })
            }
            Err(RefreshFailure::Failed(reason)) => {
                metrics::counter!("oauth_sidecar_client_refresh_total", "outcome" => "error").increment(1);
                let pause = self
                    .backoff
                    .get(&key)
                    .map_or(Duration::from_secs(1), |b| (b.pause * 2).min(Duration::from_secs(300)));
                tracing::warn!(client, tag, token_id = record.id, error = %reason, retry_in_secs = pause.as_secs(), "refreshing a provider token failed");
                self.backoff.insert(key, Backoff { until: Instant::now() + pause, pause });
                self.store.set_provider_token_status(record.id, STATUS_OK, Some(&reason), now()).await?;
                if self.fresh(&current, 0) && rejected.is_none() {
                    return Ok(current);
                }
                Err(TokenError::Unavailable { client: client.into(), tag: tag.into(), reason })
            }
        }
    }

    /// Under the lease: another process may have refreshed between our read
    /// and the lease, so read again and refresh only if still needed.
    async fn refresh_leased(
        &self,
        key: &Key,
        before: &ProviderTokenRecord,
        refresh: Option<&Secret>,
        usable: &impl Fn(&LiveToken) -> bool,
    ) -> Result<Leased, TokenError> {
        let record = match self.store.provider_token_by_tag(&key.0, &key.1).await? {
            Some(r) if r.access_token != before.access_token && r.status != STATUS_REAUTH => r,
            _ => {
                let outcome = self.refresh_record(before, refresh).await;
                return Ok(Leased::Attempted(Box::new(before.clone()), outcome));
            }
        };
        let (access, refresh, _) = self.open(&record)?;
        let current = self.live_of(record.id, &record, access.expose().to_owned());
        if usable(&current) {
            self.live.insert(key.clone(), current.clone());
            return Ok(Leased::Current(current));
        }
        let outcome = self.refresh_record(&record, refresh.as_ref()).await;
        Ok(Leased::Attempted(Box::new(record), outcome))
    }

    /// Another process holds the refresh lease: wait for the token it stores
    /// (checking every 100 ms, for at most the lease), then use it; if none
    /// comes, the old token while it has not expired.
    async fn after_other_refresh(
        &self,
        key: &Key,
        before: &ProviderTokenRecord,
        margin: i64,
        rejected: Option<&str>,
    ) -> Result<LiveToken, TokenError> {
        let (client, tag) = (key.0.as_str(), key.1.as_str());
        let deadline = Instant::now() + Duration::from_secs(LEASE_SECS.unsigned_abs());
        let mut last = before.clone();
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let Some(record) = self.store.provider_token_by_tag(client, tag).await? else {
                self.live.invalidate(key);
                return Err(TokenError::NotFound { client: client.into(), tag: tag.into() });
            };
            if record.status == STATUS_REAUTH {
                return Err(TokenError::NeedsReauthorization {
                    client: client.into(),
                    tag: tag.into(),
                    reason: record.last_error.clone().unwrap_or_default(),
                });
            }
            if record.access_token != before.access_token {
                let (access, _, _) = self.open(&record)?;
                let t = self.live_of(record.id, &record, access.expose().to_owned());
                if self.fresh(&t, 0) {
                    self.live.insert(key.clone(), t.clone());
                    return Ok(t);
                }
            }
            last = record;
        }
        let (access, _, _) = self.open(&last)?;
        let current = self.live_of(last.id, &last, access.expose().to_owned());
        if self.fresh(&current, 0) && rejected.is_none() && margin < i64::MAX / 4 {
            return Ok(current);
        }
        Err(TokenError::Unavailable {
            client: client.into(),
            tag: tag.into(),
            reason: "another replica is refreshing the token and has not finished".into(),
        })
    }

    async fn refresh_record(
        &self,
        record: &ProviderTokenRecord,
        refresh: Option<&Secret>,
    ) -> Result<LiveToken, RefreshFailure> {
        let failed = |e: String| RefreshFailure::Failed(e);
        let reg = self
            .registry
            .get(&record.client)
            .await
            .map_err(|e| failed(e.to_string()))?
            .ok_or_else(|| failed(format!("client `{}` is no longer registered", record.client)))?;
        let ep = self
            .http
            .endpoints(&reg.provider, reg.tenant.as_deref())
            .await
            .map_err(|e| failed(e.to_string()))?;
        let result = match refresh {
            Some(rt) => self.http.refresh(&ep, &reg.creds, rt.expose()).await,
            None if record.grant_type == "client_credentials" => {
                self.http.client_credentials(&ep, &reg.creds, &record.scopes).await
            }
            None => {
                return Err(RefreshFailure::Refused(
                    "the token has expired and the provider gave no refresh token".into(),
                ));
            }
        };
        let mut grant = match result {
            Ok(g) => g,
            Err(e) if e.is_invalid_grant() => return Err(RefreshFailure::Refused(e.to_string())),
            Err(e) => return Err(failed(e.to_string())),
        };
        // Providers that do not rotate refresh tokens send none back: keep ours.
        if grant.refresh_token.is_none() {
            grant.refresh_token = refresh.map(|r| r.expose().to_owned());
        }
        let owner = Owner {
            id: record.owner_id.clone(),
            name: record.owner_name.clone(),
            email: record.owner_email.clone(),
        };
        let id = self
            .save(NewToken {
                client: &record.client,
                tag: &record.tag,
                grant_type: &record.grant_type,
                asked: &record.scopes,
                grant: &grant,
                owner: &owner,
            })
            .await
            .map_err(|e| failed(e.to_string()))?;
        tracing::info!(client = %record.client, tag = %record.tag, token_id = id, "provider token refreshed");
        self.live
            .get(&(record.client.clone(), record.tag.clone()))
            .ok_or_else(|| failed("the refreshed token was not kept".into()))
    }

    /// Forgets the in-memory copy of a token (after `token delete`).
    pub fn forget(&self, client: &str, tag: &str) {
        self.live.invalidate(&(client.to_owned(), tag.to_owned()));
    }

    /// Refreshes, in the background, every usable token that expires within
    /// `ahead`, every `interval`, until the task is dropped.
    pub fn spawn_background(
        self: &Arc<Self>,
        ahead: Duration,
        interval: Duration,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if ahead.is_zero() {
            return None;
        }
        let tokens = Arc::downgrade(self);
        let margin = i64::try_from(ahead.as_secs()).unwrap_or(300);
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval.max(Duration::from_secs(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(tokens) = tokens.upgrade() else { return };
                let due = match tokens.store.provider_tokens().await {
                    Ok(list) => list,
                    Err(e) => {
                        tracing::warn!(error = %e, "background refresh cannot list tokens");
                        continue;
                    }
                };
                let soon = now().saturating_add(margin);
                for t in
                    due.iter().filter(|t| t.status == STATUS_OK && t.expires_at.is_some_and(|e| e <= soon))
                {
                    if t.refresh_token.is_none() && t.grant_type != "client_credentials" {
                        continue;
                    }
                    if let Err(e) = tokens.ensure(&t.client, &t.tag, margin, None).await {
                        tracing::debug!(client = %t.client, tag = %t.tag, error = %e, "background refresh did not succeed");
                    }
                }
            }
        }))
    }
}

enum RefreshFailure {
    /// Only a new authorization helps.
    Refused(String),
    /// Try again later.
    Failed(String),
}
