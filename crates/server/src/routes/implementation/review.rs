//! The review gate at the end of implementation: accept it, or send it back with a comment.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use spectask_domain::SpecTask;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Actor, ApiJson};
use crate::routes::lookup::{task_id, work_session_id};
use crate::routes::validate;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(approve_implementation))
        .routes(routes!(request_changes))
}

/// Accepts the implementation: `implementation_review → done`.
#[utoipa::path(
    post, path = "/spec-tasks/{id}/approve-implementation", tag = "implementation",
    params(("id" = String, Path, description = "SpecTask id")),
    responses((status = 200, body = SpecTask), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
async fn approve_implementation(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Actor(actor): Actor,
) -> Result<Json<SpecTask>, ApiError> {
    let id = task_id(&id)?;
    Ok(Json(
        state.engine.approve_implementation(&id, &actor).await?,
    ))
}

/// Body of the request-changes endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestChangesBody {
    #[schema(pattern = r"\S")]
    comment: String,
    /// The work sessions to reopen; all completed implementation sessions when absent.
    work_session_ids: Option<Vec<String>>,
}

/// Sends the implementation back with a comment: each named (or every) work session gets a new
/// turn; the task returns to `implementation`.
#[utoipa::path(
    post, path = "/spec-tasks/{id}/request-changes", tag = "implementation",
    params(("id" = String, Path, description = "SpecTask id")),
    request_body = RequestChangesBody,
    responses((status = 200, body = SpecTask), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn request_changes(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Actor(actor): Actor,
    ApiJson(req): ApiJson<RequestChangesBody>,
) -> Result<Json<SpecTask>, ApiError> {
    let id = task_id(&id)?;
    let comment = validate::required_text("comment", &req.comment)?;
    let sessions = req
        .work_session_ids
        .unwrap_or_default()
        .iter()
        .map(|s| work_session_id(s))
        .collect::<Result<Vec<_>, _>>()?;
    let task = state
        .engine
        .request_implementation_changes(&id, &comment, &sessions, &actor)
        .await?;
    Ok(Json(task))
}
