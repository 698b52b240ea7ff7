//! Request extractors that turn every malformed input into an [`ApiError`] (so even a rejected
//! body gets the JSON error shape), and the request's actor.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body. The `Content-Type` is not required (so `curl -d` works); the size limit comes
/// from the router's `DefaultBodyLimit`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge {
                    limit: spectask_domain::limits::MAX_BODY_BYTES,
                }
            } else {
                ApiError::InvalidBody(rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body, telling syntax errors (400 `malformed_json`) from shape errors (400
/// `invalid_body`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedJson(
            "request body is empty; expected a JSON object".into(),
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    T::deserialize(de).map_err(|err| {
        use serde_json::error::Category;
        match err.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::MalformedJson(format!("malformed JSON: {err}"))
            }
            Category::Data => ApiError::InvalidBody(format!("invalid request body: {err}")),
        }
    })
}

/// Query parameters; unknown or malformed ones are a 400 `invalid_query`.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|rejection| {
                ApiError::InvalidQuery(format!(
                    "invalid query `{query}`: {}",
                    rejection.body_text()
                ))
            })
    }
}

/// Who is making the request: the `X-Spectask-User` header, or `local` when absent. Recorded as
/// `created_by` and as the actor of every event the request causes.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

pub const ACTOR_HEADER: &str = "x-spectask-user";
const DEFAULT_ACTOR: &str = "local";

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(ACTOR_HEADER) else {
            return Ok(Actor(DEFAULT_ACTOR.to_owned()));
        };
        let text = value
            .to_str()
            .map_err(|_| ApiError::Validation(format!("{ACTOR_HEADER} must be visible ASCII")))?
            .trim();
        if text.is_empty() || text.len() > 255 {
            return Err(ApiError::Validation(format!(
                "{ACTOR_HEADER} must be 1 to 255 characters"
            )));
        }
        Ok(Actor(text.to_owned()))
    }
}
