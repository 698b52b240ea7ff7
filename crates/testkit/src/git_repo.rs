//! A real git repository in a temporary directory, for tests of git isolation: made with the git
//! CLI (branch `main`, one commit holding `README.md`), with helpers to read branches, files at a
//! revision, the working tree's status and the registered worktrees. No global git configuration
//! is needed (identity and settings are passed on each command).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A repository on `main` with one commit.
#[derive(Debug)]
pub struct TestRepo {
    dir: tempfile::TempDir,
}

impl TestRepo {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = Self { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.write("README.md", "# Project\n");
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "-q", "-m", "initial commit"]);
        repo
    }

    /// The work tree's top (canonical, as spectask stores project paths).
    pub fn path(&self) -> PathBuf {
        self.dir.path().canonicalize().expect("canonical repo path")
    }

    /// Runs git in the repository and returns its trimmed stdout; panics on failure.
    pub fn git(&self, args: &[&str]) -> String {
        git_in(&self.path(), args)
    }

    /// Writes a file of the user's working tree.
    pub fn write(&self, path: &str, content: &str) {
        let file = self.path().join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(file, content).expect("write");
    }

    /// The commit a revision names.
    pub fn rev(&self, rev: &str) -> String {
        self.git(&["rev-parse", rev])
    }

    /// The file's content at `rev`, `None` if it is not there.
    pub fn show(&self, rev: &str, path: &str) -> Option<String> {
        let output = git_command(&self.path())
            .args(["show", &format!("{rev}:{path}")])
            .output()
            .expect("git show");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Whether `ancestor` is an ancestor of (or equal to) `of`.
    pub fn is_ancestor(&self, ancestor: &str, of: &str) -> bool {
        git_command(&self.path())
            .args(["merge-base", "--is-ancestor", ancestor, of])
            .status()
            .expect("git merge-base")
            .success()
    }

    /// The branches whose name starts with `prefix`.
    pub fn branches(&self, prefix: &str) -> Vec<String> {
        self.git(&["for-each-ref", "--format=%(refname:short)", "refs/heads/"])
            .lines()
            .filter(|b| b.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    /// The paths of the registered worktrees other than the main one.
    pub fn linked_worktrees(&self) -> Vec<String> {
        let main = self.path();
        self.git(&["worktree", "list", "--porcelain"])
            .lines()
            .filter_map(|l| l.strip_prefix("worktree "))
            .filter(|p| Path::new(p) != main)
            .map(str::to_owned)
            .collect()
    }

    /// `git status --porcelain` of the user's working tree (empty when clean).
    pub fn status(&self) -> String {
        self.git(&["status", "--porcelain"])
    }

    /// The branch the user's HEAD is on.
    pub fn current_branch(&self) -> String {
        self.git(&["rev-parse", "--abbrev-ref", "HEAD"])
    }
}

impl Default for TestRepo {
    fn default() -> Self {
        Self::new()
    }
}

fn git_command(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Test User",
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C");
    command
}

/// Runs git in `dir` and returns its trimmed stdout; panics on failure.
pub fn git_in(dir: &Path, args: &[&str]) -> String {
    let output = git_command(dir).args(args).output().expect("run git");
    assert!(
        output.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}
