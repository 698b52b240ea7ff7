//! What a reviewer sees and does in git: the task branch's diff against where it started, one
//! work session's own commits as a diff, and the merge of the task branch into its base branch
//! when a human approves the implementation with one. The git crate is synchronous: every call
//! runs on the blocking pool.

use std::path::PathBuf;

use spectask_domain::{ApprovalMerge, SpecTask, SpecTaskId, WorkSessionId};
use spectask_git::{CommitId, Diff, DiffPage, GitError, MergeMode, MergeOutcome, Repository};

use crate::{Engine, EngineError};

/// Why a review request about git cannot be served; each is a conflict with the task's state,
/// except `Git`, a failure of git itself.
#[derive(Debug, thiserror::Error)]
pub enum ReviewGitError {
    /// The task or work session has no branch (shared isolation, or not started yet).
    #[error("{0}")]
    NoBranch(String),
    /// The task's project is not (or no longer) a git repository.
    #[error("{0}")]
    NotARepository(String),
    /// The task branch was made from a detached HEAD: there is no branch to merge into.
    #[error("{0}")]
    NoBaseBranch(String),
    /// The user's work tree has uncommitted changes to tracked files.
    #[error("{0}")]
    DirtyWorktree(String),
    /// A fast-forward was asked for and the base branch has diverged.
    #[error("{0}")]
    NotFastForward(String),
    /// The merge would conflict in these files; nothing changed.
    #[error("merging {branch} into {into} would conflict in: {}", files.join(", "))]
    MergeConflict {
        branch: String,
        into: String,
        files: Vec<String>,
    },
    /// The base branch is checked out in another work tree, or is gone.
    #[error("{0}")]
    BaseBranchUnavailable(String),
    #[error("git failed: {0}")]
    Git(#[from] GitError),
}

/// A page of a branch's diff, with the branch it was read from.
#[derive(Debug, Clone)]
pub struct BranchDiff {
    pub branch_name: String,
    pub diff: Diff,
}

/// What an approval merge did.
#[derive(Debug, Clone)]
pub struct ApprovalMerged {
    /// The base branch merged into.
    pub into: String,
    /// `already_merged`, `fast_forward` or `merged`.
    pub outcome: &'static str,
    /// The base branch's tip afterwards.
    pub head: CommitId,
}

impl Engine {
    /// The task branch's tip (read live from git, else the last recorded one) against the commit
    /// the branch started from, paged by file.
    pub async fn task_diff(
        &self,
        id: &SpecTaskId,
        page: DiffPage,
    ) -> Result<BranchDiff, EngineError> {
        let task = self.inner.store.get_spec_task(id).await?;
        let (Some(branch), Some(base)) = (task.branch_name.clone(), task.base_commit.clone())
        else {
            return Err(ReviewGitError::NoBranch(format!(
                "spec task {id} has no task branch: its work sessions share the project \
                 directory, or implementation has not started"
            ))
            .into());
        };
        let project = project_of(&task)?;
        let recorded_head = task.head_commit.clone();
        blocking(move || {
            let repo = open(&project)?;
            let base: CommitId = base.parse()?;
            let head = live_tip(&repo, &branch, recorded_head.as_deref(), &base)?;
            let diff = repo.diff(&base, &head, page)?;
            Ok(BranchDiff {
                branch_name: branch,
                diff,
            })
        })
        .await
    }

    /// One work session's own commits as a diff: from the merge base of the task-branch commit
    /// its branch started from and its tip (its branch's commit while the branch exists, else
    /// the tip last merged) to that tip.
    pub async fn session_diff(
        &self,
        ws: &WorkSessionId,
        page: DiffPage,
    ) -> Result<BranchDiff, EngineError> {
        let session = self.inner.store.get_work_session(ws).await?;
        let (Some(branch), Some(base)) = (session.branch_name.clone(), session.base_commit.clone())
        else {
            return Err(ReviewGitError::NoBranch(format!(
                "work session {ws} has no branch: its task's sessions share the project \
                 directory, or it has not started"
            ))
            .into());
        };
        let task = self
            .inner
            .store
            .get_spec_task(&session.spec_task_id)
            .await?;
        let project = project_of(&task)?;
        let recorded_head = session.head_commit.clone();
        blocking(move || {
            let repo = open(&project)?;
            let base: CommitId = base.parse()?;
            let head = live_tip(&repo, &branch, recorded_head.as_deref(), &base)?;
            let from = repo.merge_base(&base, &head)?.unwrap_or(base);
            let diff = repo.diff(&from, &head, page)?;
            Ok(BranchDiff {
                branch_name: branch,
                diff,
            })
        })
        .await
    }

    /// Merges the task branch into its base branch as `merge` asks, before approval moves the
    /// task to `done`. In the user's work tree when the base branch is checked out there (its
    /// files move too; refused when it has uncommitted changes), else by moving the branch.
    /// `None` for `ApprovalMerge::None`.
    pub(crate) async fn merge_at_approval(
        &self,
        task: &SpecTask,
        merge: ApprovalMerge,
        actor: &str,
    ) -> Result<Option<ApprovalMerged>, EngineError> {
        let mode = match merge {
            ApprovalMerge::None => return Ok(None),
            ApprovalMerge::FastForward => MergeMode::FastForwardOnly,
            ApprovalMerge::MergeCommit => MergeMode::NoFastForward,
        };
        let (Some(branch), Some(base)) = (task.branch_name.clone(), task.base_commit.clone())
        else {
            return Err(ReviewGitError::NoBranch(format!(
                "spec task {} has no task branch to merge: its work sessions shared the project \
                 directory",
                task.id
            ))
            .into());
        };
        let Some(into) = task.base_branch.clone() else {
            return Err(ReviewGitError::NoBaseBranch(format!(
                "spec task {}'s branch {branch} was made from a detached HEAD: there is no base \
                 branch to merge into; approve without a merge and merge {branch} yourself",
                task.id
            ))
            .into());
        };
        let project = project_of(task)?;
        let recorded_head = task.head_commit.clone();
        let message = format!("Merge {branch}: {}", task.name);
        let author = self.inner.settings.git.author.clone();
        let merged = blocking(move || {
            let repo = open(&project)?;
            let base: CommitId = base.parse()?;
            let tip = live_tip(&repo, &branch, recorded_head.as_deref(), &base)?;
            let checked_out = repo.head()?.branch.as_deref() == Some(into.as_str());
            let result = if checked_out {
                repo.merge_into_checked_out(&into, &tip, mode, &message, &author)
            } else {
                repo.merge_into_branch_with(&into, &tip, mode, &message, &author)
            };
            let outcome = result.map_err(|error| match error {
                // Git itself refused to update the user's files (an untracked file in the way):
                // a refusal the user can act on, and nothing changed.
                GitError::Command { stderr, .. } if checked_out => {
                    ReviewGitError::BaseBranchUnavailable(format!(
                        "git refused to update your working tree on {into}: {}",
                        stderr.trim()
                    ))
                }
                other => refusal(other, &branch, &into),
            })?;
            let (outcome, head) = match outcome {
                MergeOutcome::AlreadyMerged { head } => ("already_merged", head),
                MergeOutcome::FastForward { head } => ("fast_forward", head),
                MergeOutcome::Merged { head } => ("merged", head),
                MergeOutcome::Conflict { files } => {
                    return Err(ReviewGitError::MergeConflict {
                        branch,
                        into,
                        files,
                    });
                }
            };
            Ok(ApprovalMerged {
                into,
                outcome,
                head,
            })
        })
        .await?;
        self.inner
            .store
            .record_branch_merged(
                &task.id,
                &merged.into,
                merge,
                merged.outcome,
                merged.head.as_str(),
                actor,
            )
            .await?;
        Ok(Some(merged))
    }
}

/// The git errors a merge refusal is made of, as the reviewer's conflicts.
fn refusal(error: GitError, branch: &str, into: &str) -> ReviewGitError {
    match error {
        GitError::DirtyWorktree { path, files } => ReviewGitError::DirtyWorktree(format!(
            "cannot merge {branch} into {into}: {} has uncommitted changes to {}; commit or \
             stash them first",
            path.display(),
            files.join(", ")
        )),
        GitError::NotFastForward { .. } => ReviewGitError::NotFastForward(format!(
            "cannot fast-forward {into} to {branch}: {into} has commits the task branch lacks; \
             approve with a merge commit instead"
        )),
        GitError::BranchCheckedOut { worktree, .. } => {
            ReviewGitError::BaseBranchUnavailable(format!(
                "cannot merge into {into}: it is checked out in {}, which is not the project's \
                 main work tree",
                worktree.display()
            ))
        }
        GitError::BranchNotFound { .. } => ReviewGitError::BaseBranchUnavailable(format!(
            "cannot merge into {into}: the branch no longer exists"
        )),
        other => ReviewGitError::Git(other),
    }
}

/// The task's project directory.
fn project_of(task: &SpecTask) -> Result<PathBuf, ReviewGitError> {
    task.project_path
        .as_deref()
        .map(PathBuf::from)
        .ok_or_else(|| {
            ReviewGitError::NotARepository(format!("spec task {} has no project_path", task.id))
        })
}

/// The repository at `project`; `NotARepository` when it is not one (any more).
fn open(project: &std::path::Path) -> Result<Repository, ReviewGitError> {
    let not_a_repository = || {
        ReviewGitError::NotARepository(format!(
            "the project {} is not a git repository any more",
            project.display()
        ))
    };
    match Repository::open(project) {
        Ok(Some(repo)) => Ok(repo),
        Ok(None) => Err(not_a_repository()),
        // A project directory that is gone is not a repository either.
        Err(GitError::Io(_)) => Err(not_a_repository()),
        Err(other) => Err(other.into()),
    }
}

/// A branch's tip: its commit while it exists, else the recorded one, else where it started.
fn live_tip(
    repo: &Repository,
    branch: &str,
    recorded: Option<&str>,
    start: &CommitId,
) -> Result<CommitId, ReviewGitError> {
    if let Some(tip) = repo.branch_commit(branch)? {
        return Ok(tip);
    }
    match recorded {
        Some(recorded) => Ok(recorded.parse()?),
        None => Ok(start.clone()),
    }
}

/// Runs git work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ReviewGitError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| {
            EngineError::ReviewGit(ReviewGitError::Git(GitError::Io(std::io::Error::other(
                format!("git task panicked: {join}"),
            ))))
        })?
        .map_err(EngineError::ReviewGit)
}
