//! OpenTelemetry traces from the real binary, received by a real OTLP/HTTP
//! receiver on loopback: the request span continues the caller's
//! `traceparent`, the upstream call is its child and the upstream gets a
//! `traceparent` naming that child, the token grant has its own span, the
//! gate's rule and decision are on the request span; an egress call
//! continues the app's trace, its provider refresh is a child and its target
//! gets a `traceparent`; and no attribute holds a token, a secret or a code.

mod common;
mod gate_common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Sidecar;
use gate_common::{REPORTING_SECRET, REPORTING_SERVER, client_token, reqwest_client};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use oauth_sidecar::store::{SqliteStore, Store};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde_json::Value;

/// What the receiver got: every export request, decoded.
type Received = Arc<Mutex<Vec<ExportTraceServiceRequest>>>;

/// An OTLP/HTTP trace receiver (`POST /v1/traces`, protobuf) on loopback.
async fn spawn_receiver() -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let sink = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let sink = sink.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let sink = sink.clone();
                    async move {
                        assert_eq!(req.uri().path(), "/v1/traces");
                        assert_eq!(req.headers()["content-type"], "application/x-protobuf");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let export = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
                        sink.lock().unwrap().push(export);
                        let answer = ExportTraceServiceResponse::default().encode_to_vec();
                        let mut res = Response::new(Full::new(Bytes::from(answer)));
                        res.headers_mut().insert("content-type", "application/x-protobuf".parse().unwrap());
                        Ok::<_, Infallible>(res)
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (addr, received)
}

/// An OTLP/gRPC trace receiver on loopback: HTTP/2, one length-prefixed
/// protobuf message in, an empty answer and `grpc-status: 0` out.
async fn spawn_grpc_receiver() -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let sink = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let sink = sink.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let sink = sink.clone();
                    async move {
                        assert_eq!(
                            req.uri().path(),
                            "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
                        );
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        assert_eq!(body[0], 0, "not compressed");
                        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
                        let export =
                            ExportTraceServiceRequest::decode(&body[5..5 + len]).expect("an OTLP export");
                        sink.lock().unwrap().push(export);
                        let answer = ExportTraceServiceResponse::default().encode_to_vec();
                        let mut framed = vec![0u8];
                        framed.extend_from_slice(&(answer.len() as u32).to_be_bytes());
                        framed.extend_from_slice(&answer);
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        let frames = [
                            Ok::<_, Infallible>(Frame::data(Bytes::from(framed))),
                            Ok(Frame::trailers(trailers)),
                        ];
                        let mut res = Response::new(StreamBody::new(futures_util::stream::iter(frames)));
                        res.headers_mut().insert("content-type", "application/grpc".parse().unwrap());
                        Ok::<_, Infallible>(res)
                    }
                });
                let _ = http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, received)
}

fn spans(received: &Received) -> Vec<Span> {
    let exports = received.lock().unwrap();
    exports
        .iter()
        .flat_map(|e| &e.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| s.spans.clone())
        .collect()
}

/// A span attribute as text.
fn attr(span: &Span, key: &str) -> Option<String> {
    let kv = span.attributes.iter().find(|kv| kv.key == key)?;
    match kv.value.as_ref()?.value.as_ref()? {
        Any::StringValue(s) => Some(s.clone()),
        Any::IntValue(i) => Some(i.to_string()),
        Any::BoolValue(b) => Some(b.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits up to 10 s for a received span that `pick` accepts.
async fn wait_span(received: &Received, what: &str, pick: impl Fn(&Span) -> bool) -> Span {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(span) = spans(received).into_iter().find(|s| pick(s)) {
            return span;
        }
        assert!(Instant::now() < deadline, "no {what} span among {:#?}", spans(received));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const GATE: &str = r#"
gate:
  default: deny
  rules:
    - { path: /echo, scopes: { any_of: [farm_viewer] } }
"#;

#[tokio::test]
async fn gated_request_and_token_grant_are_exported_as_one_trace_without_secrets() {
    let (receiver, received) = spawn_receiver().await;
    let upstream = common::spawn_upstream().await;
    let sidecar = Sidecar::start(&format!(
        "upstream: http://{upstream}\n{REPORTING_SERVER}{GATE}\
         telemetry:\n  otlp:\n    endpoint: http://{receiver}/v1/traces\n    export_interval: 100ms\n"
    ));

    let token = client_token(&sidecar.url(""), "reporting", REPORTING_SECRET).await;
    // A code in a query string and in a token request must not be recorded.
    let code = "the-authorization-code-4711";
    let refused = reqwest_client()
        .post(sidecar.url("/oauth/token"))
        .basic_auth("reporting", Some(REPORTING_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=authorization_code&code={code}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    // The caller's trace: 4bf9... is the trace, 00f0... its span.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let res = reqwest_client()
        .get(sidecar.url(&format!("/echo?code={code}")))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let echo: Value = res.json().await.unwrap();
    let sent = echo["headers"]["traceparent"][0].as_str().expect("the upstream got a traceparent");
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    assert_eq!(parts[1], caller_trace, "the upstream's traceparent continues the caller's trace");
    assert_ne!(parts[2], caller_span, "the upstream's traceparent names the sidecar's span");
    assert_eq!(parts[3], "01", "sampled");

    let request = wait_span(&received, "request", |s| {
        s.kind == SpanKind::Server as i32 && attr(s, "url.path").as_deref() == Some("/echo")
    })
    .await;
    assert_eq!(hex(&request.trace_id), caller_trace);
    assert_eq!(hex(&request.parent_span_id), caller_span, "the request span is the caller's child");
    assert_eq!(request.name, "GET");
    assert_eq!(attr(&request, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(attr(&request, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr(&request, "gate.decision").as_deref(), Some("allow"));
    assert_eq!(attr(&request, "gate.rule").as_deref(), Some("rules[0] /echo"));

    let upstream_call = wait_span(&received, "upstream call", |s| {
        s.kind == SpanKind::Client as i32 && s.parent_span_id == request.span_id
    })
    .await;
    assert_eq!(upstream_call.trace_id, request.trace_id);
    assert_eq!(hex(&upstream_call.span_id), parts[2], "the upstream's traceparent names the upstream call");
    assert_eq!(attr(&upstream_call, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr(&upstream_call, "server.port"), Some(upstream.port().to_string()));

    let grant = wait_span(&received, "token grant", |s| {
        attr(s, "oauth.grant_type").as_deref() == Some("client_credentials")
    })
    .await;
    assert_eq!(attr(&grant, "oauth.client_id").as_deref(), Some("reporting"));
    let token_request = wait_span(&received, "token request", |s| s.span_id == grant.parent_span_id).await;
    assert_eq!(attr(&token_request, "url.path").as_deref(), Some("/oauth/token"));
    assert_eq!(token_request.trace_id, grant.trace_id);
    let refused_grant = wait_span(&received, "refused grant", |s| {
        attr(s, "oauth.grant_type").as_deref() == Some("authorization_code")
    })
    .await;
    assert!(attr(&refused_grant, "oauth.error").is_some(), "{refused_grant:?}");

    // Nothing anywhere in what was exported names a secret.
    let everything = format!("{:?}", received.lock().unwrap());
    let signature = token.rsplit('.').next().unwrap();
    for (what, secret) in [
        ("token", token.as_str()),
        ("token signature", signature),
        ("secret", REPORTING_SECRET),
        ("code", code),
    ] {
        assert!(!everything.contains(secret), "the {what} was exported");
    }
    let resource = &received.lock().unwrap()[0].resource_spans[0].resource;
    assert!(format!("{resource:?}").contains("oauth-sidecar"), "service.name: {resource:?}");
}

/// A provider's token endpoint answering every refresh with a new pair.
async fn spawn_provider() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let service = service_fn(|_req: Request<Incoming>| async {
                    let body = r#"{"access_token":"provider-access-new","token_type":"Bearer","expires_in":3600,"refresh_token":"provider-refresh-new"}"#;
                    let mut res = Response::new(Full::new(Bytes::from(body)));
                    res.headers_mut().insert("content-type", "application/json".parse().unwrap());
                    Ok::<_, Infallible>(res)
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_egress_call_continues_the_apps_trace_with_its_provider_refresh_as_a_child() {
    common::install_crypto();
    let (receiver, received) = spawn_receiver().await;
    let (provider, target) = (spawn_provider().await, common::spawn_upstream().await);
    let secret = "provider-client-secret-0123456789";
    let dir = common::write_config(
        &format!(
            "telemetry:\n  otlp:\n    endpoint: http://{receiver}/\n    export_interval: 100ms\n\
             client:\n  token_key: 3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs=\n  refresh_ahead: 0s\n  providers:\n\
             \x20   - {{ name: counter, authorize_url: http://{provider}/authorize, token_url: http://{provider}/token }}\n\
             \x20 clients:\n    - {{ name: api, provider: counter, client_id: me, client_secret: {secret} }}\n\
             egress:\n  listen: 127.0.0.1:0\n  routes:\n\
             \x20   - {{ prefix: /egress/api/, target: \"http://{target}\", client: api, tag: box }}\n"
        ),
        "listen: 127.0.0.1:0\n",
    );
    // A stored token 30 s from expiry: the first injection refreshes it.
    let loaded = oauth_sidecar::config::load(&dir.path().join("sidecar.yaml")).unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("data/sidecar.db")).await.unwrap());
    let tokens = oauth_sidecar::client::open_tokens(&loaded, store.clone()).await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    common::save_provider_token(&tokens, "provider-access-old", "provider-refresh-old", now + 30).await;
    store.close().await;
    let sidecar = Sidecar::start_in(dir);

    let app_trace = "0af7651916cd43dd8448eb211c80319c";
    let app_span = "b7ad6b7169203331";
    let res = common::client()
        .get(format!("http://{}/egress/api/v1/me?code=egress-code-42", sidecar.egress_addr()))
        .header("traceparent", format!("00-{app_trace}-{app_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let echo: Value = res.json().await.unwrap();
    assert_eq!(echo["headers"]["authorization"][0], "Bearer provider-access-new");
    let sent = echo["headers"]["traceparent"][0].as_str().expect("the target got a traceparent");
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts[1], app_trace, "{sent}");

    let egress =
        wait_span(&received, "egress", |s| attr(s, "url.path").as_deref() == Some("/egress/api/v1/me")).await;
    assert_eq!(egress.kind, SpanKind::Client as i32);
    assert_eq!(hex(&egress.trace_id), app_trace);
    assert_eq!(hex(&egress.parent_span_id), app_span, "the egress span continues the app's");
    assert_eq!(hex(&egress.span_id), parts[2], "the target's traceparent names the egress span");
    assert_eq!(attr(&egress, "http.response.status_code").as_deref(), Some("200"));
    let refresh =
        wait_span(&received, "provider call", |s| attr(s, "url.path").as_deref() == Some("/token")).await;
    assert_eq!(refresh.trace_id, egress.trace_id);
    assert_eq!(refresh.parent_span_id, egress.span_id, "the refresh is the egress call's child");
    assert_eq!(attr(&refresh, "server.address").as_deref(), Some("127.0.0.1"));

    let everything = format!("{:?}", received.lock().unwrap());
    for value in [
        "provider-access-old",
        "provider-refresh-old",
        "provider-access-new",
        "provider-refresh-new",
        secret,
        "egress-code-42",
    ] {
        assert!(!everything.contains(value), "{value} was exported");
    }
    drop(sidecar);
}

#[tokio::test]
async fn grpc_export_carries_the_request_and_its_upstream_call() {
    let (receiver, received) = spawn_grpc_receiver().await;
    let upstream = common::spawn_upstream().await;
    let sidecar = Sidecar::start(&format!(
        "upstream: http://{upstream}\n\
         telemetry:\n  otlp:\n    endpoint: http://{receiver}\n    protocol: grpc\n    export_interval: 100ms\n    service_name: front-door\n"
    ));
    let res = reqwest_client().get(sidecar.url("/echo")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let echo: Value = res.json().await.unwrap();
    let sent = echo["headers"]["traceparent"][0].as_str().expect("the upstream got a traceparent").to_owned();
    let request = wait_span(&received, "request", |s| attr(s, "url.path").as_deref() == Some("/echo")).await;
    assert!(request.parent_span_id.is_empty(), "a new trace: no caller's traceparent");
    let call = wait_span(&received, "upstream call", |s| s.parent_span_id == request.span_id).await;
    assert_eq!(sent, format!("00-{}-{}-01", hex(&call.trace_id), hex(&call.span_id)));
    let resource = format!("{:?}", received.lock().unwrap()[0].resource_spans[0].resource);
    assert!(resource.contains("front-door"), "{resource}");
}

#[tokio::test]
async fn without_telemetry_the_callers_traceparent_reaches_the_upstream_untouched() {
    let upstream = common::spawn_upstream().await;
    let sidecar = Sidecar::start(&format!("upstream: http://{upstream}\n"));
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let res =
        reqwest_client().get(sidecar.url("/echo")).header("traceparent", traceparent).send().await.unwrap();
    let echo: Value = res.json().await.unwrap();
    assert_eq!(echo["headers"]["traceparent"][0], traceparent);
}

#[tokio::test]
async fn sample_ratio_zero_records_only_traces_a_sampled_caller_started() {
    let (receiver, received) = spawn_receiver().await;
    let upstream = common::spawn_upstream().await;
    let sidecar = Sidecar::start(&format!(
        "upstream: http://{upstream}\n\
         telemetry:\n  otlp:\n    endpoint: http://{receiver}/v1/traces\n    sample_ratio: 0\n    export_interval: 100ms\n"
    ));
    let res = reqwest_client().get(sidecar.url("/echo?unsampled")).send().await.unwrap();
    let echo: Value = res.json().await.unwrap();
    let sent = echo["headers"]["traceparent"][0].as_str().expect("a traceparent even when not recorded");
    assert!(sent.ends_with("-00"), "not sampled: {sent}");
    let unsampled_trace = sent.split('-').nth(1).unwrap().to_owned();

    let caller = "00-11111111111111111111111111111111-2222222222222222-01";
    reqwest_client().get(sidecar.url("/echo")).header("traceparent", caller).send().await.unwrap();
    let request =
        wait_span(&received, "sampled request", |s| attr(s, "url.path").as_deref() == Some("/echo")).await;
    assert_eq!(hex(&request.trace_id), "11111111111111111111111111111111");
    assert!(
        spans(&received).iter().all(|s| hex(&s.trace_id) != unsampled_trace),
        "the unsampled request was exported"
    );
}

// Two workers: the receiver answers while the test waits for the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_still_buffered_are_sent_at_shutdown() {
    let (receiver, received) = spawn_receiver().await;
    let upstream = common::spawn_upstream().await;
    let mut sidecar = Sidecar::start(&format!(
        "upstream: http://{upstream}\n\
         telemetry:\n  otlp:\n    endpoint: http://{receiver}/v1/traces\n    export_interval: 1h\n"
    ));
    reqwest_client().get(sidecar.url("/echo")).send().await.unwrap();
    assert!(spans(&received).is_empty(), "nothing is sent before the interval");
    sidecar.terminate();
    assert!(sidecar.wait_exit(Duration::from_secs(10)).success());
    wait_span(&received, "request", |s| attr(s, "url.path").as_deref() == Some("/echo")).await;
}

#[test]
fn a_sidecar_that_cannot_start_exits_with_its_error_while_exporting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = common::write_config(
        "telemetry:\n  otlp:\n    endpoint: http://127.0.0.1:9/v1/traces\n",
        &format!("listen: {}\n", taken.local_addr().unwrap()),
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_oauth-sidecar"))
        .args(["serve", "--config"])
        .arg(dir.path().join("sidecar.yaml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the sidecar did not exit after failing to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut output = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut output).unwrap();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut output).unwrap();
    assert!(
        output.contains(&taken.local_addr().unwrap().to_string()),
        "the error names the address: {output}"
    );
}
