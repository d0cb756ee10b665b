//! Consumers (OAuth clients): their secrets, their sync from the YAML file,
//! and redirect URI matching.
//!
//! # Secrets
//!
//! A secret is never stored in clear: a generated one as its keyed hash, one
//! set by hand as argon2id ([`crate::web::secrets`] hashes and checks both).
//! Syncing the file keeps a stored hash while the file's secret still
//! matches it.
//!
//! A consumer with `confidential: false` has its secret not validated at all
//! (farmOS semantics, for self-hosted servers that cannot share a secret).

use crate::config::server::ConsumerConfig;
use crate::store::{ConsumerRecord, ServerStore, StoreError};
use crate::web::password;
use crate::web::secrets::Secrets;

/// True when `presented` may be used as redirect URI for the `registered`
/// one: the same string (RFC 9700 section 4.1.3), or, for the loopback
/// addresses `http://127.0.0.1` and `http://[::1]`, the same URI with any
/// port (RFC 8252 section 7.3). `localhost` gets no exception.
pub fn redirect_uri_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    match (split_loopback(registered), split_loopback(presented)) {
        (Some((host_a, rest_a)), Some((host_b, rest_b))) => host_a == host_b && rest_a == rest_b,
        _ => false,
    }
}

/// `http://127.0.0.1[:port]/rest` or `http://[::1][:port]/rest` as
/// (host, rest-with-leading-slash-or-query).
fn split_loopback(uri: &str) -> Option<(&str, &str)> {
    let after = uri.strip_prefix("http://")?;
    let host = ["127.0.0.1", "[::1]"].into_iter().find(|h| after.starts_with(h))?;
    let mut rest = &after[host.len()..];
    if let Some(port) = rest.strip_prefix(':') {
        let digits = port.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return None;
        }
        rest = &port[digits..];
    }
    if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') {
        Some((host, if rest.is_empty() { "/" } else { rest }))
    } else {
        None
    }
}

/// What syncing the file's consumers did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Consumers created or updated.
    pub upserted: usize,
    /// Config-managed consumers removed from the file, and so deleted.
    pub deleted: Vec<String>,
}

/// Creates or updates every consumer of the file (marked
/// `managed_by_config`), and deletes config-managed consumers that are no
/// longer in it. Consumers made by the CLI are left alone. A secret from the
/// file is kept as its existing hash when it still matches, else hashed anew
/// with argon2.
pub async fn sync_consumers(
    store: &dyn ServerStore,
    secrets: &Secrets,
    consumers: &[ConsumerConfig],
) -> Result<SyncReport, SyncError> {
    let mut report = SyncReport::default();
    for c in consumers {
        let existing = store.consumer(&c.client_id).await?;
        let secret_hash =
            match &c.secret {
                None => None,
                Some(secret) => {
                    let kept = match existing.as_ref().and_then(|e| e.secret_hash.as_deref()) {
                        Some(old) if secrets.verify(&c.client_id, old, secret.expose()).await == Ok(true) => {
                            Some(old.to_owned())
                        }
                        _ => None,
                    };
                    match kept {
                        Some(hash) => Some(hash),
                        None => Some(password::hash_blocking(secret.expose().to_owned()).await.map_err(
                            |reason| SyncError::Hash { client_id: c.client_id.value.clone(), reason },
                        )?),
                    }
                }
            };
        let record = ConsumerRecord {
            client_id: c.client_id.value.clone(),
            label: c.label.clone(),
            secret_hash,
            confidential: c.confidential,
            user_id: c.user_id.clone(),
            redirect_uris: c.redirect_uris.iter().map(|u| u.value.clone()).collect(),
            allowed_origins: c.allowed_origins.clone(),
            third_party: c.third_party,
            scopes: c.scopes.iter().map(|s| s.value.clone()).collect(),
            grant_types: c.grant_types.iter().map(|g| g.value.clone()).collect(),
            access_token_ttl: c.access_token_ttl.map(|d| d.0.as_secs()),
            refresh_token_ttl: c.refresh_token_ttl.map(|d| d.0.as_secs()),
            grant_user_access: c.grant_user_access,
            limit_requested_access: c.limit_requested_access,
            limit_user_access: c.limit_user_access,
            managed_by_config: true,
            post_logout_redirect_uris: c.post_logout_redirect_uris.iter().map(|u| u.value.clone()).collect(),
            backchannel_logout_uri: c.backchannel_logout_uri.as_ref().map(|u| u.value.clone()),
        };
        if existing.as_ref() != Some(&record) {
            store.put_consumer(&record).await?;
        }
        report.upserted += 1;
    }
    for old in store.consumers().await? {
        if old.managed_by_config && !consumers.iter().any(|c| c.client_id.value == old.client_id) {
            store.delete_consumer(&old.client_id).await?;
            report.deleted.push(old.client_id);
        }
    }
    Ok(report)
}

/// Why the file's consumers could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A secret could not be hashed.
    #[error("cannot hash the secret of consumer {client_id:?}: {reason}")]
    Hash {
        /// The consumer.
        client_id: String,
        /// What went wrong.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_match_exactly() {
        let r = "https://app.example/cb";
        assert!(redirect_uri_matches(r, "https://app.example/cb"));
        for other in [
            "https://app.example/cb/",
            "https://app.example/cb?x=1",
            "https://APP.example/cb",
            "https://app.example:443/cb",
            "http://app.example/cb",
            "https://app.example/c",
        ] {
            assert!(!redirect_uri_matches(r, other), "{other}");
        }
    }

    #[test]
    fn loopback_redirect_uris_match_on_any_port() {
        assert!(redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1:51234/cb"));
        assert!(redirect_uri_matches("http://127.0.0.1:8000/cb", "http://127.0.0.1:9/cb"));
        assert!(redirect_uri_matches("http://[::1]:1/cb?a=b", "http://[::1]:65535/cb?a=b"));
        assert!(redirect_uri_matches("http://127.0.0.1", "http://127.0.0.1:4000/"));
    }

    #[test]
    fn loopback_exception_keeps_host_path_and_scheme() {
        assert!(!redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1:5/other"));
        assert!(!redirect_uri_matches("http://127.0.0.1/cb", "http://[::1]:5/cb"));
        assert!(!redirect_uri_matches("http://127.0.0.1/cb", "https://127.0.0.1:5/cb"));
        assert!(!redirect_uri_matches("http://localhost/cb", "http://localhost:5/cb"));
        assert!(!redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1.evil.example/cb"));
        assert!(!redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1:80@evil.example/cb"));
        assert!(!redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1:/cb"));
    }

    fn file_consumer(client_id: &str, secret: Option<&str>) -> ConsumerConfig {
        ConsumerConfig {
            client_id: crate::config::types::At::default_value(client_id.to_owned()),
            secret: secret
                .map(|s| crate::config::types::At::default_value(crate::config::Secret::new(s.into()))),
            ..ConsumerConfig::default()
        }
    }

    #[tokio::test]
    async fn sync_creates_updates_and_deletes_only_file_consumers() {
        let dir = tempfile::tempdir().unwrap();
        use crate::store::{ServerStore, StoreBase};
        let store = crate::store::SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        let secrets = Secrets::load(&store).await.unwrap();
        let mut by_cli = ConsumerRecord { managed_by_config: false, ..sample_record("cli") };
        by_cli.secret_hash = Some(secrets.generate().1);
        store.put_consumer(&by_cli).await.unwrap();

        let file = [file_consumer("a", Some("secret-of-a-0123456789")), file_consumer("b", None)];
        let report = sync_consumers(&store, &secrets, &file).await.unwrap();
        assert_eq!(report, SyncReport { upserted: 2, deleted: vec![] });
        let a = store.consumer("a").await.unwrap().unwrap();
        assert!(a.managed_by_config);
        let hash = a.secret_hash.clone().unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(secrets.verify("a", &hash, "secret-of-a-0123456789").await.unwrap());

        // A restart with the same secret keeps the hash; `b` left the file.
        let report = sync_consumers(&store, &secrets, &file[..1]).await.unwrap();
        assert_eq!(report.deleted, vec!["b".to_owned()]);
        assert_eq!(store.consumer("a").await.unwrap().unwrap().secret_hash, Some(hash));
        assert!(store.consumer("b").await.unwrap().is_none());
        assert_eq!(store.consumer("cli").await.unwrap(), Some(by_cli), "CLI consumers are not touched");
        store.close().await;
    }

    fn sample_record(client_id: &str) -> ConsumerRecord {
        ConsumerRecord {
            client_id: client_id.into(),
            label: String::new(),
            secret_hash: None,
            confidential: true,
            user_id: None,
            redirect_uris: vec![],
            allowed_origins: vec![],
            third_party: true,
            scopes: vec![],
            grant_types: vec!["client_credentials".into()],
            access_token_ttl: None,
            refresh_token_ttl: None,
            grant_user_access: false,
            limit_requested_access: false,
            limit_user_access: false,
            managed_by_config: false,
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
        }
    }
}
