//! One connection's tower stack as a hyper service, with the limits that
//! hold for every request of the connection: the head's size and its number
//! of header fields (431), the pause allowed in a request body (the body is
//! wrapped in [`ReadTimeout`]), and the count of requests in flight that
//! tells the listener when the connection is idle.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures_util::future::{Either, Ready, ready};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tower::Service;

use super::Limits;
use super::connections::{Busy, Conn};
use crate::proxy::ReadTimeout;

/// The request body the served stack gets: hyper's, failing with
/// [`crate::proxy::BodyTimeout`] when the client pauses too long.
pub(crate) type ClientBody = ReadTimeout<Incoming>;

/// A response of the served stack, or a refusal written here.
pub(super) type Answer<B> = Response<http_body_util::Either<B, Full<Bytes>>>;

/// One connection's tower stack, as a hyper service: calls the stack in
/// place.
///
/// hyper calls services through `&self`, tower through `&mut self`; a
/// connection calls its service from its own task, one request at a time, so
/// a `RefCell` bridges the two without cloning the stack for every request
/// (what `hyper_util::service::TowerToHyperService` does).
pub(super) struct PerConnection<S> {
    pub(super) service: RefCell<S>,
    pub(super) limits: Limits,
    pub(super) conn: Arc<Conn>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for PerConnection<S>
where
    S: Service<Request<ClientBody>, Response = Response<B>, Error = Infallible>,
{
    type Response = Answer<B>;
    type Error = Infallible;
    type Future = Either<Served<S::Future>, Ready<Result<Answer<B>, Infallible>>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        if let Some(reason) = self.limits.head_refusal(&req) {
            return Either::Right(ready(Ok(too_large(&mut req, &reason))));
        }
        let busy = self.conn.start_request();
        let req = req.map(|body| ReadTimeout::new(body, self.limits.body_timeout));
        let mut service = self.service.borrow_mut();
        let is_ready = service.poll_ready(&mut Context::from_waker(Waker::noop()));
        debug_assert!(is_ready.is_ready(), "the served stack must always be ready");
        Either::Left(Served { inner: service.call(req), _busy: busy })
    }
}

impl Limits {
    /// Why the request's head is refused, when it is over a limit.
    fn head_refusal<B>(&self, req: &Request<B>) -> Option<String> {
        let fields = req.headers().len();
        if fields > self.max_headers {
            return Some(format!("the request has {fields} header fields, more than {}", self.max_headers));
        }
        let size = head_size(req);
        if size > self.max_header_size {
            return Some(format!("the request head is larger than {} bytes", self.max_header_size));
        }
        None
    }
}

/// The 431 for a head over a limit: a short text saying which, the request
/// id (the client's, or a new one), and the connection closed after it.
fn too_large<B>(req: &mut Request<Incoming>, reason: &str) -> Answer<B> {
    let id = crate::ops::request_id(req.headers_mut());
    tracing::debug!(request_id = id.to_str().unwrap_or_default(), "431: {reason}");
    let text = format!("431 Request Header Fields Too Large: {reason}\n");
    let mut res = Response::new(http_body_util::Either::Right(Full::new(Bytes::from(text))));
    *res.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(crate::ops::X_REQUEST_ID.clone(), id);
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

pin_project! {
    /// The served stack's response future; the request counts as in
    /// flight until it completes.
    pub(super) struct Served<F> {
        #[pin]
        inner: F,
        _busy: Busy,
    }
}

impl<F, B> Future for Served<F>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
{
    type Output = Result<Answer<B>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map(|res| res.map(|res| res.map(http_body_util::Either::Left)))
    }
}

/// The size of a request head as HTTP/1.1 writes it: the request line,
/// each header as `name: value` and its line end, and the empty line. Walks
/// the parsed head without allocating.
fn head_size<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let fields: usize = req.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    line + fields + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_size_counts_the_head_as_http1_writes_it() {
        let req = Request::get("/echo?x=1").header("host", "app.test").body(()).unwrap();
        let written = "GET /echo?x=1 HTTP/1.1\r\nhost: app.test\r\n\r\n";
        assert_eq!(head_size(&req), written.len());
    }
}
