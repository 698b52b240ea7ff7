//! Signing the browser in on a server that requires the API token: the login page posts the
//! token to [`LOGIN_PATH`]; a right one is answered with a session cookie that the guard accepts
//! in place of the token (`HttpOnly`, so no script reads it; `SameSite=Strict`, so no other
//! site's page sends it).
//!
//! The cookie holds a digest derived from the token, not the token itself: cookies are shared by
//! every port of a host, so a cookie that reached another local server must not hand it the
//! token the CLI and scripts use. The guard ignores a cookie that does not match (another local
//! app could plant one) instead of refusing the request.

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;

pub const LOGIN_PATH: &str = "/ui/login";
pub const LOGOUT_PATH: &str = "/ui/logout";
/// The session cookie's name.
pub const COOKIE_NAME: &str = "spectask_session";
/// How long a browser stays signed in: 30 days.
const MAX_AGE_SECS: u64 = 30 * 24 * 60 * 60;

/// Body of [`LOGIN_PATH`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    token: String,
}

/// `POST /ui/login {"token": …}`: 204 with the session cookie, or 401 when the token is wrong.
pub async fn login(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Login>,
) -> Result<Response, ApiError> {
    let Some(token) = &state.settings.api_token else {
        return Err(ApiError::Conflict(
            "this server has no API token: there is nothing to sign in to".into(),
        ));
    };
    if body.token.len() > 4096 || !token.matches(body.token.trim()) {
        return Err(ApiError::Unauthorized("the API token is wrong".into()));
    }
    let cookie = format!(
        "{COOKIE_NAME}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={MAX_AGE_SECS}",
        token.session_cookie_value()
    );
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    Ok(response)
}

/// `POST /ui/logout`: 204, clearing the session cookie.
pub async fn logout() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_static("spectask_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

/// The value of the session cookie in a `Cookie` header, if there is one.
pub fn session_cookie(header: &str) -> Option<&str> {
    header.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE_NAME).then_some(value.trim())
    })
}
