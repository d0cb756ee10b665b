//! Browser origins: parsing and normalising them, and the index of which
//! consumer allows which origin (farmOS `consumer.allowed_origins`).
//!
//! Origins compare after normalising: scheme and host lower-cased, the
//! default port (80 for `http`, 443 for `https`) dropped. `null`, and
//! anything that is not `scheme://host[:port]`, is not an origin.
//!
//! The [`OriginIndex`] is read on every cross-origin request, so it lives in
//! memory; [`OriginIndex::refresh_from`] rebuilds it from the store, which
//! the sidecar does at a bounded interval because the CLI can change
//! consumers from another process, and at once when the store announces a
//! consumer change (several replicas on PostgreSQL).
//!
//! ```
//! use oauth_sidecar::gate::{Origin, OriginIndex};
//!
//! let index = OriginIndex::from_consumers([("farm", vec!["HTTP://LocalHost:80/".to_owned()])]);
//! let origin = Origin::parse("http://localhost").unwrap();
//! assert!(index.allows("farm", &origin));
//! assert!(!index.allows("other", &origin));
//! assert!(Origin::parse("null").is_none());
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock};

use crate::store::{GateStore, StoreChange, StoreChanges, StoreError, change};

/// A normalised browser origin: `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin(Box<str>);

impl Origin {
    /// Parses an `Origin` header value; `None` for `null` or a malformed one.
    pub fn parse(value: &str) -> Option<Origin> {
        let (scheme, rest) = value.split_once("://")?;
        if scheme.is_empty()
            || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return None;
        }
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ', '\\']) {
            return None;
        }
        let scheme = scheme.to_ascii_lowercase();
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (inside, after) = v6.split_once(']')?;
            if inside.is_empty() || !inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
                return None;
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            (format!("[{}]", inside.to_ascii_lowercase()), port)
        } else {
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            if host.is_empty()
                || !host.chars().all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c) || !c.is_ascii())
            {
                return None;
            }
            (host.to_lowercase(), port)
        };
        let port = match port {
            None => None,
            Some(p) => {
                if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let n: u16 = p.parse().ok()?;
                let default = match scheme.as_str() {
                    "http" => Some(80),
                    "https" => Some(443),
                    _ => None,
                };
                if Some(n) == default { None } else { Some(n) }
            }
        };
        let text = match port {
            Some(p) => format!("{scheme}://{host}:{p}"),
            None => format!("{scheme}://{host}"),
        };
        Some(Origin(text.into_boxed_str()))
    }

    /// Parses an origin as written in configuration or by the CLI, where a
    /// trailing `/` is tolerated (`http://localhost:3000/`).
    pub fn parse_configured(value: &str) -> Option<Origin> {
        let value = value.trim();
        Self::parse(value.strip_suffix('/').unwrap_or(value))
    }

    /// The origin of a URL such as the public URL (its path is ignored).
    pub fn of_url(url: &http::Uri) -> Option<Origin> {
        let scheme = url.scheme_str()?;
        let authority = url.authority()?.as_str();
        Self::parse(&format!("{scheme}://{authority}"))
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Default)]
struct Index {
    by_consumer: HashMap<String, Vec<Origin>>,
    any: HashSet<Origin>,
}

/// Which consumer allows which origin. Cheap to clone: clones share the
/// index, so a refresh is seen by every layer holding a clone.
#[derive(Debug, Clone, Default)]
pub struct OriginIndex {
    inner: Arc<RwLock<Arc<Index>>>,
}

impl OriginIndex {
    /// An index of `(client_id, allowed_origins)` pairs. Origins that do not
    /// parse are left out.
    pub fn from_consumers<I, S>(consumers: I) -> Self
    where
        I: IntoIterator<Item = (S, Vec<String>)>,
        S: Into<String>,
    {
        let index = OriginIndex::default();
        index.replace(consumers);
        index
    }

    /// Replaces the whole index.
    pub fn replace<I, S>(&self, consumers: I)
    where
        I: IntoIterator<Item = (S, Vec<String>)>,
        S: Into<String>,
    {
        let mut index = Index::default();
        for (client_id, origins) in consumers {
            let client_id = client_id.into();
            let mut parsed = Vec::with_capacity(origins.len());
            for o in &origins {
                match Origin::parse_configured(o) {
                    Some(origin) => {
                        index.any.insert(origin.clone());
                        parsed.push(origin);
                    }
                    None => tracing::warn!(
                        client_id = %client_id,
                        origin = %o,
                        "an allowed origin of this consumer is not an origin (scheme://host[:port]); ignored"
                    ),
                }
            }
            if !parsed.is_empty() {
                index.by_consumer.insert(client_id, parsed);
            }
        }
        let index = Arc::new(index);
        match self.inner.write() {
            Ok(mut slot) => *slot = index,
            Err(poisoned) => *poisoned.into_inner() = index,
        }
    }

    /// Rebuilds the index from the store's consumers.
    pub async fn refresh_from(&self, store: &dyn GateStore) -> Result<(), StoreError> {
        let consumers = store.consumers().await?;
        self.replace(consumers.into_iter().map(|c| (c.client_id, c.allowed_origins)));
        Ok(())
    }

    /// Refreshes from `store` every `interval`, and at once when `changes`
    /// (the store's announcements, see [`StoreBase::changes`](crate::store::StoreBase::changes)) tell of a
    /// consumer change, until the task is aborted; a failed refresh keeps
    /// the previous index. Subscribe before the first
    /// [`OriginIndex::refresh_from`], so no change falls between the two.
    /// Needs a Tokio runtime.
    pub fn spawn_refresh(
        &self,
        store: Arc<dyn GateStore>,
        interval: std::time::Duration,
        mut changes: Option<StoreChanges>,
    ) -> tokio::task::JoinHandle<()> {
        let index = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    batch = change::next_batch(&mut changes) => {
                        let consumers = |c: &StoreChange| matches!(c, StoreChange::Consumer(_) | StoreChange::Everything);
                        if !batch.is_some_and(|b| b.iter().any(consumers)) {
                            continue;
                        }
                    }
                }
                if let Err(e) = index.refresh_from(store.as_ref()).await {
                    tracing::warn!(error = %e, "cannot read the consumers' allowed origins; keeping the previous ones");
                }
            }
        })
    }

    fn current(&self) -> Arc<Index> {
        match self.inner.read() {
            Ok(slot) => slot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// True when the consumer `client_id` lists `origin`.
    pub fn allows(&self, client_id: &str, origin: &Origin) -> bool {
        self.current().by_consumer.get(client_id).is_some_and(|list| list.contains(origin))
    }

    /// True when some consumer lists `origin`.
    pub fn allows_any(&self, origin: &Origin) -> bool {
        self.current().any.contains(origin)
    }
}

/// What the `Origin` header of a request says, for the CORS layer and the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestOrigin {
    /// No `Origin` header, or the public URL's own origin.
    SameOrNone,
    /// `null`, malformed, or several `Origin` headers.
    Bad,
    /// Another origin.
    Cross(Origin),
}

impl RequestOrigin {
    pub(crate) fn of(headers: &http::HeaderMap, same: Option<&Origin>) -> RequestOrigin {
        let mut values = headers.get_all(http::header::ORIGIN).iter();
        let Some(value) = values.next() else { return RequestOrigin::SameOrNone };
        if values.next().is_some() {
            return RequestOrigin::Bad;
        }
        match value.to_str().ok().and_then(Origin::parse) {
            None => RequestOrigin::Bad,
            Some(origin) if Some(&origin) == same => RequestOrigin::SameOrNone,
            Some(origin) => RequestOrigin::Cross(origin),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_normalise_scheme_host_and_default_port() {
        let n = |s: &str| Origin::parse(s).map(|o| o.to_string());
        assert_eq!(n("HTTPS://App.Example.org:443"), Some("https://app.example.org".into()));
        assert_eq!(n("http://localhost:3000"), Some("http://localhost:3000".into()));
        assert_eq!(n("http://localhost:80"), Some("http://localhost".into()));
        assert_eq!(n("https://app.example.org:80"), Some("https://app.example.org:80".into()));
        assert_eq!(n("http://[::1]:8080"), Some("http://[::1]:8080".into()));
        assert_eq!(n("capacitor://localhost"), Some("capacitor://localhost".into()));
        for bad in [
            "null",
            "",
            "localhost:3000",
            "http://",
            "http://a/",
            "http://a/path",
            "http://u@a",
            "http://a:99999",
            "http://a:",
            "http://a b",
            "1http://a",
            "http://[zz]",
        ] {
            assert_eq!(n(bad), None, "{bad}");
        }
        assert_eq!(
            Origin::parse_configured("http://localhost:3000/").map(|o| o.to_string()),
            Some("http://localhost:3000".into())
        );
    }

    #[test]
    fn the_index_answers_per_consumer_and_for_any() {
        let index = OriginIndex::from_consumers([
            ("farm", vec!["http://a.test".to_owned(), "not an origin".to_owned()]),
            ("other", vec!["http://b.test".to_owned()]),
        ]);
        let a = Origin::parse("http://a.test").unwrap();
        let b = Origin::parse("http://b.test").unwrap();
        assert!(index.allows("farm", &a));
        assert!(!index.allows("farm", &b));
        assert!(index.allows_any(&b));
        index.replace([("farm", vec!["http://b.test".to_owned()])]);
        assert!(!index.allows_any(&a));
        assert!(index.allows("farm", &b));
    }
}
