//! spectask's MCP server for the agents it hosts, at `/mcp` (streamable HTTP, served statelessly
//! by rmcp, so any replica answers any call).
//!
//! Every request must carry `Authorization: Bearer <token>`, a per-thread token minted when the
//! thread was created or loaded; the middleware checks it against the store before rmcp sees the
//! request (missing, unknown or of a finished work session: 401 with the JSON error shape) and
//! hands the tools the work session it speaks for. The endpoint is not part of the REST API and
//! so not in the OpenAPI document.

mod tools;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::error::ApiError;
use crate::state::AppState;

/// Where the MCP server is mounted.
pub const MCP_PATH: &str = "/mcp";

/// Tokens are 64 hex characters; anything much longer is refused without a database read.
const MAX_TOKEN_CHARS: usize = 256;

/// The `/mcp` route, authenticated.
pub fn router(state: AppState) -> Router<AppState> {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        // rmcp's Host allow-list guards unauthenticated local servers against DNS rebinding; a
        // browser cannot attach our bearer token, and agents may reach a non-loopback bind.
        .disable_allowed_hosts()
        .with_cancellation_token(state.shutdown.child_token());
    let handler_state = state.clone();
    let service = StreamableHttpService::new(
        move || Ok(tools::AgentTools::new(handler_state.clone())),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Router::new()
        .route_service(MCP_PATH, service)
        .route_layer(middleware::from_fn_with_state(state, authenticate))
}

/// Resolves the bearer token to the work session it speaks for, or answers 401.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty());
    let Some(token) = token else {
        return ApiError::Unauthorized(
            "an agent token is required: Authorization: Bearer <token>".into(),
        )
        .into_response();
    };
    if token.len() > MAX_TOKEN_CHARS {
        return ApiError::Unauthorized("the agent token is not valid".into()).into_response();
    }
    match state.store.authenticate_agent_token(token).await {
        Ok(Some(grant)) => {
            request.extensions_mut().insert(grant);
            next.run(request).await
        }
        Ok(None) => {
            tracing::warn!("MCP request with an unknown or expired agent token");
            ApiError::Unauthorized(
                "the agent token is unknown, or its work session has finished".into(),
            )
            .into_response()
        }
        Err(err) => ApiError::from(err).into_response(),
    }
}
