//! `oauth-sidecar check-config` on the `gate:` section, black box: bad
//! rules at their line and column, shadowed rules as warnings.

use std::process::{Command, Output};

fn check(yaml: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sidecar.yaml"), yaml).unwrap();
    Command::new(env!("CARGO_BIN_EXE_oauth-sidecar"))
        .current_dir(dir.path())
        .env_remove("OAUTH_SIDECAR_CONFIG")
        .args(["check-config", "sidecar.yaml"])
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn shadowed_rules_are_reported_as_warnings() {
    let out = check(
        "gate:
  issuers:
    - { issuer: https://auth.example.test }
  rules:
    - { path: /api/**, scopes: { any_of: [read] } }
    - { path: /health, public: true }
    - { path: '/api/items/{id}', methods: [GET], public: true }
    - { path: /health, methods: [GET], public: true }
",
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "warnings do not refuse the file: {}", text(&out.stderr));
    assert!(
        stdout.contains(
            "warning: sidecar.yaml:7:15: gate.rules[2]: this rule never matches: gate.rules[0] (/api/**) comes first"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("sidecar.yaml:8:15: gate.rules[3]: this rule never matches: gate.rules[1] (/health)"),
        "{stdout}"
    );
    assert!(stdout.contains("gate:       4 rules, default deny, 1 other issuers"), "{stdout}");
}

#[test]
fn bad_rules_are_refused_at_their_place() {
    let out = check(
        "gate:
  rules:
    - { path: api/** }
    - { path: /a/**/b }
    - { path: /b, methods: [G E T] }
    - { path: /c, public: true, scopes: { any_of: [x] } }
    - { path: /d, scopes: { any_of: [x], all_of: [y] } }
  algorithms: [RS256, HS256]
  identity_headers: { subject: \"bad header\" }
  issuers:
    - { issuer: not-a-url }
  jwks_min_interval: 10m
",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for expected in [
        "sidecar.yaml:3:15: gate.rules[0].path: `api/**` is not a path pattern",
        "sidecar.yaml:4:15: gate.rules[1].path: `/a/**/b`: `**` may only be the last segment",
        "gate.rules[2].methods: `G E T` is not an HTTP method",
        "gate.rules[3].scopes: a rule is either `public: true` or needs `scopes`",
        "gate.rules[4].scopes: give one non-empty list",
        "gate.algorithms: `HS256` is not an accepted algorithm",
        "gate.identity_headers.subject: `bad header` is not a header name",
        "gate.issuers[0].issuer: `not-a-url` is not an absolute URL",
        "gate.jwks_min_interval: gate.jwks_min_interval (10m) is longer than gate.jwks_refresh (5m)",
    ] {
        assert!(stderr.contains(expected), "missing `{expected}` in:\n{stderr}");
    }
}

#[test]
fn a_gate_without_any_issuer_is_warned_about() {
    let out = check("gate:\n  rules:\n    - { path: /api/** }\n");
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("no token can pass the gate"), "{}", text(&out.stdout));
}
