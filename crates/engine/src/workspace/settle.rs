//! The end of a turn in worktree isolation: everything the session changed is committed on its
//! branch (hooks off, spectask's author), then merged into the task branch without a working
//! tree (compare-and-set, so concurrent merges never lose a commit). A conflict brings the task
//! branch into the session's worktree (the markers left for its agent) and becomes a bounded
//! follow-up turn; when the follow-ups are spent the session is blocked with the files for a
//! human. Every step is idempotent: a re-run after a crash finds the commit or the merge made.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use spectask_domain::workspace::{merge_conflict_note, session_commit_message};
use spectask_domain::{
    SessionCommit, SpecTask, SpecTaskImplementationTask, SpecTaskWorkSession, WorkspaceIsolation,
};
use spectask_git::{CommitId, CommitInfo, GitError, MergeOutcome, MergeStart, Signature};
use spectask_store::{SessionMerge, TurnClaim};

use super::{TaskGit, blocking, open_repository, session_dir};
use crate::implementation::orchestrator::Assignment;
use crate::{Engine, EngineError};

/// How a finished turn's work was settled in git.
#[derive(Debug)]
pub(crate) enum GitSettlement {
    /// Shared isolation: nothing to do in git.
    Shared,
    /// Committed and merged: complete the turn with this merge.
    Merged(SessionMerge),
    /// The turn was completed and a conflict follow-up queued, or the session blocked.
    Handled,
}

/// What the git steps found.
enum Step {
    Merged {
        committed: Option<CommitId>,
        how: &'static str,
        session_head: CommitId,
        task_head: CommitId,
        commits: Vec<CommitInfo>,
    },
    /// The worktree still has conflicts (an earlier conflict's follow-up did not resolve them).
    Unresolved { files: Vec<String> },
    /// The merge conflicts; the task branch is now being merged into the worktree.
    Conflict { files: Vec<String> },
}

/// The work session a commit's trailer names, if any.
fn trailer_session(message: &str) -> Option<&str> {
    message
        .lines()
        .find_map(|line| line.strip_prefix("Spectask-Work-Session:"))
        .map(str::trim)
}

struct GitJob {
    project: PathBuf,
    worktree: PathBuf,
    task_branch: String,
    /// Where this session's commits start: its tip as last merged, or its branch's start.
    lower: Option<CommitId>,
    ws_id: String,
    message: String,
    merge_message: String,
    author: Signature,
}

impl GitJob {
    fn run(self) -> Result<Step, GitError> {
        let repo = open_repository(&self.project)?;
        let worktree = repo.worktree(&self.worktree)?;
        let committed = match worktree.commit_all(&self.message, &self.author) {
            Ok(committed) => committed,
            Err(GitError::Unresolved { files }) => return Ok(Step::Unresolved { files }),
            Err(err) => return Err(err),
        };
        // Twice at most: a conflict git's own merge resolves in the worktree is merged again.
        for _ in 0..2 {
            let outcome = repo.merge_into_branch(
                &self.task_branch,
                &worktree.head()?,
                &self.merge_message,
                &self.author,
            )?;
            let (how, task_head) = match outcome {
                MergeOutcome::AlreadyMerged { head } => ("already_merged", head),
                MergeOutcome::FastForward { head } => ("fast_forward", head),
                MergeOutcome::Merged { head } => ("merged", head),
                MergeOutcome::Conflict { .. } => {
                    match worktree.start_merge(
                        &self.task_branch,
                        &format!("Merge {} into the session's branch", self.task_branch),
                        &self.author,
                    )? {
                        MergeStart::Conflicted { files } => return Ok(Step::Conflict { files }),
                        MergeStart::UpToDate | MergeStart::Merged(_) => continue,
                    }
                }
            };
            let session_head = worktree.head()?;
            let commits = match &self.lower {
                Some(lower) => repo.commits_between(lower, &session_head)?,
                None => Vec::new(),
            }
            .into_iter()
            // Other sessions' commits come in through a conflict's merge of the task branch.
            .filter(|c| trailer_session(&c.message).is_none_or(|ws| ws == self.ws_id))
            .collect();
            return Ok(Step::Merged {
                committed,
                how,
                session_head,
                task_head,
                commits,
            });
        }
        Err(GitError::UnexpectedOutput {
            what: "merge",
            detail:
                "the task branch conflicts, yet merging it into the worktree reports no conflict"
                    .into(),
        })
    }
}

fn session_commit(info: CommitInfo) -> SessionCommit {
    SessionCommit {
        id: info.id.to_string(),
        summary: info.summary,
        author: format!("{} <{}>", info.author_name, info.author_email),
        committed_at: DateTime::<Utc>::from_timestamp(info.time, 0).unwrap_or_default(),
    }
}

/// The commit message of a session: its top task's key and title, its requirement ids.
fn commit_message(
    task: &SpecTask,
    ws: &SpecTaskWorkSession,
    tasks: &[SpecTaskImplementationTask],
) -> String {
    let Assignment {
        top,
        requirement_refs: refs,
        ..
    } = Assignment::of(tasks, &ws.id);
    let title = top
        .map(|t| t.title.clone())
        .or_else(|| ws.name.clone())
        .unwrap_or_default();
    session_commit_message(&title, top.map(|t| t.key.as_str()), &refs, &ws.id, &task.id)
}

impl Engine {
    /// Commits and merges the session's work after a turn that ended well; see the module doc.
    pub(crate) async fn settle_git(
        &self,
        claim: &TurnClaim,
        task: &SpecTask,
        ws: &SpecTaskWorkSession,
        written: &str,
    ) -> Result<GitSettlement, EngineError> {
        if task.isolation != Some(WorkspaceIsolation::Worktree) {
            return Ok(GitSettlement::Shared);
        }
        // What the session changed, for overlap detection, before the commit empties its status.
        if let Err(err) = self.track_worktree_changes(task, ws).await {
            tracing::warn!(%err, "worktree changes not recorded for overlap detection");
        }
        let store = &self.inner.store;
        let settings = &self.inner.settings.git;
        let TaskGit {
            worktrees_dir: dir,
            task_branch,
            project,
        } = TaskGit::of(settings.worktrees_dir.as_deref(), task)?;
        let tasks = store.list_implementation_tasks(&task.id).await?;
        let message = commit_message(task, ws, &tasks);
        let lower = ws
            .head_commit
            .as_deref()
            .or(ws.base_commit.as_deref())
            .map(str::parse)
            .transpose()?;
        let job = GitJob {
            project: project.into(),
            worktree: session_dir(&dir, &task.id, &ws.id),
            task_branch: task_branch.clone(),
            lower,
            ws_id: ws.id.to_string(),
            merge_message: format!(
                "Merge {} into {task_branch}\n\nSpectask-Work-Session: {}\nSpectask-Task: {}\n",
                ws.branch_name.as_deref().unwrap_or("the session's branch"),
                ws.id,
                task.id
            ),
            message,
            author: settings.author.clone(),
        };
        let step = blocking(move || job.run()).await?;
        let files = match step {
            Step::Merged {
                committed,
                how,
                session_head,
                task_head,
                commits,
            } => {
                if committed.is_none() {
                    tracing::info!(work_session_id = %ws.id, "the turn changed nothing; nothing to commit");
                }
                store
                    .record_session_commit(
                        &ws.id,
                        committed.as_ref().map(CommitId::as_str),
                        &self.inner.owner,
                    )
                    .await?;
                tracing::info!(work_session_id = %ws.id, how, task_head = %task_head, "merged into the task branch");
                return Ok(GitSettlement::Merged(SessionMerge {
                    session_head: session_head.to_string(),
                    task_head: task_head.to_string(),
                    how,
                    commits: commits.into_iter().map(session_commit).collect(),
                }));
            }
            Step::Unresolved { files } | Step::Conflict { files } => files,
        };
        let attempt = ws.merge_attempts + 1;
        if attempt <= settings.max_merge_attempts {
            tracing::warn!(work_session_id = %ws.id, ?files, attempt, "merge conflict; a follow-up turn resolves it");
            store
                .queue_merge_conflict_turn(
                    claim,
                    written,
                    &files,
                    &merge_conflict_note(&task_branch, &files, attempt),
                )
                .await?;
        } else {
            let path = session_dir(&dir, &task.id, &ws.id);
            let reason = format!(
                "merge conflict with the task branch {task_branch} in: {}. Resolve it in {} (the \
                 conflict markers are in the files), then retry the work session",
                files.join(", "),
                path.display()
            );
            tracing::warn!(work_session_id = %ws.id, ?files, "merge conflict not resolved; the work session is blocked");
            store
                .block_on_merge_conflict(claim, written, &files, &reason)
                .await?;
        }
        self.wake();
        Ok(GitSettlement::Handled)
    }
}
