//! Removing worktrees: a session's once its commits are merged (right after the merge), and all
//! of a task's worktrees and session branches when the task is done, archived or deleted (the
//! task branch stays, unless the task is deleted). The reaper does the latter, and catches what
//! a crash left (a merged session's worktree, or its record when the worktree is gone, a session
//! or task that no longer exists) by comparing the worktree directory with the database: it runs
//! at start-up and every few
//! seconds after. Each task directory holds `task.json` (its repository and task branch), so
//! the worktrees of a deleted task can still be removed from its repository's records.

use std::path::{Path, PathBuf};

use spectask_domain::{SpecTaskId, SpecTaskStatus, WorkSessionId, WorkSessionStatus};
use spectask_git::GitError;
use spectask_store::StoreError;

use super::{TASK_DIR_RECORD, TaskDirRecord, blocking, open_repository, session_dir, task_dir};
use crate::{Engine, EngineError};

/// What to remove of one task's git footprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskEnd {
    /// Done or archived: worktrees and session branches go, the task branch stays.
    Finished,
    /// Deleted: the task branch goes too.
    Deleted,
}

/// Removes every worktree under `dir` from `record.repository`, the task's session branches
/// (and its task branch when deleted), then the directory.
fn remove_task_footprint(
    dir: &Path,
    record: &TaskDirRecord,
    end: TaskEnd,
) -> Result<usize, GitError> {
    let mut removed = 0;
    if let Some(repo) = spectask_git::Repository::open(&record.repository)? {
        for worktree in repo.worktrees()? {
            if !worktree.is_main && worktree.path.starts_with(dir) {
                repo.remove_worktree(&worktree.path)?;
                removed += 1;
            }
        }
        repo.prune_worktrees()?;
        for branch in repo.branches_with_prefix(&format!("{}--", record.task_branch))? {
            repo.delete_branch(&branch)?;
        }
        if end == TaskEnd::Deleted {
            repo.delete_branch(&record.task_branch)?;
        }
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(removed),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(removed),
        Err(err) => Err(err.into()),
    }
}

/// Removes one session worktree (a no-op if it is gone).
fn remove_one(project: &Path, path: &Path) -> Result<(), GitError> {
    let repo = open_repository(project)?;
    repo.remove_worktree(path)
}

impl Engine {
    /// Removes a merged session's worktree and forgets it (the branch stays until the task ends).
    pub(crate) async fn remove_session_worktree(
        &self,
        project: &str,
        task: &SpecTaskId,
        ws: &WorkSessionId,
    ) -> Result<(), EngineError> {
        let Some(dir) = self.inner.settings.git.worktrees_dir.clone() else {
            return Ok(());
        };
        let path = session_dir(&dir, task, ws);
        let project = PathBuf::from(project);
        blocking(move || remove_one(&project, &path)).await?;
        self.inner.store.clear_worktree(ws).await?;
        tracing::info!(work_session_id = %ws, "worktree removed: its commits are merged");
        Ok(())
    }

    /// One pass of the reaper over the worktree directory; returns the worktrees removed.
    pub(crate) async fn reap_worktrees(&self) -> Result<usize, EngineError> {
        let Some(root) = self.inner.settings.git.worktrees_dir.clone() else {
            return Ok(0);
        };
        let dirs = match std::fs::read_dir(&root) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect::<Vec<_>>(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(err) => {
                return Err(EngineError::Conflict(format!(
                    "cannot read {}: {err}",
                    root.display()
                )));
            }
        };
        let mut removed = 0;
        for dir in dirs {
            let Some(id) = dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| SpecTaskId::parse(n).ok())
            else {
                continue;
            };
            match self.reap_task_dir(&root, &id).await {
                Ok(n) => removed += n,
                Err(err) => {
                    tracing::warn!(spec_task_id = %id, %err, "could not clean up the task's worktrees; retrying later");
                }
            }
        }
        Ok(removed)
    }

    async fn reap_task_dir(&self, root: &Path, id: &SpecTaskId) -> Result<usize, EngineError> {
        let store = &self.inner.store;
        let dir = task_dir(root, id);
        let record = TaskDirRecord::read(&dir);
        let task = match store.get_spec_task(id).await {
            Ok(task) => Some(task),
            Err(StoreError::NotFound { .. }) => None,
            Err(err) => return Err(err.into()),
        };
        let end = match &task {
            None => Some(TaskEnd::Deleted),
            Some(task) if task.status == SpecTaskStatus::Done || task.archived => {
                Some(TaskEnd::Finished)
            }
            Some(_) => None,
        };
        if let Some(end) = end {
            let Some(record) = record else {
                // Nothing was ever made in git (no record): only the directory is left.
                let _ = tokio::fs::remove_dir_all(&dir).await;
                return Ok(0);
            };
            let removed = blocking(move || remove_task_footprint(&dir, &record, end)).await?;
            if let Some(task) = &task {
                for ws in store.list_work_sessions(&task.id).await? {
                    if ws.worktree_path.is_some() {
                        store.clear_worktree(&ws.id).await?;
                    }
                }
                store
                    .record_worktrees_removed(&task.id, removed, &self.inner.owner)
                    .await?;
            }
            tracing::info!(spec_task_id = %id, removed, deleted = end == TaskEnd::Deleted, "the task's worktrees are removed");
            return Ok(removed);
        }
        // A running task: remove the worktrees of sessions that are merged or gone.
        let Some(task) = task else { return Ok(0) };
        let Some(project) = task.project_path.clone() else {
            return Ok(0);
        };
        let mut removed = 0;
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries.filter_map(Result::ok).collect::<Vec<_>>(),
            Err(_) => return Ok(0),
        };
        for entry in entries {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name == TASK_DIR_RECORD || !entry.path().is_dir() {
                continue;
            }
            let Ok(ws_id) = WorkSessionId::parse(name) else {
                continue;
            };
            let stale = match store.get_work_session(&ws_id).await {
                Ok(ws) => ws.status == WorkSessionStatus::Completed,
                Err(StoreError::NotFound { .. }) => true,
                Err(err) => return Err(err.into()),
            };
            if stale {
                let path = entry.path();
                let project = PathBuf::from(&project);
                blocking(move || remove_one(&project, &path)).await?;
                if store.get_work_session(&ws_id).await.is_ok() {
                    store.clear_worktree(&ws_id).await?;
                }
                removed += 1;
            }
        }
        // A crash between removing a merged worktree and forgetting it leaves no directory to
        // find above, only the record: forget it too.
        for ws in store.list_work_sessions(&task.id).await? {
            if ws.status == WorkSessionStatus::Completed
                && ws
                    .worktree_path
                    .as_deref()
                    .is_some_and(|path| !Path::new(path).exists())
            {
                store.clear_worktree(&ws.id).await?;
            }
        }
        Ok(removed)
    }
}
