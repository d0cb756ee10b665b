//! Operations endpoints and the request observation layer:
//! `/healthz` (the process is up), `/readyz` (the store and the upstream are
//! reachable), `/metrics` (Prometheus text), plus [`ObserveLayer`] for
//! request ids, spans, metrics and the access log, and [`trace`] for
//! OpenTelemetry traces.

mod metrics;
mod observe;
pub mod trace;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::config::OpsConfig;
use crate::mount::Mount;
use crate::store::StoreBase;

pub use metrics::spawn_upkeep;
pub use metrics::{Metrics, prometheus};
pub use observe::{Observe, ObserveFuture, ObserveLayer, X_REQUEST_ID, request_id};

/// What `/readyz` checks.
#[derive(Clone)]
pub struct Readiness {
    /// The store; pinged on every check.
    pub store: Arc<dyn StoreBase>,
    /// `host:port` of the upstream; a TCP connection is opened and closed.
    pub upstream: String,
    /// Time allowed for each check.
    pub timeout: Duration,
    /// The stack's metrics, whose in-flight gauge is published on render.
    pub metrics: Metrics,
}

/// The operations routes at the paths the configuration names.
pub fn mount(paths: &OpsConfig, readiness: Readiness) -> Mount {
    Mount::new()
        .route(&paths.health.0, get(health))
        .route(&paths.ready.0, get(ready))
        .route(&paths.metrics.0, get(render_metrics))
        .with_state(readiness)
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(r): State<Readiness>) -> Response {
    let store = match tokio::time::timeout(r.timeout, r.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer in time".to_owned()),
    };
    let upstream = match tokio::time::timeout(r.timeout, tokio::net::TcpStream::connect(&r.upstream)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer in time".to_owned()),
    };
    let status =
        if store.is_ok() && upstream.is_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    if let Err(e) = &store {
        tracing::warn!(error = %e, "not ready: store unreachable");
    }
    if let Err(e) = &upstream {
        tracing::warn!(error = %e, upstream = %r.upstream, "not ready: upstream unreachable");
    }
    let show = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.clone(),
    };
    let body = serde_json::json!({
        "ready": status == StatusCode::OK,
        "store": show(&store),
        "upstream": show(&upstream),
    });
    (status, axum::Json(body)).into_response()
}

async fn render_metrics(State(r): State<Readiness>) -> Response {
    r.metrics.publish_in_flight();
    let text = prometheus().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// Asks a running sidecar's health endpoint over plain HTTP, for container
/// health checks (`oauth-sidecar healthcheck`) where no HTTP tool is
/// installed. With TLS on the listener, only the TCP connection is checked.
pub async fn probe(addr: std::net::SocketAddr, path: &str, tls: bool) -> Result<(), String> {
    let connect = tokio::net::TcpStream::connect(addr);
    let stream = tokio::time::timeout(Duration::from_secs(3), connect)
        .await
        .map_err(|_| format!("{addr}: no connection within 3s"))?
        .map_err(|e| format!("{addr}: {e}"))?;
    if tls {
        return Ok(());
    }
    let ask = async {
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header(header::HOST, addr.to_string())
            .body(axum::body::Body::empty())
            .map_err(|e| e.to_string())?;
        let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
        if res.status() == StatusCode::OK { Ok(()) } else { Err(format!("{path} answered {}", res.status())) }
    };
    tokio::time::timeout(Duration::from_secs(3), ask)
        .await
        .map_err(|_| format!("{path}: no answer within 3s"))?
}
