//! Session worktrees against real repositories: add (idempotent), list (also while others are
//! added and removed), remove (also when the directory is already gone), committing everything, and a conflicted merge resolved by hand —
//! with the user's working tree, index and HEAD checked unchanged throughout.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Fixture, git};
use spectask_git::{GitError, MergeOutcome, MergeStart, Signature};

fn agent() -> Signature {
    Signature {
        name: "Agent Smith".to_owned(),
        email: "agent@spectask.invalid".to_owned(),
    }
}

#[test]
fn add_list_and_remove_a_worktree() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let user_before = fixture.user_state();
    let start = fixture.commit(
        &fixture.head(),
        &[("src/lib.rs", Some("fn main() {}\n"))],
        "start",
    );
    let path = fixture.root.join("data/worktrees/ws-1");

    repo.add_worktree(&path, "spectask/task-1/ws-1", &start)
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(path.join("src/lib.rs")).unwrap(),
        "fn main() {}\n"
    );
    assert_eq!(
        std::fs::read_to_string(path.join("README.md")).unwrap(),
        "# fixture\n"
    );
    let worktree = repo.worktree(&path).unwrap();
    assert_eq!(worktree.head().unwrap(), start);
    assert_eq!(
        worktree.branch().unwrap().as_deref(),
        Some("spectask/task-1/ws-1")
    );

    // Again: a no-op that keeps work in progress and does not reset the branch.
    std::fs::write(path.join("wip.txt"), "wip\n").unwrap();
    let later = fixture.commit(&start, &[("x.txt", Some("x\n"))], "later");
    repo.add_worktree(&path, "spectask/task-1/ws-1", &later)
        .unwrap();
    assert_eq!(worktree.head().unwrap(), start);
    assert!(path.join("wip.txt").exists());

    let listed = repo.worktrees().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed[0].is_main);
    assert_eq!(listed[0].path, fixture.path);
    assert_eq!(listed[0].branch.as_deref(), Some("main"));
    assert_eq!(listed[1].path, path);
    assert_eq!(listed[1].head, Some(start.clone()));
    assert_eq!(listed[1].branch.as_deref(), Some("spectask/task-1/ws-1"));
    assert!(!listed[1].is_main && !listed[1].prunable);

    // The same path on another branch, or an occupied path, is refused.
    assert!(matches!(
        repo.add_worktree(&path, "other", &start),
        Err(GitError::WorktreePath { .. })
    ));
    let occupied = fixture.root.join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("file"), "x").unwrap();
    assert!(matches!(
        repo.add_worktree(&occupied, "other", &start),
        Err(GitError::WorktreePath { .. })
    ));

    repo.remove_worktree(&path).unwrap();
    assert!(!path.exists());
    assert_eq!(repo.worktrees().unwrap().len(), 1);
    assert_eq!(
        fixture
            .git(&["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1
    );
    // Removing again is fine; the branch stays.
    repo.remove_worktree(&path).unwrap();
    assert_eq!(
        repo.branch_commit("spectask/task-1/ws-1").unwrap(),
        Some(start)
    );
    assert_eq!(fixture.user_state(), user_before);
}

#[test]
fn a_worktree_whose_directory_was_deleted_is_prunable_and_removable() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let path = fixture.root.join("wt/gone");
    repo.add_worktree(&path, "ws-gone", &fixture.head())
        .unwrap();
    // Locked, then deleted behind git's back.
    fixture.git(&["worktree", "lock", path.to_str().unwrap()]);
    std::fs::remove_dir_all(&path).unwrap();
    repo.remove_worktree(&path).unwrap();
    assert_eq!(repo.worktrees().unwrap().len(), 1);

    // A deleted, unlocked one shows as prunable, and adding at its path again works.
    repo.add_worktree(&path, "ws-gone", &fixture.head())
        .unwrap();
    std::fs::remove_dir_all(&path).unwrap();
    assert!(repo.worktrees().unwrap()[1].prunable);
    repo.add_worktree(&path, "ws-gone", &fixture.head())
        .unwrap();
    assert!(path.join("README.md").exists());
    repo.prune_worktrees().unwrap();
    assert_eq!(repo.worktrees().unwrap().len(), 2);
}

/// Sessions of one task add and remove their worktrees at the same time as others list them
/// (a merge checks where the task branch is checked out): no list fails on another's half-made
/// or half-removed worktree.
#[test]
fn worktrees_are_listed_while_others_are_added_and_removed() {
    let fixture = Fixture::new();
    let head = fixture.head();
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let (repo, head) = (fixture.repo(), head.clone());
            let root = fixture.root.clone();
            std::thread::spawn(move || {
                for round in 0..5 {
                    let path = root.join(format!("wt/{worker}-{round}"));
                    repo.add_worktree(&path, &format!("ws-{worker}-{round}"), &head)
                        .unwrap();
                    let listed = repo.worktrees().unwrap();
                    assert!(
                        listed
                            .iter()
                            .any(|w| w.path.ends_with(format!("{worker}-{round}")))
                    );
                    repo.remove_worktree(&path).unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(fixture.repo().worktrees().unwrap().len(), 1);
}

#[test]
fn remove_refuses_the_main_work_tree() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    assert!(matches!(
        repo.remove_worktree(&fixture.path),
        Err(GitError::WorktreePath { .. })
    ));
    assert!(fixture.path.join("README.md").exists());
}

#[test]
fn commit_all_commits_new_modified_and_deleted_files_without_hooks() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    // A failing pre-commit hook: it must not run.
    let hook = fixture.path.join(".git/hooks/pre-commit");
    std::fs::write(&hook, "#!/bin/sh\necho hook ran >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let start = fixture.commit(
        &fixture.head(),
        &[("keep.txt", Some("old\n")), ("drop.txt", Some("drop\n"))],
        "start",
    );
    let user_before = fixture.user_state();
    let path = fixture.root.join("wt/ws");
    repo.add_worktree(&path, "ws", &start).unwrap();
    let worktree = repo.worktree(&path).unwrap();

    assert_eq!(worktree.changed_files().unwrap(), Vec::<String>::new());
    assert_eq!(worktree.commit_all("nothing", &agent()).unwrap(), None);

    std::fs::write(path.join("keep.txt"), "new\n").unwrap();
    std::fs::remove_file(path.join("drop.txt")).unwrap();
    std::fs::create_dir_all(path.join("src/nested")).unwrap();
    std::fs::write(path.join("src/nested/added.rs"), "// added\n").unwrap();
    assert_eq!(
        worktree.changed_files().unwrap(),
        ["drop.txt", "keep.txt", "src/nested/added.rs"]
    );

    let commit = worktree
        .commit_all("ws: the work\n\nDetails.\n# not a comment", &agent())
        .unwrap()
        .unwrap();
    assert_eq!(worktree.head().unwrap(), commit);
    assert_eq!(repo.branch_commit("ws").unwrap(), Some(commit.clone()));
    assert_eq!(
        git(
            &path,
            &[
                "show",
                "-s",
                "--format=%an|%ae|%cn|%ce|%P|%B",
                commit.as_str()
            ]
        ),
        format!(
            "Agent Smith|agent@spectask.invalid|Agent Smith|agent@spectask.invalid|{start}|ws: the work\n\nDetails.\n# not a comment"
        )
    );
    assert_eq!(
        git(
            &path,
            &["show", "--name-status", "--format=", commit.as_str()]
        ),
        "D\tdrop.txt\nM\tkeep.txt\nA\tsrc/nested/added.rs"
    );
    assert!(worktree.changed_files().unwrap().is_empty());
    assert_eq!(worktree.commit_all("again", &agent()).unwrap(), None);
    assert_eq!(fixture.user_state(), user_before);
}

#[test]
fn repository_worktree_refuses_what_is_not_one_of_its_linked_worktrees() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let missing = fixture.root.join("missing");
    assert!(matches!(
        repo.worktree(&missing),
        Err(GitError::NotARepository(_))
    ));
    let plain = fixture.root.join("plain");
    std::fs::create_dir(&plain).unwrap();
    assert!(matches!(
        repo.worktree(&plain),
        Err(GitError::WorktreePath { .. })
    ));
    assert!(matches!(
        repo.worktree(&fixture.path),
        Err(GitError::WorktreePath { .. })
    ));
    let path = fixture.root.join("wt/ws");
    repo.add_worktree(&path, "ws", &fixture.head()).unwrap();
    std::fs::create_dir(path.join("sub")).unwrap();
    assert!(matches!(
        repo.worktree(&path.join("sub")),
        Err(GitError::WorktreePath { .. })
    ));
    // A link to the worktree is not followed: it could lead anywhere.
    let link = fixture.root.join("link");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    assert!(matches!(
        repo.worktree(&link),
        Err(GitError::WorktreePath { .. })
    ));
    // Another repository's worktree is not this one's.
    let other = Fixture::new();
    let foreign = other.root.join("wt/foreign");
    other
        .repo()
        .add_worktree(&foreign, "foreign", &other.head())
        .unwrap();
    assert!(matches!(
        repo.worktree(&foreign),
        Err(GitError::WorktreePath { .. })
    ));
    let worktree = repo.worktree(&path).unwrap();
    assert_eq!(worktree.path(), path);
    assert!(
        worktree
            .git_dir()
            .starts_with(fixture.path.join(".git/worktrees"))
    );
}

#[test]
fn a_conflicted_merge_is_resolved_in_the_worktree_and_then_fast_forwards_the_task_branch() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let base = fixture.commit(
        &fixture.head(),
        &[("shared.txt", Some("one\ntwo\nthree\n"))],
        "base",
    );
    let theirs = fixture.commit(
        &base,
        &[("shared.txt", Some("one\nTHEIRS\nthree\n"))],
        "theirs",
    );
    repo.create_branch("task", &theirs).unwrap();
    let user_before = fixture.user_state();

    let path = fixture.root.join("wt/ws");
    repo.add_worktree(&path, "ws", &base).unwrap();
    let worktree = repo.worktree(&path).unwrap();
    std::fs::write(path.join("shared.txt"), "one\nOURS\nthree\n").unwrap();
    let ours = worktree.commit_all("ours", &agent()).unwrap().unwrap();

    // The task branch cannot take the session as is.
    assert_eq!(
        repo.merge_into_branch("task", &ours, "merge ws", &agent())
            .unwrap(),
        MergeOutcome::Conflict {
            files: vec!["shared.txt".to_owned()]
        }
    );
    assert_eq!(repo.branch_commit("task").unwrap(), Some(theirs.clone()));

    // So the session merges the task branch in, and stops on the conflict.
    assert!(!worktree.merge_in_progress().unwrap());
    let started = worktree
        .start_merge("task", "merge task into ws", &agent())
        .unwrap();
    assert_eq!(
        started,
        MergeStart::Conflicted {
            files: vec!["shared.txt".to_owned()]
        }
    );
    assert!(worktree.merge_in_progress().unwrap());
    assert_eq!(worktree.unmerged_files().unwrap(), ["shared.txt"]);
    let conflicted = std::fs::read_to_string(path.join("shared.txt")).unwrap();
    assert!(
        conflicted.contains("<<<<<<< ")
            && conflicted.contains("\n=======\n")
            && conflicted.contains(">>>>>>> ")
    );

    // Unmerged paths block the commit; so do markers left in a staged file.
    match worktree.commit_all("too early", &agent()) {
        Err(GitError::Unresolved { files }) => assert_eq!(files, ["shared.txt"]),
        other => panic!("expected Unresolved, got {other:?}"),
    }
    git(&path, &["add", "shared.txt"]);
    match worktree.commit_all("still too early", &agent()) {
        Err(GitError::Unresolved { files }) => assert_eq!(files, ["shared.txt"]),
        other => panic!("expected Unresolved, got {other:?}"),
    }

    std::fs::write(path.join("shared.txt"), "one\nOURS and THEIRS\nthree\n").unwrap();
    let merge = worktree
        .commit_all("merge task into ws", &agent())
        .unwrap()
        .unwrap();
    assert!(!worktree.merge_in_progress().unwrap());
    assert_eq!(
        git(&path, &["show", "-s", "--format=%P|%an|%s", merge.as_str()]),
        format!("{ours} {theirs}|Agent Smith|merge task into ws")
    );

    assert_eq!(
        repo.merge_into_branch("task", &merge, "merge ws", &agent())
            .unwrap(),
        MergeOutcome::FastForward {
            head: merge.clone()
        }
    );
    assert_eq!(repo.branch_commit("task").unwrap(), Some(merge));
    assert_eq!(fixture.user_state(), user_before);
}

#[test]
fn start_merge_clean_up_to_date_and_abort() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let base = fixture.head();
    let other = fixture.commit(&base, &[("other.txt", Some("other\n"))], "other");
    repo.create_branch("other", &other).unwrap();
    let path = fixture.root.join("wt/ws");
    repo.add_worktree(&path, "ws", &base).unwrap();
    let worktree = repo.worktree(&path).unwrap();
    std::fs::write(path.join("mine.txt"), "mine\n").unwrap();
    let mine = worktree.commit_all("mine", &agent()).unwrap().unwrap();

    let MergeStart::Merged(merge) = worktree
        .start_merge("other", "merge other", &agent())
        .unwrap()
    else {
        panic!("expected a clean merge");
    };
    assert_eq!(
        git(
            &path,
            &["show", "-s", "--format=%P|%an|%cn|%s", merge.as_str()]
        ),
        format!("{mine} {other}|Agent Smith|Agent Smith|merge other")
    );
    assert!(path.join("other.txt").exists());
    assert_eq!(
        worktree
            .start_merge(other.as_str(), "again", &agent())
            .unwrap(),
        MergeStart::UpToDate
    );

    // A conflict, then abort: back to the merge commit, no MERGE_HEAD.
    let clash = fixture.commit(&base, &[("mine.txt", Some("theirs\n"))], "clash");
    let started = worktree
        .start_merge(clash.as_str(), "merge clash", &agent())
        .unwrap();
    assert!(matches!(started, MergeStart::Conflicted { .. }));
    worktree.abort_merge().unwrap();
    assert!(!worktree.merge_in_progress().unwrap());
    assert_eq!(worktree.head().unwrap(), merge);
    assert_eq!(
        std::fs::read_to_string(path.join("mine.txt")).unwrap(),
        "mine\n"
    );
}
