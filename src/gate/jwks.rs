//! Where an issuer's keys come from, and how long they are trusted.
//!
//! Every issuer is handled the same way, the local authorization server
//! included: its JWKS is read from a [`KeySource`] (an HTTP URL, one found by
//! OpenID Connect / RFC 8414 discovery, or a function in this process), and
//! kept in memory. The keys are read again
//!
//! - when they are older than `refresh`, and
//! - when a token names a `kid` the set does not have (a rotation), at most
//!   once per `min_interval`, so a stream of made-up kids cannot turn the
//!   gate into a load generator against the issuer.
//!
//! Keys read in process (the local authorization server's) are also
//! read again at once, whatever `min_interval` says, after the store
//! announces a key change ([`IssuerKeys::forget_reads`]).
//!
//! A failed read (discovery or JWKS) keeps the keys held so far (they are
//! served stale, with a warning) and is retried on demand with a short
//! backoff: 1 s after the first failure, doubling with each failure in a
//! row, at most `min_interval`. An issuer that comes up after the sidecar (a
//! common start order in Compose and Kubernetes) is thus read within
//! seconds of answering. Until then a refusal names the cached error with
//! its age. Concurrent requests that need a read share one.

use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::jwk::{KeySet, PublicKey};

/// Largest JWKS or metadata document read.
const MAX_DOCUMENT: usize = 1 << 20;

/// Where an issuer's JWKS comes from.
#[derive(Clone)]
pub enum KeySource {
    /// Found through the issuer's metadata: `{issuer}/.well-known/openid-configuration`,
    /// then RFC 8414's `/.well-known/oauth-authorization-server`.
    Discover,
    /// A JWKS at this URL.
    JwksUri(String),
    /// A JWKS document produced in this process, such as the local
    /// authorization server's key ring; no HTTP involved.
    InProcess(Arc<dyn Fn() -> Value + Send + Sync>),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Discover => f.write_str("Discover"),
            KeySource::JwksUri(uri) => f.debug_tuple("JwksUri").field(uri).finish(),
            KeySource::InProcess(_) => f.write_str("InProcess"),
        }
    }
}

/// The outbound HTTP client of the gate: rustls with the ring provider and
/// the platform's trust store, no redirects beyond a few, a timeout.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    crate::outbound::client_builder()?
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .map_err(|e| e.to_string())
}

/// GETs a JSON document of at most [`MAX_DOCUMENT`] bytes.
pub(crate) async fn get_json(client: &reqwest::Client, url: &str) -> Result<Value, String> {
    let res = client
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", chain(&e)))?;
    read_json(res, url).await
}

pub(crate) use crate::outbound::error_chain as chain;

/// Reads a JSON response body of at most [`MAX_DOCUMENT`] bytes.
pub(crate) async fn read_json(mut res: reqwest::Response, url: &str) -> Result<Value, String> {
    if !res.status().is_success() {
        return Err(format!("{url} answered {}", res.status()));
    }
    if res.content_length().is_some_and(|n| n > MAX_DOCUMENT as u64) {
        return Err(format!("{url}: the document is larger than {MAX_DOCUMENT} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| format!("{url}: {e}"))? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(format!("{url}: the document is larger than {MAX_DOCUMENT} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON ({e})"))
}

/// How a key lookup ended.
pub(crate) enum KeyLookup {
    /// The key the token names.
    Found(Arc<PublicKey>),
    /// The issuer's keys are known and none has this `kid`.
    Unknown,
    /// No keys could be read yet.
    Unavailable(String),
}

#[derive(Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
    /// Counts reads, so that requests that waited for one do not start another.
    generation: u64,
    last_error: Option<String>,
    /// Failed reads since the last one that succeeded.
    failures: u32,
}

/// The first wait after a failed read; doubled with each further failure.
const FIRST_RETRY: Duration = Duration::from_secs(1);

impl State {
    /// How long after the last read the next may start: `min_interval`
    /// after a success, the backoff after failures.
    fn wait(&self, min_interval: Duration) -> Duration {
        match self.failures {
            0 => min_interval,
            n => FIRST_RETRY.saturating_mul(1 << (n - 1).min(16)).min(min_interval),
        }
    }
}

/// One issuer's keys, kept and refreshed as the module docs describe.
pub(crate) struct IssuerKeys {
    issuer: String,
    source: KeySource,
    client: reqwest::Client,
    discovered: Mutex<Option<String>>,
    state: RwLock<State>,
    fetching: tokio::sync::Mutex<()>,
    refresh: Duration,
    min_interval: Duration,
}

impl IssuerKeys {
    pub(crate) fn new(
        issuer: String,
        source: KeySource,
        client: reqwest::Client,
        refresh: Duration,
        min_interval: Duration,
    ) -> Self {
        IssuerKeys {
            issuer,
            source,
            client,
            discovered: Mutex::new(None),
            state: RwLock::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
            refresh,
            min_interval,
        }
    }

    fn snapshot(&self) -> (Option<Arc<KeySet>>, bool, bool, u64) {
        let now = Instant::now();
        let state = match self.state.read() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let fresh = state.fetched_at.is_some_and(|t| now.duration_since(t) < self.refresh);
        let wait = state.wait(self.min_interval);
        let may_read = state.attempted_at.is_none_or(|t| now.duration_since(t) >= wait);
        (state.keys.clone(), fresh, may_read, state.generation)
    }

    /// The last read's error with its age, so that a log line does not
    /// pass a cached error off as a current answer.
    fn cached_error(&self) -> Option<String> {
        let state = match self.state.read() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let error = state.last_error.as_ref()?;
        let Some(at) = state.attempted_at else { return Some(error.clone()) };
        let age = at.elapsed();
        let next = state.wait(self.min_interval).saturating_sub(age);
        Some(format!(
            "{error} (cached {:.1}s ago; next read in {:.1}s at the earliest)",
            age.as_secs_f32(),
            next.as_secs_f32()
        ))
    }

    /// The key for a token's `kid` (see the module docs for when the keys
    /// are read again). A known key whose set is due for a refresh is
    /// returned at once and the set read in the background.
    pub(crate) async fn key(self: &Arc<Self>, kid: Option<&str>) -> KeyLookup {
        let (keys, fresh, may_read, generation) = self.snapshot();
        if let Some(keys) = &keys
            && let Some(key) = keys.find(kid)
        {
            if !fresh && may_read {
                let this = self.clone();
                tokio::spawn(async move { this.read(generation).await });
            }
            return KeyLookup::Found(key.clone());
        }
        if may_read {
            self.read(generation).await;
        }
        let (keys, ..) = self.snapshot();
        match keys {
            Some(keys) => match keys.find(kid) {
                Some(key) => KeyLookup::Found(key.clone()),
                None => KeyLookup::Unknown,
            },
            None => KeyLookup::Unavailable(
                self.cached_error().unwrap_or_else(|| "the keys were not read yet".into()),
            ),
        }
    }

    /// Reads the keys once, unless another task read them since
    /// `generation`.
    pub(crate) async fn read(&self, generation: u64) {
        let _guard = self.fetching.lock().await;
        if self.snapshot().3 != generation {
            return;
        }
        let result = self.fetch().await.and_then(|doc| KeySet::from_jwks(&doc, &self.issuer));
        let now = Instant::now();
        let mut state = match self.state.write() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        state.generation += 1;
        state.attempted_at = Some(now);
        match result {
            Ok(keys) => {
                tracing::debug!(issuer = %self.issuer, keys = keys.len(), "issuer keys read");
                state.keys = Some(Arc::new(keys));
                state.fetched_at = Some(now);
                state.last_error = None;
                state.failures = 0;
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                if state.keys.is_some() {
                    tracing::warn!(issuer = %self.issuer, error = %e, "cannot read the issuer's keys; using the ones read before");
                } else {
                    tracing::warn!(issuer = %self.issuer, error = %e, "cannot read the issuer's keys");
                }
                state.last_error = Some(e);
            }
        }
    }

    /// True when the keys come from this process (the local server).
    pub(crate) fn in_process(&self) -> bool {
        matches!(self.source, KeySource::InProcess(_))
    }

    /// Treats the keys as due and lets the next lookup read them at once
    /// (the store announced a key change); the keys held stay in use until
    /// then.
    pub(crate) fn forget_reads(&self) {
        let mut state = match self.state.write() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        state.fetched_at = None;
        state.attempted_at = None;
    }

    /// The current generation, for [`IssuerKeys::read`].
    pub(crate) fn generation(&self) -> u64 {
        self.snapshot().3
    }

    async fn fetch(&self) -> Result<Value, String> {
        match &self.source {
            KeySource::InProcess(f) => Ok(f()),
            KeySource::JwksUri(uri) => get_json(&self.client, uri).await,
            KeySource::Discover => {
                let known = self.discovered.lock().map(|d| d.clone()).unwrap_or_default();
                let uri = match known {
                    Some(uri) => uri,
                    None => {
                        let uri = self.discover().await?;
                        if let Ok(mut d) = self.discovered.lock() {
                            *d = Some(uri.clone());
                        }
                        uri
                    }
                };
                get_json(&self.client, &uri).await
            }
        }
    }

    /// Finds `jwks_uri` in the issuer's metadata, checking that the
    /// document is the issuer's own.
    async fn discover(&self) -> Result<String, String> {
        let base = self.issuer.trim_end_matches('/');
        let mut urls = vec![format!("{base}/.well-known/openid-configuration")];
        if let Ok(uri) = self.issuer.parse::<http::Uri>()
            && let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority())
        {
            let path = uri.path().trim_end_matches('/');
            urls.push(format!("{scheme}://{authority}/.well-known/oauth-authorization-server{path}"));
        }
        let mut errors = Vec::new();
        for url in urls {
            match get_json(&self.client, &url).await {
                Ok(meta) => {
                    if meta.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
                        errors.push(format!("{url} names another issuer"));
                        continue;
                    }
                    return match meta.get("jwks_uri").and_then(Value::as_str) {
                        Some(jwks) if jwks.starts_with("https://") || jwks.starts_with("http://") => {
                            Ok(jwks.to_owned())
                        }
                        _ => Err(format!("{url} has no usable jwks_uri")),
                    };
                }
                Err(e) => errors.push(e),
            }
        }
        Err(format!("discovery failed: {}", errors.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_reads_back_off_from_one_second_up_to_min_interval() {
        let min = Duration::from_secs(30);
        let wait = |failures| State { failures, ..State::default() }.wait(min).as_secs();
        assert_eq!([0, 1, 2, 3, 4, 5, 6, 40].map(wait), [30, 1, 2, 4, 8, 16, 30, 30]);
        let short = State { failures: 3, ..State::default() }.wait(Duration::from_secs(1));
        assert_eq!(short, Duration::from_secs(1));
    }
}
