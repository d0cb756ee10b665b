//! Token validation: JWT access tokens against their issuer's keys, opaque
//! tokens by introspection, both remembered in a cache keyed by the
//! SHA-256 of the token.
//!
//! A JWT is checked in this order: compact form; header (`alg` in the
//! allow-list, no `crit`); the payload's `iss` picks one of the trusted
//! issuers (nothing else in the payload is looked at yet); the key `kid`
//! names, which must be pinned to the header's `alg`; the signature. Only
//! an authentic token has its claims judged: `typ`, `exp` and `nbf` with the
//! leeway, `aud`, `sub`.
//!
//! A verified token is kept until its `exp` or `token_cache.max_ttl`,
//! whichever comes first, so a repeat costs one hash and one cache lookup
//! instead of a signature check; a repeat on the same connection (each
//! connection's gate remembers its last token and cache entry) costs a
//! comparison of the token's bytes. Revocation still applies to kept tokens:
//! for an issuer with a revocation list (the local authorization server),
//! a token's `jti` is looked up again once `revocation_interval` has passed
//! since the last answer. The first request to notice that does the lookup;
//! requests arriving meanwhile use the previous answer, so a revoked token
//! is refused at most `revocation_interval` plus one lookup after its
//! revocation (plus up to a second when the request doing the lookup went
//! away before it ended).
//!
//! When the store announces changes (PostgreSQL, see
//! [`crate::store::change`]), [`Validator::apply`] makes that bound much
//! shorter: a revoked `jti` marks its cached tokens due, so the next use
//! asks the list again, and [`StoreChange::Everything`] (announcements may
//! have been lost) makes every cached token due. Marking costs nothing on
//! the fast path: a due token is one whose last answer is older than the
//! validator's `stale_before`, a number read beside the answer's time. An
//! answer only counts if no mark came while it was being asked for.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;

use super::error::GateError;
use super::identity::Identity;
use super::introspect::Introspector;
use super::jwk::JwsAlg;
use super::jwks::{IssuerKeys, KeyLookup};
use crate::clock;
use crate::store::{GateStore, StoreChange};

/// After this long, a revocation lookup one request took on is taken over
/// by the next request.
const CLAIM_MS: u64 = 1000;

/// Longest token looked at.
const MAX_TOKEN: usize = 16 << 10;

/// `checked_ms` of a token answered before, to be asked about again: below
/// every real answer's time (see [`Validator::ms_at`]) and below the first
/// `stale_before`.
const STALE: u64 = 1;

/// A list of revoked access tokens, by `jti`.
#[async_trait]
pub trait RevocationList: Send + Sync + 'static {
    /// True when the token with this `jti` was revoked.
    async fn is_revoked(&self, jti: &str) -> Result<bool, String>;
}

/// The store's access-token revocation list, which the local authorization
/// server writes (shared by every replica on a shared store).
pub struct StoreRevocations(pub Arc<dyn GateStore>);

#[async_trait]
impl RevocationList for StoreRevocations {
    async fn is_revoked(&self, jti: &str) -> Result<bool, String> {
        self.0.is_access_token_revoked(jti).await.map_err(|e| e.to_string())
    }
}

/// The key of the token cache.
pub(crate) type TokenKey = [u8; 32];

pub(crate) fn token_key(token: &[u8]) -> TokenKey {
    let digest = ring::digest::digest(&ring::digest::SHA256, token);
    let mut key = [0; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

/// A trusted issuer, ready to verify.
pub(crate) struct Issuer {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    /// Accepted header `typ` values, short form, lower case; empty: any.
    pub(crate) typ: Vec<String>,
    pub(crate) keys: Arc<IssuerKeys>,
    pub(crate) revocation: Option<Arc<dyn RevocationList>>,
    pub(crate) username_from_subject: bool,
}

/// A token the cache holds.
pub(crate) struct Cached {
    identity: Arc<Identity>,
    /// When the token stops being valid (`exp` plus the leeway), on the
    /// monotonic clock, so one clock read serves every check.
    expires: Instant,
    /// When the cache drops it: `expires`, or sooner by `max_ttl`.
    valid_until: Instant,
    revocation: Option<Arc<dyn RevocationList>>,
    /// Milliseconds since the validator's epoch of the last revocation
    /// answer; 0: never asked; [`STALE`]: to be asked again.
    checked_ms: AtomicU64,
    /// When a request took on asking again; 0: nobody is asking.
    claimed_ms: AtomicU64,
    revoked: AtomicBool,
}

/// The last token one connection presented, with its cache entry: a
/// keep-alive connection usually sends the same token again, and comparing
/// its bytes is cheaper than hashing them. The entry's own state (expiry,
/// revocation) is judged on every use, as for a cache hit; the bytes live
/// only as long as the connection's service.
pub(crate) struct LastToken {
    token: Box<[u8]>,
    entry: Arc<Cached>,
}

struct UntilValid;

impl moka::Expiry<TokenKey, Arc<Cached>> for UntilValid {
    fn expire_after_create(
        &self,
        _: &TokenKey,
        value: &Arc<Cached>,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.valid_until.saturating_duration_since(created_at))
    }
}

/// The validator's settings, already resolved.
pub(crate) struct ValidatorParts {
    pub(crate) issuers: Vec<Issuer>,
    pub(crate) algorithms: Vec<JwsAlg>,
    pub(crate) leeway: Duration,
    pub(crate) cache_capacity: u64,
    pub(crate) cache_max_ttl: Duration,
    pub(crate) revocation_interval: Duration,
    pub(crate) introspection: Option<Introspector>,
}

/// Checks tokens (see the module docs).
pub(crate) struct Validator {
    issuers: Vec<Issuer>,
    algorithms: Vec<JwsAlg>,
    leeway: i64,
    cache: moka::sync::Cache<TokenKey, Arc<Cached>>,
    cache_max_ttl: Duration,
    revocation_ms: u64,
    /// Revocation answers older than this (ms since `epoch`) are due,
    /// whatever `revocation_ms` says; raised by [`StoreChange::Everything`].
    stale_before: AtomicU64,
    introspection: Option<Introspector>,
    epoch: Instant,
}

/// What the cache alone can say.
pub(crate) enum Quick {
    Pass(Arc<Identity>),
    Refuse(GateError, Arc<Identity>),
    /// Not cached, or a revocation answer is due: see [`Validator::validate`].
    Slow,
}

impl Validator {
    pub(crate) fn new(parts: ValidatorParts) -> Self {
        let cache =
            moka::sync::Cache::builder().max_capacity(parts.cache_capacity).expire_after(UntilValid).build();
        Validator {
            issuers: parts.issuers,
            algorithms: parts.algorithms,
            leeway: i64::try_from(parts.leeway.as_secs()).unwrap_or(i64::MAX),
            cache,
            cache_max_ttl: parts.cache_max_ttl,
            revocation_ms: u64::try_from(parts.revocation_interval.as_millis()).unwrap_or(u64::MAX).max(1),
            stale_before: AtomicU64::new(STALE + 1),
            introspection: parts.introspection,
            epoch: Instant::now(),
        }
    }

    pub(crate) fn issuers(&self) -> &[Issuer] {
        &self.issuers
    }

    fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    fn ms_at(&self, at: Instant) -> u64 {
        // +2 so that 0 stays "never" and 1 "stale".
        u64::try_from(at.duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX).saturating_add(STALE + 1)
    }

    /// The cached answer for `token`, when the cache can give it without
    /// waiting for anything.
    pub(crate) fn quick(&self, token: &[u8], last: &mut Option<Arc<LastToken>>) -> Quick {
        let now = Instant::now();
        // Past the cache's bound (max_ttl), the token is verified again.
        if let Some(known) = last.as_deref().filter(|l| *l.token == *token && now < l.entry.valid_until) {
            let quick = self.judge_cached(&known.entry, true, now);
            if matches!(quick, Quick::Slow) {
                // The async step works on the cache's entry; follow it.
                *last = None;
            }
            return quick;
        }
        let Some(entry) = self.cache.get(&token_key(token)) else { return Quick::Slow };
        let quick = self.judge_cached(&entry, true, now);
        *last = Some(Arc::new(LastToken { token: token.into(), entry }));
        quick
    }

    fn judge_cached(&self, entry: &Cached, claim_check: bool, instant: Instant) -> Quick {
        let identity = &entry.identity;
        if entry.revoked.load(Ordering::Acquire) {
            return Quick::Refuse(
                GateError::InvalidToken("the token has been revoked".into()),
                identity.clone(),
            );
        }
        if instant >= entry.expires {
            return Quick::Refuse(GateError::InvalidToken("the token has expired".into()), identity.clone());
        }
        if entry.revocation.is_some() && identity.jti.is_some() {
            let now = self.ms_at(instant);
            let checked = entry.checked_ms.load(Ordering::Acquire);
            if checked < self.stale_before.load(Ordering::Relaxed)
                || now.saturating_sub(checked) >= self.revocation_ms
            {
                if !claim_check || checked == 0 {
                    return Quick::Slow;
                }
                // One request asks; the others keep the previous answer
                // meanwhile. A claim older than CLAIM_MS was abandoned (its
                // request went away, or the store is slow) and is taken over.
                let claimed = entry.claimed_ms.load(Ordering::Acquire);
                let free = claimed == 0 || now.saturating_sub(claimed) >= self.revocation_ms.min(CLAIM_MS);
                if free
                    && entry
                        .claimed_ms
                        .compare_exchange(claimed, now, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    return Quick::Slow;
                }
            }
        }
        Quick::Pass(identity.clone())
    }

    /// Validates `token` fully: from the cache when it holds it (asking the
    /// revocation list when due), else by verification or introspection.
    pub(crate) async fn validate(
        &self,
        token: &str,
    ) -> Result<Arc<Identity>, (GateError, Option<Arc<Identity>>)> {
        let key = token_key(token.as_bytes());
        if let Some(entry) = self.cache.get(&key) {
            return match self.judge_cached(&entry, false, Instant::now()) {
                Quick::Pass(identity) => Ok(identity),
                Quick::Refuse(e, identity) => Err((e, Some(identity))),
                Quick::Slow => self.check_revocation(&entry).await,
            };
        }
        let entry = if looks_like_jwt(token) {
            self.verify_jwt(token).await.map_err(|e| (e, None))?
        } else if let Some(introspection) = &self.introspection {
            let (identity, ttl) = introspection.introspect(&key, token).await.map_err(|e| (e, None))?;
            let now = Instant::now();
            let left = u64::try_from(identity.expires_at.saturating_sub(clock::now())).unwrap_or(0);
            Cached {
                identity: Arc::new(identity),
                expires: now + Duration::from_secs(left),
                valid_until: now + ttl.min(self.cache_max_ttl),
                revocation: None,
                checked_ms: AtomicU64::new(0),
                claimed_ms: AtomicU64::new(0),
                revoked: AtomicBool::new(false),
            }
        } else {
            return Err((GateError::InvalidToken("the token is not a JWT".into()), None));
        };
        let entry = Arc::new(entry);
        // Kept before its revocation is asked about, so that a revocation
        // announced meanwhile marks it; kept when revoked too, so its next
        // use is refused at once; kept unanswered when the list could not
        // be asked, so the next use asks without verifying again.
        self.cache.insert(key, entry.clone());
        if entry.revocation.is_some() && entry.identity.jti.is_some() {
            self.check_revocation(&entry).await
        } else {
            Ok(entry.identity.clone())
        }
    }

    async fn check_revocation(
        &self,
        entry: &Cached,
    ) -> Result<Arc<Identity>, (GateError, Option<Arc<Identity>>)> {
        let identity = entry.identity.clone();
        let (Some(list), Some(jti)) = (&entry.revocation, &identity.jti) else { return Ok(identity) };
        let before = entry.checked_ms.load(Ordering::Acquire);
        let asked_at = self.now_ms();
        match list.is_revoked(jti).await {
            Ok(false) => {
                // Unless marked meanwhile: the answer may predate the mark.
                let _ =
                    entry.checked_ms.compare_exchange(before, asked_at, Ordering::AcqRel, Ordering::Acquire);
                entry.claimed_ms.store(0, Ordering::Release);
                Ok(identity)
            }
            Ok(true) => {
                entry.revoked.store(true, Ordering::Release);
                Err((GateError::InvalidToken("the token has been revoked".into()), Some(identity)))
            }
            Err(e) => {
                tracing::error!(jti = %jti, error = %e, "cannot ask the revocation list");
                // The next request asks again.
                entry.claimed_ms.store(0, Ordering::Release);
                Err((GateError::Unavailable(e), Some(identity)))
            }
        }
    }

    /// Applies store change announcements: a revoked `jti` makes its cached
    /// tokens due for a revocation answer, [`StoreChange::Everything`] every
    /// token. Returns how many cached tokens a `jti` marked, for the log. (A
    /// token dropped from the cache but still remembered by a connection is
    /// not marked by its `jti`; `revocation_interval` bounds it.)
    pub(crate) fn apply(&self, changes: &[StoreChange]) -> usize {
        if changes.contains(&StoreChange::Everything) {
            self.stale_before.fetch_max(self.now_ms().saturating_add(1), Ordering::AcqRel);
            return 0;
        }
        let revoked: HashSet<&str> = changes
            .iter()
            .filter_map(|c| match c {
                StoreChange::AccessTokenRevoked(jti) => Some(jti.as_str()),
                _ => None,
            })
            .collect();
        if revoked.is_empty() {
            return 0;
        }
        let mut marked = 0;
        for (_, entry) in self.cache.iter() {
            if entry.revocation.is_some()
                && entry.identity.jti.as_deref().is_some_and(|jti| revoked.contains(jti))
            {
                entry.checked_ms.store(STALE, Ordering::Release);
                marked += 1;
            }
        }
        marked
    }

    async fn verify_jwt(&self, token: &str) -> Result<Cached, GateError> {
        let invalid = |d: &str| GateError::InvalidToken(d.to_owned());
        if token.len() > MAX_TOKEN {
            return Err(invalid("the token is too long"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("the token is not a compact JWS"));
        };
        let header: Header =
            decode_json(h).ok_or_else(|| invalid("the token header is not base64url JSON"))?;
        if header.crit.is_some() {
            return Err(invalid("the token has critical header parameters this gate does not know"));
        }
        let alg = match header.alg.parse::<JwsAlg>() {
            Ok(alg) if self.algorithms.contains(&alg) => alg,
            _ => {
                return Err(GateError::InvalidToken(format!(
                    "algorithm `{}` is not accepted",
                    clip(&header.alg)
                )));
            }
        };
        let claims: Claims =
            decode_json(p).ok_or_else(|| invalid("the token claims are not base64url JSON"))?;
        let iss = claims.iss.as_deref().ok_or_else(|| invalid("the token has no iss claim"))?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.issuer == iss)
            .ok_or_else(|| invalid("the token was issued by an issuer this gate does not trust"))?;
        let key = match issuer.keys.key(header.kid.as_deref()).await {
            KeyLookup::Found(key) => key,
            KeyLookup::Unknown => return Err(invalid("the token's signing key is unknown")),
            KeyLookup::Unavailable(e) => {
                tracing::warn!(issuer = %issuer.issuer, error = %e, "no keys to check a token with");
                return Err(GateError::Unavailable(e));
            }
        };
        if key.alg != alg {
            return Err(GateError::InvalidToken(format!("the signing key verifies {} only", key.alg)));
        }
        let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| invalid("the signature is not base64url"))?;
        let signing_input = &token[..h.len() + 1 + p.len()];
        if !key.verify(signing_input.as_bytes(), &signature) {
            return Err(invalid("bad signature"));
        }

        // Authentic from here on.
        if !issuer.typ.is_empty() {
            let typ = header.typ.as_deref().map(short_typ);
            if !typ.is_some_and(|t| issuer.typ.contains(&t)) {
                return Err(invalid("the token is not an access token (wrong typ)"));
            }
        }
        let now = clock::now();
        let exp =
            numeric_date(claims.exp.as_ref()).ok_or_else(|| invalid("the token has no usable exp claim"))?;
        if now >= exp.saturating_add(self.leeway) {
            return Err(invalid("the token has expired"));
        }
        if let Some(nbf) = claims.nbf.as_ref() {
            let nbf = numeric_date(Some(nbf)).ok_or_else(|| invalid("the token's nbf claim is malformed"))?;
            if now.saturating_add(self.leeway) < nbf {
                return Err(invalid("the token is not valid yet"));
            }
        }
        let audience_ok = match &claims.aud {
            Some(OneOrMany::One(a)) => *a == issuer.audience,
            Some(OneOrMany::Many(list)) => list.contains(&issuer.audience),
            None => false,
        };
        if !audience_ok {
            return Err(invalid("the token is meant for another audience"));
        }
        let sub = claims.sub.clone().ok_or_else(|| invalid("the token has no sub claim"))?;
        let client_id = claims.client_id.clone().or_else(|| claims.azp.clone());
        let scopes: Vec<String> = match (&claims.scope, &claims.scp) {
            (Some(scope), _) => scope.split(' ').map(str::to_owned).collect(),
            (None, Some(OneOrMany::One(s))) => s.split(' ').map(str::to_owned).collect(),
            (None, Some(OneOrMany::Many(list))) => list.clone(),
            (None, None) => Vec::new(),
        };
        let username = claims.preferred_username.clone().or_else(|| claims.username.clone()).or_else(|| {
            (issuer.username_from_subject && client_id.as_deref() != Some(sub.as_str())).then(|| sub.clone())
        });
        let identity =
            Identity::new(issuer.issuer.clone(), sub, client_id, scopes, username, claims.jti.clone(), exp)
                .map_err(GateError::InvalidToken)?;
        let left = Duration::from_secs(
            u64::try_from(exp.saturating_add(self.leeway).saturating_sub(now)).unwrap_or(0),
        );
        let instant = Instant::now();
        Ok(Cached {
            identity: Arc::new(identity),
            expires: instant + left,
            valid_until: instant + left.min(self.cache_max_ttl),
            revocation: issuer.revocation.clone(),
            checked_ms: AtomicU64::new(0),
            claimed_ms: AtomicU64::new(0),
            revoked: AtomicBool::new(false),
        })
    }
}

/// Two dots: a compact JWS (a JWE has four).
fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
}

fn clip(s: &str) -> String {
    s.chars().take(32).collect()
}

/// `application/at+jwt` and `AT+JWT` are `at+jwt` (RFC 7515 section 4.1.9).
pub(crate) fn short_typ(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    lower.strip_prefix("application/").map(str::to_owned).unwrap_or(lower)
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

/// A NumericDate (RFC 7519 section 2), fractions rounded down.
fn numeric_date(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f.floor() as i64))
        }
        _ => None,
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<OneOrMany>,
    exp: Option<Value>,
    nbf: Option<Value>,
    client_id: Option<String>,
    azp: Option<String>,
    scope: Option<String>,
    scp: Option<OneOrMany>,
    jti: Option<String>,
    preferred_username: Option<String>,
    username: Option<String>,
}
