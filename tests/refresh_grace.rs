//! The refresh grace window at its default, over real sockets with the real
//! binary, on SQLite and PostgreSQL: two simultaneous refreshes of one
//! refresh token (two tabs, a retry racing the original) both get 200 with
//! the same new pair, and the family stays valid; a reuse once the window
//! is over (here: once the new pair has been used) still revokes the family
//! (RFC 9700 section 4.14.2).

mod common;

use std::sync::Arc;

use common::post_form;
use common::stores::Backend;
use serde_json::Value;

const LEGACY: (&str, &str) = ("legacy", "legacy-secret-0123456789");

async fn refresh(sidecar: &common::Sidecar, token: &str) -> (u16, Value) {
    post_form(
        &sidecar.url("/oauth/token"),
        LEGACY,
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
    )
    .await
}

async fn two_simultaneous_refreshes_of_one_token_get_the_same_pair(backend: Backend) {
    let place = backend.place().await;
    let sidecar = Arc::new(common::start_on_store(&place.url(), common::LEGACY_SERVER));
    let (status, tokens) = post_form(
        &sidecar.url("/oauth/token"),
        LEGACY,
        &[("grant_type", "password"), ("username", "alice"), ("password", "alice-password")],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();

    let start = Arc::new(tokio::sync::Barrier::new(2));
    let requests: Vec<_> = (0..2)
        .map(|_| {
            let (sidecar, first, start) = (sidecar.clone(), first.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                refresh(&sidecar, &first).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }
    for (status, body) in &answers {
        assert_eq!(*status, 200, "both refreshes succeed: {body}");
    }
    let (a, b) = (&answers[0].1, &answers[1].1);
    assert_eq!(a["access_token"], b["access_token"], "the same access token");
    assert_eq!(a["refresh_token"], b["refresh_token"], "the same refresh token");
    let second = a["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);

    // The family stays valid: the new refresh token works.
    let (status, next) = refresh(&sidecar, &second).await;
    assert_eq!(status, 200, "the shared pair is usable: {next}");

    // Its pair used, the first token is a reuse after all: the family goes.
    let (status, body) = refresh(&sidecar, &first).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    let (status, body) = refresh(&sidecar, next["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "the family is revoked: {body}"
    );
}

on_both_backends!(two_simultaneous_refreshes_of_one_token_get_the_same_pair);
