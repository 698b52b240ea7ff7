//! The plain values the crate hands out and takes in: commit ids, signatures, HEAD, commit and
//! worktree descriptions, merge outcomes.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Serialize;

use crate::GitError;

/// A full 40-hex (SHA-1) commit id, lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(value_type = String, pattern = "^[0-9a-f]{40}$")
)]
#[serde(transparent)]
pub struct CommitId(String);

impl CommitId {
    /// The id as 40 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn from_oid(oid: impl AsRef<gix::oid>) -> CommitId {
        CommitId(oid.as_ref().to_hex().to_string())
    }

    pub(crate) fn to_oid(&self) -> Result<gix::ObjectId, GitError> {
        gix::ObjectId::from_hex(self.0.as_bytes())
            .map_err(|error| GitError::InvalidName(format!("commit id {}: {error}", self.0)))
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for CommitId {
    type Err = GitError;

    /// Accepts exactly 40 hex digits (either case; stored lowercase).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(CommitId(s.to_ascii_lowercase()))
        } else {
            Err(GitError::InvalidName(format!(
                "not a 40-hex commit id: {s:?}"
            )))
        }
    }
}

/// Who a commit is by: used as both author and committer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signature {
    /// The name, as `user.name` would give it.
    pub name: String,
    /// The e-mail, as `user.email` would give it.
    pub email: String,
}

impl Default for Signature {
    /// `spectask <spectask@localhost>`.
    fn default() -> Self {
        Signature {
            name: "spectask".to_owned(),
            email: "spectask@localhost".to_owned(),
        }
    }
}

/// Where the user's HEAD is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Head {
    /// The commit HEAD resolves to; `None` on an unborn branch (no commit yet).
    pub commit: Option<CommitId>,
    /// The short branch name HEAD is on; `None` when detached.
    pub branch: Option<String>,
}

/// One commit, for listing a branch's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitInfo {
    /// The commit's id.
    pub id: CommitId,
    /// The first line of the message.
    pub summary: String,
    /// The whole message.
    pub message: String,
    /// The author's name.
    pub author_name: String,
    /// The author's e-mail.
    pub author_email: String,
    /// The author time, in seconds since the Unix epoch.
    pub time: i64,
    /// The parents, in order (the first parent first).
    pub parents: Vec<CommitId>,
}

/// One entry of `git worktree list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorktreeInfo {
    /// The worktree's top directory, as git recorded it (absolute).
    pub path: PathBuf,
    /// The commit checked out; `None` for a bare entry or an unborn branch.
    pub head: Option<CommitId>,
    /// The short name of the branch checked out; `None` when detached.
    pub branch: Option<String>,
    /// The repository's main work tree (the first entry).
    pub is_main: bool,
    /// Git considers it prunable (its directory is gone).
    pub prunable: bool,
    /// It is locked (`git worktree lock`).
    pub locked: bool,
}

/// What [`Repository::merge_into_branch`](crate::Repository::merge_into_branch) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MergeOutcome {
    /// The source was already contained in the target; nothing moved.
    AlreadyMerged {
        /// The target's tip.
        head: CommitId,
    },
    /// The target was an ancestor of the source and now points at it.
    FastForward {
        /// The target's new tip (the source).
        head: CommitId,
    },
    /// A two-parent merge commit was written and the target moved to it.
    Merged {
        /// The merge commit.
        head: CommitId,
    },
    /// The merge would conflict; nothing changed.
    Conflict {
        /// The conflicting paths.
        files: Vec<String>,
    },
}

/// What [`Worktree::start_merge`](crate::Worktree::start_merge) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeStart {
    /// The other side was already contained; nothing happened.
    UpToDate,
    /// A merge commit was made.
    Merged(CommitId),
    /// The merge stopped on conflicts: markers in the files, MERGE_HEAD set, left for
    /// someone to resolve and conclude with `commit_all` (or `abort_merge`).
    Conflicted {
        /// The unmerged paths.
        files: Vec<String>,
    },
}
