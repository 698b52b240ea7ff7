//! The session worktrees of a repository, through the git CLI (gix cannot add or remove linked
//! worktrees): add on a branch, remove (forced, then prune), list, prune.

use std::path::{Path, PathBuf};

use crate::cli::{Git, nul_fields};
use crate::repository::branch_ref;
use crate::{CommitId, GitError, Repository, Result, WorktreeInfo};

impl Repository {
    /// Adds a worktree at `path` on `branch`, (re)setting the branch to `start`
    /// (`git worktree add -B`). Idempotent: if `path` already is a worktree of this repository
    /// with `branch` checked out, it is left as it is (not reset). Creates the parent
    /// directories. Fails with `WorktreePath` if `path` exists and is anything else but an empty
    /// directory, and with `Command` if git refuses (e.g. `branch` is checked out elsewhere).
    pub fn add_worktree(&self, path: &Path, branch: &str, start: &CommitId) -> Result<()> {
        branch_ref(branch)?;
        let path = absolute(path)?;
        let _admin = self.lock_worktree_admin()?;
        let listed = self.list_worktrees()?;
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
            self.prune()?;
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
        let _admin = self.lock_worktree_admin()?;
        let listed = self.list_worktrees()?;
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
            git.run(&[
                "worktree".as_ref(),
                "remove".as_ref(),
                "--force".as_ref(),
                "--force".as_ref(),
                existing.path.as_os_str(),
            ])?;
        }
        self.prune()?;
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
        let _admin = self.lock_worktree_admin()?;
        self.list_worktrees()
    }

    /// Forgets worktrees whose directories are gone (`git worktree prune`).
    pub fn prune_worktrees(&self) -> Result<()> {
        let _admin = self.lock_worktree_admin()?;
        self.prune()
    }

    /// Git's worktree commands read every worktree's administrative files, which `git worktree
    /// add` and `remove` write non-atomically: run at the same time in one repository they fail
    /// ("failed to read .git/worktrees/…/commondir"). Spectask's own are serialised by this
    /// exclusive lock on a file of the repository's git directory (so across processes too),
    /// held while it lasts; the lock goes with the file when it is dropped.
    fn lock_worktree_admin(&self) -> Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.gix().common_dir().join("spectask-worktrees.lock"))?;
        file.lock()?;
        Ok(file)
    }

    /// `git worktree list`, the lock held. A failure (a concurrent worktree command of the
    /// user's, not serialised by the lock) is tried again a few times.
    fn list_worktrees(&self) -> Result<Vec<WorktreeInfo>> {
        const ATTEMPTS: u64 = 5;
        let git = Git::new(&self.dirs);
        let args = ["worktree", "list", "--porcelain", "-z"];
        let mut attempt = 1;
        loop {
            match git.run(&args) {
                Ok(out) => return parse_worktree_list(&out),
                Err(GitError::Command { .. }) if attempt < ATTEMPTS => {
                    std::thread::sleep(std::time::Duration::from_millis(10 * attempt));
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// `git worktree prune`, the lock held.
    fn prune(&self) -> Result<()> {
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
