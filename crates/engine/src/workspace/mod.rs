//! Git isolation of a task's work sessions (issue 13): on entering implementation a task branch
//! is made from the repository's HEAD (`isolation.rs`); each work session works in its own
//! worktree on its own branch, made from the task branch when its first turn runs, after its
//! dependencies were merged (`worktree.rs`); when a turn ends its changes are committed and merged
//! into the task branch, or the conflict becomes a follow-up turn or a block (`settle.rs`);
//! merged worktrees, and all of an ended task's, are removed, also after a crash (`cleanup.rs`).
//!
//! Everything here is recoverable from git and the database: branch and worktree names are
//! derived from ids, every git step is idempotent (a re-run after a crash finds the branch, the
//! worktree or the merge already there), and ref moves are compare-and-set, so a merge never
//! loses a commit. The git layer is synchronous; it runs on tokio's blocking pool.

mod cleanup;
mod isolation;
mod settle;
mod worktree;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use spectask_domain::{SpecTask, SpecTaskId, WorkSessionId};
use spectask_git::{GitError, Repository};

use crate::EngineError;

pub(crate) use settle::GitSettlement;

/// Runs a git step on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    step: impl FnOnce() -> Result<T, GitError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(step)
        .await
        .map_err(|err| EngineError::Conflict(format!("a git step did not finish: {err}")))?
        .map_err(EngineError::from)
}

/// What worktree isolation needs of a task: the worktree directory, the task branch and the
/// project, all recorded when the task entered implementation.
pub(crate) struct TaskGit {
    pub(crate) worktrees_dir: PathBuf,
    pub(crate) task_branch: String,
    pub(crate) project: String,
}

impl TaskGit {
    pub(crate) fn of(
        worktrees_dir: Option<&Path>,
        task: &SpecTask,
    ) -> Result<TaskGit, EngineError> {
        match (worktrees_dir, &task.branch_name, &task.project_path) {
            (Some(dir), Some(branch), Some(project)) => Ok(TaskGit {
                worktrees_dir: dir.to_path_buf(),
                task_branch: branch.clone(),
                project: project.clone(),
            }),
            _ => Err(EngineError::Conflict(format!(
                "spec task {} runs in worktree isolation without a worktree directory, a task \
                 branch or a project",
                task.id
            ))),
        }
    }
}

/// Opens the task's repository: its project must still be one.
pub(crate) fn open_repository(project_path: &Path) -> Result<Repository, GitError> {
    Repository::open(project_path)?.ok_or_else(|| GitError::NotARepository(project_path.into()))
}

/// The directory of one task's worktrees.
pub(crate) fn task_dir(worktrees_dir: &Path, task: &SpecTaskId) -> PathBuf {
    worktrees_dir.join(task.as_str())
}

/// One work session's worktree.
pub(crate) fn session_dir(worktrees_dir: &Path, task: &SpecTaskId, ws: &WorkSessionId) -> PathBuf {
    task_dir(worktrees_dir, task).join(ws.as_str())
}

/// The last characters of an id, to keep branch names short and unique.
pub(crate) fn id_suffix(id: &str) -> String {
    let tail = id.rsplit('_').next().unwrap_or(id);
    tail[tail.len().saturating_sub(6)..].to_ascii_lowercase()
}

/// What a task's worktree directory remembers of its task, so the reaper can clean up after a
/// deleted task whose rows are gone: the repository and the task branch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TaskDirRecord {
    pub(crate) repository: PathBuf,
    pub(crate) task_branch: String,
}

pub(crate) const TASK_DIR_RECORD: &str = "task.json";

impl TaskDirRecord {
    pub(crate) fn write(&self, dir: &Path) -> Result<(), GitError> {
        std::fs::create_dir_all(dir)?;
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let tmp = dir.join(format!("{TASK_DIR_RECORD}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, dir.join(TASK_DIR_RECORD))?;
        Ok(())
    }

    pub(crate) fn read(dir: &Path) -> Option<TaskDirRecord> {
        let text = std::fs::read(dir.join(TASK_DIR_RECORD)).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

/// The task's worktree root, which its agent process may write (`InstanceSpec::extra_roots`):
/// `Some` only in worktree isolation.
pub(crate) fn agent_extra_root(worktrees_dir: Option<&Path>, task: &SpecTask) -> Option<PathBuf> {
    let dir = worktrees_dir?;
    (task.isolation == Some(spectask_domain::WorkspaceIsolation::Worktree))
        .then(|| task_dir(dir, &task.id))
}
