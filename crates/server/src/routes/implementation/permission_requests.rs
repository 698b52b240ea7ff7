//! The permission requests agents make under the `ask` policy: listed per work session, per
//! task or across tasks by status, and answered with one of the options the agent offered.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use spectask_domain::{PermissionRequest, PermissionRequestStatus};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Actor, ApiJson, ApiQuery};
use crate::routes::lookup::{
    existing_task, existing_work_session, permission_request_id, task_id, work_session_id,
};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_permission_requests))
        .routes(routes!(answer_permission_request))
        .routes(routes!(list_task_permission_requests))
        .routes(routes!(answer_task_permission_request))
        .routes(routes!(list_all_permission_requests))
}

/// Query of `GET /permission-requests`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AllPermissionRequestsQuery {
    /// Only requests in this status (default `pending`).
    #[param(value_type = Option<PermissionRequestStatus>)]
    status: Option<String>,
    /// At most this many, oldest first: 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// The permission requests of every task in one status (default `pending`), oldest first: what
/// a person is asked to answer, wherever they are.
#[utoipa::path(
    get, path = "/permission-requests", tag = "implementation",
    params(AllPermissionRequestsQuery),
    responses((status = 200, body = PermissionRequestList), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn list_all_permission_requests(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AllPermissionRequestsQuery>,
) -> Result<Json<PermissionRequestList>, ApiError> {
    let status = match query.status.as_deref() {
        None => PermissionRequestStatus::Pending,
        Some(value) => value.parse::<PermissionRequestStatus>()?,
    };
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!(
            "limit must be between 1 and 500, got {limit}"
        )));
    }
    let permission_requests = state
        .store
        .list_permission_requests_by_status(status, limit)
        .await?;
    Ok(Json(PermissionRequestList {
        permission_requests,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PermissionRequestList {
    permission_requests: Vec<PermissionRequest>,
}

/// The permission requests the work session's agent made under the `ask` policy, oldest first;
/// `pending` ones wait for an answer.
#[utoipa::path(
    get, path = "/work-sessions/{sid}/permission-requests", tag = "implementation",
    params(("sid" = String, Path, description = "Work session id")),
    responses((status = 200, body = PermissionRequestList), (status = 404, body = ErrorBody))
)]
async fn list_permission_requests(
    State(state): State<AppState>,
    Path(sid): Path<String>,
) -> Result<Json<PermissionRequestList>, ApiError> {
    let ws = existing_work_session(&state, &sid).await?;
    let permission_requests = state.store.list_permission_requests(&ws).await?;
    Ok(Json(PermissionRequestList {
        permission_requests,
    }))
}

/// Body of the answer endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionAnswer {
    /// One of the request's `options[].option_id`.
    option_id: String,
}

/// Answers a pending permission request with one of the options the agent offered.
#[utoipa::path(
    post, path = "/work-sessions/{sid}/permission-requests/{rid}", tag = "implementation",
    params(("sid" = String, Path, description = "Work session id"), ("rid" = String, Path, description = "Permission request id (`prq_…`)")),
    request_body = PermissionAnswer,
    responses(
        (status = 200, body = PermissionRequest),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Already answered or timed out", body = ErrorBody),
        (status = 422, description = "Not an option the agent offered", body = ErrorBody),
    )
)]
async fn answer_permission_request(
    State(state): State<AppState>,
    Path((sid, rid)): Path<(String, String)>,
    Actor(actor): Actor,
    ApiJson(req): ApiJson<PermissionAnswer>,
) -> Result<Json<PermissionRequest>, ApiError> {
    let ws = work_session_id(&sid)?;
    let belongs = |request: &PermissionRequest| request.work_session_id.as_ref() == Some(&ws);
    answer(&state, &rid, belongs, &req.option_id, &actor).await
}

/// Every permission request of the task, from its planning session and its work sessions, oldest
/// first; `pending` ones wait for an answer.
#[utoipa::path(
    get, path = "/spec-tasks/{id}/permission-requests", tag = "implementation",
    params(("id" = String, Path, description = "SpecTask id")),
    responses((status = 200, body = PermissionRequestList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn list_task_permission_requests(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PermissionRequestList>, ApiError> {
    let id = existing_task(&state, &id).await?;
    let permission_requests = state.store.list_task_permission_requests(&id).await?;
    Ok(Json(PermissionRequestList {
        permission_requests,
    }))
}

/// Answers a pending permission request of the task (planning or implementation) with one of the
/// options the agent offered.
#[utoipa::path(
    post, path = "/spec-tasks/{id}/permission-requests/{rid}", tag = "implementation",
    params(("id" = String, Path, description = "SpecTask id"), ("rid" = String, Path, description = "Permission request id (`prq_…`)")),
    request_body = PermissionAnswer,
    responses(
        (status = 200, body = PermissionRequest),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Already answered or timed out", body = ErrorBody),
        (status = 422, description = "Not an option the agent offered", body = ErrorBody),
    )
)]
async fn answer_task_permission_request(
    State(state): State<AppState>,
    Path((id, rid)): Path<(String, String)>,
    Actor(actor): Actor,
    ApiJson(req): ApiJson<PermissionAnswer>,
) -> Result<Json<PermissionRequest>, ApiError> {
    let id = task_id(&id)?;
    let belongs = |request: &PermissionRequest| request.spec_task_id == id;
    answer(&state, &rid, belongs, &req.option_id, &actor).await
}

/// Answers request `rid` with `option_id`, if `belongs` says it is the path owner's (under another
/// owner it is not found) and the agent offered that option.
async fn answer(
    state: &AppState,
    rid: &str,
    belongs: impl FnOnce(&PermissionRequest) -> bool,
    option_id: &str,
    actor: &str,
) -> Result<Json<PermissionRequest>, ApiError> {
    let id = permission_request_id(rid)?;
    let request = state.store.get_permission_request(&id).await?;
    if !belongs(&request) {
        return Err(ApiError::NotFound {
            entity: "permission request",
            id: rid.to_owned(),
        });
    }
    if !request.options.iter().any(|o| o.option_id == option_id) {
        let offered: Vec<&str> = request
            .options
            .iter()
            .map(|o| o.option_id.as_str())
            .collect();
        return Err(ApiError::Validation(format!(
            "`{option_id}` is not an option of this request; offered: {}",
            offered.join(", ")
        )));
    }
    let answered = state
        .store
        .settle_permission_request(&request.id, Some(option_id), actor)
        .await?;
    Ok(Json(answered))
}
