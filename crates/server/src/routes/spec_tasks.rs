//! `/spec-tasks`: create from a prompt, list, read, edit, archive, delete, and the read-only views
//! of a task's specs, revisions and event history. Status is never written here: status changes
//! come from the workflow endpoints, through the transition table.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use spectask_domain::spec_task::name_from_prompt;
use spectask_domain::traceability::CoverageSummary;
use spectask_domain::{
    Event, NewSpecTask, Priority, SpecTask, SpecTaskId, SpecTaskStatus, TaskType, limits,
};
use spectask_engine::planning::on_create::{CreateRefusal, PlanningOnCreate};
use spectask_store::{EventQuery, SpecTaskFilter, SpecTaskPatch};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::lookup::{existing_task, task_id};
use super::validate;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Actor, ApiJson, ApiQuery, parse_json};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_from_prompt))
        .routes(routes!(list_spec_tasks))
        .routes(routes!(get_spec_task, patch_spec_task, delete_spec_task))
        .routes(routes!(archive_spec_task))
        .routes(routes!(unarchive_spec_task))
        .routes(routes!(get_specs))
        .routes(routes!(list_revisions))
        .routes(routes!(list_task_events))
}

/// Body of `POST /spec-tasks/from-prompt`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFromPromptRequest {
    /// What to build, in the user's words (at most 256 KiB).
    #[schema(pattern = r"\S")]
    prompt: String,
    /// Display name; derived from the prompt when absent.
    #[schema(
        pattern = r"^\s*[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*\s*$",
        max_length = 255
    )]
    name: Option<String>,
    /// `feature` (default), `bug`, `refactor`, `chore`, `docs` or `test`.
    #[serde(rename = "type")]
    #[schema(rename = "type", value_type = Option<TaskType>)]
    task_type: Option<String>,
    /// `low`, `medium` (default), `high` or `critical`.
    #[schema(value_type = Option<Priority>)]
    priority: Option<String>,
    /// Absolute path of an existing directory (the project checkout).
    project_path: Option<String>,
    /// Planner profile name, or an ACP agent profile name (planning then runs as an agent session
    /// in `project_path`, which is required).
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,100}$")]
    spec_agent: Option<String>,
    /// Implementation agent profile name.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,100}$")]
    implementation_agent: Option<String>,
    /// Free-form workspace settings kept with the task.
    workspace_config: Option<serde_json::Value>,
    /// Start planning at once (default `true`). When no planner is configured and this is left
    /// out, the task waits in `backlog`; `true` then fails with `planner_not_configured`.
    auto_start: Option<bool>,
}

/// Creates a SpecTask in `backlog` from a prompt.
#[utoipa::path(
    post, path = "/spec-tasks/from-prompt", tag = "spec-tasks",
    request_body = CreateFromPromptRequest,
    params(("X-Spectask-User" = Option<String>, Header, description = "Acting user; `local` when absent")),
    responses(
        (status = 201, description = "Created (in `spec_generation` when planning started)", body = SpecTask),
        (status = 400, description = "Malformed JSON or wrong field types", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB or prompt over 256 KiB", body = ErrorBody),
        (status = 409, description = "`auto_start: true` without a configured planner", body = ErrorBody),
        (status = 422, description = "Invalid enum value, empty prompt, bad project path, unknown planner", body = ErrorBody),
    )
)]
async fn create_from_prompt(
    State(state): State<AppState>,
    Actor(actor): Actor,
    ApiJson(req): ApiJson<CreateFromPromptRequest>,
) -> Result<(StatusCode, Json<SpecTask>), ApiError> {
    let prompt = validate::prompt(&req.prompt)?;
    let task_type: Option<TaskType> = validate::optional_enum(req.task_type.as_deref())?;
    let priority: Option<Priority> = validate::optional_enum(req.priority.as_deref())?;
    let name = match &req.name {
        Some(name) => validate::name(name)?,
        None => name_from_prompt(&prompt),
    };
    let spec_agent = req
        .spec_agent
        .as_deref()
        .map(|a| validate::agent_name("spec_agent", a))
        .transpose()?;
    let implementation_agent = req
        .implementation_agent
        .as_deref()
        .map(|a| validate::agent_name("implementation_agent", a))
        .transpose()?;
    if let Some(config) = &req.workspace_config
        && !config.is_object()
    {
        return Err(ApiError::Validation(
            "workspace_config must be a JSON object".into(),
        ));
    }
    let project_path = match &req.project_path {
        Some(path) => {
            Some(validate::project_path(path, state.settings.workspace_root.as_deref()).await?)
        }
        None => None,
    };
    state
        .engine
        .check_workspace_config(req.workspace_config.as_ref(), project_path.as_deref())
        .await
        .map_err(ApiError::Validation)?;
    // Decided before anything is written, so a refusal changes nothing.
    let start = state
        .engine
        .planning_on_create(&PlanningOnCreate {
            spec_agent: spec_agent.as_deref(),
            implementation_agent: implementation_agent.as_deref(),
            has_project_path: project_path.is_some(),
            auto_start: req.auto_start,
        })
        .map_err(|refusal| match refusal {
            CreateRefusal::AgentPlannerNeedsProject(_) => ApiError::Validation(refusal.to_string()),
            CreateRefusal::UnknownImplementationAgent(_) => {
                ApiError::UnknownAgent(refusal.to_string())
            }
            CreateRefusal::Engine(err) => err.into(),
        })?;
    let new = NewSpecTask {
        name_derived: req.name.is_none(),
        name,
        description: prompt.clone(),
        task_type: task_type.unwrap_or(TaskType::Feature),
        priority: priority.unwrap_or(Priority::Medium),
        original_prompt: prompt,
        spec_agent,
        implementation_agent,
        project_path,
        workspace_config: req.workspace_config,
        created_by: actor,
    };
    let task = state.store.create_spec_task(&new).await?;
    tracing::info!(spec_task_id = %task.id, "spec task created");
    let task = if start {
        state
            .engine
            .start_planning(&task.id, &new.created_by)
            .await?
    } else {
        task
    };
    Ok((StatusCode::CREATED, Json(task)))
}

/// Query of `GET /spec-tasks`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tasks in this status.
    #[param(value_type = Option<SpecTaskStatus>)]
    status: Option<String>,
    /// Only tasks of this type.
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<TaskType>)]
    task_type: Option<String>,
    /// Only tasks of this priority.
    #[param(value_type = Option<Priority>)]
    priority: Option<String>,
    /// Case-insensitive text to find in the name or the prompt (at most 1000 characters).
    #[param(max_length = 1000)]
    q: Option<String>,
    /// `false` (default): live tasks; `true`: archived ones; `all`: both.
    #[param(pattern = "^(true|false|all)$")]
    archived: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// Tasks to skip (default 0).
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// A page of tasks.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpecTaskList {
    spec_tasks: Vec<SpecTask>,
    /// Tasks matching the filter, over all pages.
    total: i64,
    limit: i64,
    offset: i64,
}

/// Lists tasks, newest first.
#[utoipa::path(
    get, path = "/spec-tasks", tag = "spec-tasks", params(ListQuery),
    responses(
        (status = 200, body = SpecTaskList),
        (status = 400, description = "Unknown or malformed parameter", body = ErrorBody),
        (status = 422, description = "Invalid enum value or out-of-range page", body = ErrorBody),
    )
)]
async fn list_spec_tasks(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<SpecTaskList>, ApiError> {
    let limit = query.limit.unwrap_or(limits::DEFAULT_PAGE_LIMIT);
    if !(1..=limits::MAX_PAGE_LIMIT).contains(&limit) {
        return Err(ApiError::Validation(format!(
            "limit must be between 1 and {}",
            limits::MAX_PAGE_LIMIT
        )));
    }
    let offset = query.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::Validation("offset must not be negative".into()));
    }
    let archived = match query.archived.as_deref() {
        None | Some("false") => Some(false),
        Some("true") => Some(true),
        Some("all") => None,
        Some(other) => {
            return Err(ApiError::Validation(format!(
                "archived must be `true`, `false` or `all`, not `{other}`"
            )));
        }
    };
    if query.q.as_ref().is_some_and(|q| q.chars().count() > 1000) {
        return Err(ApiError::Validation(
            "q must be at most 1000 characters".into(),
        ));
    }
    let filter = SpecTaskFilter {
        status: validate::optional_enum(query.status.as_deref())?,
        task_type: validate::optional_enum(query.task_type.as_deref())?,
        priority: validate::optional_enum(query.priority.as_deref())?,
        q: query.q,
        archived,
        limit,
        offset,
    };
    let page = state.store.list_spec_tasks(&filter).await?;
    Ok(Json(SpecTaskList {
        spec_tasks: page.items,
        total: page.total,
        limit,
        offset,
    }))
}

/// One task as `GET /spec-tasks/{id}` shows it: the task, and where its requirements'
/// acceptance criteria stand.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpecTaskDetail {
    #[serde(flatten)]
    task: SpecTask,
    /// The traceability matrix's summary (`GET /spec-tasks/{id}/trace` has the matrix).
    coverage: CoverageSummary,
}

/// One task.
#[utoipa::path(
    get, path = "/spec-tasks/{id}", tag = "spec-tasks",
    params(("id" = String, Path, description = "SpecTask id (`spt_…`)")),
    responses((status = 200, body = SpecTaskDetail), (status = 404, body = ErrorBody))
)]
async fn get_spec_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SpecTaskDetail>, ApiError> {
    let id = task_id(&id)?;
    let task = state.store.get_spec_task(&id).await?;
    let coverage = state.engine.coverage_of(&task).await?;
    Ok(Json(SpecTaskDetail { task, coverage }))
}

/// Body of `PATCH /spec-tasks/{id}`: only these four fields may be written (others are refused
/// by the handler, which names read-only fields; the schema says so too).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchSpecTaskRequest {
    #[schema(
        pattern = r"^\s*[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*\s*$",
        max_length = 255
    )]
    name: Option<String>,
    description: Option<String>,
    #[schema(value_type = Option<Priority>)]
    priority: Option<String>,
    #[serde(rename = "type")]
    #[schema(rename = "type", value_type = Option<TaskType>)]
    task_type: Option<String>,
}

const PATCHABLE: &[&str] = &["name", "description", "priority", "type"];
const READ_ONLY: &[&str] = &[
    "id",
    "status",
    "archived",
    "original_prompt",
    "requirements_spec",
    "technical_design",
    "implementation_plan",
    "spec_agent",
    "implementation_agent",
    "spec_session_id",
    "implementation_session_id",
    "spec_approved_by",
    "spec_approved_at",
    "spec_revision_count",
    "zed_instance_id",
    "project_path",
    "workspace_config",
    "isolation",
    "branch_name",
    "base_branch",
    "base_commit",
    "head_commit",
    "import_format",
    "import_source",
    "created_by",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
];

/// Edits a task's name, description, priority or type. Status is never written directly.
#[utoipa::path(
    patch, path = "/spec-tasks/{id}", tag = "spec-tasks",
    params(("id" = String, Path, description = "SpecTask id")),
    request_body = PatchSpecTaskRequest,
    responses(
        (status = 200, body = SpecTask),
        (status = 400, description = "Malformed JSON, wrong types or unknown field", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Task is archived", body = ErrorBody),
        (status = 422, description = "Read-only field, invalid value", body = ErrorBody),
    )
)]
async fn patch_spec_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Actor(actor): Actor,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Json<SpecTask>, ApiError> {
    let id = task_id(&id)?;
    let object = body
        .as_object()
        .ok_or_else(|| ApiError::InvalidBody("body must be a JSON object".into()))?;
    for key in object.keys() {
        if READ_ONLY.contains(&key.as_str()) {
            return Err(ApiError::ReadOnlyField(format!(
                "`{key}` cannot be written; writable fields are: {}",
                PATCHABLE.join(", ")
            )));
        }
        if !PATCHABLE.contains(&key.as_str()) {
            return Err(ApiError::UnknownField(format!(
                "unknown field `{key}`; writable fields are: {}",
                PATCHABLE.join(", ")
            )));
        }
    }
    let req: PatchSpecTaskRequest = parse_json(body.to_string().as_bytes())?;
    let patch = SpecTaskPatch {
        name: req.name.as_deref().map(validate::name).transpose()?,
        description: req
            .description
            .as_deref()
            .map(validate::description)
            .transpose()?,
        priority: validate::optional_enum(req.priority.as_deref())?,
        task_type: validate::optional_enum(req.task_type.as_deref())?,
    };
    Ok(Json(
        state.store.update_spec_task(&id, &patch, &actor).await?,
    ))
}

/// Deletes a task with everything that belongs to it.
#[utoipa::path(
    delete, path = "/spec-tasks/{id}", tag = "spec-tasks",
    params(("id" = String, Path, description = "SpecTask id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody))
)]
async fn delete_spec_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Actor(actor): Actor,
) -> Result<StatusCode, ApiError> {
    let id = task_id(&id)?;
    state.store.delete_spec_task(&id, &actor).await?;
    tracing::info!(spec_task_id = %id, "spec task deleted");
    // The worker's next tick stops the task's agent (found ended in the database).
    state.engine.wake();
    Ok(StatusCode::NO_CONTENT)
}

/// Archives a task (hidden from the default listing; refuses edits).
#[utoipa::path(
    post, path = "/spec-tasks/{id}/archive", tag = "spec-tasks",
    params(("id" = String, Path, description = "SpecTask id")),
    responses((status = 200, body = SpecTask), (status = 404, body = ErrorBody), (status = 409, description = "Already archived", body = ErrorBody))
)]
async fn archive_spec_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Actor(actor): Actor,
) -> Result<Json<SpecTask>, ApiError> {
    set_archived(&state, &id, true, &actor).await
}

/// Restores an archived task.
#[utoipa::path(
    post, path = "/spec-tasks/{id}/unarchive", tag = "spec-tasks",
    params(("id" = String, Path, description = "SpecTask id")),
    responses((status = 200, body = SpecTask), (status = 404, body = ErrorBody), (status = 409, description = "Not archived", body = ErrorBody))
)]
async fn unarchive_spec_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Actor(actor): Actor,
) -> Result<Json<SpecTask>, ApiError> {
    set_archived(&state, &id, false, &actor).await
}

async fn set_archived(
    state: &AppState,
    raw_id: &str,
    archived: bool,
    actor: &str,
) -> Result<Json<SpecTask>, ApiError> {
    let task = state
        .store
        .set_archived(&task_id(raw_id)?, archived, actor)
        .await?;
    if archived {
        // The worker's next tick stops the task's agent (found ended in the database).
        state.engine.wake();
    }
    Ok(Json(task))
}

/// The three planning documents and their approval state.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpecsResponse {
    spec_task_id: SpecTaskId,
    status: SpecTaskStatus,
    requirements_spec: Option<String>,
    technical_design: Option<String>,
    implementation_plan: Option<String>,
    /// Number of the newest revision; `null` before the first draft.
    revision: Option<i32>,
    spec_revision_count: i32,
    spec_approved_by: Option<String>,
    spec_approved_at: Option<DateTime<Utc>>,
}

/// The task's current specs.
#[utoipa::path(
    get, path = "/spec-tasks/{id}/specs", tag = "spec-tasks",
    params(("id" = String, Path, description = "SpecTask id")),
    responses((status = 200, body = SpecsResponse), (status = 404, body = ErrorBody))
)]
async fn get_specs(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SpecsResponse>, ApiError> {
    let id = task_id(&id)?;
    let task = state.store.get_spec_task(&id).await?;
    let revision = state.store.latest_revision_number(&id).await?;
    Ok(Json(SpecsResponse {
        spec_task_id: task.id,
        status: task.status,
        requirements_spec: task.requirements_spec,
        technical_design: task.technical_design,
        implementation_plan: task.implementation_plan,
        revision,
        spec_revision_count: task.spec_revision_count,
        spec_approved_by: task.spec_approved_by,
        spec_approved_at: task.spec_approved_at,
    }))
}

/// A revision in a listing (documents omitted).
#[derive(Debug, Serialize, ToSchema)]
pub struct RevisionItem {
    revision: i32,
    feedback: Option<String>,
    interaction_id: Option<String>,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevisionList {
    revisions: Vec<RevisionItem>,
}

/// Every planning output of the task, oldest first.
#[utoipa::path(
    get, path = "/spec-tasks/{id}/revisions", tag = "spec-tasks",
    params(("id" = String, Path, description = "SpecTask id")),
    responses((status = 200, body = RevisionList), (status = 404, body = ErrorBody))
)]
async fn list_revisions(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RevisionList>, ApiError> {
    let id = existing_task(&state, &id).await?;
    let revisions = state
        .store
        .list_revisions(&id)
        .await?
        .into_iter()
        .map(|r| RevisionItem {
            revision: r.revision,
            feedback: r.feedback,
            interaction_id: r.interaction_id.map(|i| i.to_string()),
            created_at: r.created_at,
        })
        .collect();
    Ok(Json(RevisionList { revisions }))
}

/// Query of `GET /spec-tasks/{id}/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events with an id greater than this (default 0).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// At most this many, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    events: Vec<Event>,
    /// Pass as `after` to read the next page; equal to the request's `after` when nothing new.
    next_after: i64,
}

/// The task's event history, oldest first.
#[utoipa::path(
    get, path = "/spec-tasks/{id}/events", tag = "spec-tasks",
    params(("id" = String, Path, description = "SpecTask id"), EventsQuery),
    responses((status = 200, body = EventList), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn list_task_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Json<EventList>, ApiError> {
    let id = task_id(&id)?;
    let after = query.after.unwrap_or(0);
    let limit = query.limit.unwrap_or(100);
    if after < 0 || !(1..=1000).contains(&limit) {
        return Err(ApiError::Validation(
            "after must be >= 0 and limit between 1 and 1000".into(),
        ));
    }
    state.store.get_spec_task(&id).await?;
    let events = state
        .store
        .list_events(&EventQuery {
            spec_task_id: Some(id),
            after,
            limit,
        })
        .await?;
    let next_after = events.last().map_or(after, |e| e.id);
    Ok(Json(EventList { events, next_after }))
}
