//! spectask's git layer: a SpecTask's output is a git branch. The task branch
//! (`spectask/<slug>-<suffix>`) starts at the user's HEAD; each work session gets a worktree
//! under spectask's data directory on a branch of its own, a commit when it finishes, and a
//! merge into the task branch in dependency order; reviews read paged diffs.
//!
//! The API is synchronous (the engine calls it through `spawn_blocking`).
//!
//! Which tool does what, and why:
//! - **gix** (in-process, no fork): opening and discovering the repository, HEAD, reading
//!   branches, ancestry and merge bases, walking commits (`repository.rs`), and every branch
//!   write — create, compare-and-set update, delete — as a ref transaction with an expected
//!   previous value, which is what makes concurrent merges safe.
//! - **the `git` CLI** (`cli.rs`: argument vectors, explicit `--git-dir`/`--work-tree`/
//!   `GIT_COMMON_DIR`, no system or global config, `LC_ALL=C`, no prompt, every
//!   program-running setting overridden, identity passed explicitly) where gix has no or no mature equivalent:
//!   linked worktrees add/remove/list/prune (`worktrees.rs`), status, staging and committing a
//!   working tree, merging inside a worktree with conflicts left for resolution
//!   (`session_worktree.rs`), `merge-tree --write-tree` and `commit-tree` for merging without
//!   a working tree (`merge.rs`, git ≥ 2.38), unified diff text with rename detection
//!   (`diff.rs`), and the fast-forward of the user's checked-out branch at approval
//!   (`checked_out.rs`).
//!
//! Invariant: git never trusts a file the agent can write. A worktree is opened from its
//! repository's records ([`Repository::worktree`]), never through its `.git` file; the only
//! configuration read is the repository's own (read-only to a sandboxed agent); files of a
//! worktree are read without following links or blocking (`agent_files.rs`).
//!
//! Invariant: nothing here touches the user's working tree, index or HEAD, with one exception
//! a human asks for explicitly: [`Repository::merge_into_checked_out`] (approving a task with a
//! merge into the branch the user has checked out), which refuses a tree with uncommitted
//! changes and only ever fast-forwards it to a commit prepared (and checked for conflicts)
//! beforehand. Otherwise only a [`Worktree`] (a session's, at a path the caller gives) has its
//! files, index and HEAD changed. Branch moves are compare-and-set.

mod agent_files;
mod branches;
mod checked_out;
mod cli;
mod diff;
mod error;
mod merge;
mod names;
mod repository;
mod session_worktree;
mod types;
mod worktrees;

pub use diff::{Diff, DiffPage, FileDiff, FileStatus};
pub use error::{GitError, Result};
pub use merge::MergeMode;
pub use names::{branch_slug, is_valid_branch_name};
pub use repository::Repository;
pub use session_worktree::Worktree;
pub use types::{CommitId, CommitInfo, Head, MergeOutcome, MergeStart, Signature, WorktreeInfo};
