//! The session worktrees of a repository, through the git CLI (gix cannot add or remove linked
//! worktrees): add on a branch, remove (forced, then prune), list, prune.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::cli::{Git, nul_fields};
use crate::repository::branch_ref;
use crate::{CommitId, GitError, Repository, Result, WorktreeInfo};

/// git's worktree commands read every admin directory of the repository (`list`, and `add`
/// looking for the branch in the other worktrees) and die on one that another `add` is half-way
/// through writing (an empty `commondir`). Within this process they take turns.
static WORKTREE_COMMANDS: Mutex<()> = Mutex::new(());

fn worktree_commands_turn() -> MutexGuard<'static, ()> {
    // The guarded data is `()`: a panic while holding it leaves nothing inconsistent.
    WORKTREE_COMMANDS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

impl Repository {
    /// Adds a worktree at `path` on `branch`, (re)setting the branch to `start`
    /// (`git worktree add -B`). Idempotent: if `path` already is a worktree of this repository
    /// with `branch` checked out, it is left as it is (not reset). Creates the parent
    /// directories. Fails with `WorktreePath` if `path` exists and is anything else but an empty
    /// directory, and with `Command` if git refuses (e.g. `branch` is checked out elsewhere).
    pub fn add_worktree(&self, path: &Path, branch: &str, start: &CommitId) -> Result<()> {
        branch_ref(branch)?;
        let path = absolute(path)?;
        let listed = self.worktrees()?;
        if let Some(existing) = listed.iter().find(|w| same_path(&w.path, &path)) {
            if path.exists() && !existing.prunable {
                if existing.branch.as_deref() == Some(branch) {
                    return Ok(());
                }
                return Err(GitError::WorktreePath {
                    path,
                    reason: format!(
                        "it is a worktree of this repository on {}",
                        existing.branch.as_deref().unwrap_or("a detached HEAD")
                    ),
                });
            }
            // Registered but its directory is gone: clear the stale entry first.
            self.prune_worktrees()?;
        }
        if path.exists() {
            let empty_dir = path.is_dir() && std::fs::read_dir(&path)?.next().is_none();
            if !empty_dir {
                return Err(GitError::WorktreePath {
                    path,
                    reason: "the path exists and is not a worktree of this repository".to_owned(),
                });
            }
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let git = Git::new(&self.dirs);
        let _turn = worktree_commands_turn();
        git.run(&[
            "worktree".as_ref(),
            "add".as_ref(),
            "--quiet".as_ref(),
            "-B".as_ref(),
            branch.as_ref(),
            path.as_os_str(),
            start.as_str().as_ref(),
        ])?;
        tracing::info!(path = %path.display(), branch, start = %start, "worktree added");
        Ok(())
    }

    /// Removes the worktree at `path` (`git worktree remove --force --force`, so changes and
    /// locks do not stop it), then `git worktree prune`, then any directory left there. Ok if
    /// it is not a worktree any more or does not exist. Refuses the main work tree.
    pub fn remove_worktree(&self, path: &Path) -> Result<()> {
        let path = absolute(path)?;
        let listed = self.worktrees()?;
        if same_path(&path, &self.work_tree) || self.work_tree.starts_with(&path) {
            return Err(GitError::WorktreePath {
                path,
                reason: "it is (or contains) the repository's main work tree".to_owned(),
            });
        }
        let git = Git::new(&self.dirs);
        if let Some(existing) = listed.iter().find(|w| same_path(&w.path, &path)) {
            if existing.is_main {
                return Err(GitError::WorktreePath {
                    path,
                    reason: "it is the repository's main work tree".to_owned(),
                });
            }
            // Also when the directory is gone: that clears a locked entry prune would keep.
            let _turn = worktree_commands_turn();
            git.run(&[
                "worktree".as_ref(),
                "remove".as_ref(),
                "--force".as_ref(),
                "--force".as_ref(),
                existing.path.as_os_str(),
            ])?;
        }
        self.prune_worktrees()?;
        if path.exists() {
            if path.join(".git").is_dir() {
                return Err(GitError::WorktreePath {
                    path,
                    reason: "a leftover directory holds a repository of its own; not deleting it"
                        .to_owned(),
                });
            }
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        tracing::info!(path = %path.display(), "worktree removed");
        Ok(())
    }

    /// The repository's worktrees, the main one first (`git worktree list --porcelain -z`).
    pub fn worktrees(&self) -> Result<Vec<WorktreeInfo>> {
        let out = {
            let _turn = worktree_commands_turn();
            Git::new(&self.dirs).run(&["worktree", "list", "--porcelain", "-z"])?
        };
        parse_worktree_list(&out)
    }

    /// Forgets worktrees whose directories are gone (`git worktree prune`).
    pub fn prune_worktrees(&self) -> Result<()> {
        let _turn = worktree_commands_turn();
        Git::new(&self.dirs).run(&["worktree", "prune"])?;
        Ok(())
    }
}

/// Parses `git worktree list --porcelain -z`: attribute fields, each record ended by an empty one.
fn parse_worktree_list(out: &[u8]) -> Result<Vec<WorktreeInfo>> {
    let mut worktrees = Vec::new();
    let mut current: Option<WorktreeInfo> = None;
    for field in nul_fields(out) {
        if field.is_empty() {
            worktrees.extend(current.take());
            continue;
        }
        let (key, value) = field.split_once(' ').unwrap_or((field.as_str(), ""));
        if key == "worktree" {
            worktrees.extend(current.take());
            current = Some(WorktreeInfo {
                path: PathBuf::from(value),
                head: None,
                branch: None,
                is_main: worktrees.is_empty(),
                prunable: false,
                locked: false,
            });
            continue;
        }
        let Some(worktree) = current.as_mut() else {
            return Err(GitError::UnexpectedOutput {
                what: "git worktree list",
                detail: format!("{field:?} before any `worktree` line"),
            });
        };
        match key {
            "HEAD" => worktree.head = value.parse().ok(),
            "branch" => {
                worktree.branch = Some(
                    value
                        .strip_prefix("refs/heads/")
                        .unwrap_or(value)
                        .to_owned(),
                );
            }
            "prunable" => worktree.prunable = true,
            "locked" => worktree.locked = true,
            _ => {} // "bare", "detached" and later additions
        }
    }
    worktrees.extend(current);
    Ok(worktrees)
}

/// `path` made absolute against the current directory, without requiring it to exist.
fn absolute(path: &Path) -> Result<PathBuf> {
    Ok(std::path::absolute(path)?)
}

/// Whether two paths name the same place: compared canonically where they exist.
pub(crate) fn same_path(a: &Path, b: &Path) -> bool {
    let canonical = |p: &Path| canonical_lenient(p);
    canonical(a) == canonical(b)
}

/// `path` with its parent made canonical and its last component kept as it is (so a symbolic
/// link there is not followed).
pub(crate) fn canonical_parent(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => canonical_lenient(parent).join(name),
        _ => canonical_lenient(path),
    }
}

/// The canonical form of the longest existing ancestor, with the rest appended.
pub(crate) fn canonical_lenient(path: &Path) -> PathBuf {
    if let Ok(canonical) = std::fs::canonicalize(path) {
        return canonical;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => canonical_lenient(parent).join(name),
        _ => path.to_owned(),
    }
}
