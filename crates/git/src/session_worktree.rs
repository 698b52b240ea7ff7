//! `Worktree`: a session's linked worktree (never the user's main one), driven with the git CLI: status,
//! commit everything, start a merge that may stop on conflicts, and conclude or abort it.

use std::path::{Path, PathBuf};

use crate::cli::{Git, command_error, nul_fields};
use crate::{CommitId, GitError, MergeStart, Result, Signature};

/// A session's worktree, opened at its top directory.
#[derive(Debug, Clone)]
pub struct Worktree {
    path: PathBuf,
}

impl Worktree {
    /// Opens the linked worktree whose top is `path`. `NotARepository` if `path` is not the
    /// top of a git work tree; `WorktreePath` if it is a repository's main work tree (the
    /// user's), which this type must never change.
    pub fn open(path: &Path) -> Result<Worktree> {
        let path =
            std::fs::canonicalize(path).map_err(|_| GitError::NotARepository(path.to_owned()))?;
        let output = Git::new(&path).output(&[
            "rev-parse",
            "--path-format=absolute",
            "--show-toplevel",
            "--git-dir",
            "--git-common-dir",
        ])?;
        let text = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<&str> = text.lines().collect();
        let [top, git_dir, common_dir] = lines[..] else {
            return Err(GitError::NotARepository(path));
        };
        if !output.status.success()
            || std::fs::canonicalize(top).ok().as_deref() != Some(path.as_path())
        {
            return Err(GitError::NotARepository(path));
        }
        if std::fs::canonicalize(git_dir).ok() == std::fs::canonicalize(common_dir).ok() {
            return Err(GitError::WorktreePath {
                path,
                reason: "it is a repository's main work tree, not a linked worktree".to_owned(),
            });
        }
        Ok(Worktree { path })
    }

    /// The worktree's top directory (canonical).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn git(&self) -> Git {
        Git::new(&self.path)
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
        ])?;
        let mut files: Vec<String> = nul_fields(&out)
            .into_iter()
            .filter_map(|entry| entry.get(3..).map(str::to_owned))
            .collect();
        files.sort();
        files.dedup();
        Ok(files)
    }

    /// Stages everything (`git add -A`) and commits it with `author` as author and committer
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
            .into_iter()
            .filter(|file| has_conflict_block(&self.path.join(file)))
            .collect();
        if !with_markers.is_empty() {
            return Err(GitError::Unresolved {
                files: with_markers,
            });
        }
        let git = Git::with_identity(&self.path, author);
        git.run(&["add", "-A"])?;
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
        let git = Git::with_identity(&self.path, author);
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
        let out = self
            .git()
            .run(&["diff", "--name-only", "--diff-filter=U", "-z"])?;
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
    let Ok(bytes) = std::fs::read(path) else {
        return false; // deleted, or a directory (a submodule): nothing to inspect
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
