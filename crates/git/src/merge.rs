//! Merging into a branch without any working tree (a session's work into the task branch, or the
//! task branch into a base branch nobody has checked out at approval): ancestry with gix,
//! `git merge-tree --write-tree` for the merged tree, `git commit-tree` for the commit, and a
//! compare-and-set ref update retried from the new tip when another merge won the race.

use crate::cli::{Git, command_error, nul_fields};
use crate::{CommitId, GitError, MergeOutcome, Repository, Result, Signature};

/// How a merge may move its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MergeMode {
    /// A fast-forward when the target is an ancestor of the source, else a merge commit.
    #[default]
    FastForwardOrMerge,
    /// Only a fast-forward: `NotFastForward` when the histories diverged.
    FastForwardOnly,
    /// Always a two-parent merge commit, even where a fast-forward was possible.
    NoFastForward,
}

/// How many times a merge is redone after losing the compare-and-set race.
const MERGE_ATTEMPTS: usize = 8;

impl Repository {
    /// Merges `source` into `target_branch`, never checking anything out:
    /// `AlreadyMerged` if `source` is contained in the target; `FastForward` if the target is an
    /// ancestor of `source`; otherwise `Merged` with a two-parent commit (first parent the
    /// target) by `author` with `message`; `Conflict` when the trees conflict, leaving the branch
    /// as it was. `BranchCheckedOut` if a worktree has `target_branch` checked out (its
    /// HEAD would move under it). Every ref move is compare-and-set: a merge that loses a race is redone from
    /// the branch's new tip (up to 8 times, then `RefChanged`), so no commit is ever dropped.
    pub fn merge_into_branch(
        &self,
        target_branch: &str,
        source: &CommitId,
        message: &str,
        author: &Signature,
    ) -> Result<MergeOutcome> {
        self.merge_into_branch_with(
            target_branch,
            source,
            MergeMode::FastForwardOrMerge,
            message,
            author,
        )
    }

    /// [`merge_into_branch`](Self::merge_into_branch) with the fast-forward choice made by
    /// `mode`: `FastForwardOnly` fails with `NotFastForward` (nothing moved) when the target is
    /// not an ancestor of `source`; `NoFastForward` writes a merge commit (`Merged`) even then.
    pub fn merge_into_branch_with(
        &self,
        target_branch: &str,
        source: &CommitId,
        mode: MergeMode,
        message: &str,
        author: &Signature,
    ) -> Result<MergeOutcome> {
        // Moving a branch some worktree has checked out would change that worktree's HEAD under
        // it (the user's, or a session's): the task branch is meant to stay unchecked-out.
        if let Some(worktree) = self
            .worktrees()?
            .into_iter()
            .find(|worktree| worktree.branch.as_deref() == Some(target_branch))
        {
            return Err(GitError::BranchCheckedOut {
                branch: target_branch.to_owned(),
                worktree: worktree.path,
            });
        }
        for attempt in 1..=MERGE_ATTEMPTS {
            let Some(target) = self.branch_commit(target_branch)? else {
                return Err(GitError::BranchNotFound {
                    branch: target_branch.to_owned(),
                });
            };
            if self.is_ancestor(source, &target)? {
                return Ok(MergeOutcome::AlreadyMerged { head: target });
            }
            let fast_forward = self.is_ancestor(&target, source)?;
            if mode == MergeMode::FastForwardOnly && !fast_forward {
                return Err(GitError::NotFastForward {
                    branch: target_branch.to_owned(),
                });
            }
            let (new_head, outcome) = if fast_forward && mode != MergeMode::NoFastForward {
                (
                    source.clone(),
                    MergeOutcome::FastForward {
                        head: source.clone(),
                    },
                )
            } else {
                match self.merge_commit(&target, source, message, author)? {
                    TreeMerge::Conflict(files) => return Ok(MergeOutcome::Conflict { files }),
                    TreeMerge::Commit(commit) => {
                        (commit.clone(), MergeOutcome::Merged { head: commit })
                    }
                }
            };
            match self.set_branch(target_branch, &new_head, Some(&target)) {
                Ok(()) => {
                    tracing::info!(branch = target_branch, source = %source, ?outcome, "merged into branch");
                    return Ok(outcome);
                }
                Err(GitError::RefChanged { .. }) => {
                    tracing::debug!(
                        branch = target_branch,
                        attempt,
                        "branch moved during merge; redoing"
                    );
                }
                Err(other) => return Err(other),
            }
        }
        Err(GitError::RefChanged {
            branch: target_branch.to_owned(),
        })
    }

    /// The merge of `source` into `target` as a new commit object (no ref moves), or the
    /// conflicting paths.
    pub(crate) fn merge_commit(
        &self,
        target: &CommitId,
        source: &CommitId,
        message: &str,
        author: &Signature,
    ) -> Result<TreeMerge> {
        let git = Git::with_identity(&self.dirs, author);
        let args = [
            "merge-tree",
            "--write-tree",
            "--name-only",
            "-z",
            target.as_str(),
            source.as_str(),
        ];
        let output = git.output(&args)?;
        let fields = nul_fields(&output.stdout);
        match output.status.code() {
            Some(0) => {}
            Some(1) => {
                // <tree> NUL, then one conflicted path per field up to an empty field, then messages.
                let files = fields
                    .iter()
                    .skip(1)
                    .take_while(|f| !f.is_empty())
                    .cloned()
                    .collect();
                return Ok(TreeMerge::Conflict(files));
            }
            _ => return Err(command_error(&args, &output)),
        }
        let tree = fields.first().ok_or_else(|| GitError::UnexpectedOutput {
            what: "git merge-tree",
            detail: "no tree id".to_owned(),
        })?;
        let commit = git.run_text(&[
            "commit-tree",
            tree.as_str(),
            "-p",
            target.as_str(),
            "-p",
            source.as_str(),
            "-m",
            message,
        ])?;
        Ok(TreeMerge::Commit(commit.trim().parse()?))
    }
}

pub(crate) enum TreeMerge {
    Commit(CommitId),
    Conflict(Vec<String>),
}
