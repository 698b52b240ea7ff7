//! The implementation phase (the seed's multi-session endpoints): work sessions, spawning, the Zed
//! instance and its threads, progress, and the review gate at the end.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use spectask_domain::{
    ImplementationTaskStatus, PermissionRequest, PermissionRequestId, Session, SpecTask,
    SpecTaskImplementationTask, SpecTaskWorkSession, SpecTaskZedThread, Turn, WorkSessionId,
    WorkSessionPhase, WorkSessionStatus, limits,
};
use spectask_engine::implementation::WorkSessionView;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::spec_tasks::task_id;
use super::validate;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Actor, ApiJson, ApiQuery};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_implementation_sessions))
        .routes(routes!(list_work_sessions))
        .routes(routes!(get_work_session))
        .routes(routes!(spawn_work_session))
        .routes(routes!(get_zed_instance))
        .routes(routes!(list_zed_threads))
        .routes(routes!(get_progress))
        .routes(routes!(cancel_work_session))
        .routes(routes!(message_work_session))
        .routes(routes!(retry_work_session))
        .routes(routes!(approve_implementation))
        .routes(routes!(request_changes))
        .routes(routes!(list_permission_requests))
        .routes(routes!(answer_permission_request))
        .routes(routes!(list_task_permission_requests))
        .routes(routes!(answer_task_permission_request))
}

fn ws_id(raw: &str) -> Result<WorkSessionId, ApiError> {
    validate::id("work session", raw, WorkSessionId::parse)
}

/// Required free text, as sent.
fn text_field(name: &str, value: &str) -> Result<String, ApiError> {
    limits::text_field(name, value, true).map_err(ApiError::Validation)?;
    Ok(value.to_owned())
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
    let items: Vec<WorkSessionItem> = state
        .engine
        .work_session_views(&id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(WorkSessionList {
        total: items.len(),
        work_sessions: items,
    }))
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
    let phase = query
        .phase
        .as_deref()
        .map(str::parse::<WorkSessionPhase>)
        .transpose()?;
    let status = query
        .status
        .as_deref()
        .map(str::parse::<WorkSessionStatus>)
        .transpose()?;
    let items: Vec<WorkSessionItem> = state
        .engine
        .work_session_views(&id)
        .await?
        .into_iter()
        .filter(|v| phase.is_none_or(|p| v.work_session.phase == p))
        .filter(|v| status.is_none_or(|s| v.work_session.status == s))
        .map(Into::into)
        .collect();
    Ok(Json(WorkSessionList {
        total: items.len(),
        work_sessions: items,
    }))
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
    Ok(Json(detail(&state, &ws_id(&sid)?).await?))
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
    let (id, parent) = (task_id(&id)?, ws_id(&sid)?);
    let name = validate::name(&req.name)?;
    let description = text_field("description", &req.description)?;
    let spawned = state
        .engine
        .spawn_work_session(&id, &parent, &name, &description, &actor)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(detail(&state, &spawned.id).await?),
    ))
}

/// The task's Zed instance, as derived from its threads.
#[derive(Debug, Serialize, ToSchema)]
pub struct ZedInstance {
    spec_task_id: String,
    zed_instance_id: Option<String>,
    /// `none`, `starting`, `running`, `idle`, `disconnected` or `stopped`.
    status: &'static str,
    thread_count: usize,
    active_threads: usize,
    project_path: Option<String>,
    last_activity_at: Option<DateTime<Utc>>,
    /// The runtime hosting it on this server (`acp`, `zed`, ...); `null` when none is configured.
    runtime: Option<&'static str>,
    /// Whether its agent runs in the OS sandbox; `null` while no agent of it runs on this server.
    sandbox: Option<InstanceSandbox>,
}

/// The OS sandbox of a running agent (see the README's security model).
#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceSandbox {
    /// The agent's writes are confined to its workspace, temp directory and state.
    active: bool,
    /// The profile's `sandbox` setting.
    mode: SandboxModeName,
    /// What is enforced, or why not.
    detail: String,
}

/// `required`, `best_effort` or `off`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SandboxModeName {
    Required,
    BestEffort,
    Off,
}

#[utoipa::path(
    get, path = "/spec-tasks/{id}/zed-instance", tag = "implementation",
    params(("id" = String, Path, description = "SpecTask id")),
    responses((status = 200, body = ZedInstance), (status = 404, body = ErrorBody))
)]
async fn get_zed_instance(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ZedInstance>, ApiError> {
    let id = task_id(&id)?;
    let view = state.engine.instance_view(&id).await?;
    Ok(Json(ZedInstance {
        spec_task_id: id.to_string(),
        zed_instance_id: view.zed_instance_id,
        status: view.status,
        thread_count: view.thread_count,
        active_threads: view.active_threads,
        project_path: view.project_path,
        last_activity_at: view.last_activity_at,
        runtime: view.runtime,
        sandbox: view.sandbox.map(|status| InstanceSandbox {
            active: status.active,
            mode: match status.mode {
                "required" => SandboxModeName::Required,
                "off" => SandboxModeName::Off,
                _ => SandboxModeName::BestEffort,
            },
            detail: status.detail,
        }),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ZedThreadList {
    zed_threads: Vec<SpecTaskZedThread>,
    total: usize,
}

/// The threads of the task's instance.
#[utoipa::path(
    get, path = "/spec-tasks/{id}/zed-threads", tag = "implementation",
    params(("id" = String, Path, description = "SpecTask id")),
    responses((status = 200, body = ZedThreadList), (status = 404, body = ErrorBody))
)]
async fn list_zed_threads(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ZedThreadList>, ApiError> {
    let id = task_id(&id)?;
    state.store.get_spec_task(&id).await?;
    let threads = state.store.list_zed_threads(&id).await?;
    Ok(Json(ZedThreadList {
        total: threads.len(),
        zed_threads: threads,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskProgress {
    key: String,
    title: String,
    status: ImplementationTaskStatus,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressResponse {
    /// Completed implementation tasks over all of them, 0 to 1.
    overall_progress: f64,
    completed_tasks: usize,
    total_tasks: usize,
    tasks: Vec<TaskProgress>,
    active_work_sessions: Vec<WorkSessionId>,
}

/// Progress against the plan.
#[utoipa::path(
    get, path = "/spec-tasks/{id}/progress", tag = "implementation",
    params(("id" = String, Path, description = "SpecTask id")),
    responses((status = 200, body = ProgressResponse), (status = 404, body = ErrorBody))
)]
async fn get_progress(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ProgressResponse>, ApiError> {
    let progress = state.engine.progress(&task_id(&id)?).await?;
    Ok(Json(ProgressResponse {
        overall_progress: progress.overall,
        completed_tasks: progress.completed,
        total_tasks: progress.total,
        tasks: progress
            .tasks
            .into_iter()
            .map(|t| TaskProgress {
                key: t.key,
                title: t.title,
                status: t.status,
            })
            .collect(),
        active_work_sessions: progress.active_work_sessions,
    }))
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
    Ok(Json(
        state
            .engine
            .cancel_work_session(&ws_id(&sid)?, &actor)
            .await?,
    ))
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
    let text = text_field("text", &req.text)?;
    let turn = state
        .engine
        .message_work_session(&ws_id(&sid)?, &text, &actor)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(QueuedTurn {
            turn_id: turn.to_string(),
        }),
    ))
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
    Ok(Json(
        state
            .engine
            .retry_work_session(&ws_id(&sid)?, &actor)
            .await?,
    ))
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
    Ok(Json(
        state
            .engine
            .approve_implementation(&task_id(&id)?, &actor)
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
    let comment = text_field("comment", &req.comment)?;
    let sessions = req
        .work_session_ids
        .unwrap_or_default()
        .iter()
        .map(|s| ws_id(s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(
        state
            .engine
            .request_implementation_changes(&id, &comment, &sessions, &actor)
            .await?,
    ))
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
    let ws = ws_id(&sid)?;
    state.store.get_work_session(&ws).await?;
    Ok(Json(PermissionRequestList {
        permission_requests: state.store.list_permission_requests(&ws).await?,
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
    let ws = ws_id(&sid)?;
    let id = validate::id("permission request", &rid, PermissionRequestId::parse)?;
    let request = state.store.get_permission_request(&id).await?;
    if request.work_session_id.as_ref() != Some(&ws) {
        return Err(ApiError::NotFound {
            entity: "permission request",
            id: rid,
        });
    }
    settle_permission_request(&state, request, &req.option_id, &actor).await
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
    let id = task_id(&id)?;
    state.store.get_spec_task(&id).await?;
    Ok(Json(PermissionRequestList {
        permission_requests: state.store.list_task_permission_requests(&id).await?,
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
    let request_id = validate::id("permission request", &rid, PermissionRequestId::parse)?;
    let request = state.store.get_permission_request(&request_id).await?;
    if request.spec_task_id != id {
        return Err(ApiError::NotFound {
            entity: "permission request",
            id: rid,
        });
    }
    settle_permission_request(&state, request, &req.option_id, &actor).await
}

/// Checks `option_id` against the request's options, then answers it.
async fn settle_permission_request(
    state: &AppState,
    request: PermissionRequest,
    option_id: &str,
    actor: &str,
) -> Result<Json<PermissionRequest>, ApiError> {
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
    Ok(Json(
        state
            .store
            .settle_permission_request(&request.id, Some(option_id), actor)
            .await?,
    ))
}
