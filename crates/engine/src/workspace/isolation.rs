//! On entering implementation: decide how the task's work sessions share the project and, in
//! worktree isolation, make the task branch `spectask/<slug>-<id suffix>` at the repository's
//! HEAD. Decided once (the store keeps the first answer), idempotent in git.

use std::path::PathBuf;

use spectask_domain::{SpecTask, WorkspaceIsolation, workspace_choice};
use spectask_git::{GitError, Repository, branch_slug};
use spectask_store::TaskBranch;

use super::{TaskDirRecord, blocking, id_suffix, task_dir};
use crate::{Engine, EngineError};

/// Why a task that asked for worktrees runs shared; `None` when it can have them.
fn shared_because(repo: &Option<Repository>, worktrees: bool) -> Option<&'static str> {
    if !worktrees {
        Some("worktree isolation is off on this server")
    } else if repo.is_none() {
        Some("the project is not a git repository")
    } else {
        None
    }
}

impl Engine {
    /// Records `shared` isolation for the task (once).
    async fn record_shared(&self, task: &SpecTask) -> Result<SpecTask, EngineError> {
        Ok(self
            .inner
            .store
            .record_isolation(
                &task.id,
                WorkspaceIsolation::Shared,
                None,
                &self.inner.owner,
            )
            .await?)
    }

    /// Checks a new task's `workspace_config` keys spectask reads: known values, the project
    /// check's commands, a reviewer among the runtime's agent profiles, and `worktree`
    /// isolation only for a project that is a git repository with a commit. The message says
    /// what is wrong.
    pub async fn check_workspace_config(
        &self,
        config: Option<&serde_json::Value>,
        project_path: Option<&str>,
    ) -> Result<(), String> {
        let choice = workspace_choice(config)?;
        spectask_domain::check::project_checks(config)?;
        if let Some(reviewer) = spectask_domain::review::review_agent(config)?
            && let Some(runtime) = self.inner.runtime.as_ref()
            && !runtime.knows_agent(&reviewer)
        {
            return Err(format!(
                "workspace_config.review_agent `{reviewer}` is no configured agent profile"
            ));
        }
        if choice.isolation != Some(WorkspaceIsolation::Worktree) {
            return Ok(());
        }
        let Some(project) = project_path.map(PathBuf::from) else {
            return Err("workspace_config.isolation `worktree` needs a project_path".into());
        };
        let head = blocking(move || match Repository::open(&project)? {
            Some(repo) => repo.head().map(|head| Some(head.commit.is_some())),
            None => Ok(None),
        })
        .await
        .map_err(|err| err.to_string())?;
        match head {
            Some(true) => Ok(()),
            Some(false) => Err(
                "workspace_config.isolation `worktree` needs a repository with at least one commit"
                    .into(),
            ),
            None => Err(
                "workspace_config.isolation `worktree` needs a project that is a git repository; \
                 use `shared` (or leave it out) for other directories"
                    .into(),
            ),
        }
    }

    /// Records the task's isolation (and makes its branch) unless already recorded; returns the
    /// task as recorded.
    pub(crate) async fn prepare_isolation(&self, task: &SpecTask) -> Result<SpecTask, EngineError> {
        if task.isolation.is_some() {
            return Ok(task.clone());
        }
        let store = &self.inner.store;
        let settings = &self.inner.settings.git;
        let wanted = workspace_choice(task.workspace_config.as_ref())
            .map_err(EngineError::Conflict)?
            .isolation
            .unwrap_or(settings.default_isolation);
        let Some(project) = task.project_path.clone().map(PathBuf::from) else {
            return self.record_shared(task).await;
        };
        if wanted == WorkspaceIsolation::Shared {
            return self.record_shared(task).await;
        }
        let repo = blocking({
            let project = project.clone();
            move || Repository::open(&project)
        })
        .await?;
        if let Some(why) = shared_because(&repo, settings.worktrees_dir.is_some()) {
            tracing::info!(spec_task_id = %task.id, why, "the task runs in shared isolation");
            return self.record_shared(task).await;
        }
        let (Some(repo), Some(worktrees_dir)) = (repo, settings.worktrees_dir.clone()) else {
            return Err(EngineError::Conflict("unreachable: checked above".into()));
        };
        let branch_name = format!(
            "spectask/{}-{}",
            branch_slug(&task.name, 40),
            id_suffix(task.id.as_str())
        );
        let dir = task_dir(&worktrees_dir, &task.id);
        let branch = blocking({
            let branch_name = branch_name.clone();
            move || -> Result<Option<TaskBranch>, GitError> {
                let head = repo.head()?;
                let Some(commit) = head.commit else {
                    return Ok(None);
                };
                let base_commit = match repo.create_branch(&branch_name, &commit) {
                    Ok(()) => commit,
                    // Made by an earlier attempt (a crash before the record): adopt it, from
                    // where it left HEAD's history.
                    Err(GitError::BranchExists { at, .. }) => {
                        repo.merge_base(&at, &commit)?.unwrap_or(at)
                    }
                    Err(err) => return Err(err),
                };
                TaskDirRecord {
                    repository: repo.work_tree().to_path_buf(),
                    task_branch: branch_name.clone(),
                }
                .write(&dir)?;
                Ok(Some(TaskBranch {
                    branch_name,
                    base_branch: head.branch,
                    base_commit: base_commit.to_string(),
                }))
            }
        })
        .await?;
        let Some(branch) = branch else {
            tracing::info!(spec_task_id = %task.id, "the repository has no commit yet; the task runs in shared isolation");
            return self.record_shared(task).await;
        };
        let recorded = store
            .record_isolation(
                &task.id,
                WorkspaceIsolation::Worktree,
                Some(&branch),
                &self.inner.owner,
            )
            .await?;
        tracing::info!(spec_task_id = %task.id, branch = %branch.branch_name, base = %branch.base_commit, "task branch ready");
        Ok(recorded)
    }
}
