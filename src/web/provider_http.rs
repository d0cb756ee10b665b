//! The HTTP calls of the `oauth2` and `openidconnect` crates over our
//! reqwest client, for both sides that talk to OAuth providers: the OAuth
//! client role and sign-in through outside providers.

use std::future::Future;
use std::pin::Pin;

use openidconnect::{HttpRequest, HttpResponse};

/// One call's answer, as the crates' async HTTP client returns it.
pub(crate) type Answer = Pin<Box<dyn Future<Output = Result<HttpResponse, reqwest::Error>> + Send>>;

/// The crates' async HTTP client made of `client`: each request sent as it
/// is, the answer's status, headers and body handed back.
pub(crate) fn caller(client: &reqwest::Client) -> impl Fn(HttpRequest) -> Answer + '_ {
    move |req: HttpRequest| {
        let client = client.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let res = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let mut out = http::Response::builder().status(res.status());
            if let Some(h) = out.headers_mut() {
                *h = res.headers().clone();
            }
            let bytes = res.bytes().await?;
            Ok(out.body(bytes.to_vec()).unwrap_or_default())
        })
    }
}
