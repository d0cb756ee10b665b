//! The outermost layer of the stack: gives each request an id, a tracing
//! span that every log line inside it carries, the request metrics and the
//! access log line.

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use http::HeaderMap;
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
        let id = request_id(req.headers_mut());
        let span = if super::trace::enabled() {
            traced_span(&req, &id)
        } else {
            tracing::info_span!(
                "request",
                id = id.to_str().unwrap_or_default(),
                method = %req.method(),
                path = req.uri().path(),
            )
        };
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

/// The request span when traces are exported: named and shaped as the
/// OpenTelemetry HTTP conventions ask (path without the query, which may
/// carry a code), continuing the caller's `traceparent`, with fields the
/// gate and the response fill in.
fn traced_span<B>(req: &Request<B>, id: &HeaderValue) -> Span {
    let span = tracing::info_span!(
        "request",
        otel.name = %req.method(),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        id = id.to_str().unwrap_or_default(),
        http.request.method = %req.method(),
        url.path = req.uri().path(),
        http.response.status_code = tracing::field::Empty,
        gate.rule = tracing::field::Empty,
        gate.decision = tracing::field::Empty,
        gate.reason = tracing::field::Empty,
    );
    super::trace::continue_from(&span, req.headers());
    span
}

/// The request's id: the one the client sent when usable, else a new one,
/// written into `headers` (the upstream sees it) and returned (the client
/// gets it back). Every answer, the listener's own refusals too, takes its
/// id from here.
pub fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    match headers.get(&X_REQUEST_ID) {
        Some(v) if usable_id(v) => v.clone(),
        _ => {
            let id = RequestId::next().header_value();
            headers.insert(X_REQUEST_ID.clone(), id.clone());
            id
        }
    }
}

fn usable_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(|c| c.is_ascii_graphic())
}

/// A generated request id, shaped like a UUID: the first 20 hex digits are
/// random per process, the last 12 count requests up from a random start.
/// Unique within a process (for 2^48 requests) and, with 74 random bits,
/// across processes; costs an atomic addition instead of a random number.
struct RequestId([u8; 36]);

/// Text of the random part, `xxxxxxxx-xxxx-4xxx-yxxx-`, and the counter's start.
static ID_PREFIX: LazyLock<([u8; 24], u64)> = LazyLock::new(|| {
    let random = uuid::Uuid::new_v4();
    let mut text = [0; 36];
    random.hyphenated().encode_lower(&mut text);
    let mut prefix = [0; 24];
    prefix.copy_from_slice(&text[..24]);
    let node = random.as_bytes()[10..].iter().fold(0u64, |n, b| n << 8 | u64::from(*b));
    (prefix, node)
});
static ID_COUNTER: AtomicU64 = AtomicU64::new(0);

impl RequestId {
    fn next() -> Self {
        let (prefix, start) = &*ID_PREFIX;
        let n = start.wrapping_add(ID_COUNTER.fetch_add(1, Ordering::Relaxed));
        let mut text = [0; 36];
        text[..24].copy_from_slice(prefix);
        for (i, c) in text[24..].iter_mut().enumerate() {
            *c = b"0123456789abcdef"[(n >> (44 - 4 * i) & 0xf) as usize];
        }
        RequestId(text)
    }

    fn header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.0).unwrap_or_else(|_| HeaderValue::from_static("-"))
    }
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
        super::trace::record_status(this.span, status);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_usable_uuid_shaped_and_distinct() {
        let a = RequestId::next().header_value();
        let b = RequestId::next().header_value();
        assert!(usable_id(&a) && usable_id(&b));
        assert_ne!(a, b);
        let a = a.to_str().unwrap();
        assert!(uuid::Uuid::parse_str(a).is_ok(), "{a}");
        assert_eq!(a[..24], b.to_str().unwrap()[..24], "one random prefix per process");
    }
}
