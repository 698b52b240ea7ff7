//! `Worktree`: a session's linked worktree (never the user's main one), driven with the git CLI: status,
//! commit everything, start a merge that may stop on conflicts, and conclude or abort it.
//!
//! A worktree is opened from its [`Repository`], never from its own `.git` file: the agent owns
//! the worktree's files and could point that file at a git directory it made (whose config
//! would run its programs when we run git). The admin directory is the one of
//! `<common dir>/worktrees/*` whose `gitdir` record names `<path>/.git`, every command gets it
//! explicitly, and the `.git` file is rewritten to point at it if it was changed.

use std::path::{Path, PathBuf};

use crate::agent_files::{read_regular, replace_file};
use crate::cli::{Git, GitDirs, command_error, nul_fields};
use crate::worktrees::{canonical_lenient, canonical_parent};
use crate::{CommitId, GitError, MergeStart, Repository, Result, Signature};

/// Longer `gitdir` records or `.git` files are not git's.
const POINTER_LIMIT: u64 = 4096;

/// A session's worktree: its top directory and the admin directory the repository records for
/// it. Made by [`Repository::worktree`].
#[derive(Debug, Clone)]
pub struct Worktree {
    path: PathBuf,
    dirs: GitDirs,
}

impl Repository {
    /// The linked worktree of this repository whose top is `path`. The admin directory is
    /// found from the repository's own records (`<common dir>/worktrees/<id>/gitdir` naming
    /// `<path>/.git`), not from the worktree's `.git` file, which is restored to point at it if
    /// it was changed (`WorktreePath` if it was replaced by a directory). `NotARepository` if
    /// `path` does not exist; `WorktreePath` if it is a symbolic link, the main work tree, or no
    /// linked worktree of this repository.
    pub fn worktree(&self, path: &Path) -> Result<Worktree> {
        let path = std::path::absolute(path)?;
        let meta =
            std::fs::symlink_metadata(&path).map_err(|_| GitError::NotARepository(path.clone()))?;
        // A link (put there by whoever can write the worktree's parent) would redirect every
        // command, and the files a merge writes, elsewhere.
        if !meta.is_dir() {
            return Err(GitError::WorktreePath {
                path,
                reason: "it is not a directory (a symbolic link is not followed)".to_owned(),
            });
        }
        let path = std::fs::canonicalize(&path)?;
        if path == self.work_tree {
            return Err(GitError::WorktreePath {
                path,
                reason: "it is a repository's main work tree, not a linked worktree".to_owned(),
            });
        }
        let git_dir = self.admin_dir_of(&path)?;
        self.refuse_worktree_config(&path, &git_dir)?;
        let worktree = Worktree {
            dirs: GitDirs {
                git_dir,
                common_dir: self.dirs.common_dir.clone(),
                work_tree: path.clone(),
            },
            path,
        };
        worktree.restore_dot_git()?;
        worktree.restore_commondir()?;
        Ok(worktree)
    }

    /// With `extensions.worktreeConfig` on, git reads `<admin dir>/config.worktree` too, and
    /// whoever wrote it decides what git runs. spectask never writes one, so one with content
    /// was planted: refused. (The sandbox keeps the admin directories that exist when an agent
    /// starts read-only there; one made later is only checked here.)
    fn refuse_worktree_config(&self, path: &Path, admin: &Path) -> Result<()> {
        let enabled = self
            .gix()
            .config_snapshot()
            .boolean("extensions.worktreeConfig")
            .unwrap_or(false);
        if !enabled {
            return Ok(());
        }
        let file = admin.join("config.worktree");
        let planted = match read_regular(&file, POINTER_LIMIT)? {
            Some(bytes) => !bytes.iter().all(u8::is_ascii_whitespace),
            None => std::fs::symlink_metadata(&file).is_ok(),
        };
        if planted {
            return Err(GitError::WorktreePath {
                path: path.to_owned(),
                reason: format!(
                    "{} has settings (spectask never writes one, and the repository enables \
                     extensions.worktreeConfig, so git would apply them)",
                    file.display()
                ),
            });
        }
        Ok(())
    }

    /// The admin directory `<common dir>/worktrees/<id>` whose `gitdir` names `<path>/.git`.
    fn admin_dir_of(&self, path: &Path) -> Result<PathBuf> {
        let expected = path.join(".git");
        let admin_root = self.dirs.common_dir.join("worktrees");
        let mut found = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&admin_root) {
            for entry in entries {
                let admin = entry?.path();
                let Some(bytes) = read_regular(&admin.join("gitdir"), POINTER_LIMIT)? else {
                    continue;
                };
                let text = String::from_utf8_lossy(&bytes);
                let recorded = Path::new(text.trim());
                // Relative records (`worktree.useRelativePaths`) are relative to the admin dir.
                if canonical_parent(&admin.join(recorded)) == expected {
                    found.push(admin);
                }
            }
        }
        match found.as_slice() {
            [admin] => Ok(std::fs::canonicalize(admin)?),
            [] => Err(GitError::WorktreePath {
                path: path.to_owned(),
                reason: format!(
                    "no linked worktree of the repository at {} is recorded there",
                    self.work_tree.display()
                ),
            }),
            _ => Err(GitError::WorktreePath {
                path: path.to_owned(),
                reason: format!(
                    "several admin directories under {} claim it",
                    admin_root.display()
                ),
            }),
        }
    }
}

impl Worktree {
    /// Points the worktree's `.git` file back at its admin directory if anything else is
    /// there: git ignores it for our commands, but the agent's own git and `git worktree`
    /// need it. Restoring rather than refusing keeps a tampered session usable; the warning
    /// leaves a trace.
    fn restore_dot_git(&self) -> Result<()> {
        let dot_git = self.path.join(".git");
        let wanted = format!("gitdir: {}\n", self.dirs.git_dir.display());
        if let Some(bytes) = read_regular(&dot_git, POINTER_LIMIT)? {
            let text = String::from_utf8_lossy(&bytes);
            let points_home = text.trim().strip_prefix("gitdir:").is_some_and(|target| {
                canonical_lenient(&self.path.join(target.trim())) == self.dirs.git_dir
            });
            if points_home {
                return Ok(());
            }
        }
        if std::fs::symlink_metadata(&dot_git).is_ok_and(|meta| meta.is_dir()) {
            return Err(GitError::WorktreePath {
                path: self.path.clone(),
                reason: "its .git was replaced by a directory".to_owned(),
            });
        }
        tracing::warn!(worktree = %self.path.display(), admin = %self.dirs.git_dir.display(), "the worktree's .git file did not point at its admin directory; restored");
        replace_file(&dot_git, wanted.as_bytes())?;
        Ok(())
    }

    /// Points the admin directory's `commondir` back at the repository's common directory if
    /// it was changed: `GIT_COMMON_DIR` decides where config and objects come from, but git's
    /// ref store still follows this file (and only someone who can write the repository's
    /// `.git` could have changed it; the sandbox keeps agents from doing so).
    fn restore_commondir(&self) -> Result<()> {
        let file = self.dirs.git_dir.join("commondir");
        if let Some(bytes) = read_regular(&file, POINTER_LIMIT)? {
            let text = String::from_utf8_lossy(&bytes);
            let target = canonical_lenient(&self.dirs.git_dir.join(text.trim()));
            if target == self.dirs.common_dir {
                return Ok(());
            }
        }
        tracing::warn!(admin = %self.dirs.git_dir.display(), "the worktree's commondir did not point at the repository; restored");
        let content = format!("{}\n", self.dirs.common_dir.display());
        replace_file(&file, content.as_bytes())?;
        Ok(())
    }

    /// The worktree's top directory (canonical).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The admin directory git keeps the worktree's HEAD and index in (canonical).
    pub fn git_dir(&self) -> &Path {
        &self.dirs.git_dir
    }

    fn git(&self) -> Git<'_> {
        Git::new(&self.dirs)
    }

    /// The commit checked out; `UnbornHead` if there is none yet.
    pub fn head(&self) -> Result<CommitId> {
        let output = self
            .git()
            .output(&["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])?;
        if !output.status.success() {
            return Err(GitError::UnbornHead);
        }
        String::from_utf8_lossy(&output.stdout).trim().parse()
    }

    /// The short name of the branch checked out; `None` when detached.
    pub fn branch(&self) -> Result<Option<String>> {
        let output = self
            .git()
            .output(&["symbolic-ref", "--quiet", "--short", "HEAD"])?;
        match output.status.code() {
            Some(0) => Ok(Some(
                String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            )),
            Some(1) => Ok(None),
            _ => Err(command_error(
                &["symbolic-ref", "--quiet", "--short", "HEAD"],
                &output,
            )),
        }
    }

    /// Paths with any change against HEAD, untracked (not ignored) files included, relative to
    /// the worktree top, sorted.
    pub fn changed_files(&self) -> Result<Vec<String>> {
        let out = self.git().run(&[
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=all",
            "--no-renames",
            // Only commit changes of a submodule count; its own work tree is not looked at (that
            // would run git inside a repository the agent made).
            "--ignore-submodules=dirty",
        ])?;
        let mut files: Vec<String> = nul_fields(&out)
            .into_iter()
            .filter_map(|entry| entry.get(3..).map(str::to_owned))
            .collect();
        files.sort();
        files.dedup();
        Ok(files)
    }

    /// Stages everything changed (`git add -A` of the paths [`changed_files`] and
    /// [`unmerged_files`] report) and commits it with `author` as author and committer
    /// (hooks off, no signing). `Ok(None)` when there is nothing to commit and no merge in
    /// progress. With a merge in progress and nothing unmerged, concludes it (a two-parent
    /// commit). `Unresolved` if a changed or unmerged file still holds a conflict
    /// block (`<<<<<<< `, `=======`, `>>>>>>> ` lines in that order at line starts).
    pub fn commit_all(&self, message: &str, author: &Signature) -> Result<Option<CommitId>> {
        // An unmerged path counts as resolved once its file holds no conflict block: agents
        // (and people) edit the file and never stage it; `git add -A` below marks it resolved.
        let unmerged = self.unmerged_files()?;
        let mut changed = self.changed_files()?;
        let merging = self.merge_in_progress()?;
        if changed.is_empty() && unmerged.is_empty() && !merging {
            return Ok(None);
        }
        changed.extend(unmerged);
        changed.sort();
        changed.dedup();
        let with_markers: Vec<String> = changed
            .iter()
            .filter(|file| has_conflict_block(&self.path.join(file)))
            .cloned()
            .collect();
        if !with_markers.is_empty() {
            return Err(GitError::Unresolved {
                files: with_markers,
            });
        }
        let git = Git::with_identity(&self.dirs, author);
        // Only the paths status reported, never a bare `add -A`: for a submodule (or a
        // repository the agent nested here) whose commit did not change, that would look for
        // changes inside it by running git there, with that repository's config and
        // attributes, which the agent wrote (its filters would run).
        if !changed.is_empty() {
            let mut pathspecs = Vec::new();
            for file in &changed {
                pathspecs.extend_from_slice(file.as_bytes());
                pathspecs.push(0);
            }
            git.run_with_input(
                &["add", "-A", "--pathspec-from-file=-", "--pathspec-file-nul"],
                pathspecs,
            )?;
        }
        git.run(&[
            "commit",
            "--no-verify",
            "--allow-empty",
            "--quiet",
            "--cleanup=whitespace",
            "-m",
            message,
        ])?;
        let head = self.head()?;
        tracing::info!(worktree = %self.path.display(), commit = %head, merge = merging, "committed");
        Ok(Some(head))
    }

    /// Merges `other` (a branch name or a commit) into the branch checked out here
    /// (`git merge --no-ff --no-edit -m message`, by `author`, hooks off). A conflict leaves
    /// the markers and MERGE_HEAD in place for someone to resolve, then `commit_all`.
    pub fn start_merge(
        &self,
        other: &str,
        message: &str,
        author: &Signature,
    ) -> Result<MergeStart> {
        if other.starts_with('-') {
            return Err(GitError::InvalidName(format!(
                "not a branch or commit: {other:?}"
            )));
        }
        let before = self.head()?;
        let git = Git::with_identity(&self.dirs, author);
        let args = [
            "merge",
            "--no-ff",
            "--no-edit",
            "--no-verify",
            "--cleanup=whitespace",
            "--no-stat",
            "--quiet",
            "-m",
            message,
            other,
        ];
        let output = git.output(&args)?;
        if output.status.success() {
            let after = self.head()?;
            return Ok(if after == before {
                MergeStart::UpToDate
            } else {
                MergeStart::Merged(after)
            });
        }
        let files = self.unmerged_files()?;
        if self.merge_in_progress()? && !files.is_empty() {
            tracing::info!(worktree = %self.path.display(), other, ?files, "merge stopped on conflicts");
            return Ok(MergeStart::Conflicted { files });
        }
        Err(command_error(&args, &output))
    }

    /// Whether a merge is in progress (MERGE_HEAD exists).
    pub fn merge_in_progress(&self) -> Result<bool> {
        let output = self
            .git()
            .output(&["rev-parse", "-q", "--verify", "MERGE_HEAD"])?;
        Ok(output.status.success())
    }

    /// Paths with unmerged index entries, sorted.
    pub fn unmerged_files(&self) -> Result<Vec<String>> {
        let out = self.git().run(&[
            "diff",
            "--no-ext-diff",
            "--no-textconv",
            "--ignore-submodules=dirty",
            "--name-only",
            "--diff-filter=U",
            "-z",
        ])?;
        let mut files = nul_fields(&out);
        files.sort();
        files.dedup();
        Ok(files)
    }

    /// Abandons the merge in progress (`git merge --abort`), restoring the pre-merge state.
    pub fn abort_merge(&self) -> Result<()> {
        self.git().run(&["merge", "--abort"])?;
        Ok(())
    }
}

/// Whether the file holds a conflict block as git writes one: a `<<<<<<< ` line, later a
/// `=======` line, later a `>>>>>>> ` line. (A lone `=======` is a Markdown heading underline.)
fn has_conflict_block(path: &Path) -> bool {
    // Deleted, a directory (a submodule), a link or a FIFO: nothing to inspect (and nothing to
    // follow or wait on).
    let Ok(Some(bytes)) = read_regular(path, u64::MAX) else {
        return false;
    };
    let mut stage = 0;
    for line in bytes.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        stage = match stage {
            0 if line.starts_with(b"<<<<<<< ") => 1,
            1 if line == b"=======" => 2,
            2 if line.starts_with(b">>>>>>> ") => return true,
            _ => stage,
        };
    }
    false
}
