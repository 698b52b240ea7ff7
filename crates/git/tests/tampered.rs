//! An agent owns its worktree's files and may rewrite them to make the server's git run its
//! code: a `.git` file pointing at a git directory it made (whose config sets `core.fsmonitor`,
//! a `filter.<x>.clean` for a `.gitattributes` it wrote, `diff.external`, a pager, hooks), a
//! tampered `commondir` in the admin directory, a repository of its own nested in the worktree,
//! links and FIFOs where files should be. Every operation of the crate still works on the real
//! admin directory and branch, and no planted program ever runs (each would create a marker).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{Fixture, git};
use spectask_git::{GitError, MergeOutcome, MergeStart, Signature};

fn agent() -> Signature {
    Signature {
        name: "Agent Smith".to_owned(),
        email: "agent@spectask.invalid".to_owned(),
    }
}

/// A planted program: when run, it creates `marker` (and, as a filter, passes its input on).
struct Trap {
    script: PathBuf,
    marker: PathBuf,
}

impl Trap {
    fn new(dir: &Path) -> Trap {
        std::fs::create_dir_all(dir).unwrap();
        let marker = dir.join("PWNED");
        let script = dir.join("evil.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\ntouch '{}'\ncat\n", marker.display()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        Trap { script, marker }
    }

    /// Config lines that would run the script from every place git could take them.
    fn config(&self) -> String {
        let s = self.script.display();
        format!(
            "[core]\n\tfsmonitor = {s}\n\tpager = {s}\n\thooksPath = {hooks}\n\tsshCommand = {s}\n\
             [filter \"evil\"]\n\tclean = {s}\n\tsmudge = {s}\n\trequired = true\n\
             [diff]\n\texternal = {s}\n[diff \"evil\"]\n\ttextconv = {s}\n\tcommand = {s}\n\
             [merge \"evil\"]\n\tdriver = {s} %O %A %B\n\
             [gc]\n\tauto = 1\n[status]\n\tsubmoduleSummary = true\n",
            hooks = self.script.parent().unwrap().join("hooks").display()
        )
    }

    /// A git directory (made by `git init`) whose config and hooks are the trap's.
    fn git_dir(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        git(dir, &["init", "-q", "-b", "main"]);
        let git_dir = dir.join(".git");
        self.arm(&git_dir);
        git_dir
    }

    /// Gives `git_dir` the trap's config and hooks.
    fn arm(&self, git_dir: &Path) {
        let mut config = std::fs::read_to_string(git_dir.join("config")).unwrap();
        config.push_str(&self.config());
        std::fs::write(git_dir.join("config"), config).unwrap();
        let hooks = self.script.parent().unwrap().join("hooks");
        std::fs::create_dir_all(&hooks).unwrap();
        for hook in [
            "pre-commit",
            "post-commit",
            "commit-msg",
            "pre-merge-commit",
            "post-merge",
            "post-checkout",
            "post-index-change",
            "reference-transaction",
        ] {
            std::fs::copy(&self.script, hooks.join(hook)).unwrap();
            std::fs::copy(&self.script, git_dir.join("hooks").join(hook)).unwrap();
        }
    }

    fn sprung(&self) -> bool {
        self.marker.exists()
    }
}

/// `.gitattributes` sending every file through the trap's drivers.
const ATTRIBUTES: &str = "* filter=evil diff=evil merge=evil\n";

#[test]
fn a_rewritten_dot_git_file_is_ignored_restored_and_runs_nothing() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let trap = Trap::new(&fixture.root.join("trap"));
    let evil = trap.git_dir(&fixture.root.join("evil"));
    let base = fixture.commit(
        &fixture.head(),
        &[("shared.txt", Some("a\nb\nc\n"))],
        "base",
    );
    let theirs = fixture.commit(&base, &[("shared.txt", Some("a\nTHEIRS\nc\n"))], "theirs");
    repo.create_branch("task", &theirs).unwrap();
    let path = fixture.root.join("wt/ws");
    repo.add_worktree(&path, "ws", &base).unwrap();
    let dot_git = path.join(".git");
    let honest = std::fs::read_to_string(&dot_git).unwrap();
    let tamper = || {
        std::fs::write(&dot_git, format!("gitdir: {}\n", evil.display())).unwrap();
    };

    // Opened while tampered: the repository's records win, and the file is put back.
    tamper();
    let worktree = repo.worktree(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&dot_git).unwrap(), honest);
    assert_eq!(
        worktree.git_dir(),
        Path::new(honest.trim().strip_prefix("gitdir: ").unwrap())
    );

    // Tampered again after opening: every operation still uses the real admin directory.
    tamper();
    std::fs::write(path.join(".gitattributes"), ATTRIBUTES).unwrap();
    std::fs::write(path.join("shared.txt"), "a\nOURS\nc\n").unwrap();
    std::fs::write(path.join("new.txt"), "new\n").unwrap();
    assert_eq!(worktree.head().unwrap(), base);
    assert_eq!(worktree.branch().unwrap().as_deref(), Some("ws"));
    assert_eq!(
        worktree.changed_files().unwrap(),
        [".gitattributes", "new.txt", "shared.txt"]
    );
    let ours = worktree.commit_all("ours", &agent()).unwrap().unwrap();
    assert_eq!(repo.branch_commit("ws").unwrap(), Some(ours.clone()));
    assert_eq!(worktree.head().unwrap(), ours);
    assert_eq!(
        git(&fixture.path, &["show", "ws:new.txt"]),
        "new",
        "committed content did not go through a filter"
    );

    // A conflicting merge, resolved and concluded, with the merge driver and hooks planted.
    tamper();
    assert_eq!(
        worktree
            .start_merge("task", "merge task", &agent())
            .unwrap(),
        MergeStart::Conflicted {
            files: vec!["shared.txt".to_owned()]
        }
    );
    assert!(worktree.merge_in_progress().unwrap());
    assert_eq!(worktree.unmerged_files().unwrap(), ["shared.txt"]);
    std::fs::write(path.join("shared.txt"), "a\nBOTH\nc\n").unwrap();
    tamper();
    let merged = worktree
        .commit_all("merge task", &agent())
        .unwrap()
        .unwrap();
    assert_eq!(repo.branch_commit("ws").unwrap(), Some(merged.clone()));
    assert_eq!(
        repo.merge_into_branch("task", &merged, "merge ws", &agent())
            .unwrap(),
        MergeOutcome::FastForward { head: merged }
    );
    let page = repo.diff(&base, &theirs, Default::default()).unwrap();
    assert_eq!(page.total_files, 1);

    // Nothing went into the planted git directory either.
    assert_eq!(
        git(&fixture.root.join("evil"), &["rev-list", "--all"]),
        "",
        "the planted git directory got no commit"
    );
    assert!(!trap.sprung(), "a planted program ran");
}

#[test]
fn a_tampered_commondir_is_restored_and_runs_nothing() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let trap = Trap::new(&fixture.root.join("trap"));
    let evil = trap.git_dir(&fixture.root.join("evil"));
    let path = fixture.root.join("wt/ws");
    repo.add_worktree(&path, "ws", &fixture.head()).unwrap();
    let worktree = repo.worktree(&path).unwrap();
    std::fs::write(
        worktree.git_dir().join("commondir"),
        format!("{}\n", evil.display()),
    )
    .unwrap();
    std::fs::write(path.join(".gitattributes"), ATTRIBUTES).unwrap();
    std::fs::write(path.join("file.txt"), "x\n").unwrap();
    let reopened = repo.worktree(&path).unwrap();
    assert_eq!(
        std::fs::read_to_string(worktree.git_dir().join("commondir")).unwrap(),
        format!("{}\n", fixture.path.join(".git").display())
    );
    assert_eq!(reopened.head().unwrap(), fixture.head());
    let worktree = reopened;
    let commit = worktree.commit_all("work", &agent()).unwrap().unwrap();
    assert_eq!(repo.branch_commit("ws").unwrap(), Some(commit));
    assert!(!trap.sprung(), "a planted program ran");
}

#[test]
fn a_repository_nested_in_the_worktree_runs_nothing() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let trap = Trap::new(&fixture.root.join("trap"));
    let path = fixture.root.join("wt/ws");
    repo.add_worktree(&path, "ws", &fixture.head()).unwrap();
    let worktree = repo.worktree(&path).unwrap();

    // The agent makes a repository of its own inside the worktree, with a commit, so that git
    // records it as a submodule (gitlink); its config and attributes are the trap.
    let nested = path.join("nested");
    std::fs::create_dir_all(&nested).unwrap();
    git(&nested, &["init", "-q", "-b", "main"]);
    std::fs::write(nested.join("inner.txt"), "inner\n").unwrap();
    git(&nested, &["add", "-A"]);
    git(&nested, &["commit", "-q", "-m", "inner"]);
    trap.arm(&nested.join(".git"));
    std::fs::write(nested.join(".gitattributes"), ATTRIBUTES).unwrap();
    std::fs::write(nested.join("inner.txt"), "changed\n").unwrap();
    assert!(!trap.sprung(), "the set-up ran the trap");

    worktree
        .commit_all("with a nested repository", &agent())
        .unwrap();
    assert_eq!(
        git(&fixture.path, &["ls-tree", "ws", "nested"])
            .split_whitespace()
            .nth(1),
        Some("commit"),
        "recorded as a gitlink"
    );
    // Later commands meet the gitlink at its recorded commit, its work tree dirty in a way
    // only its content shows (same size, after its index was refreshed; a newer or racily
    // equal time stamp): checking it would run git in there, which reads the content through
    // the planted filter.
    // The test's own git in there, with the trap disarmed.
    let quiet: Vec<&str> = [
        "filter.evil.clean=cat",
        "filter.evil.smudge=cat",
        "core.hooksPath=/dev/null",
        "core.fsmonitor=false",
        "gc.auto=0",
    ]
    .iter()
    .flat_map(|setting| ["-c", *setting])
    .collect();
    let inner_git = |args: &[&str]| git(&nested, &[quiet.as_slice(), args].concat());
    inner_git(&["checkout", "--", "inner.txt"]);
    inner_git(&["update-index", "--refresh"]);
    std::fs::write(nested.join("inner.txt"), "INNER\n").unwrap();
    std::fs::write(path.join("outer.txt"), "outer\n").unwrap();
    let changed = worktree.changed_files().unwrap();
    assert_eq!(changed, ["outer.txt"]);
    worktree.commit_all("more", &agent()).unwrap().unwrap();
    assert!(worktree.unmerged_files().unwrap().is_empty());
    assert!(worktree.changed_files().unwrap().is_empty());
    assert!(!trap.sprung(), "a planted program ran");

    // The nested repository moves on: its new commit is recorded, still without running it.
    std::fs::write(nested.join("more.txt"), "more\n").unwrap();
    inner_git(&["add", "more.txt"]);
    inner_git(&["commit", "-q", "-m", "more"]);
    let inner_head = inner_git(&["rev-parse", "HEAD"]);
    assert_eq!(worktree.changed_files().unwrap(), ["nested"]);
    worktree.commit_all("moved", &agent()).unwrap().unwrap();
    assert!(
        git(&fixture.path, &["ls-tree", "ws", "nested"]).contains(&inner_head),
        "the gitlink follows the nested repository's commit"
    );
    assert!(!trap.sprung(), "a planted program ran");

    // A merge into the worktree, the nested repository dirty again.
    inner_git(&["checkout", "--", "."]);
    inner_git(&["update-index", "--refresh"]);
    std::fs::write(nested.join("more.txt"), "MORE\n").unwrap();
    let session = repo.branch_commit("ws").unwrap().unwrap();
    let task = fixture.commit(&session, &[("README.md", Some("# task\n"))], "task");
    repo.create_branch("task", &task).unwrap();
    assert!(matches!(
        worktree
            .start_merge("task", "merge task", &agent())
            .unwrap(),
        MergeStart::Merged(_)
    ));
    assert!(!trap.sprung(), "a planted program ran");
}

#[test]
fn links_and_fifos_in_the_worktree_are_neither_followed_nor_waited_on() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let path = fixture.root.join("wt/ws");
    repo.add_worktree(&path, "ws", &fixture.head()).unwrap();
    let worktree = repo.worktree(&path).unwrap();
    // A link to an endless device would make a conflict-marker scan read forever.
    std::os::unix::fs::symlink("/dev/zero", path.join("zero")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(path.join("pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    worktree.commit_all("links", &agent()).unwrap().unwrap();
    assert_eq!(
        git(&fixture.path, &["ls-tree", "--name-only", "ws"]),
        "README.md\nzero"
    );

    // A `.git` replaced by a link is replaced back by a file, never written through.
    let target = fixture.root.join("target");
    std::fs::write(&target, "untouched\n").unwrap();
    std::fs::remove_file(path.join(".git")).unwrap();
    std::os::unix::fs::symlink(&target, path.join(".git")).unwrap();
    let reopened = repo.worktree(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched\n");
    assert!(
        std::fs::symlink_metadata(path.join(".git"))
            .unwrap()
            .is_file()
    );
    assert_eq!(git(&path, &["rev-parse", "--abbrev-ref", "HEAD"]), "ws");
    assert!(reopened.changed_files().unwrap().is_empty());
}

#[test]
fn a_planted_per_worktree_config_is_refused_when_git_would_read_it() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let trap = Trap::new(&fixture.root.join("trap"));
    let path = fixture.root.join("wt/ws");
    repo.add_worktree(&path, "ws", &fixture.head()).unwrap();
    let admin = repo.worktree(&path).unwrap().git_dir().to_owned();
    std::fs::write(admin.join("config.worktree"), trap.config()).unwrap();
    std::fs::write(path.join(".gitattributes"), ATTRIBUTES).unwrap();
    std::fs::write(path.join("file.txt"), "x\n").unwrap();

    // Without the extension git ignores the file: the worktree opens and commits, nothing runs.
    let worktree = repo.worktree(&path).unwrap();
    worktree.commit_all("work", &agent()).unwrap().unwrap();
    assert!(!trap.sprung(), "a planted program ran");

    // With it, the worktree is refused before git could read the file.
    fixture.git(&["config", "extensions.worktreeConfig", "true"]);
    let repo = fixture.repo();
    match repo.worktree(&path) {
        Err(GitError::WorktreePath { reason, .. }) => {
            assert!(reason.contains("config.worktree"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    std::fs::write(admin.join("config.worktree"), "").unwrap();
    let worktree = repo.worktree(&path).unwrap();
    std::fs::write(path.join("file.txt"), "y\n").unwrap();
    worktree.commit_all("more", &agent()).unwrap().unwrap();
    assert!(!trap.sprung(), "a planted program ran");
}
