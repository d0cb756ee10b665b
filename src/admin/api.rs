//! The admin JSON API under `{base}/api/` (`admin.path`, default `/admin`):
//! the admin pages' operations for automation, described by the OpenAPI 3.1
//! document at `{base}/api/openapi.json` (`src/admin/openapi.json`).
//!
//! | resource | operations |
//! |---|---|
//! | consumers | `GET`/`POST /consumers`, `GET`/`PUT`/`DELETE /consumers/{client_id}` |
//! | users | `GET`/`POST /users`, `GET`/`PUT /users/{username}`, `POST /users/{username}/sign-out` |
//! | providers | `GET /providers`, `GET /providers/{name}` |
//! | clients | `GET`/`POST /clients`, `GET`/`DELETE /clients/{name}` |
//! | provider tokens | `GET`/`POST /clients/{name}/tokens`, `GET`/`DELETE /tokens/{id}`, `POST /tokens/{id}/refresh` |
//! | grants | `GET /grants`, `DELETE /grants/{family_id}` |
//!
//! Every operation needs `administer oauth`; reading a provider token
//! (`GET /tokens/{id}`) also `manage oauth client secrets`, and a new
//! consumer secret is in the answer only with it. Who may call is said in
//! `access`; how refusals look, in `error`. Bodies in and out are JSON.
//! The handlers call the operations the pages use ([`crate::server::admin`],
//! [`crate::client::admin`], the store) and log the token id of each change.

mod access;
mod clients;
mod consumers;
mod error;
mod grants;
mod users;

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;

pub(crate) use access::Caller;
pub use access::{NewAdminToken, TOKEN_PREFIX, create_token, delete_token, list_tokens};
pub(crate) use clients::{client, clients, create_client, delete_client, provider, providers};
pub(crate) use clients::{
    delete_token as delete_provider_token, fetch_token, inspect_token, refresh_token, tokens,
};
pub(crate) use consumers::{consumer, consumers, create_consumer, delete_consumer, update_consumer};
pub(crate) use error::ApiError;
pub(crate) use grants::{grants, revoke_grant};
pub(crate) use users::{create_user, sign_out_user, update_user, user, users};

/// The OpenAPI document as written, for the default path.
const OPENAPI: &str = include_str!("openapi.json");

/// The server entry of [`OPENAPI`], replaced by the configured path.
const OPENAPI_SERVER: &str = r#""url": "/admin/api""#;

/// The OpenAPI document with `base` (such as `/admin`) in its server URL.
fn openapi_document(base: &str) -> String {
    let url = serde_json::Value::from(format!("{base}/api"));
    OPENAPI.replacen(OPENAPI_SERVER, &format!(r#""url": {url}"#), 1)
}

/// `GET {base}/api/openapi.json`: for anyone but a signed-in user who may
/// not use the admin pages.
pub(crate) async fn openapi(State(site): State<Arc<crate::admin::Site>>, headers: HeaderMap) -> Response {
    if let Err(e) = access::session_user(&site, &headers).await {
        return e.into_response();
    }
    let mut res = openapi_document(&site.base).into_response();
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// Any other path under `{base}/api/`: 404 for a caller who may use the API.
pub(crate) async fn not_found(_caller: Caller) -> ApiError {
    ApiError::NotFound("there is no admin API operation here; see openapi.json".into())
}

/// A method the path has no operation for: 405 for a caller who may use the API.
pub(crate) async fn method_not_allowed(_caller: Caller) -> ApiError {
    ApiError::MethodNotAllowed
}

/// A JSON answer that no cache keeps (some carry secrets).
pub(crate) fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    let mut res = (status, Json(body)).into_response();
    res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A JSON request body: 415 unless it says `application/json`, 400 unless
/// it reads as `T` (unknown fields are refused, so a typo is not ignored).
pub(crate) struct Body<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !access::is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| ApiError::BadRequest(format!("the request body does not fit this operation: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_is_json_and_names_the_configured_path() {
        let doc: serde_json::Value = serde_json::from_str(&openapi_document("/ops/admin")).expect("JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"][0]["url"], "/ops/admin/api");
        assert!(doc["paths"]["/consumers"]["post"].is_object());
        assert_eq!(OPENAPI.matches(OPENAPI_SERVER).count(), 1, "one server entry to replace");
    }
}
