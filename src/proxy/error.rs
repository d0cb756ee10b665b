//! Every way forwarding can fail, mapped in one place to the short plain
//! response the client gets, a log line and a metric.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::LengthLimitError;

use super::BodyTimeout;
use crate::ops::Metrics;

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The upstream refused or did not accept the connection in time (502).
    #[error("cannot connect to the upstream: {0}")]
    Connect(String),
    /// The upstream did not send response headers in time (504).
    #[error("the upstream did not answer within {after:?}")]
    Timeout {
        /// The configured `proxy.timeout`.
        after: Duration,
    },
    /// The upstream closed the connection or sent something that is not HTTP (502).
    #[error("the upstream failed: {0}")]
    Upstream(String),
    /// The request body is larger than `proxy.max_body_size` (413).
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The configured limit in bytes.
        limit: u64,
    },
    /// The client stopped sending the request body for longer than
    /// `listener.body_timeout` (408).
    #[error("the client paused the request body for longer than {pause:?}")]
    BodyTimeout {
        /// The configured `listener.body_timeout`.
        pause: Duration,
    },
    /// The upstream switched protocols without being asked to (502).
    #[error("the upstream switched protocols without an upgrade request")]
    BadUpgrade,
    /// The request could not be turned into an upstream request (400).
    #[error("the request cannot be forwarded: {0}")]
    BadRequest(String),
}

impl ProxyError {
    /// Sorts a client error: a body over the limit, a connect failure, or
    /// anything else the upstream did.
    pub(crate) fn from_client(err: hyper_util::client::legacy::Error, limit: u64) -> Self {
        let mut source: Option<&(dyn StdError + 'static)> = Some(&err);
        while let Some(e) = source {
            if e.is::<LengthLimitError>() {
                return ProxyError::BodyTooLarge { limit };
            }
            if let Some(timeout) = e.downcast_ref::<BodyTimeout>() {
                return ProxyError::BodyTimeout { pause: timeout.pause };
            }
            source = e.source();
        }
        if err.is_connect() {
            ProxyError::Connect(Chain(&err).to_string())
        } else {
            ProxyError::Upstream(Chain(&err).to_string())
        }
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Connect(_) | ProxyError::Upstream(_) | ProxyError::BadUpgrade => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// Writes the log line and counts the failure.
    pub(crate) fn record(&self, metrics: &Metrics) {
        match self {
            ProxyError::Connect(_) => {
                metrics.handles().upstream_errors.connect.increment(1);
                tracing::warn!(error = %self, "502: upstream unreachable");
            }
            ProxyError::Timeout { .. } => {
                metrics.handles().upstream_errors.timeout.increment(1);
                tracing::warn!(error = %self, "504: upstream timeout");
            }
            ProxyError::Upstream(_) | ProxyError::BadUpgrade => {
                metrics.handles().upstream_errors.other.increment(1);
                tracing::warn!(error = %self, "502: upstream failed");
            }
            ProxyError::BodyTooLarge { .. } => tracing::info!(error = %self, "413: request body too large"),
            ProxyError::BodyTimeout { .. } => {
                tracing::info!(error = %self, "408: request body stopped arriving")
            }
            ProxyError::BadRequest(_) => tracing::info!(error = %self, "400: request not forwardable"),
        }
    }

    /// The short plain-text response for the client.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let text = match self {
            ProxyError::Connect(_) => "502 Bad Gateway: the upstream app cannot be reached\n",
            ProxyError::Upstream(_) | ProxyError::BadUpgrade => "502 Bad Gateway: the upstream app failed\n",
            ProxyError::Timeout { .. } => "504 Gateway Timeout: the upstream app did not answer in time\n",
            ProxyError::BodyTooLarge { .. } => "413 Content Too Large: the request body is over the limit\n",
            ProxyError::BodyTimeout { .. } => "408 Request Timeout: the request body stopped arriving\n",
            ProxyError::BadRequest(_) => "400 Bad Request: the request cannot be forwarded\n",
        };
        let mut res = Response::new(Body::from(text));
        *res.status_mut() = status;
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        if matches!(status, StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT) {
            // The rest of the body is not read: do not reuse the connection.
            res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }
}

/// Displays an error with its sources: `a: b: c`.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn StdError + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}
