//! The OAuth client role's state in the store, on both backends: client
//! registrations, provider tokens (one per client and tag), refresh leases
//! that one process holds at a time, and started authorizations used once.

mod common;

use std::sync::Arc;

use common::stores::Backend;
use oauth_sidecar::store::{ClientRegistrationRecord, ClientStateRecord, ProviderTokenRecord};

const NOW: i64 = 1_700_000_000;

fn registration(name: &str) -> ClientRegistrationRecord {
    ClientRegistrationRecord {
        name: name.to_owned(),
        provider: "gmail".into(),
        label: format!("{name} mailbox"),
        client_id: "1234.apps.example".into(),
        client_secret: Some(vec![1, 2, 3, 0, 255]),
        tenant: None,
        scopes: Some(vec!["mail.read".into(), "openid".into()]),
        created_at: NOW,
    }
}

fn token(client: &str, tag: &str, access: &[u8]) -> ProviderTokenRecord {
    ProviderTokenRecord {
        id: 0,
        client: client.to_owned(),
        tag: tag.to_owned(),
        grant_type: "authorization_code".into(),
        scopes: vec!["mail.read".into()],
        token_type: "Bearer".into(),
        access_token: access.to_vec(),
        refresh_token: Some(vec![9, 9, 9]),
        expires_at: Some(NOW + 3600),
        owner_id: Some("u1".into()),
        owner_name: None,
        owner_email: Some("info@example.org".into()),
        raw: vec![123, 125],
        status: "ok".into(),
        last_error: None,
        created_at: NOW,
        updated_at: NOW,
    }
}

fn state(hash: &str, expires_at: i64) -> ClientStateRecord {
    ClientStateRecord {
        state_hash: hash.to_owned(),
        client: "mail".into(),
        browser_hash: "b".into(),
        verifier: vec![7; 32],
        nonce: "n".into(),
        tag: Some("info@example.org".into()),
        scopes: vec!["mail.read".into()],
        return_to: Some("/after".into()),
        expires_at,
    }
}

async fn registrations_round_trip_and_delete_takes_their_tokens(backend: Backend) {
    let (store, _place) = backend.open().await;
    let mut mail = registration("mail");
    store.put_client_registration(&registration("zeta")).await.unwrap();
    store.put_client_registration(&mail).await.unwrap();
    mail.label = "changed".into();
    mail.scopes = None;
    store.put_client_registration(&mail).await.unwrap();
    let all = store.client_registrations().await.unwrap();
    assert_eq!(all, vec![mail.clone(), registration("zeta")], "replaced, ordered by name");
    let id = store.save_provider_token(&token("mail", "a", b"sealed-a")).await.unwrap();
    assert!(store.delete_client_registration("mail").await.unwrap());
    assert!(!store.delete_client_registration("mail").await.unwrap());
    assert_eq!(store.provider_token(id).await.unwrap(), None, "its tokens go with it");
    store.close().await;
}

async fn provider_token_is_replaced_per_client_and_tag_keeping_its_id(backend: Backend) {
    let (store, _place) = backend.open().await;
    let first = store.save_provider_token(&token("mail", "a", b"one")).await.unwrap();
    let other = store.save_provider_token(&token("mail", "b", b"two")).await.unwrap();
    assert_ne!(first, other);
    let mut newer = token("mail", "a", b"three");
    newer.updated_at = NOW + 10;
    assert_eq!(store.save_provider_token(&newer).await.unwrap(), first, "same client and tag, same id");
    let stored = store.provider_token_by_tag("mail", "a").await.unwrap().unwrap();
    assert_eq!(
        (stored.id, stored.access_token.as_slice(), stored.updated_at),
        (first, &b"three"[..], NOW + 10)
    );
    assert_eq!(store.provider_token(first).await.unwrap(), Some(stored));
    assert_eq!(store.provider_tokens().await.unwrap().len(), 2);
    store
        .set_provider_token_status(other, "needs_reauthorization", Some("invalid_grant"), NOW)
        .await
        .unwrap();
    let b = store.provider_token(other).await.unwrap().unwrap();
    assert_eq!(
        (b.status.as_str(), b.last_error.as_deref()),
        ("needs_reauthorization", Some("invalid_grant"))
    );
    assert!(store.delete_provider_token(other).await.unwrap());
    assert!(!store.delete_provider_token(other).await.unwrap());
    store.close().await;
}

async fn concurrent_leases_of_one_token_have_one_holder_until_released_or_expired(backend: Backend) {
    let (store, _place) = backend.open().await;
    let id = store.save_provider_token(&token("mail", "a", b"one")).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let holder = format!("replica-{i}");
                (store.lease_provider_token(id, &holder, NOW + 30, NOW).await.unwrap(), holder)
            })
        })
        .collect();
    let mut holders = Vec::new();
    for task in tasks {
        if let (true, holder) = task.await.unwrap() {
            holders.push(holder);
        }
    }
    assert_eq!(holders.len(), 1, "exactly one process holds the lease");
    let holder = &holders[0];
    assert!(
        store.lease_provider_token(id, holder, NOW + 30, NOW + 1).await.unwrap(),
        "its holder may renew it"
    );
    assert!(!store.lease_provider_token(id, "late", NOW + 40, NOW + 10).await.unwrap());
    store.release_provider_token(id, "late").await.unwrap();
    assert!(
        !store.lease_provider_token(id, "late", NOW + 40, NOW + 10).await.unwrap(),
        "only the holder releases"
    );
    store.release_provider_token(id, holder).await.unwrap();
    assert!(store.lease_provider_token(id, "late", NOW + 40, NOW + 10).await.unwrap(), "released: free");
    assert!(store.lease_provider_token(id, "after", NOW + 80, NOW + 40).await.unwrap(), "expired: free");
    store.close().await;
}

async fn a_started_authorization_is_taken_once(backend: Backend) {
    let (store, _place) = backend.open().await;
    store.add_client_state(&state("s1", NOW + 600)).await.unwrap();
    store.add_client_state(&state("old", NOW - 7200)).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.take_client_state("s1", NOW).await.unwrap() })
        })
        .collect();
    let mut taken = Vec::new();
    for task in tasks {
        taken.extend(task.await.unwrap());
    }
    assert_eq!(taken, vec![state("s1", NOW + 600)], "one caller gets it");
    assert_eq!(store.take_client_state("old", NOW).await.unwrap(), None, "long expired ones are dropped");
    store.close().await;
}

on_both_backends!(
    registrations_round_trip_and_delete_takes_their_tokens,
    provider_token_is_replaced_per_client_and_tag_keeping_its_id,
    concurrent_leases_of_one_token_have_one_holder_until_released_or_expired,
    a_started_authorization_is_taken_once,
);
