//! Where a bearer token is (RFC 6750 section 2): the `Authorization:
//! Bearer` header, and where a route allows it the `access_token` query
//! parameter or form-body field; never two at once.
//!
//! A header token is taken as bytes, without a copy and without checking
//! its syntax: a token the cache knows was checked when it was first
//! verified, so [`token_text`] runs in the async step only.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request};
use http_body_util::BodyExt;

use super::error::GateError;
use super::rules::CompiledRule;

/// Largest form body read for an `access_token` (RFC 6750 section 2.2).
const MAX_FORM_BODY: usize = 64 << 10;

/// A request body the gate can put back after reading a form body for its
/// token. Implemented for axum's body and for `Either<B, Full<Bytes>>`
/// (the sidecar wraps hyper's body in the latter).
pub trait ReplayBody:
    http_body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Sized
{
    /// A body holding `bytes`.
    fn replay(bytes: Bytes) -> Self;
}

impl ReplayBody for axum::body::Body {
    fn replay(bytes: Bytes) -> Self {
        axum::body::Body::from(bytes)
    }
}

impl<B> ReplayBody for http_body_util::Either<B, http_body_util::Full<Bytes>>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn replay(bytes: Bytes) -> Self {
        http_body_util::Either::Right(http_body_util::Full::new(bytes))
    }
}

/// Where the token is. Its bytes are not checked for RFC 6750 syntax
/// here: a token the cache knows was checked when it was first verified, so
/// the check ([`token_text`]) belongs to the async step.
pub(crate) enum Found<'a> {
    None,
    Token(Cow<'a, [u8]>),
    /// Maybe in the form body: needs the async step.
    MaybeForm,
}

/// Finds the token as the module docs say, without allocating for a header
/// token.
pub(crate) fn find_token<'a, B>(req: &'a Request<B>, rule: &CompiledRule) -> Result<Found<'a>, GateError> {
    let header = bearer_header(req.headers())?;
    let query = match req.uri().query() {
        Some(q) if q.contains("access_token") => query_token(q)?,
        _ => None,
    };
    match (header, query) {
        (Some(_), Some(_)) => {
            Err(GateError::InvalidRequest("the request carries more than one token".into()))
        }
        (_, Some(_)) if !rule.allow_query_token => {
            Err(GateError::InvalidRequest("this route does not accept a token in the query string".into()))
        }
        (Some(token), None) => Ok(Found::Token(Cow::Borrowed(token))),
        (None, Some(token)) => Ok(Found::Token(match token {
            Cow::Borrowed(t) => Cow::Borrowed(t.as_bytes()),
            Cow::Owned(t) => Cow::Owned(t.into_bytes()),
        })),
        (None, None) => {
            let form = rule.allow_form_token
                && !matches!(*req.method(), Method::GET | Method::HEAD)
                && req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
                    ct.split(';')
                        .next()
                        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
                });
            Ok(if form { Found::MaybeForm } else { Found::None })
        }
    }
}

/// The `Authorization: Bearer` token's bytes; `None` without one (another
/// scheme counts as none).
fn bearer_header(headers: &http::HeaderMap) -> Result<Option<&[u8]>, GateError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(GateError::InvalidRequest("the request has more than one Authorization header".into()));
    }
    let bytes = value.as_bytes();
    let Some(space) = bytes.iter().position(|&b| b == b' ') else { return Ok(None) };
    if !bytes[..space].eq_ignore_ascii_case(b"bearer") {
        return Ok(None);
    }
    let mut token = &bytes[space + 1..];
    while let [b' ', rest @ ..] = token {
        token = rest;
    }
    while let [rest @ .., b' '] = token {
        token = rest;
    }
    if token.is_empty() {
        return Err(GateError::InvalidRequest("the bearer token is empty".into()));
    }
    Ok(Some(token))
}

/// The token as text, checked against RFC 6750 section 2.1:
/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub(crate) fn token_text(token: &[u8]) -> Result<String, GateError> {
    let text = std::str::from_utf8(token).ok().filter(|t| check_b64token(t).is_ok());
    text.map(str::to_owned).ok_or_else(|| GateError::InvalidRequest("the bearer token is malformed".into()))
}

fn check_b64token(token: &str) -> Result<(), GateError> {
    let body = token.trim_end_matches('=');
    if body.is_empty()
        || !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
    {
        return Err(GateError::InvalidRequest("the bearer token is empty or malformed".into()));
    }
    Ok(())
}

/// The `access_token` query parameter (RFC 6750 section 2.3).
pub(crate) fn query_token(query: &str) -> Result<Option<Cow<'_, str>>, GateError> {
    let mut found = None;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "access_token" {
            continue;
        }
        if found.is_some() {
            return Err(GateError::InvalidRequest("access_token is given more than once".into()));
        }
        found = Some(value);
    }
    let Some(raw) = found else { return Ok(None) };
    let token = if raw.contains(['%', '+']) {
        Cow::Owned(
            form_decode(raw)
                .ok_or_else(|| GateError::InvalidRequest("the access_token parameter is malformed".into()))?,
        )
    } else {
        Cow::Borrowed(raw)
    };
    check_b64token(&token)?;
    Ok(Some(token))
}

/// `application/x-www-form-urlencoded` decoding of one value.
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Reads a form body (at most [`MAX_FORM_BODY`]) for its `access_token`,
/// and puts the body back.
pub(crate) async fn read_form_token<B: ReplayBody>(
    req: Request<B>,
) -> Result<(Request<B>, Option<String>), GateError> {
    let (parts, body) = req.into_parts();
    let bytes = http_body_util::Limited::new(body, MAX_FORM_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                GateError::TooLarge
            } else {
                GateError::InvalidRequest("the request body could not be read".into())
            }
        })?
        .to_bytes();
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| GateError::InvalidRequest("the form body is not UTF-8".into()))?;
    let mut token = None;
    for pair in text.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if form_decode(name).as_deref() != Some("access_token") {
            continue;
        }
        if token.is_some() {
            return Err(GateError::InvalidRequest("access_token is given more than once".into()));
        }
        let value = form_decode(value)
            .ok_or_else(|| GateError::InvalidRequest("the access_token parameter is malformed".into()))?;
        check_b64token(&value)?;
        token = Some(value);
    }
    Ok((Request::from_parts(parts, B::replay(bytes)), token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_come_from_the_header_only_when_well_formed() {
        let mut h = http::HeaderMap::new();
        assert_eq!(bearer_header(&h).unwrap(), None);
        h.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_header(&h).unwrap(), None);
        h.insert(AUTHORIZATION, "bearer  abc.def-_~+/== ".parse().unwrap());
        let token = bearer_header(&h).unwrap().unwrap();
        assert_eq!(token, b"abc.def-_~+/==");
        assert_eq!(token_text(token).unwrap(), "abc.def-_~+/==");
        assert!(token_text(b"a,b").is_err());
        assert!(token_text("caf\u{e9}".as_bytes()).is_err());
        h.insert(AUTHORIZATION, "Bearer ".parse().unwrap());
        assert!(bearer_header(&h).is_err());
        h.append(AUTHORIZATION, "Bearer x".parse().unwrap());
        assert!(bearer_header(&h).is_err());
    }

    #[test]
    fn query_tokens_are_decoded_and_must_be_single() {
        assert_eq!(query_token("a=1&access_token=abc").unwrap().as_deref(), Some("abc"));
        assert_eq!(query_token("access_token=a%2Bb").unwrap().as_deref(), Some("a+b"));
        assert!(query_token("access_token=a&access_token=b").is_err());
        assert_eq!(query_token("my_access_token=a").unwrap(), None);
    }
}
