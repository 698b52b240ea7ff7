//! A work session's worktree: made from the task branch when the session's turn runs (its
//! dependencies are merged by then: a session completes only after its merge), on the session's
//! own branch, and reused by every later turn. A branch with unmerged work (a crash between a
//! commit and its merge, a blocked merge) is kept as it is; a merged one restarts from the task
//! branch (a session reopened for review changes).

use std::path::PathBuf;

use spectask_domain::{SpecTask, SpecTaskWorkSession, WorkspaceIsolation};
use spectask_git::{CommitId, GitError, branch_slug};
use spectask_store::SessionWorktree;

use super::{TaskGit, blocking, id_suffix, open_repository, session_dir};
use crate::{Engine, EngineError};

/// Where a work session's agent works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionPlace {
    /// The session's worktree (its top).
    pub(crate) worktree: PathBuf,
    /// The agent's working directory: the project's place inside the worktree (the project
    /// may be a subdirectory of its repository).
    pub(crate) cwd: PathBuf,
}

/// The session branch: beside the task branch (a ref cannot be both a branch and a directory of
/// branches), named after the session.
pub(crate) fn session_branch(task_branch: &str, ws: &SpecTaskWorkSession) -> String {
    let name = ws
        .implementation_task_title
        .as_deref()
        .or(ws.name.as_deref())
        .unwrap_or("session");
    format!(
        "{task_branch}--{}-{}",
        branch_slug(name, 24),
        id_suffix(ws.id.as_str())
    )
}

impl Engine {
    /// The session's place in worktree isolation (made if missing); `None` in shared isolation,
    /// where the agent works in the project itself.
    pub(crate) async fn session_place(
        &self,
        task: &SpecTask,
        ws: &SpecTaskWorkSession,
    ) -> Result<Option<SessionPlace>, EngineError> {
        if task.isolation != Some(WorkspaceIsolation::Worktree) {
            return Ok(None);
        }
        let TaskGit {
            worktrees_dir: dir,
            task_branch,
            project,
        } = TaskGit::of(self.inner.settings.git.worktrees_dir.as_deref(), task)?;
        let path = session_dir(&dir, &task.id, &ws.id);
        let branch = ws
            .branch_name
            .clone()
            .unwrap_or_else(|| session_branch(&task_branch, ws));
        let recorded = ws.worktree_path.is_some();
        let (created, subdir) = blocking({
            let path = path.clone();
            move || -> Result<(Option<SessionWorktree>, PathBuf), GitError> {
                let repo = open_repository(project.as_ref())?;
                let subdir = repo.subdir().to_path_buf();
                if recorded && repo.worktree(&path).is_ok() {
                    return Ok((None, subdir));
                }
                let task_tip =
                    repo.branch_commit(&task_branch)?
                        .ok_or_else(|| GitError::BranchNotFound {
                            branch: task_branch.clone(),
                        })?;
                let start: CommitId = match repo.branch_commit(&branch)? {
                    Some(own) if !repo.is_ancestor(&own, &task_tip)? => own,
                    _ => task_tip.clone(),
                };
                repo.add_worktree(&path, &branch, &start)?;
                let base = if start == task_tip {
                    task_tip
                } else {
                    repo.merge_base(&start, &task_tip)?.unwrap_or(start)
                };
                Ok((
                    Some(SessionWorktree {
                        branch_name: branch,
                        worktree_path: path.to_string_lossy().into_owned(),
                        base_commit: base.to_string(),
                    }),
                    subdir,
                ))
            }
        })
        .await?;
        if let Some(created) = created {
            tracing::info!(work_session_id = %ws.id, branch = %created.branch_name, path = %created.worktree_path, "worktree ready");
            self.inner
                .store
                .record_worktree(&ws.id, &created, &self.inner.owner)
                .await?;
        }
        let cwd = path.join(subdir);
        tokio::fs::create_dir_all(&cwd).await.map_err(|err| {
            EngineError::Conflict(format!("cannot make {}: {err}", cwd.display()))
        })?;
        Ok(Some(SessionPlace {
            worktree: path,
            cwd,
        }))
    }
}

impl Engine {
    /// Brings the task branch into a session's worktree before a turn that resumes after an
    /// overlap wait (`serialize`): the earlier session's work on the same files is merged there
    /// now, so the agent continues from it. Its own work so far is committed first (a merge
    /// needs a clean tree); conflicting files keep their markers and are returned for the
    /// prompt. Idempotent: a re-run finds the merge made (or still in progress).
    pub(crate) async fn catch_up_worktree(
        &self,
        task: &SpecTask,
        ws: &SpecTaskWorkSession,
        place: &SessionPlace,
    ) -> Result<Vec<String>, EngineError> {
        let Some(task_branch) = task.branch_name.clone() else {
            return Ok(Vec::new());
        };
        let message = spectask_domain::workspace::session_commit_message(
            "Work in progress, before merging the task branch",
            None,
            &[],
            &ws.id,
            &task.id,
        );
        let author = self.inner.settings.git.author.clone();
        let worktree = place.worktree.clone();
        let Some(project) = task.project_path.clone() else {
            return Ok(Vec::new());
        };
        blocking(move || {
            let worktree = open_repository(project.as_ref())?.worktree(&worktree)?;
            if worktree.merge_in_progress()? {
                return worktree.unmerged_files();
            }
            worktree.commit_all(&message, &author)?;
            match worktree.start_merge(
                &task_branch,
                &format!("Merge {task_branch} into the session's branch"),
                &author,
            )? {
                spectask_git::MergeStart::Conflicted { files } => Ok(files),
                _ => Ok(Vec::new()),
            }
        })
        .await
    }
}
