//! `merge_into_branch` without a working tree: fast-forward, already merged, a true two-parent
//! merge, a conflict that changes nothing, and concurrent merges into one branch that must not
//! lose a commit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use common::Fixture;
use spectask_git::{CommitId, GitError, MergeOutcome, Signature};

fn merger() -> Signature {
    Signature {
        name: "Merger".to_owned(),
        email: "merger@spectask.invalid".to_owned(),
    }
}

#[test]
fn fast_forward_and_already_merged() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let base = fixture.head();
    let ahead = fixture.commit(&base, &[("a.txt", Some("a\n"))], "ahead");
    repo.create_branch("task", &base).unwrap();
    let user_before = fixture.user_state();

    assert_eq!(
        repo.merge_into_branch("task", &ahead, "m", &merger())
            .unwrap(),
        MergeOutcome::FastForward {
            head: ahead.clone()
        }
    );
    assert_eq!(repo.branch_commit("task").unwrap(), Some(ahead.clone()));
    assert_eq!(
        repo.merge_into_branch("task", &base, "m", &merger())
            .unwrap(),
        MergeOutcome::AlreadyMerged {
            head: ahead.clone()
        }
    );
    assert_eq!(
        repo.merge_into_branch("task", &ahead, "m", &merger())
            .unwrap(),
        MergeOutcome::AlreadyMerged {
            head: ahead.clone()
        }
    );
    assert!(matches!(
        repo.merge_into_branch("no-such-branch", &base, "m", &merger()),
        Err(GitError::BranchNotFound { .. })
    ));
    // The user's checked-out branch is never moved.
    assert!(matches!(
        repo.merge_into_branch("main", &ahead, "m", &merger()),
        Err(GitError::BranchCheckedOut { .. })
    ));
    assert_eq!(fixture.user_state(), user_before);
}

#[test]
fn a_true_merge_has_two_parents_and_both_sides() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let base = fixture.head();
    let left = fixture.commit(&base, &[("left.txt", Some("left\n"))], "left");
    let right = fixture.commit(&base, &[("right.txt", Some("right\n"))], "right");
    repo.create_branch("task", &left).unwrap();
    let user_before = fixture.user_state();

    let MergeOutcome::Merged { head } = repo
        .merge_into_branch("task", &right, "Merge session right", &merger())
        .unwrap()
    else {
        panic!("expected a merge commit");
    };
    assert_eq!(repo.branch_commit("task").unwrap(), Some(head.clone()));
    assert_eq!(
        fixture.git(&[
            "show",
            "-s",
            "--format=%P|%an|%ae|%cn|%ce|%B",
            head.as_str()
        ]),
        format!(
            "{left} {right}|Merger|merger@spectask.invalid|Merger|merger@spectask.invalid|Merge session right"
        )
    );
    assert_eq!(
        fixture.git(&["ls-tree", "--name-only", head.as_str()]),
        "README.md\nleft.txt\nright.txt"
    );
    assert_eq!(fixture.user_state(), user_before);
}

#[test]
fn a_conflict_changes_nothing() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let base = fixture.commit(&fixture.head(), &[("same.txt", Some("1\n2\n3\n"))], "base");
    let left = fixture.commit(
        &base,
        &[("same.txt", Some("1\nleft\n3\n")), ("l.txt", Some("l\n"))],
        "left",
    );
    let right = fixture.commit(&base, &[("same.txt", Some("1\nright\n3\n"))], "right");
    repo.create_branch("task", &left).unwrap();
    let user_before = fixture.user_state();

    assert_eq!(
        repo.merge_into_branch("task", &right, "m", &merger())
            .unwrap(),
        MergeOutcome::Conflict {
            files: vec!["same.txt".to_owned()]
        }
    );
    assert_eq!(repo.branch_commit("task").unwrap(), Some(left));
    assert_eq!(fixture.user_state(), user_before);
}

#[test]
fn concurrent_merges_into_one_branch_lose_no_commit() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let base = fixture.head();
    repo.create_branch("task", &base).unwrap();
    // Six sessions, each adding its own file: every pair merges cleanly, and all six race
    // for the same branch (each loses at most five times, within the retry budget).
    let sessions: Vec<CommitId> = (0..6)
        .map(|n| {
            let name = format!("session-{n}.txt");
            fixture.commit(
                &base,
                &[(name.as_str(), Some("work\n"))],
                &format!("session {n}"),
            )
        })
        .collect();
    let barrier = std::sync::Barrier::new(sessions.len());
    std::thread::scope(|scope| {
        for session in &sessions {
            let repo = repo.clone();
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                let outcome = repo
                    .merge_into_branch("task", session, "merge", &merger())
                    .unwrap();
                assert!(
                    matches!(
                        outcome,
                        MergeOutcome::Merged { .. } | MergeOutcome::FastForward { .. }
                    ),
                    "{outcome:?}"
                );
            });
        }
    });
    let tip = repo.branch_commit("task").unwrap().unwrap();
    for session in &sessions {
        assert!(
            repo.is_ancestor(session, &tip).unwrap(),
            "{session} was lost"
        );
    }
    let files = fixture.git(&["ls-tree", "--name-only", tip.as_str()]);
    assert_eq!(
        files.lines().filter(|f| f.starts_with("session-")).count(),
        6
    );
}

#[test]
fn a_branch_moved_between_read_and_update_is_detected_and_redone() {
    // The compare-and-set every merge ends with: a writer holding a stale tip loses, and
    // merging again from the new tip keeps both the other writer's commit and ours.
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let base = fixture.head();
    let ours = fixture.commit(&base, &[("ours.txt", Some("o\n"))], "ours");
    let theirs = fixture.commit(&base, &[("theirs.txt", Some("t\n"))], "theirs");
    repo.create_branch("task", &base).unwrap();
    let seen = repo.branch_commit("task").unwrap().unwrap();
    repo.set_branch("task", &theirs, Some(&seen)).unwrap(); // another writer wins
    assert!(matches!(
        repo.set_branch("task", &ours, Some(&seen)),
        Err(GitError::RefChanged { .. })
    ));
    let MergeOutcome::Merged { head } = repo
        .merge_into_branch("task", &ours, "m", &merger())
        .unwrap()
    else {
        panic!("expected a merge");
    };
    assert!(repo.is_ancestor(&theirs, &head).unwrap());
    assert!(repo.is_ancestor(&ours, &head).unwrap());
}

#[test]
fn handles_can_move_to_blocking_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<spectask_git::Repository>();
    send_sync::<spectask_git::Worktree>();
    send_sync::<spectask_git::GitError>();
}
