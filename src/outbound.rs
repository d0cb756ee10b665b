//! The HTTP client for the calls the sidecar makes on its own behalf (an
//! issuer's JWKS, sign-in through a provider, back-channel logout tokens,
//! trace export): rustls with the
//! ring provider and the platform's trust store, and the sidecar's
//! `User-Agent`. Each caller adds its own timeout and redirect policy.

use std::sync::Arc;

/// A client builder with TLS and the `User-Agent` set.
pub(crate) fn client_builder() -> Result<reqwest::ClientBuilder, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_platform_verifier()
        .map_err(|e| e.to_string())?
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(concat!("oauth-sidecar/", env!("CARGO_PKG_VERSION"))))
}

/// An error with its sources, `a: b: c`: what an outbound call's failure
/// says in a log line or an error page.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
