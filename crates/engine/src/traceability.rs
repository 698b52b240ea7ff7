//! The traceability matrix of a task (issue 18), read from the store: the requirements
//! document's acceptance criteria, the plan's tasks, their work sessions and commits, and the
//! latest check runs, put together by `spectask_domain::traceability`; and the start of the
//! independent review, whose prompt carries the matrix.

use spectask_domain::check::project_checks;
use spectask_domain::plan::parse_plan;
use spectask_domain::traceability::{CoverageSummary, TraceInput, TraceMatrix, trace_matrix};
use spectask_domain::{SpecTask, SpecTaskId, parse_criteria, trace_warnings};

use spectask_domain::review::{ReviewBrief, review_agent, review_prompt};
use spectask_store::NewReview;

use crate::agent_turn::new_instance_id;
use crate::{Engine, EngineError};

impl Engine {
    /// The matrix of task `id`. Before approval no plan task is recorded yet: every criterion is
    /// uncovered, and the warnings (from the plan as written) say what the plan would cover.
    pub async fn trace(&self, id: &SpecTaskId) -> Result<TraceMatrix, EngineError> {
        let task = self.inner.store.get_spec_task(id).await?;
        self.trace_of(&task).await
    }

    /// Where `task`'s acceptance criteria stand: the matrix's summary, read only when the
    /// requirements have criteria (a task without them costs no more reads).
    pub async fn coverage_of(&self, task: &SpecTask) -> Result<CoverageSummary, EngineError> {
        if parse_criteria(task.requirements_spec.as_deref().unwrap_or_default())
            .criteria
            .is_empty()
        {
            return Ok(CoverageSummary::default());
        }
        Ok(self.trace_of(task).await?.coverage)
    }

    async fn trace_of(&self, task: &SpecTask) -> Result<TraceMatrix, EngineError> {
        let store = &self.inner.store;
        let id = &task.id;
        let tasks = store.list_implementation_tasks(id).await?;
        let sessions = store.list_work_sessions(id).await?;
        let check_runs = store.check_runs_of_task(id).await?;
        let verdicts = store.verdicts_of_task(id).await?;
        let criteria = parse_criteria(task.requirements_spec.as_deref().unwrap_or_default());
        let warnings = plan_warnings(task, &criteria.criteria);
        // A bad `workspace_config.check` runs as a failing check; here it is no command.
        let project = project_checks(task.workspace_config.as_ref()).unwrap_or_default();
        Ok(trace_matrix(TraceInput {
            criteria: &criteria.criteria,
            tasks: &tasks,
            sessions: &sessions,
            check_runs: &check_runs,
            project_checks: &project,
            warnings: &warnings,
            verdicts: &verdicts,
        }))
    }
}

/// The gaps between the task's criteria and its plan as written.
pub(crate) fn plan_warnings(
    task: &SpecTask,
    criteria: &[spectask_domain::Criterion],
) -> Vec<spectask_domain::TraceWarning> {
    let plan = parse_plan(task.implementation_plan.as_deref().unwrap_or_default());
    trace_warnings(criteria, &plan.tasks)
}

impl Engine {
    /// Starts the review of every task in `implementation_review` whose `workspace_config`
    /// names a `review_agent` and that has no review session yet: the reviewer's prompt (the
    /// spec, where the changes are, the matrix so far) and its own instance. Guarded in the
    /// store, so two replicas cannot start two reviews.
    pub(crate) async fn start_reviews(&self, actor: &str) -> Result<usize, EngineError> {
        let store = &self.inner.store;
        let mut started = 0;
        for id in store.tasks_awaiting_review().await? {
            let task = store.get_spec_task(&id).await?;
            let agent = match review_agent(task.workspace_config.as_ref()) {
                Ok(Some(agent)) => agent,
                Ok(None) => continue,
                Err(why) => {
                    tracing::warn!(spec_task_id = %id, %why, "no review: the reviewer is misnamed");
                    continue;
                }
            };
            let matrix = self.trace_of(&task).await?;
            let changes = review_changes(&task);
            let prompt = review_prompt(ReviewBrief {
                task_name: &task.name,
                requirements: task.requirements_spec.as_deref().unwrap_or_default(),
                design: task.technical_design.as_deref().unwrap_or_default(),
                plan: task.implementation_plan.as_deref().unwrap_or_default(),
                criteria: &matrix.criteria,
                changes: &changes,
            });
            let instance = new_instance_id();
            let review = NewReview {
                agent: &agent,
                instance_id: instance.as_str(),
                prompt: &prompt,
            };
            if let Some(ws) = store.start_review(&id, review, actor).await? {
                tracing::info!(spec_task_id = %id, work_session_id = %ws, %agent, "review started");
                started += 1;
            }
        }
        Ok(started)
    }
}

/// Where the reviewer finds the task's changes.
fn review_changes(task: &SpecTask) -> String {
    let project = task
        .project_path
        .as_deref()
        .unwrap_or("(no project directory)");
    match (&task.branch_name, &task.base_commit) {
        (Some(branch), Some(base)) => format!(
            "The changes are on the task branch `{branch}`, made from commit `{base}`, in the git \
             repository at `{project}` (your working directory). The working tree is not on that \
             branch: read the changes with `git diff {base} {branch}` and a file as changed with \
             `git show {branch}:<path>`."
        ),
        _ => format!(
            "The coding agents wrote directly in the project directory `{project}` (your working \
             directory): read the files there; in a git repository `git status` and `git diff` \
             show what changed."
        ),
    }
}
