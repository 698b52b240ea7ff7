//! Specs written with other tools: `POST /spec-tasks/import` makes a task in `spec_review` from a
//! Kiro or spec-kit folder's three documents (checked like a planner's output, stored as the files
//! have them, as revision 1), and `GET /spec-tasks/{id}/export` hands back a task's approved (or
//! latest) documents with the implementation's progress ticked in the plan's checkboxes, for a
//! client to write in either layout.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use spectask_domain::plan::{PlanTaskStatus, render_progress};
use spectask_domain::spec_task::name_from_prompt;
use spectask_domain::{
    ImplementationTaskStatus, ImportedSpecsError, NewSpecTask, Priority, SpecLayout, SpecTask,
    SpecTaskId, SpecTaskStatus, TaskType, check_imported_specs, limits,
};
use spectask_engine::planning::on_create::{CreateRefusal, PlanningOnCreate};
use spectask_store::ImportedSpecs;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::lookup::task_id;
use super::validate;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Actor, ApiJson};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(import_specs))
        .routes(routes!(export_specs))
}

/// Body of `POST /spec-tasks/import`: the three documents exactly as the files hold them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportSpecsRequest {
    /// `kiro` (requirements.md, design.md, tasks.md) or `speckit` (spec.md, plan.md, tasks.md).
    #[schema(value_type = SpecLayout)]
    format: String,
    /// Where the documents came from: a path or a label (at most 1000 bytes), kept on the task.
    #[schema(pattern = r"\S", max_length = 1000)]
    source: String,
    /// Kiro's requirements.md or spec-kit's spec.md (at most 256 KiB, not blank).
    #[schema(pattern = r"\S")]
    requirements_spec: String,
    /// Kiro's design.md or spec-kit's plan.md (at most 256 KiB, not blank).
    #[schema(pattern = r"\S")]
    technical_design: String,
    /// tasks.md (at most 256 KiB): must parse into tasks without errors.
    #[schema(pattern = r"\S")]
    implementation_plan: String,
    /// Display name; derived from the source's last path segment when absent.
    #[schema(
        pattern = r"^\s*[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*\s*$",
        max_length = 255
    )]
    name: Option<String>,
    /// Absolute path of an existing directory (the project checkout).
    project_path: Option<String>,
    /// `feature` (default), `bug`, `refactor`, `chore`, `docs` or `test`.
    #[serde(rename = "type")]
    #[schema(rename = "type", value_type = Option<TaskType>)]
    task_type: Option<String>,
    /// `low`, `medium` (default), `high` or `critical`.
    #[schema(value_type = Option<Priority>)]
    priority: Option<String>,
    /// Implementation agent profile name.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,100}$")]
    implementation_agent: Option<String>,
}

/// Creates a SpecTask in `spec_review` with the imported documents as revision 1 (no planning).
#[utoipa::path(
    post, path = "/spec-tasks/import", tag = "spec-tasks",
    request_body = ImportSpecsRequest,
    params(("X-Spectask-User" = Option<String>, Header, description = "Acting user; `local` when absent")),
    responses(
        (status = 201, description = "Created in `spec_review` with revision 1", body = SpecTask),
        (status = 400, description = "Malformed JSON, wrong field types or unknown field", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB or a document over 256 KiB", body = ErrorBody),
        (status = 422, description = "Invalid enum value, blank document or source, bad project path, unknown agent, or a plan that does not parse into tasks (`plan_invalid` with `plan_errors`)", body = ErrorBody),
    )
)]
async fn import_specs(
    State(state): State<AppState>,
    Actor(actor): Actor,
    ApiJson(req): ApiJson<ImportSpecsRequest>,
) -> Result<(StatusCode, Json<SpecTask>), ApiError> {
    let format: SpecLayout = req.format.parse()?;
    let task_type: Option<TaskType> = validate::optional_enum(req.task_type.as_deref())?;
    let priority: Option<Priority> = validate::optional_enum(req.priority.as_deref())?;
    let source = req.source.trim().to_owned();
    if source.is_empty() || source.len() > limits::MAX_IMPORT_SOURCE_BYTES {
        return Err(ApiError::Validation(format!(
            "source must not be blank and at most {} bytes",
            limits::MAX_IMPORT_SOURCE_BYTES
        )));
    }
    let name = match &req.name {
        Some(name) => validate::name(name)?,
        None => name_from_source(&source),
    };
    let implementation_agent = req
        .implementation_agent
        .as_deref()
        .map(|a| validate::agent_name("implementation_agent", a))
        .transpose()?;
    check_imported_specs(
        &req.requirements_spec,
        &req.technical_design,
        &req.implementation_plan,
    )
    .map_err(|err| match err {
        ImportedSpecsError::TooLarge { field, size, limit } => {
            ApiError::DocumentTooLarge { field, size, limit }
        }
        ImportedSpecsError::Blank { .. } => ApiError::Validation(err.to_string()),
        ImportedSpecsError::Plan { ref errors } => ApiError::PlanInvalid {
            message: err.to_string(),
            errors: errors.clone(),
        },
    })?;
    let project_path = match &req.project_path {
        Some(path) => {
            Some(validate::project_path(path, state.settings.workspace_root.as_deref()).await?)
        }
        None => None,
    };
    // Only the implementation agent matters: nothing is planned.
    state
        .engine
        .planning_on_create(&PlanningOnCreate {
            spec_agent: None,
            implementation_agent: implementation_agent.as_deref(),
            has_project_path: project_path.is_some(),
            auto_start: Some(false),
        })
        .map_err(|refusal| match refusal {
            CreateRefusal::UnknownImplementationAgent(_) => {
                ApiError::UnknownAgent(refusal.to_string())
            }
            CreateRefusal::AgentPlannerNeedsProject(_) => ApiError::Validation(refusal.to_string()),
            CreateRefusal::Engine(err) => err.into(),
        })?;
    let label = match format {
        SpecLayout::Kiro => "Kiro",
        SpecLayout::Speckit => "spec-kit",
    };
    let description = format!("Imported from {label} specs: {source}");
    let new = NewSpecTask {
        name_derived: req.name.is_none(),
        name,
        description: description.clone(),
        task_type: task_type.unwrap_or(TaskType::Feature),
        priority: priority.unwrap_or(Priority::Medium),
        original_prompt: description,
        spec_agent: None,
        implementation_agent,
        project_path,
        workspace_config: None,
        created_by: actor,
    };
    let specs = ImportedSpecs {
        format,
        source,
        requirements_spec: req.requirements_spec,
        technical_design: req.technical_design,
        implementation_plan: req.implementation_plan,
    };
    let task = state.engine.import_specs(&new, &specs).await?;
    Ok((StatusCode::CREATED, Json(task)))
}

/// The name of a task imported without one: the source's last path segment.
fn name_from_source(source: &str) -> String {
    let last = source
        .trim_end_matches(['/', '\\'])
        .rsplit(['/', '\\'])
        .next()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or(source);
    name_from_prompt(last)
}

/// A task's documents as an export writes them.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportedSpecs {
    spec_task_id: SpecTaskId,
    status: SpecTaskStatus,
    /// The revision the documents are: the approved one, else the latest.
    revision: i32,
    /// Whether `revision` is the approved one.
    approved: bool,
    requirements_spec: String,
    technical_design: String,
    /// The plan with each implementation task's checkbox showing its progress (as the workspace's
    /// `tasks.md` does); before approval, as written.
    implementation_plan: String,
    /// The layout the specs were imported from, if they were.
    import_format: Option<SpecLayout>,
}

/// The task's approved (or latest) documents, the plan's checkboxes showing progress.
#[utoipa::path(
    get, path = "/spec-tasks/{id}/export", tag = "spec-tasks",
    params(("id" = String, Path, description = "SpecTask id")),
    responses(
        (status = 200, body = ExportedSpecs),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The task has no specs yet", body = ErrorBody),
    )
)]
async fn export_specs(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ExportedSpecs>, ApiError> {
    let id = task_id(&id)?;
    let task = state.store.get_spec_task(&id).await?;
    let number = match task.spec_approved_revision {
        Some(approved) => approved,
        None => state
            .store
            .latest_revision_number(&id)
            .await?
            .ok_or_else(|| ApiError::Conflict(format!("spec task `{id}` has no specs yet")))?,
    };
    let revision = state.store.get_revision(&id, number).await?;
    let approved = task.spec_approved_revision == Some(number);
    let progress: Vec<(String, PlanTaskStatus)> = if approved {
        state
            .store
            .list_implementation_tasks(&id)
            .await?
            .into_iter()
            .map(|t| {
                let status = match t.status {
                    ImplementationTaskStatus::Completed => PlanTaskStatus::Completed,
                    ImplementationTaskStatus::InProgress => PlanTaskStatus::InProgress,
                    _ => PlanTaskStatus::Pending,
                };
                (t.key, status)
            })
            .collect()
    } else {
        Vec::new()
    };
    let implementation_plan = if progress.is_empty() {
        revision.implementation_plan
    } else {
        render_progress(&revision.implementation_plan, progress)
    };
    Ok(Json(ExportedSpecs {
        spec_task_id: task.id,
        status: task.status,
        revision: number,
        approved,
        requirements_spec: revision.requirements_spec,
        technical_design: revision.technical_design,
        implementation_plan,
        import_format: task.import_format,
    }))
}

#[cfg(test)]
mod tests {
    use super::name_from_source;

    #[test]
    fn names_come_from_the_last_path_segment() {
        assert_eq!(
            name_from_source("/home/me/app/.kiro/specs/bookmark-sync/"),
            "bookmark-sync"
        );
        assert_eq!(name_from_source("specs\\002-sync"), "002-sync");
        assert_eq!(name_from_source("a label"), "a label");
    }
}
