//! Route rules: which requests need a token, and which scopes.
//!
//! Rules are ordered; the first one whose path pattern and methods match a
//! request decides. A pattern is a list of `/`-separated segments: a literal
//! (`api`), `{name}` (exactly one segment, whatever it holds) or `**` (only
//! last: any tail, also none, so `/api/**` matches `/api` too).
//!
//! Patterns are compiled once ([`RouteRules::compile`]); matching walks the
//! request path in place, without allocating. Before matching, a request's
//! path is made canonical ([`canonical_path`]) so that the gate and the
//! upstream cannot disagree about what it names, and the upstream is sent
//! that canonical path, the one the rules judged:
//!
//! - empty segments are dropped (`//api` is `/api`) and escapes of
//!   unreserved characters decoded (`/%61pi` is `/api`);
//! - `;` starts a segment's parameters (`/api;jsessionid=1/x`): the rules
//!   judge the segment's name before it, as Tomcat and Jetty resolve it, and
//!   the parameters are passed on as sent;
//! - a path with a `.` or `..` segment in any spelling (`%2e`, `%2E`, with
//!   parameters as in `..;` or `.;x`), a segment with parameters but no name,
//!   an encoded `/` or `\`, a raw `\`, a NUL or a broken escape is refused
//!   ([`PathError`], 400), since an upstream may resolve it to another path.
//!
//! With `gate.path_case: insensitive` ([`PathCase`]), for upstreams that
//! ignore case, literals match in any ASCII case (`/API/x` is under `/api/**`).
//!
//! ```
//! use oauth_sidecar::gate::rules::{Access, DefaultPolicy, RouteRule, RouteRules};
//!
//! let rules = RouteRules::compile(
//!     &[
//!         RouteRule::public("/healthcheck"),
//!         RouteRule::new("/api/**", Access::AnyOf(vec!["farm_viewer".into()])).methods(["GET"]),
//!         RouteRule::new("/api/**", Access::AnyOf(vec!["farm_manager".into()])),
//!     ],
//!     DefaultPolicy::Deny,
//! )
//! .unwrap();
//! let get: http::Method = "GET".parse().unwrap();
//! let post: http::Method = "POST".parse().unwrap();
//! assert_eq!(rules.find(&get, "/api/log/1").unwrap().index(), Some(1));
//! assert_eq!(rules.find(&post, "/api/log/1").unwrap().index(), Some(2));
//! assert_eq!(rules.find(&get, "/other").unwrap().index(), None); // the default
//! assert!(rules.find(&get, "/healthcheck/../api").is_err());
//! assert!(rules.find(&get, "/healthcheck/..;/api").is_err());
//! ```

use std::fmt;
use std::sync::Arc;

use http::Method;

use super::upstream::UpstreamToken;

pub use crate::config::gate::{DefaultPolicy, PathCase};

/// What a rule asks of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No token needed and none checked (the gate is off for the route).
    Public,
    /// Any valid token.
    Authenticated,
    /// A valid token with at least one of these scopes.
    AnyOf(Vec<String>),
    /// A valid token with every one of these scopes.
    AllOf(Vec<String>),
    /// Refused (403), token or not.
    Deny,
}

/// One route rule, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    /// The path pattern (see the module docs).
    pub path: String,
    /// Methods it applies to (upper case); empty: all. `GET` covers `HEAD`.
    pub methods: Vec<String>,
    /// What it asks.
    pub access: Access,
    /// Accept `?access_token=` on this route (RFC 6750 section 2.3).
    pub allow_query_token: bool,
    /// Accept a form-body `access_token` on this route (RFC 6750 section 2.2).
    pub allow_form_token: bool,
    /// The provider token the upstream gets on this route, instead of the
    /// caller's `Authorization` ([`super::upstream`]).
    pub upstream_token: Option<Arc<UpstreamToken>>,
}

impl RouteRule {
    /// A rule for every method of `path`, tokens only in the header.
    pub fn new(path: impl Into<String>, access: Access) -> Self {
        RouteRule {
            path: path.into(),
            methods: Vec::new(),
            access,
            allow_query_token: false,
            allow_form_token: false,
            upstream_token: None,
        }
    }

    /// A public rule: no token checked.
    pub fn public(path: impl Into<String>) -> Self {
        Self::new(path, Access::Public)
    }

    /// Limits the rule to these methods.
    pub fn methods<I: IntoIterator<Item = S>, S: Into<String>>(mut self, methods: I) -> Self {
        self.methods = methods.into_iter().map(|m| m.into().to_ascii_uppercase()).collect();
        self
    }

    /// Also accepts the token in the query string.
    pub fn allow_query_token(mut self) -> Self {
        self.allow_query_token = true;
        self
    }

    /// Also accepts the token in a form body.
    pub fn allow_form_token(mut self) -> Self {
        self.allow_form_token = true;
        self
    }

    /// Sends the upstream this provider token instead of the caller's
    /// `Authorization`.
    pub fn upstream_token(mut self, token: UpstreamToken) -> Self {
        self.upstream_token = Some(Arc::new(token));
        self
    }
}

/// A rule that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {index} ({path}): {message}")]
pub struct RuleError {
    /// The rule's position, from 0.
    pub index: usize,
    /// Its path pattern.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Param,
    Tail,
}

/// A compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Box<[Segment]>,
}

impl PathPattern {
    /// Parses a pattern; the error says what is wrong with it.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if !pattern.starts_with('/') {
            return Err(format!("`{pattern}` is not a path pattern: it must start with `/`"));
        }
        if pattern.contains(['?', '#']) {
            return Err(format!("`{pattern}` has a query or fragment: a pattern is a path only"));
        }
        let parts: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let segment = if *part == "**" {
                if i + 1 != parts.len() {
                    return Err(format!("`{pattern}`: `**` may only be the last segment"));
                }
                Segment::Tail
            } else if part.starts_with('{') && part.ends_with('}') && part.len() > 2 {
                let name = &part[1..part.len() - 1];
                if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!(
                        "`{pattern}`: `{part}` is not a parameter name (letters, digits, `_`)"
                    ));
                }
                Segment::Param
            } else if part.contains(['{', '}', '*']) {
                return Err(format!(
                    "`{pattern}`: `{part}`: a segment is a literal, a whole `{{name}}` or a final `**`"
                ));
            } else if part.contains(';') {
                return Err(format!(
                    "`{pattern}`: `{part}`: `;` starts a segment's parameters, which rules do not look at"
                ));
            } else if *part == "." || *part == ".." {
                return Err(format!(
                    "`{pattern}`: `.` and `..` segments never match (such paths are refused)"
                ));
            } else {
                let mut decoded = Vec::new();
                if !decode_segment(part, &mut decoded) {
                    return Err(format!("`{pattern}`: `{part}` has a broken or forbidden percent escape"));
                }
                let text = String::from_utf8(decoded).map_err(|_| format!("`{pattern}`: not UTF-8"))?;
                Segment::Literal(text.into_boxed_str())
            };
            segments.push(segment);
        }
        Ok(PathPattern { segments: segments.into_boxed_slice() })
    }

    /// True when the pattern matches `path`, which [`check_path`] accepted.
    fn matches(&self, path: &str, case: PathCase) -> bool {
        let mut parts = path.split('/').filter(|s| !s.is_empty()).map(segment_name);
        for segment in self.segments.iter() {
            match segment {
                Segment::Tail => return true,
                Segment::Param => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(lit) => match parts.next() {
                    Some(part) if decoded_eq(part, lit, case) => {}
                    _ => return false,
                },
            }
        }
        parts.next().is_none()
    }

    /// True when every path `other` matches, `self` matches too.
    fn covers(&self, other: &PathPattern) -> bool {
        let mut i = 0;
        loop {
            match (self.segments.get(i), other.segments.get(i)) {
                (Some(Segment::Tail), _) => return true,
                (None, None) => return true,
                (None, Some(_)) | (Some(_), None) => return false,
                (Some(_), Some(Segment::Tail)) => return false,
                (Some(Segment::Param), Some(_)) => {}
                (Some(Segment::Literal(a)), Some(Segment::Literal(b))) if a == b => {}
                (Some(Segment::Literal(_)), Some(_)) => return false,
            }
            i += 1;
        }
    }
}

/// Why a request path is refused before any rule is consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `.` or `..` segment, plain, percent-encoded or with parameters.
    #[error("the path has a `.` or `..` segment (also as `%2e` or with `;` parameters)")]
    DotSegment,
    /// An encoded `/`, `\` or NUL, a raw `\`, or a broken percent escape.
    #[error("the path has a backslash or a forbidden or broken percent escape")]
    BadEscape,
    /// A segment with `;` parameters but no name (`/;x/api`).
    #[error("the path has a segment with `;` parameters but no name")]
    NamelessParams,
}

/// The part of a segment the rules judge: before its `;` parameters.
fn segment_name(part: &str) -> &str {
    part.split_once(';').map_or(part, |(name, _)| name)
}

/// True for the characters RFC 3986 calls unreserved: their escapes are
/// decoded in the canonical path.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Checks one non-empty segment; true when it has an escape the canonical
/// path decodes.
fn check_segment(part: &str) -> Result<bool, PathError> {
    if part.contains('\\') {
        return Err(PathError::BadEscape);
    }
    let name_len = segment_name(part).len();
    if name_len == 0 {
        return Err(PathError::NamelessParams);
    }
    let mut decodable = false;
    let (mut dots, mut len) = (0usize, 0usize);
    let bytes = part.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let in_name = i < name_len;
        let b = if bytes[i] == b'%' {
            let byte = hex_pair(bytes.get(i + 1..i + 3)).ok_or(PathError::BadEscape)?;
            if matches!(byte, b'/' | b'\\' | 0) {
                return Err(PathError::BadEscape);
            }
            decodable |= unreserved(byte);
            i += 3;
            byte
        } else {
            i += 1;
            bytes[i - 1]
        };
        if in_name {
            len += 1;
            dots += usize::from(b == b'.');
        }
    }
    if len == dots && len <= 2 {
        return Err(PathError::DotSegment);
    }
    Ok(decodable)
}

/// Checks a path; true when its canonical form differs from it.
fn scan(path: &str) -> Result<bool, PathError> {
    let mut rewrite = false;
    let count = path.split('/').count();
    for (i, part) in path.split('/').enumerate() {
        if part.is_empty() {
            // Only the leading `/` and a trailing one are kept.
            rewrite |= i != 0 && i + 1 != count;
            continue;
        }
        rewrite |= check_segment(part)?;
    }
    Ok(rewrite && path.starts_with('/'))
}

/// Checks a request path (see the module docs), without allocating.
pub fn check_path(path: &str) -> Result<(), PathError> {
    scan(path).map(drop)
}

/// The canonical form of a request path (see the module docs): `None` when
/// the path already is (most paths: then nothing is allocated), else the
/// path to judge and to send on; refused as [`check_path`] refuses.
pub fn canonical_path(path: &str) -> Result<Option<String>, PathError> {
    if !scan(path)? {
        return Ok(None);
    }
    let mut out = String::with_capacity(path.len());
    for part in path.split('/').filter(|p| !p.is_empty()) {
        out.push('/');
        let bytes = part.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match hex_pair(bytes.get(i + 1..i + 3)).filter(|b| bytes[i] == b'%' && unreserved(*b)) {
                Some(b) => {
                    out.push(char::from(b));
                    i += 3;
                }
                None => {
                    let len = if bytes[i] == b'%' { 3 } else { 1 };
                    // Escapes and ASCII stay as written; a UTF-8 sequence is
                    // copied whole.
                    let end =
                        (i + len..=bytes.len()).find(|&e| part.is_char_boundary(e)).unwrap_or(bytes.len());
                    out.push_str(&part[i..end]);
                    i = end;
                }
            }
        }
    }
    if out.is_empty() || path.ends_with('/') {
        out.push('/');
    }
    Ok(Some(out))
}

fn hex_pair(pair: Option<&[u8]>) -> Option<u8> {
    let pair = pair?;
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

/// Percent-decodes one segment into `out`; false on a broken escape or an
/// encoded `/`, `\` or NUL.
fn decode_segment(part: &str, out: &mut Vec<u8>) -> bool {
    let bytes = part.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            match hex_pair(bytes.get(i + 1..i + 3)) {
                Some(b) if !matches!(b, b'/' | b'\\' | 0) => out.push(b),
                _ => return false,
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    true
}

/// Compares a raw path segment, decoding escapes on the fly, with a literal;
/// in any ASCII case when `case` says so.
fn decoded_eq(raw: &str, literal: &str, case: PathCase) -> bool {
    let same = |a: u8, b: u8| match case {
        PathCase::Sensitive => a == b,
        PathCase::Insensitive => a.eq_ignore_ascii_case(&b),
    };
    if !raw.contains('%') {
        return raw.len() == literal.len() && raw.bytes().zip(literal.bytes()).all(|(a, b)| same(a, b));
    }
    let raw = raw.as_bytes();
    let lit = literal.as_bytes();
    let (mut i, mut j) = (0, 0);
    while i < raw.len() {
        let b = if raw[i] == b'%' {
            match hex_pair(raw.get(i + 1..i + 3)) {
                Some(b) => {
                    i += 3;
                    b
                }
                None => return false,
            }
        } else {
            i += 1;
            raw[i - 1]
        };
        if !lit.get(j).is_some_and(|l| same(b, *l)) {
            return false;
        }
        j += 1;
    }
    j == lit.len()
}

/// A compiled rule: what the gate consults per request.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    index: Option<usize>,
    pattern: Option<PathPattern>,
    methods: Option<Box<[Method]>>,
    pub(crate) access: Access,
    pub(crate) allow_query_token: bool,
    pub(crate) allow_form_token: bool,
    /// The `scope` parameter of a 403 (`a b`).
    pub(crate) scope_param: Box<str>,
    /// The provider token the upstream gets on this rule's requests.
    pub(crate) upstream_token: Option<Arc<UpstreamToken>>,
    label: Box<str>,
}

impl CompiledRule {
    /// The rule's position in the list, or `None` for the default.
    pub fn index(&self) -> Option<usize> {
        self.index
    }

    /// What the rule asks.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// A short name for log lines: `rules[1] GET /api/**` or `default(deny)`.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn matches(&self, method: &Method, path: &str, case: PathCase) -> bool {
        if let Some(methods) = &self.methods {
            let head_as_get = *method == Method::HEAD;
            if !methods.iter().any(|m| m == method || (head_as_get && *m == Method::GET)) {
                return false;
            }
        }
        self.pattern.as_ref().is_none_or(|p| p.matches(path, case))
    }

    /// True when `scopes` (sorted) satisfy the rule.
    pub(crate) fn scopes_satisfied(&self, scopes: &[Box<str>]) -> bool {
        let has = |s: &String| scopes.binary_search_by(|t| (**t).cmp(s.as_str())).is_ok();
        match &self.access {
            Access::Public | Access::Authenticated => true,
            Access::Deny => false,
            Access::AnyOf(list) => list.iter().any(has),
            Access::AllOf(list) => list.iter().all(has),
        }
    }
}

impl fmt::Display for CompiledRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// Ordered rules and the default, compiled once.
#[derive(Debug, Clone)]
pub struct RouteRules {
    rules: Box<[CompiledRule]>,
    default: CompiledRule,
    case: PathCase,
}

impl RouteRules {
    /// Compiles the rules; refuses bad patterns, methods and scope lists.
    pub fn compile(rules: &[RouteRule], default: DefaultPolicy) -> Result<Self, RuleError> {
        let mut compiled = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            let err = |message: String| RuleError { index, path: rule.path.clone(), message };
            let pattern = PathPattern::parse(&rule.path).map_err(err)?;
            let methods = if rule.methods.is_empty() {
                None
            } else {
                let parsed: Result<Vec<Method>, _> = rule
                    .methods
                    .iter()
                    .map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()))
                    .collect();
                Some(parsed.map_err(|_| err("a method is not an HTTP method".into()))?.into_boxed_slice())
            };
            let scopes = match &rule.access {
                Access::AnyOf(list) | Access::AllOf(list) => {
                    if list.is_empty() {
                        return Err(err("the scope list is empty".into()));
                    }
                    list.join(" ")
                }
                _ => String::new(),
            };
            if let Some(token) = &rule.upstream_token
                && rule.access == Access::Public
                && !token.tag.is_fixed()
            {
                return Err(err(
                    "a public rule has no caller to pick the upstream token by: give a fixed tag".into(),
                ));
            }
            let method_label = rule.methods.join(",");
            let label = if method_label.is_empty() {
                format!("rules[{index}] {}", rule.path)
            } else {
                format!("rules[{index}] {method_label} {}", rule.path)
            };
            compiled.push(CompiledRule {
                index: Some(index),
                pattern: Some(pattern),
                methods,
                access: rule.access.clone(),
                allow_query_token: rule.allow_query_token,
                allow_form_token: rule.allow_form_token,
                scope_param: scopes.into_boxed_str(),
                upstream_token: rule.upstream_token.clone(),
                label: label.into_boxed_str(),
            });
        }
        let (access, name) = match default {
            DefaultPolicy::Deny => (Access::Deny, "default(deny)"),
            DefaultPolicy::Allow => (Access::Public, "default(allow)"),
            DefaultPolicy::Authenticated => (Access::Authenticated, "default(authenticated)"),
        };
        let default = CompiledRule {
            index: None,
            pattern: None,
            methods: None,
            access,
            allow_query_token: false,
            allow_form_token: false,
            scope_param: "".into(),
            upstream_token: None,
            label: name.into(),
        };
        Ok(RouteRules { rules: compiled.into_boxed_slice(), default, case: PathCase::Sensitive })
    }

    /// The same rules, matching literals in any ASCII case when `case` is
    /// [`PathCase::Insensitive`].
    pub fn path_case(mut self, case: PathCase) -> Self {
        self.case = case;
        self
    }

    /// The rule deciding a request: the first that matches, else the
    /// default. Refuses paths the module docs describe; `path` is judged as
    /// its canonical form.
    pub fn find(&self, method: &Method, path: &str) -> Result<&CompiledRule, PathError> {
        check_path(path)?;
        Ok(self.rules.iter().find(|r| r.matches(method, path, self.case)).unwrap_or(&self.default))
    }
}

/// Pairs `(later, earlier)` of rule positions where `earlier` matches every
/// request `later` would, so `later` never decides anything.
pub fn shadowed(rules: &[RouteRule]) -> Vec<(usize, usize)> {
    let parsed: Vec<Option<PathPattern>> = rules.iter().map(|r| PathPattern::parse(&r.path).ok()).collect();
    let methods_cover = |a: &RouteRule, b: &RouteRule| {
        if a.methods.is_empty() {
            return true;
        }
        if b.methods.is_empty() {
            return false;
        }
        let has = |m: &str| a.methods.iter().any(|x| x.eq_ignore_ascii_case(m));
        b.methods.iter().all(|m| has(m) || (m.eq_ignore_ascii_case("HEAD") && has("GET")))
    };
    let mut out = Vec::new();
    for (later, b) in rules.iter().enumerate() {
        let Some(pb) = &parsed[later] else { continue };
        for (earlier, a) in rules[..later].iter().enumerate() {
            let Some(pa) = &parsed[earlier] else { continue };
            if pa.covers(pb) && methods_cover(a, b) {
                out.push((later, earlier));
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathPattern {
        PathPattern::parse(s).unwrap()
    }

    #[test]
    fn patterns_match_literals_params_and_tails() {
        let s = PathCase::Sensitive;
        assert!(p("/api/items").matches("/api/items", s));
        assert!(p("/api/items").matches("/api/items/", s));
        assert!(p("/api/items").matches("//api//items", s));
        assert!(!p("/api/items").matches("/api/items/1", s));
        assert!(p("/api/{id}").matches("/api/7", s));
        assert!(!p("/api/{id}").matches("/api", s));
        assert!(!p("/api/{id}").matches("/api/7/8", s));
        assert!(p("/api/**").matches("/api", s));
        assert!(p("/api/**").matches("/api/a/b/c", s));
        assert!(!p("/api/**").matches("/apix", s));
        assert!(p("/**").matches("/", s));
        assert!(p("/").matches("/", s));
        assert!(!p("/").matches("/a", s));
        assert!(p("/api/%7Ex").matches("/api/~x", s));
        assert!(p("/api/items").matches("/%61pi/items", s));
        assert!(!p("/api/items").matches("/%61pi/itemz", s));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["api", "/a/**/b", "/a/{x", "/a/b*", "/a/{x y}", "/a/..", "/a?b", "/a/%2F"] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_that_an_upstream_could_resolve_elsewhere_are_refused() {
        for bad in [
            "/public/../api",
            "/public/%2e%2e/api",
            "/a/./b",
            "/a/%2E/b",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "/a%zz",
            "/a%0",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        for good in ["/", "/a/b", "/a/...", "/a/.well", "/a%20b", "//a"] {
            assert!(check_path(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn matrix_parameters_and_case() {
        let s = PathCase::Sensitive;
        assert!(p("/api/items").matches("/api;jsessionid=1/items;v=2", s));
        assert!(!p("/api/items").matches("/API/Items", s));
        assert!(p("/api/items").matches("/API/%49tems", PathCase::Insensitive));
        for bad in ["/open/..;/api/x", "/open/.;x/api", "/open/%2e%2E;/api", "/;x/api", "/a/;"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        assert_eq!(check_path("/open/..;/api"), Err(PathError::DotSegment));
        assert!(check_path("/a/..x;y/b").is_ok());
        assert!(check_path("/a/b;../c").is_ok(), "parameters are not segments");
    }

    #[test]
    fn canonical_paths_merge_slashes_and_decode_unreserved_escapes() {
        let c = |path: &str| canonical_path(path).unwrap();
        assert_eq!(c("/api/x"), None);
        assert_eq!(c("/api/x/"), None);
        assert_eq!(c("/"), None);
        assert_eq!(c("/a%20b;p=%3D"), None, "only unreserved escapes are decoded");
        assert_eq!(c("//api//x"), Some("/api/x".into()));
        assert_eq!(c("/api//x/"), Some("/api/x/".into()));
        assert_eq!(c("//"), Some("/".into()));
        assert_eq!(c("/%61pi/%7e%20é"), Some("/api/~%20é".into()));
        assert!(canonical_path("/open/%2e%2e/api/x").is_err());
        assert!(canonical_path("/open/..%2fapi/x").is_err());
    }

    #[test]
    fn first_match_wins_and_head_follows_get() {
        let rules = RouteRules::compile(
            &[
                RouteRule::public("/health"),
                RouteRule::new("/api/**", Access::AnyOf(vec!["v".into()])).methods(["get"]),
                RouteRule::new("/api/**", Access::AllOf(vec!["m".into(), "v".into()])),
            ],
            DefaultPolicy::Authenticated,
        )
        .unwrap();
        let find = |m: &str, path: &str| rules.find(&m.parse().unwrap(), path).unwrap().index();
        assert_eq!(find("GET", "/health"), Some(0));
        assert_eq!(find("HEAD", "/api/x"), Some(1));
        assert_eq!(find("DELETE", "/api/x"), Some(2));
        assert_eq!(find("GET", "/else"), None);
        let all = rules.find(&Method::DELETE, "/api").unwrap();
        assert!(all.scopes_satisfied(&["m".into(), "v".into()]));
        assert!(!all.scopes_satisfied(&["v".into()]));
        assert_eq!(&*all.scope_param, "m v");
    }

    #[test]
    fn shadowed_rules_are_found() {
        let rules = [
            RouteRule::new("/api/**", Access::Authenticated).methods(["GET"]),
            RouteRule::new("/api/{id}", Access::Public).methods(["HEAD"]),
            RouteRule::new("/api/{id}", Access::Public).methods(["POST"]),
            RouteRule::new("/x/{id}/y", Access::Public),
            RouteRule::new("/x/1/y", Access::Public),
            RouteRule::new("/x/**", Access::Public),
            RouteRule::new("/x/{id}/**", Access::Public),
            RouteRule::new("/z/{id}/**", Access::Public),
            RouteRule::new("/z/**", Access::Public),
        ];
        assert_eq!(shadowed(&rules), vec![(1, 0), (4, 3), (6, 5)]);
    }
}
