//! Property tests for every parser a request or a configuration file
//! reaches: no input makes one panic, and none disagrees with a reference
//! (an independent implementation, or what the docs promise) for the
//! generated cases. `PROPTEST_CASES` sets the number of cases per property
//! (256 when unset); each property prints its count, so that CI's output
//! says how much was checked.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tower::{Layer, ServiceExt};

use crate::gate::origin::Origin;
use crate::gate::rules::{Access, DefaultPolicy, PathCase, RouteRule, RouteRules, canonical_path};
use crate::gate::token::{query_token, token_text};
use crate::server::consumer::redirect_uri_matches;
use crate::web::cookie::cookie;

/// Cases per property: `PROPTEST_CASES`, or 256.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

/// Runs `test` on `cases()` values of `strategy`; prints the count.
fn check<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let cases = cases();
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&strategy, test) {
        panic!("property `{name}` failed: {e}");
    }
    println!("property `{name}`: {cases} cases passed");
}

// --- configuration files ---

const BASE_CONFIG: &str = "listen: 127.0.0.1:0
upstream: http://127.0.0.1:9
listener:
  max_connections: 100
  idle_timeout: 60s
proxy:
  timeout: 60s
  max_headers: 100
server:
  refresh_reuse_grace: 10s
  roles:
    viewer: { label: Viewer, description: Reads }
  consumers:
    - client_id: app
      confidential: false
      redirect_uris: [http://127.0.0.1/cb]
      scopes: [viewer]
gate:
  default: deny
  rules:
    - { path: /open/**, public: true }
    - { path: /api/**, scopes: { any_of: [viewer] } }
";

/// Values that are wrong for most fields in one way or another.
const BAD_VALUES: &[&str] = &[
    "-1",
    "abc",
    "[1, 2]",
    "{a: 1}",
    "''",
    "1e99",
    "99999999999999999999",
    "~",
    "yes",
    "${NOPE_UNSET}",
    "10q",
    "\"\\u0000\"",
    "[",
    "{",
    "&a",
    "*a",
    "!!binary x",
    "0s",
    "/x/**/y",
    "http://",
    "5m5m",
];

#[test]
fn config_files_never_panic_and_errors_say_where() {
    // Arbitrary text: no panic; a place named is inside the file.
    check("config: arbitrary YAML-ish text", "[a-z_:\\- \n{}\\[\\],'\"#&*!|>%@0-9$.]{0,200}", |text| {
        if let Err(errors) = crate::config::parse(&text, "p.yaml") {
            let lines = text.lines().count() as u64 + 1;
            for e in &errors.0 {
                prop_assert!(e.line <= lines, "{e} points past the file ({lines} lines)");
            }
        }
        Ok(())
    });
    // One field of a valid file given a wrong value: each error has its
    // line and column.
    let lines: Vec<&str> = BASE_CONFIG.lines().collect();
    if let Err(e) = crate::config::parse(BASE_CONFIG, "p.yaml") {
        panic!("the base file is valid: {e}");
    }
    let strategy = (0..lines.len(), proptest::sample::select(BAD_VALUES));
    check("config: one field with a wrong value", strategy, |(at, bad)| {
        let mut text = String::new();
        for (i, line) in lines.iter().enumerate() {
            match line.split_once(": ") {
                Some((key, _)) if i == at => text.push_str(&format!("{key}: {bad}")),
                _ => text.push_str(line),
            }
            text.push('\n');
        }
        if let Err(errors) = crate::config::parse(&text, "p.yaml") {
            // The note that parsing stopped early has no single place.
            for e in errors.0.iter().filter(|e| !e.message.starts_with("more problems may follow")) {
                prop_assert!(e.line > 0 && e.column > 0, "no line:column in `{e}` for\n{text}");
                let place = format!("p.yaml:{}:{}: ", e.line, e.column);
                prop_assert!(e.to_string().starts_with(&place), "`{e}` starts with {place}");
            }
        }
        Ok(())
    });
}

// --- bearer tokens and JWTs ---

/// RFC 6750 section 2.1, written out again:
/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(bytes: &[u8]) -> bool {
    let body_len = bytes.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    body_len > 0 && bytes[..body_len].iter().all(|&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[test]
fn bearer_tokens_are_accepted_exactly_as_rfc_6750_says() {
    let strategy = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        "[A-Za-z0-9._~+/=\\- %]{0,40}".prop_map(String::into_bytes),
    ];
    check("bearer: b64token syntax", strategy, |bytes| {
        prop_assert_eq!(
            token_text(&bytes).is_ok(),
            is_b64token(&bytes),
            "{:?}",
            String::from_utf8_lossy(&bytes)
        );
        Ok(())
    });
}

#[test]
fn only_the_signed_jwt_passes_the_gate() {
    use crate::gate::{BearerGateLayer, GateSettings, IssuerSettings};
    use crate::server::jwt::{self, ACCESS_TOKEN_TYP, AccessClaims};
    use crate::server::keys::{Alg, KeyRing, generate_record};

    const ISSUER: &str = "https://auth.example.org";
    let now = crate::clock::now();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ring = KeyRing::from_records(
        vec![generate_record(Alg::EdDSA, now).unwrap(), generate_record(Alg::RS256, now).unwrap()],
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    let claims = AccessClaims {
        iss: ISSUER.into(),
        sub: "reporter".into(),
        aud: vec![ISSUER.into()],
        client_id: "reporting".into(),
        scope: "viewer".into(),
        iat: now,
        exp: now + 3600,
        jti: "p".into(),
        auth_time: None,
    };
    let signed: Vec<String> = [Alg::EdDSA, Alg::RS256]
        .into_iter()
        .map(|alg| jwt::sign(&ring, alg, ACCESS_TOKEN_TYP, &claims).unwrap())
        .collect();
    let jwks = ring.jwks();
    let gate = BearerGateLayer::new(
        GateSettings::default()
            .rule(RouteRule::new("/api/**", Access::AnyOf(vec!["viewer".into()])))
            .issuer(IssuerSettings::new(ISSUER, ISSUER).in_process(move || jwks.clone())),
    )
    .unwrap();
    let status = |token: &str| {
        let service = gate.layer(tower::service_fn(|_: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }));
        // A value no client can send (a control character) is left out.
        let value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        let req = Request::get("/api/x").header("authorization", value).body(Body::empty()).ok()?;
        runtime.block_on(service.oneshot(req)).map(|r| r.status().as_u16()).ok()
    };
    for token in &signed {
        assert_eq!(status(token), Some(200), "the signed token passes");
    }
    // One character replaced, a part dropped or swapped, or any text: only
    // the signed tokens themselves pass, and nothing is a server error.
    let b64 = "[A-Za-z0-9_\\-.=]";
    let strategy =
        (0..signed.len(), any::<usize>(), proptest::string::string_regex(b64).unwrap(), 0..4u8, ".{0,80}");
    check("jwt: altered tokens are refused", strategy, |(which, at, with, how, text)| {
        let token = &signed[which];
        let altered = match how {
            0 => {
                let at = at % token.len();
                format!("{}{with}{}", &token[..at], &token[at + 1..])
            }
            1 => {
                let parts: Vec<&str> = token.split('.').collect();
                format!("{}.{}.{}", parts[1], parts[0], parts[2])
            }
            2 => token[..at % token.len()].to_owned(),
            _ => text,
        };
        let Some(got) = status(&altered) else { return Ok(()) };
        if signed.contains(&altered) {
            prop_assert_eq!(got, 200);
        } else {
            prop_assert!(got == 401 || got == 400, "{got} for {altered:?}");
        }
        Ok(())
    });
}

// --- redirect URIs, origins ---

fn uri_part() -> impl Strategy<Value = (String, String, Option<u16>, String)> {
    (
        proptest::sample::select(vec!["http", "https"]),
        proptest::sample::select(vec!["127.0.0.1", "[::1]", "localhost", "example.com", "127.0.0.2"]),
        proptest::option::of(0u16..=65535),
        proptest::sample::select(vec!["", "/", "/cb", "/cb?x=1", "?x=1", "/cb/", "/a b", "#f"]),
    )
        .prop_map(|(s, h, p, r)| (s.to_owned(), h.to_owned(), p, r.to_owned()))
}

fn write_uri((scheme, host, port, rest): &(String, String, Option<u16>, String)) -> String {
    match port {
        Some(p) => format!("{scheme}://{host}:{p}{rest}"),
        None => format!("{scheme}://{host}{rest}"),
    }
}

#[test]
fn redirect_uris_match_exactly_or_on_loopback_with_any_port() {
    check("redirect URI: model of RFC 9700 4.1.3 and RFC 8252 7.3", (uri_part(), uri_part()), |(a, b)| {
        let (registered, presented) = (write_uri(&a), write_uri(&b));
        let loopback = |u: &(String, String, Option<u16>, String)| {
            u.0 == "http" && (u.1 == "127.0.0.1" || u.1 == "[::1]") && !u.3.starts_with('#')
        };
        let path = |r: &str| if r.is_empty() { "/".to_owned() } else { r.to_owned() };
        let expected = registered == presented
            || (loopback(&a) && loopback(&b) && a.1 == b.1 && path(&a.3) == path(&b.3));
        prop_assert_eq!(
            redirect_uri_matches(&registered, &presented),
            expected,
            "{} ~ {}",
            registered,
            presented
        );
        Ok(())
    });
    check("redirect URI: arbitrary text", (".{0,40}", ".{0,40}"), |(a, b)| {
        prop_assert_eq!(redirect_uri_matches(&a, &a), true);
        let _ = redirect_uri_matches(&a, &b);
        Ok(())
    });
}

#[test]
fn origins_normalise_as_the_url_standard_does() {
    let host = "[a-zA-Z0-9]([a-zA-Z0-9\\-]{0,10}[a-zA-Z0-9])?(\\.[a-zA-Z0-9]{1,8}){0,2}";
    let strategy = (
        proptest::sample::select(vec!["http", "https", "HTTP", "HtTpS"]),
        host,
        proptest::option::of(1u16..=65535),
    );
    check("origin: against the url crate", strategy, |(scheme, host, port)| {
        let text = match port {
            Some(p) => format!("{scheme}://{host}:{p}"),
            None => format!("{scheme}://{host}"),
        };
        let reference = url::Url::parse(&text).ok().map(|u| u.origin().ascii_serialization());
        let ours = Origin::parse(&text).map(|o| o.as_str().to_owned());
        // A host whose last label is a number (`1`, `0x1f`) is an IPv4
        // address to the URL standard (written otherwise, or refused);
        // browsers send no such Origin, and those are left out.
        let number = |l: &str| match l.strip_prefix("0x").or_else(|| l.strip_prefix("0X")) {
            Some(hex) => hex.chars().all(|c| c.is_ascii_hexdigit()),
            None => l.chars().all(|c| c.is_ascii_digit()),
        };
        // Punycode labels (`xn--`) are checked by IDNA there, not here.
        let punycode = host.split('.').any(|l| l.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("xn--")));
        if host.rsplit('.').next().is_some_and(number) || punycode {
            return Ok(());
        }
        prop_assert_eq!(ours, reference, "{}", text);
        Ok(())
    });
    check("origin: arbitrary text", ".{0,60}", |text| {
        if let Some(o) = Origin::parse(&text) {
            prop_assert_eq!(Origin::parse(o.as_str()), Some(o.clone()), "normalising twice changes nothing");
        }
        Ok(())
    });
}

// --- form and query decoding ---

#[test]
fn query_tokens_decode_as_form_urlencoding_does() {
    let strategy = "[A-Za-z0-9%+._~/=\\-]{0,30}";
    check("query: access_token against url::form_urlencoded", strategy, |raw| {
        let query = format!("a=1&access_token={raw}&b=2");
        let reference: Option<String> = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v.into_owned());
        match query_token(&query) {
            Ok(Some(token)) => prop_assert_eq!(Some(token.into_owned()), reference),
            Ok(None) => prop_assert!(false, "the parameter was there"),
            Err(_) => {
                // Refused: a broken escape (the reference passes it through)
                // or not a b64token once decoded.
                let broken = raw.match_indices('%').any(|(i, _)| {
                    raw.get(i + 1..i + 3).is_none_or(|h| !h.bytes().all(|b| b.is_ascii_hexdigit()))
                });
                let reference = reference.unwrap_or_default();
                prop_assert!(broken || !is_b64token(reference.as_bytes()), "{raw:?} refused");
            }
        }
        Ok(())
    });
}

// --- paths and rules ---

fn path() -> impl Strategy<Value = String> {
    let segment = proptest::sample::select(vec![
        "a", "api", "open", "API", "Open", "..", ".", "%2e", "%2E", "%2e%2e", "%2f", "%5c", ";x", "..;",
        "%41", "%6Fpen", "", "%", "%zz", "é", "%C3%A9", "x;v=1", "%7e", "%00",
    ]);
    (proptest::collection::vec(segment, 0..6), any::<bool>(), any::<bool>()).prop_map(
        |(parts, lead, trail)| {
            let mut p = if lead { String::from("/") } else { String::new() };
            p.push_str(&parts.join("/"));
            if trail {
                p.push('/');
            }
            p
        },
    )
}

#[test]
fn the_upstream_gets_a_canonical_path_that_matches_the_rule_that_allowed_it() {
    let rules = [
        RouteRule::public("/open/**"),
        RouteRule::new("/api/admin/**", Access::AnyOf(vec!["admin".into()])),
        RouteRule::new("/api/**", Access::AnyOf(vec!["viewer".into()])),
        RouteRule::public("/a/{name}"),
    ];
    for case in [PathCase::Sensitive, PathCase::Insensitive] {
        let compiled = RouteRules::compile(&rules, DefaultPolicy::Deny).unwrap().path_case(case);
        check(&format!("path: canonical and judged alike ({case:?})"), path(), |p| {
            let canonical = match canonical_path(&p) {
                Ok(Some(c)) => c,
                Ok(None) => p.clone(),
                Err(_) => {
                    prop_assert!(compiled.find(&Method::GET, &p).is_err(), "refused alike");
                    return Ok(());
                }
            };
            prop_assert_eq!(canonical_path(&canonical), Ok(None), "{} -> {} is canonical", p, canonical);
            let judged = compiled.find(&Method::GET, &p).map(|r| r.index());
            let sent = compiled.find(&Method::GET, &canonical).map(|r| r.index());
            prop_assert_eq!(judged, sent, "{} judged, {} sent upstream", p, canonical);
            Ok(())
        });
    }
}

// --- cookies ---

#[test]
fn cookies_are_read_as_the_first_pair_of_that_name() {
    let pair = (proptest::sample::select(vec!["sid", "csrf", "a", "SID", "s id"]), "[A-Za-z0-9_\\-=.]{0,12}");
    let strategy = (
        proptest::collection::vec(pair, 0..6),
        0..3usize,
        proptest::sample::select(vec!["sid", "csrf", "x"]),
    );
    check("cookie: against a plain reading of RFC 6265 5.4", strategy, |(pairs, headers, name)| {
        let mut map = HeaderMap::new();
        let split = pairs.len().div_ceil(headers.max(1));
        for chunk in pairs.chunks(split.max(1)) {
            let line = chunk.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ");
            map.append(http::header::COOKIE, HeaderValue::from_str(&line).unwrap());
        }
        let reference: HashMap<&str, &str> = pairs.iter().rev().map(|(n, v)| (*n, v.as_str())).collect();
        prop_assert_eq!(cookie(&map, name), reference.get(name).copied(), "{:?}", pairs);
        Ok(())
    });
}
