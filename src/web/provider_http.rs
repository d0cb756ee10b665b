//! The HTTP calls of the `oauth2` and `openidconnect` crates over our
//! reqwest client, for both sides that talk to OAuth providers: the OAuth
//! client role and sign-in through outside providers; and the discovery
//! document type both read.

use std::future::Future;
use std::pin::Pin;

use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType,
};
use openidconnect::{AdditionalProviderMetadata, HttpRequest, HttpResponse, ProviderMetadata};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::ops::trace;

/// The revocation endpoint and the RFC 9207 flag in discovery metadata
/// (RFC 8414), which the OpenID core metadata type leaves out.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ExtraMetadata {
    /// RFC 7009 revocation endpoint.
    #[serde(default)]
    pub(crate) revocation_endpoint: Option<String>,
    /// RFC 9207 section 3: the authorization response carries `iss`.
    #[serde(default)]
    pub(crate) authorization_response_iss_parameter_supported: Option<bool>,
}
impl AdditionalProviderMetadata for ExtraMetadata {}

/// A provider's OpenID discovery document, with [`ExtraMetadata`].
pub(crate) type Discovered = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// One call's answer, as the crates' async HTTP client returns it.
pub(crate) type Answer = Pin<Box<dyn Future<Output = Result<HttpResponse, reqwest::Error>> + Send>>;

/// The crates' async HTTP client made of `client`: each request sent as it
/// is, the answer's status, headers and body handed back. With traces on,
/// each call is a `provider call` span (method, host, path; never the query
/// or body, which carry codes and secrets).
pub(crate) fn caller(client: &reqwest::Client) -> impl Fn(HttpRequest) -> Answer + '_ {
    move |req: HttpRequest| {
        let client = client.clone();
        let span = trace::span_if_enabled(|| {
            tracing::info_span!(
                "provider call",
                otel.name = %format_args!("provider {}", req.method()),
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                http.request.method = %req.method(),
                server.address = req.uri().host().unwrap_or_default(),
                url.path = req.uri().path(),
                http.response.status_code = tracing::field::Empty,
            )
        });
        let call = async move {
            let (parts, body) = req.into_parts();
            let res = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            trace::record_status(&tracing::Span::current(), res.status());
            let mut out = http::Response::builder().status(res.status());
            if let Some(h) = out.headers_mut() {
                *h = res.headers().clone();
            }
            let bytes = res.bytes().await?;
            Ok(out.body(bytes.to_vec()).unwrap_or_default())
        };
        Box::pin(call.instrument(span))
    }
}
