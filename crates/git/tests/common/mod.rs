//! Test fixtures: real repositories in temporary directories, built with the git CLI, and
//! commits written with plumbing (a private index) so the fixture's own working tree stays put.

#![allow(dead_code)] // each test binary uses its own part of the fixtures

use std::path::{Path, PathBuf};
use std::process::Command;

use spectask_git::{CommitId, Repository};
use tempfile::TempDir;

/// Runs git in `dir` with no system or global configuration and a fixed identity; panics on
/// failure. Returns stdout, trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = git_command(dir, args).output().unwrap();
    assert!(
        output.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

pub fn git_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Fixture",
            "-c",
            "user.email=fixture@example.invalid",
        ])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C");
    command
}

/// A repository on `main` with one commit (`README.md`), in a temporary directory.
pub struct Fixture {
    _dir: TempDir,
    /// Holds the repository (`repo/`) and room for worktrees beside it.
    pub root: PathBuf,
    pub path: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let path = root.join("repo");
        std::fs::create_dir(&path).unwrap();
        git(&path, &["init", "-q", "-b", "main"]);
        std::fs::write(path.join("README.md"), "# fixture\n").unwrap();
        git(&path, &["add", "-A"]);
        git(&path, &["commit", "-q", "-m", "initial"]);
        Fixture {
            _dir: dir,
            root,
            path,
        }
    }

    pub fn repo(&self) -> Repository {
        Repository::open(&self.path).unwrap().unwrap()
    }

    pub fn git(&self, args: &[&str]) -> String {
        git(&self.path, args)
    }

    pub fn head(&self) -> CommitId {
        self.git(&["rev-parse", "HEAD"]).parse().unwrap()
    }

    /// A commit on top of `parent` whose tree is `parent`'s with `files` written (`None`
    /// deletes), made without touching the working tree, index or any ref.
    pub fn commit(
        &self,
        parent: &CommitId,
        files: &[(&str, Option<&str>)],
        message: &str,
    ) -> CommitId {
        let index = self.root.join(format!("index-{}", std::process::id()));
        let index_str = index.to_str().unwrap();
        let with_index = |args: &[&str]| {
            let output = git_command(&self.path, args)
                .env("GIT_INDEX_FILE", index_str)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        };
        with_index(&["read-tree", parent.as_str()]);
        for (path, content) in files {
            match content {
                Some(content) => {
                    let blob_file = self.root.join("blob");
                    std::fs::write(&blob_file, content).unwrap();
                    let blob = self.git(&["hash-object", "-w", blob_file.to_str().unwrap()]);
                    let info = format!("100644,{blob},{path}");
                    with_index(&["update-index", "--add", "--cacheinfo", &info]);
                }
                None => {
                    with_index(&["update-index", "--force-remove", path]);
                }
            }
        }
        let tree = with_index(&["write-tree"]);
        std::fs::remove_file(&index).unwrap();
        self.git(&["commit-tree", &tree, "-p", parent.as_str(), "-m", message])
            .parse()
            .unwrap()
    }

    /// The user's side as a test compares it: HEAD, branch, status and the index's content.
    pub fn user_state(&self) -> (String, String, String, String) {
        (
            self.git(&["rev-parse", "HEAD"]),
            self.git(&["symbolic-ref", "HEAD"]),
            self.git(&["status", "--porcelain", "--untracked-files=all"]),
            self.git(&["ls-files", "--stage"]),
        )
    }
}
