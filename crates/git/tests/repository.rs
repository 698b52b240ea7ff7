//! `Repository` against real repositories: opening, HEAD, branches (idempotent create,
//! compare-and-set, delete), ancestry and commit listing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::path::Path;

use common::{Fixture, git};
use spectask_git::{CommitId, GitError, Repository, Signature, is_valid_branch_name};

#[test]
fn open_outside_a_repository_is_none() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Repository::open(dir.path()).unwrap().is_none());
}

#[test]
fn open_finds_the_top_and_the_subdirectory() {
    let fixture = Fixture::new();
    let top = fixture.repo();
    assert_eq!(top.work_tree(), fixture.path);
    assert_eq!(top.subdir(), Path::new(""));

    let nested = fixture.path.join("src/deep");
    std::fs::create_dir_all(&nested).unwrap();
    let inner = Repository::open(&nested).unwrap().unwrap();
    assert_eq!(inner.work_tree(), fixture.path);
    assert_eq!(inner.subdir(), Path::new("src/deep"));
}

#[test]
fn open_inside_a_bare_repository_or_the_git_directory_is_none() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "--bare", "bare.git"]);
    assert!(
        Repository::open(&dir.path().join("bare.git"))
            .unwrap()
            .is_none()
    );

    let fixture = Fixture::new();
    assert!(
        Repository::open(&fixture.path.join(".git"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn head_reports_commit_and_branch_unborn_and_detached() {
    let fixture = Fixture::new();
    let head = fixture.repo().head().unwrap();
    assert_eq!(head.commit, Some(fixture.head()));
    assert_eq!(head.branch.as_deref(), Some("main"));

    fixture.git(&["checkout", "-q", "--detach"]);
    let detached = fixture.repo().head().unwrap();
    assert_eq!(detached.commit, Some(fixture.head()));
    assert_eq!(detached.branch, None);

    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "trunk"]);
    let unborn = Repository::open(dir.path())
        .unwrap()
        .unwrap()
        .head()
        .unwrap();
    assert_eq!(unborn.commit, None);
    assert_eq!(unborn.branch.as_deref(), Some("trunk"));
}

#[test]
fn create_branch_is_idempotent_and_refuses_another_commit() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let base = fixture.head();
    let other = fixture.commit(&base, &[("a.txt", Some("a\n"))], "other");

    repo.create_branch("spectask/login-01h", &base).unwrap();
    repo.create_branch("spectask/login-01h", &base).unwrap();
    assert_eq!(
        repo.branch_commit("spectask/login-01h").unwrap(),
        Some(base.clone())
    );
    assert_eq!(
        fixture.git(&["rev-parse", "spectask/login-01h"]),
        base.as_str()
    );

    match repo.create_branch("spectask/login-01h", &other) {
        Err(GitError::BranchExists { branch, at }) => {
            assert_eq!(branch, "spectask/login-01h");
            assert_eq!(at, base);
        }
        other => panic!("expected BranchExists, got {other:?}"),
    }
    assert_eq!(repo.branch_commit("nope").unwrap(), None);
    assert!(matches!(
        repo.create_branch("bad..name", &base),
        Err(GitError::InvalidName(_))
    ));
}

#[test]
fn set_branch_is_compare_and_set() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let first = fixture.head();
    let second = fixture.commit(&first, &[("a.txt", Some("a\n"))], "second");
    let third = fixture.commit(&second, &[("b.txt", Some("b\n"))], "third");

    repo.set_branch("task", &first, None).unwrap();
    assert!(matches!(
        repo.set_branch("task", &second, None),
        Err(GitError::RefChanged { .. })
    ));
    repo.set_branch("task", &second, Some(&first)).unwrap();
    // A stale expectation changes nothing.
    assert!(matches!(
        repo.set_branch("task", &third, Some(&first)),
        Err(GitError::RefChanged { .. })
    ));
    assert_eq!(repo.branch_commit("task").unwrap(), Some(second.clone()));
    // A branch that does not exist does not match an expectation either.
    assert!(matches!(
        repo.set_branch("missing", &third, Some(&first)),
        Err(GitError::RefChanged { .. })
    ));
    assert_eq!(repo.branch_commit("missing").unwrap(), None);
    // Packed refs are compared the same way.
    fixture.git(&["pack-refs", "--all"]);
    repo.set_branch("task", &third, Some(&second)).unwrap();
    assert_eq!(fixture.git(&["rev-parse", "task"]), third.as_str());
}

#[test]
fn delete_branch_tolerates_missing_and_refuses_checked_out() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let base = fixture.head();
    repo.create_branch("gone", &base).unwrap();
    repo.delete_branch("gone").unwrap();
    assert_eq!(repo.branch_commit("gone").unwrap(), None);
    repo.delete_branch("gone").unwrap();

    match repo.delete_branch("main") {
        Err(GitError::BranchCheckedOut { branch, worktree }) => {
            assert_eq!(branch, "main");
            assert_eq!(worktree, fixture.path);
        }
        other => panic!("expected BranchCheckedOut, got {other:?}"),
    }
    assert_eq!(repo.branch_commit("main").unwrap(), Some(base));
}

#[test]
fn ancestry_and_merge_base() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let root = fixture.head();
    let left = fixture.commit(&root, &[("l.txt", Some("l\n"))], "left");
    let right = fixture.commit(&root, &[("r.txt", Some("r\n"))], "right");

    assert!(repo.is_ancestor(&root, &left).unwrap());
    assert!(repo.is_ancestor(&left, &left).unwrap());
    assert!(!repo.is_ancestor(&left, &root).unwrap());
    assert!(!repo.is_ancestor(&left, &right).unwrap());
    assert_eq!(repo.merge_base(&left, &right).unwrap(), Some(root.clone()));
    assert_eq!(repo.merge_base(&root, &left).unwrap(), Some(root.clone()));

    // Unrelated histories have no merge base.
    let tree = fixture.git(&["write-tree"]);
    let orphan: CommitId = fixture
        .git(&["commit-tree", &tree, "-m", "orphan"])
        .parse()
        .unwrap();
    assert_eq!(repo.merge_base(&orphan, &left).unwrap(), None);
    assert!(!repo.is_ancestor(&orphan, &left).unwrap());
}

#[test]
fn commits_between_lists_oldest_first_with_details() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let base = fixture.head();
    let one = fixture.commit(
        &base,
        &[("1.txt", Some("1\n"))],
        "first change\n\nwith a body",
    );
    let two = fixture.commit(&one, &[("2.txt", Some("2\n"))], "second change");
    let side = fixture.commit(&base, &[("s.txt", Some("s\n"))], "side change");
    repo.create_branch("task", &two).unwrap();
    let merged = match repo
        .merge_into_branch("task", &side, "merge side", &Signature::default())
        .unwrap()
    {
        spectask_git::MergeOutcome::Merged { head } => head,
        other => panic!("expected a merge, got {other:?}"),
    };

    let commits = repo.commits_between(&base, &merged).unwrap();
    let ids: Vec<&CommitId> = commits.iter().map(|c| &c.id).collect();
    assert_eq!(ids, [&one, &two, &side, &merged]);
    assert_eq!(commits[0].summary, "first change");
    assert_eq!(commits[0].message.trim_end(), "first change\n\nwith a body");
    assert_eq!(commits[0].author_name, "Fixture");
    assert_eq!(commits[0].author_email, "fixture@example.invalid");
    assert_eq!(commits[0].parents, std::slice::from_ref(&base));
    assert!(commits[0].time > 1_600_000_000);
    assert_eq!(commits[3].parents, [two.clone(), side.clone()]);
    assert_eq!(commits[3].author_name, "spectask");

    assert!(repo.commits_between(&merged, &merged).unwrap().is_empty());
    assert_eq!(repo.commits_between(&one, &two).unwrap().len(), 1);
}

#[test]
fn branch_name_rules_agree_with_git_check_ref_format() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "main",
        "spectask/add-login-01h",
        "a/b",
        "v1.2",
        "x@y",
        "ünï",
        "a..b",
        "a/",
        "/a",
        "a//b",
        ".a",
        "a/.b",
        "a.lock",
        "a b",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[b",
        "a\\b",
        "a@{1}",
        "a.",
        "-x",
        "HEAD",
        "a\tb",
        "a/b.lock/c",
        "feature/x-1",
        "ok_name",
        "trailing.dot.",
        "x/-y",
    ] {
        let git_says = common::git_command(dir.path(), &["check-ref-format", "--branch", name])
            .output()
            .unwrap()
            .status
            .success();
        assert_eq!(is_valid_branch_name(name), git_says, "{name:?}");
    }
}
