//! The review gate at the end of implementation: accept it (optionally merging the task branch
//! into its base branch), or send it back with a comment.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use spectask_domain::{ApprovalMerge, SpecTask};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Actor, ApiJson, parse_json};
use crate::routes::lookup::{task_id, work_session_id};
use crate::routes::validate;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(approve_implementation))
        .routes(routes!(request_changes))
}

/// Body of the approve-implementation endpoint (optional: an empty body approves without a
/// merge).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveImplementationBody {
    /// What to do with the task branch: `none` (default) leaves it for a pull request;
    /// `fast_forward` moves the base branch (the one the task started from) to it, refused when
    /// the base branch has diverged; `merge_commit` merges it there with a merge commit. When the
    /// base branch is checked out in the project's work tree, that tree is updated too (refused
    /// while it has uncommitted changes to tracked files).
    #[schema(value_type = Option<ApprovalMerge>)]
    merge: Option<String>,
}

/// Accepts the implementation: optionally merges the task branch into its base branch, then
/// `implementation_review → done`. A refused merge changes nothing.
#[utoipa::path(
    post, path = "/spec-tasks/{id}/approve-implementation", tag = "implementation",
    params(("id" = String, Path, description = "SpecTask id")),
    request_body = Option<ApproveImplementationBody>,
    responses(
        (status = 200, body = SpecTask),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 404, description = "Unknown task", body = ErrorBody),
        (status = 409, description = "`invalid_transition`: not in implementation_review; with a merge: `no_branch`, `no_base_branch`, `not_a_repository`, `dirty_worktree`, `not_fast_forward`, `merge_conflict` (with `conflict_files`), or `conflict` (the base branch is gone or checked out elsewhere)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Unknown `merge` value", body = ErrorBody),
    )
)]
async fn approve_implementation(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Actor(actor): Actor,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SpecTask>, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: spectask_domain::limits::MAX_BODY_BYTES,
            }
        } else {
            ApiError::InvalidBody(rejection.body_text())
        }
    })?;
    // An empty body (or JSON `null`) is the original request, an approval without a merge.
    let request: ApproveImplementationBody = if body.iter().all(u8::is_ascii_whitespace) {
        ApproveImplementationBody::default()
    } else {
        parse_json::<Option<ApproveImplementationBody>>(&body)?.unwrap_or_default()
    };
    let merge = validate::optional_enum::<ApprovalMerge>(request.merge.as_deref())?
        .unwrap_or(ApprovalMerge::None);
    let id = task_id(&id)?;
    Ok(Json(
        state
            .engine
            .approve_implementation(&id, merge, &actor)
            .await?,
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
