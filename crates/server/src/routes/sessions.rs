//! `/sessions/{id}`: a Helix session with its interactions.

use axum::Json;
use axum::extract::{Path, State};
use spectask_domain::{Session, SessionId};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::validate;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_session))
}

/// A session with its interactions in order.
#[utoipa::path(
    get, path = "/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id (`ses_…`)")),
    responses((status = 200, body = Session), (status = 404, body = ErrorBody))
)]
async fn get_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    let id = validate::id("session", &id, SessionId::parse)?;
    Ok(Json(state.store.get_session(&id).await?))
}
