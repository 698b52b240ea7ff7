//! The traceability matrix of a task (issue 18), read from the store: the requirements
//! document's acceptance criteria, the plan's tasks, their work sessions and commits, and the
//! latest check runs, put together by `spectask_domain::traceability`.

use spectask_domain::check::project_checks;
use spectask_domain::plan::parse_plan;
use spectask_domain::traceability::{CoverageSummary, TraceInput, TraceMatrix, trace_matrix};
use spectask_domain::{SpecTask, SpecTaskId, parse_criteria, trace_warnings};

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
