//! The planning phase: start, revise and approve (transactions in the store). Planning turns run
//! in the background worker ([`crate::worker`]).

pub mod agent;
pub mod on_create;
pub(crate) mod output;
pub mod route;
mod settle;

use spectask_domain::agent_prompts::{agent_planning_prompt, agent_revision_prompt};
use spectask_domain::plan::parse_plan;
use spectask_domain::prompts::{PlanningRequest, initial_prompt, revision_prompt};
use spectask_domain::{NewSpecTask, SpecTask, SpecTaskEvent, SpecTaskId, SpecTaskStatus};
use spectask_store::{ImportedSpecs, NewImplementationTask, StoreError};

use self::agent::SpecPaths;
use self::route::PlanningRoute;
use crate::{Engine, EngineError};

impl Engine {
    /// Creates a task from specs written elsewhere (checked by the caller with
    /// `check_imported_specs`): in `spec_review` with them as revision 1, one transaction; then
    /// written into the workspace like a planner's revision. No planning session is made.
    pub async fn import_specs(
        &self,
        new: &NewSpecTask,
        specs: &ImportedSpecs,
    ) -> Result<SpecTask, EngineError> {
        let (task, revision) = self.inner.store.import_spec_task(new, specs).await?;
        tracing::info!(spec_task_id = %task.id, format = %specs.format, "specs imported");
        self.project(&task, &revision).await;
        Ok(task)
    }

    /// Starts planning a task in `backlog` (or retries one in `spec_failed`): binds its planning
    /// session, records the prompt and queues the turn. The worker picks it up at once.
    pub async fn start_planning(
        &self,
        id: &SpecTaskId,
        actor: &str,
    ) -> Result<SpecTask, EngineError> {
        let store = &self.inner.store;
        let task = store.get_spec_task(id).await?;
        let event = match task.status {
            SpecTaskStatus::Backlog => SpecTaskEvent::StartPlanning,
            SpecTaskStatus::SpecFailed => SpecTaskEvent::RetryPlanning,
            other => return Err(SpecTaskEvent::StartPlanning.refused(other).into()),
        };
        if task.archived {
            return Err(EngineError::Conflict(format!(
                "spec task `{id}` is archived"
            )));
        }
        // Refuse before any state changes when nobody could answer.
        let route = self.planning_route(task.spec_agent.as_deref())?;
        let request = PlanningRequest {
            name: &task.name,
            task_type: task.task_type.as_str(),
            priority: task.priority.as_str(),
            request: if task.description.trim().is_empty() {
                &task.original_prompt
            } else {
                &task.description
            },
            project_path: task.project_path.as_deref(),
        };
        let prompt = match (route, task.project_path.as_deref()) {
            (PlanningRoute::Llm(_), _) => initial_prompt(request),
            (PlanningRoute::Agent(_), Some(project)) => {
                agent_planning_prompt(request, SpecPaths::new(project, id).files())
            }
            (PlanningRoute::Agent(agent), None) => {
                return Err(EngineError::Conflict(format!(
                    "planning with the agent profile `{agent}` needs the task's project_path (the agent works in the checkout)"
                )));
            }
        };
        let task = store.start_planning(id, event, &prompt, actor).await?;
        tracing::info!(spec_task_id = %id, event = event.as_str(), "planning queued");
        self.wake();
        Ok(task)
    }

    /// A reviewer asked for changes: the open comments and the general comment go back to the
    /// same planning session as a revision turn. `revision`, when given, is the revision the
    /// reviewer read: the request is refused (`StoreError::StaleRevision`, nothing changed) unless
    /// it is the latest.
    pub async fn request_spec_changes(
        &self,
        id: &SpecTaskId,
        revision: Option<i32>,
        general: Option<&str>,
        actor: &str,
    ) -> Result<SpecTask, EngineError> {
        let store = &self.inner.store;
        let current = store.get_spec_task(id).await?;
        // An agent revises the files in place; the LLM planner answers with the documents.
        let agent_files = match (
            self.planning_route(current.spec_agent.as_deref()),
            current.project_path.as_deref(),
        ) {
            (Ok(PlanningRoute::Agent(_)), Some(project)) => Some(SpecPaths::new(project, id)),
            _ => None,
        };
        let task = store
            .request_spec_changes(id, revision, general, actor, |comments, revision| {
                match &agent_files {
                    Some(paths) => {
                        agent_revision_prompt(comments, general, revision, paths.files())
                    }
                    None => revision_prompt(comments, general, revision),
                }
            })
            .await?;
        tracing::info!(spec_task_id = %id, revision_count = task.spec_revision_count, "revision queued");
        self.wake();
        Ok(task)
    }

    /// Approves the newest revision: the plan must parse without errors; its tasks become the
    /// task's implementation tasks in the same transaction as the status change. `on_screen`,
    /// when given, is the revision the reviewer approves: unless it is the latest the approval is
    /// refused (`StoreError::StaleRevision`, nothing changed), before the plan is even read; the
    /// store checks it again in the approval's transaction.
    pub async fn approve_specs(
        &self,
        id: &SpecTaskId,
        on_screen: Option<i32>,
        approved_by: &str,
        actor: &str,
    ) -> Result<SpecTask, EngineError> {
        let store = &self.inner.store;
        let task = store.get_spec_task(id).await?;
        if task.status != SpecTaskStatus::SpecReview {
            return Err(SpecTaskEvent::ApproveSpecs.refused(task.status).into());
        }
        let revision = store.latest_revision_number(id).await?.ok_or_else(|| {
            EngineError::Conflict(format!("spec task `{id}` has no specs to approve"))
        })?;
        if let Some(expected) = on_screen
            && expected != revision
        {
            return Err(StoreError::StaleRevision {
                expected,
                latest: revision,
            }
            .into());
        }
        let plan_text = task.implementation_plan.as_deref().unwrap_or_default();
        let plan = parse_plan(plan_text);
        if !plan.errors.is_empty() {
            return Err(EngineError::PlanInvalid {
                errors: plan.errors,
            });
        }
        let tasks: Vec<NewImplementationTask> = plan
            .tasks
            .iter()
            .map(|t| NewImplementationTask {
                key: t.key.clone(),
                title: t.title.clone(),
                description: t.description.clone(),
                acceptance_criteria: (!t.acceptance_criteria.is_empty()).then(|| {
                    t.acceptance_criteria
                        .iter()
                        .map(|c| format!("- {c}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                }),
                estimated_effort: t.estimated_effort.clone(),
                priority: 0,
                index: i32::try_from(t.index).unwrap_or(i32::MAX),
                phase: t.phase.clone(),
                parent_key: t.parent.clone(),
                requirement_refs: t.requirement_refs.clone(),
                checks: t.checks.clone(),
                dependencies: t.depends_on.clone(),
            })
            .collect();
        let task = store
            .approve_specs(id, revision, approved_by, &tasks, actor)
            .await?;
        tracing::info!(spec_task_id = %id, revision, tasks = tasks.len(), "specs approved");
        // The orchestrator queues the approved task for implementation.
        self.wake();
        Ok(task)
    }
}
