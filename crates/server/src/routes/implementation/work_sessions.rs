//! Work sessions: created from the approved plan, listed, read in full, spawned from a running
//! one, cancelled, messaged and retried.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use spectask_domain::{
    Session, SpecTaskImplementationTask, SpecTaskWorkSession, SpecTaskZedThread, Turn,
    WorkSessionId, WorkSessionPhase, WorkSessionStatus,
};
use spectask_engine::implementation::WorkSessionView;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Actor, ApiJson, ApiQuery};
use crate::routes::lookup::{task_id, work_session_id};
use crate::routes::validate;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_implementation_sessions))
        .routes(routes!(list_work_sessions))
        .routes(routes!(get_work_session))
        .routes(routes!(spawn_work_session))
        .routes(routes!(cancel_work_session))
        .routes(routes!(message_work_session))
        .routes(routes!(retry_work_session))
}

/// A work session with its thread, its family and why it waits.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkSessionItem {
    #[serde(flatten)]
    work_session: SpecTaskWorkSession,
    zed_thread: Option<SpecTaskZedThread>,
    child_work_session_ids: Vec<WorkSessionId>,
    /// Why a pending or blocked session is not running.
    queue_reason: Option<String>,
}

impl From<WorkSessionView> for WorkSessionItem {
    fn from(view: WorkSessionView) -> Self {
        Self {
            work_session: view.work_session,
            zed_thread: view.zed_thread,
            child_work_session_ids: view.child_work_session_ids,
            queue_reason: view.queue_reason,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkSessionList {
    work_sessions: Vec<WorkSessionItem>,
    total: usize,
}

impl FromIterator<WorkSessionView> for WorkSessionList {
    fn from_iter<I: IntoIterator<Item = WorkSessionView>>(views: I) -> Self {
        let work_sessions: Vec<WorkSessionItem> = views.into_iter().map(Into::into).collect();
        Self {
            total: work_sessions.len(),
            work_sessions,
        }
    }
}

/// Creates the work sessions from the approved plan (the orchestrator calls the same code).
/// Idempotent: a task already in implementation gets its existing sessions back.
#[utoipa::path(
    post, path = "/spec-tasks/{id}/implementation-sessions", tag = "implementation",
    params(("id" = String, Path, description = "SpecTask id")),
    responses((status = 200, body = WorkSessionList), (status = 404, body = ErrorBody), (status = 409, description = "Specs not approved", body = ErrorBody))
)]
async fn create_implementation_sessions(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Actor(actor): Actor,
) -> Result<Json<WorkSessionList>, ApiError> {
    let id = task_id(&id)?;
    state
        .engine
        .create_implementation_sessions(&id, &actor)
        .await?;
    let views = state.engine.work_session_views(&id).await?;
    Ok(Json(views.into_iter().collect()))
}

/// Filters of `GET /spec-tasks/{id}/work-sessions`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WorkSessionQuery {
    /// `planning` or `implementation`.
    #[param(value_type = Option<WorkSessionPhase>)]
    phase: Option<String>,
    /// `pending`, `active`, `completed`, `failed`, `cancelled` or `blocked`.
    #[param(value_type = Option<WorkSessionStatus>)]
    status: Option<String>,
}

/// The task's work sessions, in creation order.
#[utoipa::path(
    get, path = "/spec-tasks/{id}/work-sessions", tag = "implementation",
    params(("id" = String, Path, description = "SpecTask id"), WorkSessionQuery),
    responses((status = 200, body = WorkSessionList), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn list_work_sessions(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<WorkSessionQuery>,
) -> Result<Json<WorkSessionList>, ApiError> {
    let id = task_id(&id)?;
    let phase: Option<WorkSessionPhase> = validate::optional_enum(query.phase.as_deref())?;
    let status: Option<WorkSessionStatus> = validate::optional_enum(query.status.as_deref())?;
    let views = state.engine.work_session_views(&id).await?;
    Ok(Json(
        views
            .into_iter()
            .filter(|v| phase.is_none_or(|p| v.work_session.phase == p))
            .filter(|v| status.is_none_or(|s| v.work_session.status == s))
            .collect(),
    ))
}

/// A work session in full.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkSessionDetail {
    work_session: WorkSessionItem,
    /// Its Helix session with every interaction.
    helix_session: Session,
    implementation_tasks: Vec<SpecTaskImplementationTask>,
    turns: Vec<Turn>,
}

async fn detail(state: &AppState, ws: &WorkSessionId) -> Result<WorkSessionDetail, ApiError> {
    let session = state.store.get_work_session(ws).await?;
    let view = state
        .engine
        .work_session_views(&session.spec_task_id)
        .await?
        .into_iter()
        .find(|v| &v.work_session.id == ws)
        .ok_or_else(|| ApiError::NotFound {
            entity: "work session",
            id: ws.to_string(),
        })?;
    let helix_session = state.store.get_session(&session.helix_session_id).await?;
    let implementation_tasks = state
        .store
        .list_implementation_tasks(&session.spec_task_id)
        .await?
        .into_iter()
        .filter(|t| t.assigned_work_session_id.as_ref() == Some(ws))
        .collect();
    let turns = state.engine.work_session_turns(ws).await?;
    Ok(WorkSessionDetail {
        work_session: view.into(),
        helix_session,
        implementation_tasks,
        turns,
    })
}

/// One work session with its Helix session, tasks and turns.
#[utoipa::path(
    get, path = "/work-sessions/{sid}", tag = "implementation",
    params(("sid" = String, Path, description = "Work session id (`stws_…`)")),
    responses((status = 200, body = WorkSessionDetail), (status = 404, body = ErrorBody))
)]
async fn get_work_session(
    State(state): State<AppState>,
    Path(sid): Path<String>,
) -> Result<Json<WorkSessionDetail>, ApiError> {
    Ok(Json(detail(&state, &work_session_id(&sid)?).await?))
}

/// Body of the spawn endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnRequest {
    #[schema(
        pattern = r"^\s*[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*\s*$",
        max_length = 255
    )]
    name: String,
    #[schema(pattern = r"\S")]
    description: String,
}

/// Spawns a work session from an active implementation session; it gets its own Helix session
/// and thread and is dispatched as soon as a thread slot is free.
#[utoipa::path(
    post, path = "/spec-tasks/{id}/work-sessions/{sid}/spawn", tag = "implementation",
    params(("id" = String, Path, description = "SpecTask id"), ("sid" = String, Path, description = "Parent work session id")),
    request_body = SpawnRequest,
    responses(
        (status = 201, body = WorkSessionDetail),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The parent is not an active implementation session", body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
async fn spawn_work_session(
    State(state): State<AppState>,
    Path((id, sid)): Path<(String, String)>,
    Actor(actor): Actor,
    ApiJson(req): ApiJson<SpawnRequest>,
) -> Result<(StatusCode, Json<WorkSessionDetail>), ApiError> {
    let (id, parent) = (task_id(&id)?, work_session_id(&sid)?);
    let name = validate::name(&req.name)?;
    let description = validate::required_text("description", &req.description)?;
    let spawned = state
        .engine
        .spawn_work_session(&id, &parent, &name, &description, &actor)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(detail(&state, &spawned.id).await?),
    ))
}

/// Cancels a work session and its running turn.
#[utoipa::path(
    post, path = "/work-sessions/{sid}/cancel", tag = "implementation",
    params(("sid" = String, Path, description = "Work session id")),
    responses((status = 200, body = SpecTaskWorkSession), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
async fn cancel_work_session(
    State(state): State<AppState>,
    Path(sid): Path<String>,
    Actor(actor): Actor,
) -> Result<Json<SpecTaskWorkSession>, ApiError> {
    let ws = work_session_id(&sid)?;
    Ok(Json(state.engine.cancel_work_session(&ws, &actor).await?))
}

/// Body of the message endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    #[schema(pattern = r"\S")]
    text: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedTurn {
    turn_id: String,
}

/// Sends a human follow-up to one thread, queued as a turn after the one running.
#[utoipa::path(
    post, path = "/work-sessions/{sid}/message", tag = "implementation",
    params(("sid" = String, Path, description = "Work session id")),
    request_body = MessageRequest,
    responses((status = 202, body = QueuedTurn), (status = 404, body = ErrorBody), (status = 409, description = "Not an active session", body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn message_work_session(
    State(state): State<AppState>,
    Path(sid): Path<String>,
    Actor(actor): Actor,
    ApiJson(req): ApiJson<MessageRequest>,
) -> Result<(StatusCode, Json<QueuedTurn>), ApiError> {
    let text = validate::required_text("text", &req.text)?;
    let turn = state
        .engine
        .message_work_session(&work_session_id(&sid)?, &text, &actor)
        .await?;
    let turn_id = turn.to_string();
    Ok((StatusCode::ACCEPTED, Json(QueuedTurn { turn_id })))
}

/// Retries a failed work session; the sessions it blocked wait for it again.
#[utoipa::path(
    post, path = "/work-sessions/{sid}/retry", tag = "implementation",
    params(("sid" = String, Path, description = "Work session id")),
    responses((status = 200, body = SpecTaskWorkSession), (status = 404, body = ErrorBody), (status = 409, description = "Not failed", body = ErrorBody))
)]
async fn retry_work_session(
    State(state): State<AppState>,
    Path(sid): Path<String>,
    Actor(actor): Actor,
) -> Result<Json<SpecTaskWorkSession>, ApiError> {
    let ws = work_session_id(&sid)?;
    Ok(Json(state.engine.retry_work_session(&ws, &actor).await?))
}
