//! The authorization server's state in the store, on both backends (a real
//! SQLite file, a real PostgreSQL database): round trips, single-use codes,
//! refresh-token rotation under concurrency, revocations and expiry.

mod common;

use std::sync::Arc;

use common::stores::Backend;
use oauth_sidecar::store::{
    AdminTokenRecord, AuthCodeRecord, CodeRedemption, ConsumerRecord, FederatedIdentityRecord,
    LoginStateRecord, RefreshGrace, RefreshRotation, RefreshTokenRecord, RoleSource, SessionRecord,
    SigningKeyRecord, UserRecord,
};

const NOW: i64 = 1_700_000_000;

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn consumer(client_id: &str) -> ConsumerRecord {
    ConsumerRecord {
        client_id: client_id.to_owned(),
        label: format!("{client_id} integration"),
        secret_hash: Some("hmac-sha256:abc".into()),
        confidential: true,
        user_id: Some("alice".into()),
        redirect_uris: strings(&["https://app.example/cb", "http://127.0.0.1:8080/cb"]),
        allowed_origins: strings(&["https://app.example"]),
        third_party: true,
        scopes: strings(&["farm_manager", "farm_viewer"]),
        grant_types: strings(&["authorization_code", "refresh_token"]),
        access_token_ttl: Some(300),
        refresh_token_ttl: None,
        grant_user_access: false,
        limit_requested_access: true,
        limit_user_access: true,
        managed_by_config: false,
        post_logout_redirect_uris: vec![],
        backchannel_logout_uri: None,
    }
}

fn code(code_hash: &str, client_id: &str, expires_at: i64) -> AuthCodeRecord {
    AuthCodeRecord {
        code_hash: code_hash.to_owned(),
        client_id: client_id.to_owned(),
        username: "alice".into(),
        redirect_uri: "https://app.example/cb".into(),
        scope: "farm_manager".into(),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        nonce: None,
        auth_time: NOW - 5,
        expires_at,
        sid: None,
    }
}

fn refresh(token_hash: &str, family_id: &str, client_id: &str, expires_at: i64) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_hash: token_hash.to_owned(),
        family_id: family_id.to_owned(),
        client_id: client_id.to_owned(),
        username: Some("alice".into()),
        scope: "farm_manager".into(),
        auth_time: Some(NOW - 5),
        expires_at,
        access: None,
        sid: None,
    }
}

fn session(id_hash: &str, expires_at: i64) -> SessionRecord {
    SessionRecord {
        id_hash: id_hash.to_owned(),
        kind: "oauth".into(),
        username: "alice".into(),
        auth_time: NOW,
        expires_at,
    }
}

async fn consumers_round_trip_and_put_replaces(backend: Backend) {
    let (store, _place) = backend.open().await;
    let mut farm = consumer("farm");
    store.put_consumer(&farm).await.unwrap();
    let minimal = ConsumerRecord {
        secret_hash: None,
        confidential: false,
        user_id: None,
        redirect_uris: vec![],
        allowed_origins: vec![],
        scopes: vec![],
        grant_types: vec![],
        access_token_ttl: None,
        ..consumer("app")
    };
    store.put_consumer(&minimal).await.unwrap();
    assert_eq!(store.consumer("farm").await.unwrap(), Some(farm.clone()));
    assert_eq!(store.consumer("app").await.unwrap(), Some(minimal.clone()));
    assert_eq!(store.consumer("nobody").await.unwrap(), None);

    farm.label = "renamed".into();
    farm.scopes = strings(&["farm_worker"]);
    farm.refresh_token_ttl = Some(86_400);
    farm.managed_by_config = true;
    store.put_consumer(&farm).await.unwrap();
    assert_eq!(store.consumers().await.unwrap(), vec![minimal, farm], "ordered by client_id");
    store.close().await;
}

async fn delete_consumer_removes_its_codes_and_refresh_tokens_only(backend: Backend) {
    let (store, _place) = backend.open().await;
    for id in ["gone", "kept"] {
        store.put_consumer(&consumer(id)).await.unwrap();
        store.add_auth_code(&code(&format!("code-{id}"), id, NOW + 60)).await.unwrap();
        store
            .add_refresh_token(&refresh(&format!("rt-{id}"), &format!("fam-{id}"), id, NOW + 3600))
            .await
            .unwrap();
    }

    assert!(store.delete_consumer("gone").await.unwrap());
    assert!(!store.delete_consumer("gone").await.unwrap(), "false when absent");
    assert_eq!(store.consumer("gone").await.unwrap(), None);
    assert_eq!(store.redeem_auth_code("code-gone").await.unwrap(), CodeRedemption::Unknown);
    assert_eq!(store.refresh_token("rt-gone", NOW).await.unwrap(), None);

    assert!(store.consumer("kept").await.unwrap().is_some());
    assert!(store.refresh_token("rt-kept", NOW).await.unwrap().is_some());
    assert!(matches!(store.redeem_auth_code("code-kept").await.unwrap(), CodeRedemption::Fresh(_)));
    store.close().await;
}

async fn users_round_trip_and_put_replaces(backend: Backend) {
    let (store, _place) = backend.open().await;
    let mut bob = UserRecord {
        username: "bob".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        roles: strings(&["farm_worker"]),
        admin: false,
        permissions: vec![],
        disabled: false,
    };
    let alice = UserRecord {
        username: "alice".into(),
        roles: vec![],
        admin: true,
        permissions: strings(&["administer oauth", "manage oauth client secrets"]),
        ..bob.clone()
    };
    store.put_user(&bob).await.unwrap();
    store.put_user(&alice).await.unwrap();
    assert_eq!(store.user("bob").await.unwrap(), Some(bob.clone()));
    assert_eq!(store.user("carol").await.unwrap(), None);

    bob.disabled = true;
    bob.roles = strings(&["farm_manager", "farm_viewer"]);
    store.put_user(&bob).await.unwrap();
    assert_eq!(store.users().await.unwrap(), vec![alice, bob], "ordered by username");
    store.close().await;
}

async fn signing_keys_come_back_oldest_first_and_kids_are_unique(backend: Backend) {
    let (store, _place) = backend.open().await;
    let newer = SigningKeyRecord {
        kid: "k2".into(),
        alg: "RS256".into(),
        private_der: vec![0, 1, 2, 255],
        created_at: NOW,
    };
    let older = SigningKeyRecord {
        kid: "k1".into(),
        alg: "EdDSA".into(),
        private_der: vec![48, 46, 2, 1, 0],
        created_at: NOW - 100,
    };
    store.add_signing_key(&newer).await.unwrap();
    store.add_signing_key(&older).await.unwrap();
    assert_eq!(store.signing_keys().await.unwrap(), vec![older.clone(), newer]);
    assert!(store.add_signing_key(&older).await.is_err(), "a kid is stored once");
    store.close().await;
}

async fn meta_get_or_insert_keeps_the_first_value(backend: Backend) {
    let (store, _place) = backend.open().await;
    let first = [0u8, 159, 146, 150, 255];
    assert_eq!(store.meta_get_or_insert("cookie_key", &first).await.unwrap(), first);
    assert_eq!(store.meta_get_or_insert("cookie_key", b"second").await.unwrap(), first);
    assert_eq!(store.meta_get_or_insert("other", b"other").await.unwrap(), b"other");
    store.close().await;
}

async fn meta_value_survives_a_reopen(backend: Backend) {
    let (store, place) = backend.open().await;
    store.meta_get_or_insert("hmac_key", b"first").await.unwrap();
    store.close().await;
    let store = place.open().await;
    assert_eq!(store.meta_get_or_insert("hmac_key", b"second").await.unwrap(), b"first");
    store.close().await;
}

async fn sessions_round_trip_until_they_expire_or_end(backend: Backend) {
    let (store, _place) = backend.open().await;
    let live = session("s1", NOW + 600);
    store.add_session(&live).await.unwrap();
    assert_eq!(store.session("s1", "oauth", NOW).await.unwrap(), Some(live));
    assert_eq!(store.session("s1", "oauth", NOW + 600).await.unwrap(), None, "expired at expires_at");
    assert_eq!(store.session("unknown", "oauth", NOW).await.unwrap(), None);
    assert_eq!(store.session("s1", "admin", NOW).await.unwrap(), None, "a session of another kind");
    store.delete_session("s1").await.unwrap();
    assert_eq!(store.session("s1", "oauth", NOW).await.unwrap(), None);
    store.delete_session("s1").await.unwrap();
    store.close().await;
}

async fn a_touched_session_lasts_until_its_new_end(backend: Backend) {
    let (store, _place) = backend.open().await;
    store.add_session(&session("s1", NOW + 60)).await.unwrap();
    store.touch_session("s1", NOW + 600).await.unwrap();
    assert_eq!(store.session("s1", "oauth", NOW + 300).await.unwrap().map(|s| s.expires_at), Some(NOW + 600));
    store.touch_session("s1", NOW).await.unwrap();
    assert_eq!(store.session("s1", "oauth", NOW).await.unwrap(), None, "moved back: ended");
    store.close().await;
}

async fn admin_tokens_are_found_by_hash_listed_and_deleted(backend: Backend) {
    let (store, _place) = backend.open().await;
    let first = AdminTokenRecord {
        id: "t1".into(),
        label: "deploy bot".into(),
        token_hash: "hash-1".into(),
        permissions: strings(&["administer oauth"]),
        created_at: NOW,
    };
    let second = AdminTokenRecord {
        id: "t2".into(),
        token_hash: "hash-2".into(),
        created_at: NOW + 1,
        ..first.clone()
    };
    store.add_admin_token(&first).await.unwrap();
    store.add_admin_token(&second).await.unwrap();
    let same_hash = AdminTokenRecord { id: "t3".into(), ..first.clone() };
    assert!(store.add_admin_token(&same_hash).await.is_err(), "token hashes are unique");
    assert_eq!(store.admin_token("hash-2").await.unwrap(), Some(second.clone()));
    assert_eq!(store.admin_token("hash-9").await.unwrap(), None);
    assert_eq!(store.admin_tokens().await.unwrap(), vec![first.clone(), second.clone()], "oldest first");
    assert!(store.delete_admin_token("t1").await.unwrap());
    assert!(!store.delete_admin_token("t1").await.unwrap());
    assert_eq!(store.admin_token("hash-1").await.unwrap(), None);
    store.close().await;
}

async fn revoking_a_family_revokes_the_access_tokens_issued_with_it(backend: Backend) {
    let (store, _place) = backend.open().await;
    store.put_consumer(&consumer("web")).await.unwrap();
    let first = RefreshTokenRecord {
        access: Some(("jti-1".into(), NOW + 3600)),
        ..refresh("r1", "fam", "web", NOW + 600)
    };
    store.add_refresh_token(&first).await.unwrap();
    let next = RefreshTokenRecord {
        access: Some(("jti-2".into(), NOW + 3700)),
        ..refresh("r2", "", "web", NOW + 900)
    };
    store.rotate_refresh_token("r1", &next, NOW).await.unwrap();
    let other = RefreshTokenRecord {
        access: Some(("jti-9".into(), NOW + 3600)),
        ..refresh("o1", "other", "web", NOW + 600)
    };
    store.add_refresh_token(&other).await.unwrap();
    assert_eq!(
        store.refresh_token("r2", NOW).await.unwrap().and_then(|t| t.access),
        Some(("jti-2".into(), NOW + 3700))
    );
    assert!(!store.is_access_token_revoked("jti-1").await.unwrap());
    store.revoke_refresh_family("fam").await.unwrap();
    assert!(store.is_access_token_revoked("jti-1").await.unwrap());
    assert!(store.is_access_token_revoked("jti-2").await.unwrap());
    assert!(!store.is_access_token_revoked("jti-9").await.unwrap(), "another family's");
    store.revoke_refresh_family("fam").await.unwrap();
    store.close().await;
}

async fn recorded_access_tokens_are_revoked_with_their_consumer_or_user(backend: Backend) {
    let (store, _place) = backend.open().await;
    for id in ["gone", "kept"] {
        store.put_consumer(&consumer(id)).await.unwrap();
    }
    store.record_access_token("jti-gone", "gone", None, NOW + 3600).await.unwrap();
    store.record_access_token("jti-bob", "kept", Some("bob"), NOW + 3600).await.unwrap();
    store.record_access_token("jti-ann", "kept", Some("ann"), NOW + 3600).await.unwrap();
    let bobs = RefreshTokenRecord {
        username: Some("bob".into()),
        ..refresh("rt-bob", "fam-bob", "kept", NOW + 3600)
    };
    store.add_refresh_token(&bobs).await.unwrap();
    store.add_session(&SessionRecord { username: "bob".into(), ..session("s-bob", NOW + 60) }).await.unwrap();

    assert!(store.delete_consumer("gone").await.unwrap());
    assert!(store.is_access_token_revoked("jti-gone").await.unwrap());
    assert!(!store.is_access_token_revoked("jti-bob").await.unwrap(), "another consumer's");

    store.end_user_grants("bob").await.unwrap();
    assert!(store.is_access_token_revoked("jti-bob").await.unwrap());
    assert!(!store.is_access_token_revoked("jti-ann").await.unwrap(), "another user's");
    assert_eq!(store.refresh_token("rt-bob", NOW).await.unwrap(), None, "the family is revoked");
    assert_eq!(store.session("s-bob", "oauth", NOW).await.unwrap(), None, "the session ended");
    store.end_user_grants("bob").await.unwrap();
    store.close().await;
}

async fn current_refresh_tokens_list_one_live_token_per_grant(backend: Backend) {
    let (store, _place) = backend.open().await;
    store.put_consumer(&consumer("web")).await.unwrap();
    store.add_refresh_token(&refresh("a1", "fam-a", "web", NOW + 600)).await.unwrap();
    store.rotate_refresh_token("a1", &refresh("a2", "fam-a", "web", NOW + 900), NOW).await.unwrap();
    store.add_refresh_token(&refresh("b1", "fam-b", "web", NOW + 300)).await.unwrap();
    store.add_refresh_token(&refresh("c1", "fam-c", "web", NOW + 400)).await.unwrap();
    store.revoke_refresh_family("fam-c").await.unwrap();
    store.add_refresh_token(&refresh("d1", "fam-d", "web", NOW - 1)).await.unwrap();
    let listed: Vec<String> =
        store.current_refresh_tokens(NOW).await.unwrap().into_iter().map(|t| t.token_hash).collect();
    assert_eq!(listed, ["b1", "a2"], "rotated, revoked and expired tokens left out; by expiry");
    store.close().await;
}

async fn auth_code_is_redeemed_once_and_reuse_reports_what_it_issued(backend: Backend) {
    let (store, _place) = backend.open().await;
    let issued = code("c1", "farm", NOW + 60);
    store.add_auth_code(&issued).await.unwrap();

    assert_eq!(store.redeem_auth_code("c1").await.unwrap(), CodeRedemption::Fresh(issued));
    store.record_code_issue("c1", Some("fam-1"), "jti-1", NOW + 300).await.unwrap();
    store.record_code_issue("c1", None, "jti-2", NOW + 400).await.unwrap();

    assert_eq!(
        store.redeem_auth_code("c1").await.unwrap(),
        CodeRedemption::Reused {
            family_id: Some("fam-1".into()),
            access_jtis: vec![("jti-1".into(), NOW + 300), ("jti-2".into(), NOW + 400)],
        }
    );
    assert_eq!(store.redeem_auth_code("nope").await.unwrap(), CodeRedemption::Unknown);
    store.close().await;
}

async fn expired_code_is_still_reported_for_the_caller_to_refuse(backend: Backend) {
    let (store, _place) = backend.open().await;
    let expired = code("old", "farm", NOW - 1);
    store.add_auth_code(&expired).await.unwrap();
    assert_eq!(store.redeem_auth_code("old").await.unwrap(), CodeRedemption::Fresh(expired));
    store.close().await;
}

async fn reuse_before_the_issue_is_recorded_revokes_it_when_recorded(backend: Backend) {
    let (store, _place) = backend.open().await;
    store.add_auth_code(&code("c1", "farm", NOW + 60)).await.unwrap();
    assert!(matches!(store.redeem_auth_code("c1").await.unwrap(), CodeRedemption::Fresh(_)));
    assert_eq!(
        store.redeem_auth_code("c1").await.unwrap(),
        CodeRedemption::Reused { family_id: None, access_jtis: vec![] }
    );

    store.add_refresh_token(&refresh("rt", "fam-1", "farm", NOW + 3600)).await.unwrap();
    store.record_code_issue("c1", Some("fam-1"), "jti-1", NOW + 300).await.unwrap();
    assert!(store.is_access_token_revoked("jti-1").await.unwrap());
    assert_eq!(store.refresh_token("rt", NOW).await.unwrap(), None);
    store.close().await;
}

async fn concurrent_redemptions_of_one_code_have_one_winner(backend: Backend) {
    let (store, _place) = backend.open().await;
    store.add_auth_code(&code("c1", "farm", NOW + 60)).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.redeem_auth_code("c1").await.unwrap() })
        })
        .collect();
    let mut fresh = 0;
    for task in tasks {
        match task.await.unwrap() {
            CodeRedemption::Fresh(_) => fresh += 1,
            CodeRedemption::Reused { .. } => {}
            CodeRedemption::Unknown => panic!("the code exists"),
        }
    }
    assert_eq!(fresh, 1);
    store.close().await;
}

async fn refresh_rotation_stores_the_successor_in_the_same_family(backend: Backend) {
    let (store, _place) = backend.open().await;
    let first = refresh("rt-1", "fam", "farm", NOW + 3600);
    store.add_refresh_token(&first).await.unwrap();
    assert_eq!(store.refresh_token("rt-1", NOW).await.unwrap(), Some(first.clone()));

    let next = refresh("rt-2", "fam", "farm", NOW + 7200);
    assert_eq!(
        store.rotate_refresh_token("rt-1", &next, NOW).await.unwrap(),
        RefreshRotation::Rotated(first)
    );
    assert_eq!(store.refresh_token("rt-1", NOW).await.unwrap(), None, "rotated out");
    assert_eq!(store.refresh_token("rt-2", NOW).await.unwrap(), Some(next.clone()));

    let third = refresh("rt-3", "other-family-ignored", "farm", NOW + 9000);
    assert!(matches!(
        store.rotate_refresh_token("rt-2", &third, NOW).await.unwrap(),
        RefreshRotation::Rotated(_)
    ));
    let stored = store.refresh_token("rt-3", NOW).await.unwrap().unwrap();
    assert_eq!(stored.family_id, "fam", "a successor joins the presented token's family");
    store.close().await;
}

async fn refresh_token_reuse_revokes_family(backend: Backend) {
    let (store, _place) = backend.open().await;
    store.add_refresh_token(&refresh("rt-1", "fam", "farm", NOW + 3600)).await.unwrap();
    store.add_refresh_token(&refresh("other", "fam-other", "farm", NOW + 3600)).await.unwrap();
    let next = refresh("rt-2", "fam", "farm", NOW + 3600);
    assert!(matches!(
        store.rotate_refresh_token("rt-1", &next, NOW).await.unwrap(),
        RefreshRotation::Rotated(_)
    ));

    let replay = refresh("rt-x", "fam", "farm", NOW + 3600);
    assert_eq!(store.rotate_refresh_token("rt-1", &replay, NOW).await.unwrap(), RefreshRotation::Reused);
    assert_eq!(store.refresh_token("rt-2", NOW).await.unwrap(), None, "the successor is revoked");
    assert_eq!(store.refresh_token("rt-x", NOW).await.unwrap(), None, "nothing was stored for the replay");
    let after = refresh("rt-3", "fam", "farm", NOW + 3600);
    assert_eq!(store.rotate_refresh_token("rt-2", &after, NOW).await.unwrap(), RefreshRotation::Invalid);
    assert!(store.refresh_token("other", NOW).await.unwrap().is_some(), "other families are untouched");
    store.close().await;
}

async fn expired_revoked_or_unknown_refresh_tokens_are_invalid(backend: Backend) {
    let (store, _place) = backend.open().await;
    store.add_refresh_token(&refresh("expired", "fam-e", "farm", NOW)).await.unwrap();
    store.add_refresh_token(&refresh("revoked", "fam-r", "farm", NOW + 3600)).await.unwrap();
    store.revoke_refresh_family("fam-r").await.unwrap();

    for presented in ["expired", "revoked", "unknown"] {
        let next = refresh(&format!("next-{presented}"), "fam", "farm", NOW + 3600);
        assert_eq!(
            store.rotate_refresh_token(presented, &next, NOW).await.unwrap(),
            RefreshRotation::Invalid,
            "{presented}"
        );
        assert_eq!(store.refresh_token(presented, NOW).await.unwrap(), None, "{presented}");
        assert_eq!(store.refresh_token(&next.token_hash, NOW).await.unwrap(), None, "{presented}");
    }
    store.close().await;
}

async fn concurrent_rotation_of_one_refresh_token_has_exactly_one_winner(backend: Backend) {
    let (store, _place) = backend.open().await;
    store.add_refresh_token(&refresh("rt", "fam", "farm", NOW + 3600)).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let next = refresh(&format!("rt-next-{i}"), "fam", "farm", NOW + 3600);
                (next.token_hash.clone(), store.rotate_refresh_token("rt", &next, NOW).await.unwrap())
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (next_hash, outcome) = task.await.unwrap();
        match outcome {
            RefreshRotation::Rotated(presented) => {
                assert_eq!(presented.token_hash, "rt");
                winners.push(next_hash);
            }
            RefreshRotation::Reused | RefreshRotation::Invalid => {}
            RefreshRotation::Retry { .. } => panic!("no grace window was asked for"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one caller rotates the token");
    // The losers presented a rotated token: the family, winner included, is revoked.
    assert_eq!(store.refresh_token(&winners[0], NOW).await.unwrap(), None);
    store.close().await;
}

async fn revoked_access_tokens_are_listed(backend: Backend) {
    let (store, _place) = backend.open().await;
    assert!(!store.is_access_token_revoked("jti-1").await.unwrap());
    store.revoke_access_token("jti-1", NOW + 300).await.unwrap();
    store.revoke_access_token("jti-1", NOW + 100).await.unwrap();
    assert!(store.is_access_token_revoked("jti-1").await.unwrap());
    assert!(!store.is_access_token_revoked("jti-2").await.unwrap());

    store.purge_expired(NOW + 200).await.unwrap();
    assert!(store.is_access_token_revoked("jti-1").await.unwrap(), "a second revocation keeps the later exp");
    store.close().await;
}

async fn purge_expired_removes_expired_rows_and_keeps_live_ones(backend: Backend) {
    let (store, _place) = backend.open().await;
    store.add_auth_code(&code("code-old", "farm", NOW - 1)).await.unwrap();
    store.add_auth_code(&code("code-live", "farm", NOW + 60)).await.unwrap();
    store.add_refresh_token(&refresh("rt-old", "f1", "farm", NOW)).await.unwrap();
    store.add_refresh_token(&refresh("rt-live", "f2", "farm", NOW + 3600)).await.unwrap();
    store.add_session(&session("s-old", NOW - 10)).await.unwrap();
    store.add_session(&session("s-live", NOW + 600)).await.unwrap();
    store.revoke_access_token("jti-old", NOW - 5).await.unwrap();
    store.revoke_access_token("jti-live", NOW + 300).await.unwrap();

    assert_eq!(store.purge_expired(NOW).await.unwrap(), 4);
    assert_eq!(store.purge_expired(NOW).await.unwrap(), 0, "nothing left to purge");

    assert_eq!(store.redeem_auth_code("code-old").await.unwrap(), CodeRedemption::Unknown);
    assert!(matches!(store.redeem_auth_code("code-live").await.unwrap(), CodeRedemption::Fresh(_)));
    let next = refresh("rt-next", "f1", "farm", NOW + 3600);
    assert_eq!(
        store.rotate_refresh_token("rt-old", &next, NOW - 100).await.unwrap(),
        RefreshRotation::Invalid
    );
    assert!(store.refresh_token("rt-live", NOW).await.unwrap().is_some());
    assert_eq!(store.session("s-old", "oauth", NOW - 20).await.unwrap(), None);
    assert!(store.session("s-live", "oauth", NOW).await.unwrap().is_some());
    assert!(!store.is_access_token_revoked("jti-old").await.unwrap());
    assert!(store.is_access_token_revoked("jti-live").await.unwrap());
    store.close().await;
}

fn grace(sealed: &[u8], expires_at: i64) -> RefreshGrace {
    RefreshGrace { sealed: sealed.to_vec(), expires_at }
}

async fn a_rotation_with_grace_answers_a_retry_until_the_window_ends(backend: Backend) {
    let (store, _place) = backend.open().await;
    let first = refresh("rt-1", "fam", "farm", NOW + 3600);
    store.add_refresh_token(&first).await.unwrap();
    let next = refresh("rt-2", "fam", "farm", NOW + 3600);
    let kept = grace(b"sealed pair", NOW + 10);
    assert_eq!(
        store.rotate_refresh_token_with_grace("rt-1", &next, Some(&kept), NOW).await.unwrap(),
        RefreshRotation::Rotated(first.clone())
    );

    let retry = refresh("rt-x", "fam", "farm", NOW + 3600);
    assert_eq!(
        store.rotate_refresh_token("rt-1", &retry, NOW + 9).await.unwrap(),
        RefreshRotation::Retry { presented: first.clone(), sealed: b"sealed pair".to_vec() }
    );
    assert!(store.refresh_token("rt-2", NOW + 9).await.unwrap().is_some(), "a retry changes nothing");
    assert_eq!(store.refresh_token("rt-x", NOW + 9).await.unwrap(), None, "nothing stored for it");

    assert_eq!(store.rotate_refresh_token("rt-1", &retry, NOW + 10).await.unwrap(), RefreshRotation::Reused);
    assert_eq!(
        store.refresh_token("rt-2", NOW + 10).await.unwrap(),
        None,
        "after the window: family revoked"
    );
    store.close().await;
}

async fn the_grace_entry_ends_when_its_pair_is_used_or_its_family_revoked(backend: Backend) {
    let (store, _place) = backend.open().await;
    store.add_refresh_token(&refresh("rt-1", "fam", "farm", NOW + 3600)).await.unwrap();
    let second = refresh("rt-2", "fam", "farm", NOW + 3600);
    store.rotate_refresh_token_with_grace("rt-1", &second, Some(&grace(b"a", NOW + 60)), NOW).await.unwrap();
    let third = refresh("rt-3", "fam", "farm", NOW + 3600);
    assert!(matches!(
        store.rotate_refresh_token("rt-2", &third, NOW + 1).await.unwrap(),
        RefreshRotation::Rotated(_)
    ));
    // The pair rt-1's rotation answered is used: presenting rt-1 is a reuse.
    let replay = refresh("rt-x", "fam", "farm", NOW + 3600);
    assert_eq!(store.rotate_refresh_token("rt-1", &replay, NOW + 2).await.unwrap(), RefreshRotation::Reused);
    assert_eq!(store.refresh_token("rt-3", NOW + 2).await.unwrap(), None);

    store.add_refresh_token(&refresh("rt-a", "fam-2", "farm", NOW + 3600)).await.unwrap();
    let b = refresh("rt-b", "fam-2", "farm", NOW + 3600);
    store.rotate_refresh_token_with_grace("rt-a", &b, Some(&grace(b"b", NOW + 60)), NOW).await.unwrap();
    store.revoke_refresh_family("fam-2").await.unwrap();
    assert_eq!(store.rotate_refresh_token("rt-a", &replay, NOW + 1).await.unwrap(), RefreshRotation::Reused);
    store.close().await;
}

async fn concurrent_rotation_with_grace_has_one_winner_and_the_others_retry(backend: Backend) {
    let (store, _place) = backend.open().await;
    store.add_refresh_token(&refresh("rt", "fam", "farm", NOW + 3600)).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let next = refresh(&format!("rt-next-{i}"), "fam", "farm", NOW + 3600);
                let kept = grace(format!("pair-{i}").as_bytes(), NOW + 10);
                let outcome = store.rotate_refresh_token_with_grace("rt", &next, Some(&kept), NOW).await;
                (i, outcome.unwrap())
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut retried = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (i, RefreshRotation::Rotated(_)) => winners.push(i),
            (_, RefreshRotation::Retry { sealed, .. }) => retried.push(sealed),
            (_, other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one caller rotates the token");
    let winner = winners[0];
    assert_eq!(retried.len(), 15);
    assert!(retried.iter().all(|s| *s == format!("pair-{winner}").into_bytes()), "all get the winner's pair");
    let successor = format!("rt-next-{winner}");
    assert!(store.refresh_token(&successor, NOW).await.unwrap().is_some(), "the family lives");
    store.close().await;
}

on_both_backends!(
    ending_sessions_queues_back_channel_logouts_for_their_consumers,
    ending_sessions_revokes_their_refresh_families_but_offline_access,
    a_started_sign_in_is_taken_once,
    a_federated_sign_in_creates_or_updates_the_user_and_its_link,
    recorded_access_tokens_are_revoked_with_their_consumer_or_user,
    a_touched_session_lasts_until_its_new_end,
    admin_tokens_are_found_by_hash_listed_and_deleted,
    current_refresh_tokens_list_one_live_token_per_grant,
    revoking_a_family_revokes_the_access_tokens_issued_with_it,
    concurrent_first_signing_keys_store_one_per_algorithm,
    consumers_round_trip_and_put_replaces,
    delete_consumer_removes_its_codes_and_refresh_tokens_only,
    users_round_trip_and_put_replaces,
    signing_keys_come_back_oldest_first_and_kids_are_unique,
    meta_get_or_insert_keeps_the_first_value,
    meta_value_survives_a_reopen,
    sessions_round_trip_until_they_expire_or_end,
    auth_code_is_redeemed_once_and_reuse_reports_what_it_issued,
    expired_code_is_still_reported_for_the_caller_to_refuse,
    reuse_before_the_issue_is_recorded_revokes_it_when_recorded,
    concurrent_redemptions_of_one_code_have_one_winner,
    refresh_rotation_stores_the_successor_in_the_same_family,
    refresh_token_reuse_revokes_family,
    expired_revoked_or_unknown_refresh_tokens_are_invalid,
    concurrent_rotation_of_one_refresh_token_has_exactly_one_winner,
    revoked_access_tokens_are_listed,
    purge_expired_removes_expired_rows_and_keeps_live_ones,
    a_rotation_with_grace_answers_a_retry_until_the_window_ends,
    the_grace_entry_ends_when_its_pair_is_used_or_its_family_revoked,
    concurrent_rotation_with_grace_has_one_winner_and_the_others_retry,
);

async fn concurrent_first_signing_keys_store_one_per_algorithm(backend: Backend) {
    let (store, _place) = backend.open().await;
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let alg = if i % 2 == 0 { "EdDSA" } else { "RS256" };
                let key = SigningKeyRecord {
                    kid: format!("k{i}"),
                    alg: alg.into(),
                    private_der: vec![i],
                    created_at: NOW,
                };
                store.add_first_signing_key(&key).await.unwrap()
            })
        })
        .collect();
    let mut added = 0;
    for task in tasks {
        added += usize::from(task.await.unwrap());
    }
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(added, 2, "one first key per algorithm");
    let mut algs: Vec<_> = keys.iter().map(|k| k.alg.as_str()).collect();
    algs.sort_unstable();
    assert_eq!(algs, ["EdDSA", "RS256"]);
    store.close().await;
}

async fn ending_sessions_queues_back_channel_logouts_for_their_consumers(backend: Backend) {
    let (store, _place) = backend.open().await;
    let told = ConsumerRecord {
        backchannel_logout_uri: Some("https://app.example/backchannel".into()),
        ..consumer("told")
    };
    store.put_consumer(&told).await.unwrap();
    store.put_consumer(&consumer("silent")).await.unwrap();
    for (id, user) in [("s1", "alice"), ("s2", "alice"), ("s3", "bob")] {
        store.add_session(&SessionRecord { username: user.into(), ..session(id, NOW + 600) }).await.unwrap();
    }
    for (sid, client, user) in [
        ("sid1", "told", "alice"),
        ("sid1", "silent", "alice"),
        ("sid2", "told", "alice"),
        ("sid3", "told", "bob"),
    ] {
        store.record_session_consumer(sid, client, user, NOW + 600).await.unwrap();
    }
    let due = |at| {
        let store = Arc::clone(&store);
        async move {
            let found = store.due_backchannel_logouts(at, 10).await.unwrap();
            found.into_iter().map(|l| (l.sid, l.client_id, l.username, l.attempts)).collect::<Vec<_>>()
        }
    };
    assert!(due(NOW).await.is_empty());

    // One session: only the consumer with a back-channel URI, once.
    store.end_session("s1", "sid1").await.unwrap();
    store.end_session("s1", "sid1").await.unwrap();
    assert!(store.session("s1", "oauth", NOW).await.unwrap().is_none());
    assert!(store.session("s2", "oauth", NOW).await.unwrap().is_some());
    assert_eq!(due(NOW).await, [("sid1".into(), "told".into(), "alice".into(), 0)]);

    // A claim counts the attempt and moves it on; a stale claim loses.
    let pending = store.due_backchannel_logouts(NOW, 10).await.unwrap().remove(0);
    assert!(store.claim_backchannel_logout(&pending, NOW + 10).await.unwrap());
    assert!(!store.claim_backchannel_logout(&pending, NOW + 20).await.unwrap(), "taken already");
    assert!(due(NOW + 9).await.is_empty());
    assert_eq!(due(NOW + 10).await, [("sid1".into(), "told".into(), "alice".into(), 1)]);
    store.delete_backchannel_logout("sid1", "told").await.unwrap();
    assert!(due(NOW + 10).await.is_empty());

    // Every session of a user (sign out everywhere), and a disabled user's.
    store.end_user_sessions("alice").await.unwrap();
    assert!(store.session("s2", "oauth", NOW).await.unwrap().is_none());
    assert!(store.session("s3", "oauth", NOW).await.unwrap().is_some(), "bob's stays");
    assert_eq!(due(NOW).await, [("sid2".into(), "told".into(), "alice".into(), 0)]);
    store.delete_backchannel_logout("sid2", "told").await.unwrap();
    store.end_user_grants("bob").await.unwrap();
    assert!(store.session("s3", "oauth", NOW).await.unwrap().is_none());
    assert_eq!(due(NOW).await, [("sid3".into(), "told".into(), "bob".into(), 0)]);
    store.delete_backchannel_logout("sid3", "told").await.unwrap();

    // What a session recorded is forgotten when the session would have ended.
    store.record_session_consumer("sid4", "told", "bob", NOW + 5).await.unwrap();
    store.purge_expired(NOW + 5).await.unwrap();
    store.end_user_sessions("bob").await.unwrap();
    assert!(due(NOW + 5).await.is_empty());
    store.close().await;
}

async fn ending_sessions_revokes_their_refresh_families_but_offline_access(backend: Backend) {
    let (store, _place) = backend.open().await;
    store.add_session(&session("s1", NOW + 600)).await.unwrap();
    let granted = |hash: &str, family: &str, sid: &str, scope: &str, jti: &str| RefreshTokenRecord {
        sid: Some(sid.into()),
        scope: scope.into(),
        access: Some((jti.into(), NOW + 3600)),
        ..refresh(hash, family, "web", NOW + 600)
    };
    store.add_refresh_token(&granted("r1", "online", "sid1", "openid farm_manager", "jti-1")).await.unwrap();
    // The rotation's successor carries no sid of its own: the family ends all the same.
    let next = RefreshTokenRecord { sid: None, ..granted("r2", "", "sid1", "openid farm_manager", "jti-2") };
    store.rotate_refresh_token("r1", &next, NOW).await.unwrap();
    store
        .add_refresh_token(&granted("o1", "offline", "sid1", "openid offline_access", "jti-o"))
        .await
        .unwrap();
    store
        .add_refresh_token(&granted("x1", "elsewhere", "sid2", "openid farm_manager", "jti-x"))
        .await
        .unwrap();

    store.end_session("s1", "sid1").await.unwrap();
    assert!(store.refresh_token("r2", NOW).await.unwrap().is_none(), "the session's grant ends with it");
    assert!(store.is_access_token_revoked("jti-1").await.unwrap());
    assert!(store.is_access_token_revoked("jti-2").await.unwrap());
    assert!(store.refresh_token("o1", NOW).await.unwrap().is_some(), "offline_access outlives the session");
    assert!(!store.is_access_token_revoked("jti-o").await.unwrap());
    assert!(store.refresh_token("x1", NOW).await.unwrap().is_some(), "another session's grant stays");
    assert!(!store.is_access_token_revoked("jti-x").await.unwrap());

    // Signing the user out everywhere ends the grants of all their sessions,
    // but neither offline_access nor a grant made outside a session.
    let outside = RefreshTokenRecord { sid: None, ..granted("p1", "password", "", "farm_manager", "jti-p") };
    store.add_refresh_token(&outside).await.unwrap();
    store.end_user_sessions("alice").await.unwrap();
    assert!(store.refresh_token("x1", NOW).await.unwrap().is_none());
    assert!(store.is_access_token_revoked("jti-x").await.unwrap());
    assert!(store.refresh_token("o1", NOW).await.unwrap().is_some());
    assert!(store.refresh_token("p1", NOW).await.unwrap().is_some());
    assert!(!store.is_access_token_revoked("jti-p").await.unwrap());
    store.close().await;
}

async fn a_started_sign_in_is_taken_once(backend: Backend) {
    let (store, _place) = backend.open().await;
    let state = LoginStateRecord {
        state_hash: "st1".into(),
        browser_hash: "b1".into(),
        data: r#"{"provider":"corp"}"#.into(),
        expires_at: NOW + 600,
    };
    store.add_login_state(&state).await.unwrap();
    assert_eq!(store.take_login_state("st1", NOW).await.unwrap(), Some(state));
    assert_eq!(store.take_login_state("st1", NOW).await.unwrap(), None, "used");
    assert_eq!(store.take_login_state("unknown", NOW).await.unwrap(), None);
    store.close().await;
}

async fn a_federated_sign_in_creates_or_updates_the_user_and_its_link(backend: Backend) {
    let (store, _place) = backend.open().await;
    let mut user = UserRecord {
        username: "corp:ann@example.org".into(),
        password_hash: String::new(),
        roles: strings(&["farm_viewer"]),
        admin: false,
        permissions: vec![],
        disabled: false,
    };
    let mut link = FederatedIdentityRecord {
        provider: "corp".into(),
        subject: "sub-1".into(),
        username: user.username.clone(),
        email: Some("ann@example.org".into()),
        role_sources: vec![RoleSource { role: "farm_viewer".into(), source: "corp: everyone".into() }],
        last_sign_in: NOW,
    };
    store.save_federated_sign_in(&user, true, &link).await.unwrap();
    assert_eq!(store.user(&user.username).await.unwrap(), Some(user.clone()));
    assert_eq!(store.federated_identity("corp", "sub-1").await.unwrap(), Some(link.clone()));
    assert_eq!(store.federated_identity("other", "sub-1").await.unwrap(), None);

    // The next sign-in: the rules' roles replace the old ones, the link is updated.
    user.roles = strings(&["farm_manager"]);
    user.admin = true;
    user.permissions = strings(&["administer oauth"]);
    link.role_sources = vec![
        RoleSource { role: "farm_manager".into(), source: "corp: groups has managers".into() },
        RoleSource { role: "admin".into(), source: "corp: groups has admins".into() },
    ];
    link.last_sign_in = NOW + 60;
    store.save_federated_sign_in(&user, false, &link).await.unwrap();
    assert_eq!(store.user(&user.username).await.unwrap(), Some(user.clone()));
    assert_eq!(store.federated_identities().await.unwrap(), vec![link]);
    store.close().await;
}
