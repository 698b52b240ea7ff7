//! `GitError`, the one error type of the crate, and its `Result` alias.

use std::path::PathBuf;

use crate::CommitId;

/// What went wrong in a git operation. Each variant carries enough context to be logged as is.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The path is not inside a git work tree (or is a bare repository, or a `.git` directory).
    #[error("{0} is not inside a git work tree")]
    NotARepository(PathBuf),
    /// A `git` command exited unsuccessfully.
    #[error("git {args} failed ({status}): {stderr}")]
    Command {
        /// The arguments, space-joined, for the log.
        args: String,
        /// The exit status as the OS reports it.
        status: String,
        /// What git wrote to stderr, trimmed.
        stderr: String,
    },
    /// A gitoxide operation failed.
    #[error("git repository access failed: {0}")]
    Gix(String),
    /// A compare-and-set branch update found the branch somewhere other than expected.
    #[error("branch {branch} moved concurrently; re-read it and retry")]
    RefChanged {
        /// The branch's short name.
        branch: String,
    },
    /// `create_branch` found the branch already pointing at another commit.
    #[error("branch {branch} already exists at {at}")]
    BranchExists {
        /// The branch's short name.
        branch: String,
        /// Where it points now.
        at: CommitId,
    },
    /// The branch an operation needs does not exist.
    #[error("branch {branch} does not exist")]
    BranchNotFound {
        /// The branch's short name.
        branch: String,
    },
    /// `delete_branch` refused: the branch is checked out in a worktree.
    #[error("branch {branch} is checked out in {worktree}")]
    BranchCheckedOut {
        /// The branch's short name.
        branch: String,
        /// The worktree that has it checked out.
        worktree: PathBuf,
    },
    /// A fast-forward-only merge found the branch's history diverged from the source's.
    #[error("branch {branch} cannot be fast-forwarded: it has commits the source lacks")]
    NotFastForward {
        /// The branch's short name.
        branch: String,
    },
    /// A merge into a checked-out branch refused to run: its work tree has uncommitted changes
    /// to tracked files.
    #[error("the work tree {} has uncommitted changes: {}", path.display(), files.join(", "))]
    DirtyWorktree {
        /// The work tree's top directory.
        path: PathBuf,
        /// The changed tracked files (at most the first 20).
        files: Vec<String>,
    },
    /// A merge into a checked-out branch found a different branch checked out there.
    #[error("{} has {} checked out, not {branch}", path.display(), checked_out.as_deref().unwrap_or("a detached HEAD"))]
    NotCheckedOut {
        /// The branch the caller meant to merge into.
        branch: String,
        /// The work tree's top directory.
        path: PathBuf,
        /// What is checked out there instead (`None`: detached).
        checked_out: Option<String>,
    },
    /// HEAD names a branch that has no commit yet.
    #[error("HEAD has no commit yet (unborn branch)")]
    UnbornHead,
    /// A branch name that git would refuse, or a malformed commit id.
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// A worktree path is occupied by something that is not the expected worktree.
    #[error("cannot use {path} as a worktree: {reason}")]
    WorktreePath {
        /// The path the caller gave.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// A commit was refused because conflicts are not resolved: unmerged paths remain, or
    /// changed files still hold conflict markers.
    #[error("unresolved merge conflicts in: {}", files.join(", "))]
    Unresolved {
        /// The files, relative to the worktree top.
        files: Vec<String>,
    },
    /// Git printed something this crate could not parse.
    #[error("unexpected git output ({what}): {detail}")]
    UnexpectedOutput {
        /// Which command's output.
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// A file-system operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, GitError>;

/// Maps a gitoxide error with what we were doing when it happened.
pub(crate) fn gix_error(context: impl std::fmt::Display) -> impl FnOnce(gix::Error) -> GitError {
    move |error| GitError::Gix(format!("{context}: {error}"))
}
