//! The task's Zed instance as derived from its threads, the threads themselves, and progress
//! against the plan.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use spectask_domain::traceability::CoverageSummary;
use spectask_domain::{ImplementationTaskStatus, SpecTaskZedThread, WorkSessionId};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::routes::lookup::{existing_task, task_id};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_zed_instance))
        .routes(routes!(list_zed_threads))
        .routes(routes!(get_progress))
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
    let id = existing_task(&state, &id).await?;
    let zed_threads = state.store.list_zed_threads(&id).await?;
    let total = zed_threads.len();
    Ok(Json(ZedThreadList { zed_threads, total }))
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
    /// Where the requirements' acceptance criteria stand (see `GET /spec-tasks/{id}/trace`).
    coverage: CoverageSummary,
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
        coverage: progress.coverage,
    }))
}
