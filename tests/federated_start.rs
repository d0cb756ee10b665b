//! Starting a sign-in through an outside provider stores a state until it
//! is used or expires, for anyone who asks: an address that starts many and
//! completes none is refused for a while, on the real binary.

mod common;

use common::Sidecar;

const PROVIDER: &str = "server:
  login_attempts_per_address: 3
  roles:
    farm_viewer: { label: Viewer }
  login:
    providers:
      - name: corp
        provider: oidc
        issuer: http://127.0.0.1:9/
        client_id: sidecar
        client_secret: corp-secret-0123456789
        allow: { everyone: true }
";

#[tokio::test]
async fn an_address_that_starts_many_sign_ins_is_refused_for_a_while() {
    let sidecar = Sidecar::start(&format!("upstream: http://127.0.0.1:9\n{PROVIDER}"));
    let client = common::client();
    let start = sidecar.url("/oauth/login/start?provider=corp");
    for n in 0..3 {
        let res = client.get(&start).send().await.unwrap();
        // The provider cannot be reached: each start ends on a page, but
        // it was counted.
        assert_ne!(res.status(), 429, "start {n}");
    }
    let res = client.get(&start).send().await.unwrap();
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 15 * 60, "{retry}");
    assert!(res.text().await.unwrap().contains("Too many sign-ins"));
    // The admin pages' sign-in counts the same address on its own.
    let res = client.get(sidecar.url("/admin/login/start?provider=corp")).send().await.unwrap();
    assert_ne!(res.status(), 429);
}
