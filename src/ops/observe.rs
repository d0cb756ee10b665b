//! The outermost layer of the stack: gives each request an id, a tracing
//! span that every log line inside it carries, the request metrics and the
//! access log line.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::Span;

use super::Metrics;

/// The request id header: kept when the client (or a proxy before us) sent a
/// usable one, generated otherwise; sent upstream and back to the client.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id taken from a client; longer ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// Wraps a service with request ids, spans, metrics and the access log.
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Metrics,
    access_log: bool,
}

impl ObserveLayer {
    /// `access_log` writes one info line per request when it completes.
    pub fn new(metrics: Metrics, access_log: bool) -> Self {
        ObserveLayer { metrics, access_log }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner, metrics: self.metrics.clone(), access_log: self.access_log }
    }
}

/// The service [`ObserveLayer`] builds.
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Metrics,
    access_log: bool,
}

impl<S, B, ResB> Service<Request<B>> for Observe<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = match req.headers().get(&X_REQUEST_ID) {
            Some(v) if usable_id(v) => v.clone(),
            _ => {
                let v = new_request_id();
                req.headers_mut().insert(X_REQUEST_ID.clone(), v.clone());
                v
            }
        };
        let span = tracing::info_span!(
            "request",
            id = id.to_str().unwrap_or_default(),
            method = %req.method(),
            path = req.uri().path(),
        );
        let access =
            self.access_log.then(|| Access { method: req.method().clone(), started: Instant::now() });
        self.metrics.request_started();
        let future = {
            let _enter = span.enter();
            self.inner.call(req)
        };
        ObserveFuture {
            inner: future,
            guard: InFlight { metrics: self.metrics.clone(), id: Some(id), access },
            span,
        }
    }
}

fn usable_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(|c| c.is_ascii_graphic())
}

fn new_request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let s = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

struct Access {
    method: Method,
    started: Instant,
}

/// Takes the request off the in-flight gauge however its future ends.
struct InFlight {
    metrics: Metrics,
    id: Option<HeaderValue>,
    access: Option<Access>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.request_finished();
    }
}

pin_project! {
    /// Response future of [`Observe`]: runs the inner future inside the
    /// request's span and records the outcome.
    pub struct ObserveFuture<F> {
        #[pin]
        inner: F,
        guard: InFlight,
        span: Span,
    }
}

impl<F, ResB, E> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = Result<Response<ResB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _enter = this.span.enter();
        let mut res = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(res)) => res,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
        };
        let status = res.status();
        this.guard.metrics.count_status(status);
        if let Some(id) = this.guard.id.take() {
            res.headers_mut().insert(X_REQUEST_ID.clone(), id);
        }
        if let Some(access) = this.guard.access.take() {
            tracing::info!(
                method = %access.method,
                status = status.as_u16(),
                ms = access.started.elapsed().as_secs_f64() * 1000.0,
                "access"
            );
        }
        Poll::Ready(Ok(res))
    }
}
