//! Guessing and exhaustion at the token endpoint, over real sockets with the
//! real binary: parallel password guesses through the `password` grant meet
//! the sign-in throttle, and floods of wrong client secrets for an
//! argon2-hashed consumer neither blow up the memory nor stall `/healthz`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Sidecar;
use serde_json::Value;

const USERS: &str = r#"
server:
  login_window: 3s
  consumers:
    - client_id: app
      confidential: false
      grant_types: [password]
  users:
    - username: alice
      password: alice-password
"#;

fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish()
}

/// A password grant for `alice` through the public consumer `app`: the
/// status, `Retry-After` and the JSON body.
async fn password_grant(
    http: &reqwest::Client,
    sidecar: &Sidecar,
    password: &str,
) -> (u16, Option<u64>, Value) {
    let res = http
        .post(sidecar.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "password"),
            ("client_id", "app"),
            ("username", "alice"),
            ("password", password),
        ]))
        .send()
        .await
        .expect("token request");
    let status = res.status().as_u16();
    let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().expect("seconds"));
    (status, retry_after, res.json().await.expect("JSON body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_password_guesses_are_checked_at_most_login_attempts_times() {
    let sidecar = Sidecar::start(USERS);
    let http = common::client();
    let guesses = (0..20).map(|i| {
        let (http, sidecar) = (http.clone(), &sidecar);
        async move { password_grant(&http, sidecar, &format!("guess-{i}")).await }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let checked = answers.iter().filter(|(status, ..)| *status == 400).count();
    assert!(checked <= 5, "server.login_attempts is 5, yet {checked} guesses were checked: {answers:?}");
    for (status, retry_after, body) in &answers {
        match status {
            400 => assert_eq!(body["error"], "invalid_grant"),
            429 => {
                assert_eq!(body["error"], "slow_down", "{body}");
                assert!(body["error_description"].is_string());
                assert!(retry_after.is_some_and(|s| (1..=3).contains(&s)), "Retry-After: {retry_after:?}");
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(answers.iter().any(|(status, ..)| *status == 429), "20 guesses and none refused");

    let (status, retry_after, body) = password_grant(&http, &sidecar, "alice-password").await;
    assert_eq!(status, 429, "the right password is refused while the account is blocked: {body}");
    let wait = retry_after.expect("Retry-After");
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(300)).await;
    let (status, _, body) = password_grant(&http, &sidecar, "alice-password").await;
    assert_eq!(status, 200, "the window ended: {body}");
    assert!(body["access_token"].is_string());
}

/// A confidential consumer whose secret is set by hand in the file, so it
/// is stored as an argon2 hash.
fn flood_config(attempts: u32) -> String {
    format!(
        r#"
server:
  login_attempts: {attempts}
  login_attempts_per_address: {attempts}
  consumers:
    - client_id: reporting
      secret: reporting-secret-set-by-hand
      grant_types: [client_credentials]
"#
    )
}

/// Sends 500 parallel token requests with wrong secrets for `reporting`
/// while polling `/healthz`; returns the statuses with their `Retry-After`,
/// the slowest `/healthz` answer and the sidecar's peak RSS in KiB.
async fn flood_wrong_secrets(sidecar: &Sidecar) -> (Vec<(u16, Option<String>)>, Duration, u64) {
    let http = common::client();
    let done = Arc::new(AtomicBool::new(false));
    let health = {
        let (done, url) = (done.clone(), sidecar.url("/healthz"));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            while !done.load(Ordering::Relaxed) {
                let started = Instant::now();
                let res = http.get(&url).send().await.expect("/healthz answers");
                assert_eq!(res.status(), 200);
                slowest = slowest.max(started.elapsed());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            slowest
        })
    };
    let requests = (0..500).map(|i| {
        let (http, url) = (http.clone(), sidecar.url("/oauth/token"));
        async move {
            let res = http
                .post(url)
                .basic_auth("reporting", Some(format!("wrong-secret-{i}")))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials")
                .send()
                .await
                .expect("token request");
            let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            (res.status().as_u16(), retry_after)
        }
    });
    let answers = futures_util::future::join_all(requests).await;
    done.store(true, Ordering::Relaxed);
    let slowest = health.await.expect("health poller");
    (answers, slowest, sidecar.peak_rss_kib())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_wrong_client_secrets_is_throttled_and_bounded() {
    let sidecar = Sidecar::start(&flood_config(5));
    let (answers, slowest, peak_kib) = flood_wrong_secrets(&sidecar).await;
    eprintln!("throttled flood: peak RSS {peak_kib} KiB, slowest /healthz {slowest:?}");
    let checked = answers.iter().filter(|(status, _)| *status == 401).count();
    assert!(checked <= 5, "{checked} wrong secrets were checked with argon2");
    for (status, retry_after) in &answers {
        assert!(matches!(status, 401 | 429), "status {status}");
        if *status == 429 {
            assert!(retry_after.is_some(), "429 without Retry-After");
        }
    }
    assert!(peak_kib < 200 * 1024, "peak RSS {peak_kib} KiB");
    assert!(slowest < Duration::from_secs(1), "/healthz took {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn argon2_checks_beyond_the_cores_wait_then_get_503() {
    // Limits high enough that the throttle refuses nothing: only the bound
    // on concurrent argon2 checks stands between the flood and the cores.
    let sidecar = Sidecar::start(&flood_config(10_000));
    let (answers, slowest, _) = flood_wrong_secrets(&sidecar).await;
    for (status, retry_after) in &answers {
        assert!(matches!(status, 401 | 503), "status {status}");
        if *status == 503 {
            assert!(retry_after.is_some(), "503 without Retry-After");
        }
    }
    assert!(slowest < Duration::from_secs(1), "/healthz took {slowest:?}");
}
