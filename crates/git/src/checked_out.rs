//! The one operation that changes the user's own work tree: merging into the branch the user
//! has checked out, asked for by a human approving a task (`approve-implementation` with a
//! merge). Its files, index and HEAD must move together, so it goes through `git merge` in the
//! user's work tree, but only ever as a fast-forward to a commit computed beforehand: the merge
//! commit (when one is wanted) is written without a working tree first, so a conflict is found
//! before anything is touched and the user's tree never holds conflict markers. A work tree with
//! uncommitted changes to tracked files is refused.

use crate::cli::{Git, nul_fields};
use crate::merge::{MergeMode, TreeMerge};
use crate::{CommitId, GitError, MergeOutcome, Repository, Result, Signature};

/// How many dirty files a `DirtyWorktree` error names.
const DIRTY_FILES_SHOWN: usize = 20;

impl Repository {
    /// Merges `source` into `branch`, which must be checked out in the user's main work tree
    /// (`NotCheckedOut` otherwise), updating that tree's files, index and HEAD. Refuses with
    /// `DirtyWorktree` when tracked files have uncommitted changes (untracked files are ignored,
    /// but git refuses to overwrite one in the way). `AlreadyMerged` when `source` is contained;
    /// `FastForward` when allowed by `mode` and possible; `Merged` with a two-parent commit
    /// (first parent the branch) by `author` with `message`; `Conflict` with the files (nothing
    /// changed); `NotFastForward` under `FastForwardOnly` when the histories diverged.
    pub fn merge_into_checked_out(
        &self,
        branch: &str,
        source: &CommitId,
        mode: MergeMode,
        message: &str,
        author: &Signature,
    ) -> Result<MergeOutcome> {
        let head = self.head()?;
        if head.branch.as_deref() != Some(branch) {
            return Err(GitError::NotCheckedOut {
                branch: branch.to_owned(),
                path: self.work_tree.clone(),
                checked_out: head.branch,
            });
        }
        let target = head.commit.ok_or(GitError::UnbornHead)?;
        let dirty = self.dirty_tracked_files()?;
        if !dirty.is_empty() {
            return Err(GitError::DirtyWorktree {
                path: self.work_tree.clone(),
                files: dirty,
            });
        }
        if self.is_ancestor(source, &target)? {
            return Ok(MergeOutcome::AlreadyMerged { head: target });
        }
        let fast_forward = self.is_ancestor(&target, source)?;
        let (new_head, outcome) = match mode {
            MergeMode::FastForwardOnly if !fast_forward => {
                return Err(GitError::NotFastForward {
                    branch: branch.to_owned(),
                });
            }
            MergeMode::FastForwardOnly | MergeMode::FastForwardOrMerge if fast_forward => (
                source.clone(),
                MergeOutcome::FastForward {
                    head: source.clone(),
                },
            ),
            _ => match self.merge_commit(&target, source, message, author)? {
                TreeMerge::Conflict(files) => return Ok(MergeOutcome::Conflict { files }),
                TreeMerge::Commit(commit) => {
                    (commit.clone(), MergeOutcome::Merged { head: commit })
                }
            },
        };
        // A fast-forward to the prepared commit: git moves files, index and HEAD together, and
        // refuses (changing nothing) if HEAD moved meanwhile or a file in the way would be lost.
        Git::with_identity(&self.dirs, author).run(&[
            "merge",
            "--ff-only",
            "--no-stat",
            "--quiet",
            new_head.as_str(),
        ])?;
        tracing::info!(branch, source = %source, ?outcome, "merged into the checked-out branch");
        Ok(outcome)
    }

    /// Tracked files of the user's work tree with uncommitted changes (staged or not), at most
    /// the first 20.
    fn dirty_tracked_files(&self) -> Result<Vec<String>> {
        let out = Git::new(&self.dirs).run(&[
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=no",
            // `dirty` still reports a submodule moved to another commit, without running git
            // inside it (its configuration is not ours to trust).
            "--ignore-submodules=dirty",
        ])?;
        let mut files = Vec::new();
        let mut fields = nul_fields(&out).into_iter();
        while let Some(entry) = fields.next() {
            let (status, path) = entry.split_at_checked(3).unwrap_or((entry.as_str(), ""));
            if status.starts_with('R') || status.starts_with('C') {
                // A rename or copy: its original path follows as a field of its own.
                fields.next();
            }
            files.push(path.to_owned());
        }
        files.truncate(DIRTY_FILES_SHOWN);
        Ok(files)
    }
}
