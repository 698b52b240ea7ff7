//! The traceability matrix of a task (issue 18), read from the store: the requirements
//! document's acceptance criteria, the plan's tasks, their work sessions and commits, and the
//! latest check runs, put together by `spectask_domain::traceability`; and the start of the
//! independent review, whose prompt carries the matrix.

use spectask_domain::check::project_checks;
use spectask_domain::plan::parse_plan;
use spectask_domain::traceability::{CoverageSummary, TraceInput, TraceMatrix, trace_matrix};
use spectask_domain::{Criterion, SpecTask, SpecTaskId, parse_criteria, trace_warnings};

use spectask_domain::review::{ReviewBrief, review_agent, review_prompt};
use spectask_git::{Diff, DiffPage};
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

    /// The matrix of `task`.
    async fn trace_of(&self, task: &SpecTask) -> Result<TraceMatrix, EngineError> {
        let criteria = parse_criteria(task.requirements_spec.as_deref().unwrap_or_default());
        self.trace_with(task, &criteria.criteria).await
    }

    /// Where `task`'s acceptance criteria stand: the matrix's summary, read only when the
    /// requirements have criteria (a task without them costs no more reads).
    pub async fn coverage_of(&self, task: &SpecTask) -> Result<CoverageSummary, EngineError> {
        let criteria = parse_criteria(task.requirements_spec.as_deref().unwrap_or_default());
        if criteria.criteria.is_empty() {
            return Ok(CoverageSummary::default());
        }
        Ok(self.trace_with(task, &criteria.criteria).await?.coverage)
    }

    /// The matrix of `task`, whose requirements have `criteria`.
    async fn trace_with(
        &self,
        task: &SpecTask,
        criteria: &[Criterion],
    ) -> Result<TraceMatrix, EngineError> {
        let store = &self.inner.store;
        let id = &task.id;
        let tasks = store.list_implementation_tasks(id).await?;
        let sessions = store.list_work_sessions(id).await?;
        let check_runs = store.check_runs_of_task(id).await?;
        let verdicts = store.verdicts_of_task(id).await?;
        let touched_files = store.touched_files_of_task(id).await?;
        let warnings = plan_warnings(task, criteria);
        // A bad `workspace_config.check` runs as a failing check; here it is no command.
        let project = project_checks(task.workspace_config.as_ref()).unwrap_or_default();
        Ok(trace_matrix(TraceInput {
            criteria,
            tasks: &tasks,
            sessions: &sessions,
            check_runs: &check_runs,
            project_checks: &project,
            warnings: &warnings,
            verdicts: &verdicts,
            touched_files: &touched_files,
        }))
    }
}

/// The gaps between the task's criteria and its plan as written.
fn plan_warnings(task: &SpecTask, criteria: &[Criterion]) -> Vec<spectask_domain::TraceWarning> {
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
            let changes = self.review_changes(&task).await;
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

/// The task diff the reviewer's prompt carries at most: enough for a focused change, with the
/// rest one `git diff` away.
const REVIEW_DIFF_FILES: usize = 200;
const REVIEW_DIFF_PATCH_BYTES: usize = 16 * 1024;
const REVIEW_DIFF_BYTES: usize = 96 * 1024;

impl Engine {
    /// Where the reviewer finds the task's changes, and (in worktree isolation) the diff itself,
    /// cut to [`REVIEW_DIFF_BYTES`].
    async fn review_changes(&self, task: &SpecTask) -> String {
        let project = task
            .project_path
            .as_deref()
            .unwrap_or("(no project directory)");
        let (Some(branch), Some(base)) = (&task.branch_name, &task.base_commit) else {
            return format!(
                "The coding agents wrote directly in the project directory `{project}` (your \
                 working directory): read the files there; in a git repository `git status` and \
                 `git diff` show what changed."
            );
        };
        let mut out = format!(
            "The changes are on the task branch `{branch}`, made from commit `{base}`, in the git \
             repository at `{project}` (your working directory). The working tree is not on that \
             branch: read the changes with `git diff {base} {branch}` and a file as changed with \
             `git show {branch}:<path>`.\n"
        );
        let page = DiffPage {
            offset: 0,
            limit: REVIEW_DIFF_FILES,
            max_patch_bytes: REVIEW_DIFF_PATCH_BYTES,
            with_patches: true,
        };
        match self.task_diff(&task.id, page).await {
            Ok(diff) => out.push_str(&render_diff(&diff.diff)),
            Err(err) => {
                tracing::warn!(spec_task_id = %task.id, %err, "the review prompt goes without the diff");
            }
        }
        out
    }
}

/// The diff as the reviewer reads it: the totals, each file's counts, then the patches until
/// [`REVIEW_DIFF_BYTES`].
fn render_diff(diff: &Diff) -> String {
    let mut out = format!(
        "\n{} files changed, {} insertions, {} deletions:\n",
        diff.total_files, diff.additions, diff.deletions
    );
    for file in &diff.files {
        out.push_str(&format!(
            "- `{}` (+{} -{})\n",
            file.path, file.additions, file.deletions
        ));
    }
    if diff.next_offset.is_some() {
        out.push_str("- … and more (see `git diff`)\n");
    }
    out.push_str("\n```diff\n");
    let mut cut = false;
    for patch in diff.files.iter().filter_map(|f| f.patch.as_deref()) {
        if out.len() + patch.len() > REVIEW_DIFF_BYTES {
            cut = true;
            break;
        }
        out.push_str(patch);
        if !patch.ends_with('\n') {
            out.push('\n');
        }
    }
    out.push_str("```\n");
    if cut || diff.files.iter().any(|f| f.patch_truncated) {
        out.push_str("(The diff above is cut; `git diff` has all of it.)\n");
    }
    out
}
