//! The demo upstream built into the binary (`upstream: demo`): a small page
//! and a JSON echo of the request it received, so the example configuration
//! runs with nothing else installed and shows what the sidecar sends on.
//!
//! It listens on an ephemeral port on 127.0.0.1, reachable only through the
//! sidecar.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Router;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Html;
use axum::routing::{any, get};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>oauth-sidecar demo app</title></head>
<body>
<h1>oauth-sidecar demo app</h1>
<p>This page comes from the demo upstream built into oauth-sidecar, reached
through the sidecar's reverse proxy.</p>
<p>See <a href="/echo">/echo</a> for the request headers the upstream received.</p>
</body>
</html>
"#;

/// The demo app's routes.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/echo", any(echo))
        .route("/echo/{*rest}", any(echo))
}

async fn echo(method: Method, uri: Uri, headers: HeaderMap) -> axum::Json<serde_json::Value> {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &headers {
        seen.entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    axum::Json(serde_json::json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": seen,
    }))
}

/// Starts the demo app on `127.0.0.1` at an ephemeral port.
pub async fn spawn() -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router()).await {
            tracing::error!(error = %err, "demo upstream stopped");
        }
    });
    Ok((addr, task))
}
