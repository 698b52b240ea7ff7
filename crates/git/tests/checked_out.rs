//! Merging at approval: into the branch the user has checked out (`merge_into_checked_out`:
//! the user's files, index and HEAD move; a dirty tree or a conflict changes nothing), and the
//! fast-forward choice of `merge_into_branch_with` for a branch nobody has checked out.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use common::Fixture;
use spectask_git::{GitError, MergeMode, MergeOutcome, Signature};

fn merger() -> Signature {
    Signature {
        name: "Merger".to_owned(),
        email: "merger@spectask.invalid".to_owned(),
    }
}

#[test]
fn fast_forward_moves_the_users_files_index_and_head() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let base = fixture.head();
    let ahead = fixture.commit(&base, &[("feature.txt", Some("new\n"))], "feature");
    // An untracked file is not a reason to refuse.
    std::fs::write(fixture.path.join("notes.txt"), "mine\n").unwrap();

    let outcome = repo
        .merge_into_checked_out("main", &ahead, MergeMode::FastForwardOnly, "m", &merger())
        .unwrap();

    assert_eq!(
        outcome,
        MergeOutcome::FastForward {
            head: ahead.clone()
        }
    );
    assert_eq!(fixture.head(), ahead);
    assert_eq!(
        std::fs::read_to_string(fixture.path.join("feature.txt")).unwrap(),
        "new\n"
    );
    assert_eq!(
        fixture.git(&["status", "--porcelain"]),
        "?? notes.txt",
        "index and tree match the new HEAD"
    );
    // Again: already merged, nothing moves.
    assert_eq!(
        repo.merge_into_checked_out("main", &base, MergeMode::FastForwardOnly, "m", &merger())
            .unwrap(),
        MergeOutcome::AlreadyMerged { head: ahead }
    );
}

#[test]
fn a_merge_commit_is_made_even_where_a_fast_forward_was_possible() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let base = fixture.head();
    let ahead = fixture.commit(&base, &[("feature.txt", Some("new\n"))], "feature");

    let outcome = repo
        .merge_into_checked_out(
            "main",
            &ahead,
            MergeMode::NoFastForward,
            "Merge task",
            &merger(),
        )
        .unwrap();

    let MergeOutcome::Merged { head } = outcome else {
        panic!("expected a merge commit, got {outcome:?}");
    };
    assert_eq!(fixture.head(), head);
    assert_eq!(
        fixture.git(&["rev-list", "--parents", "-n", "1", "HEAD"]),
        format!("{head} {base} {ahead}")
    );
    assert_eq!(
        fixture.git(&["log", "-1", "--format=%s|%an"]),
        "Merge task|Merger"
    );
    assert!(fixture.path.join("feature.txt").exists());
    assert_eq!(fixture.git(&["status", "--porcelain"]), "");
}

#[test]
fn a_dirty_tree_a_conflict_or_a_diverged_history_change_nothing() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let base = fixture.head();
    let theirs = fixture.commit(&base, &[("README.md", Some("theirs\n"))], "theirs");

    // Uncommitted changes to a tracked file.
    std::fs::write(fixture.path.join("README.md"), "edited\n").unwrap();
    let before = fixture.user_state();
    let refused =
        repo.merge_into_checked_out("main", &theirs, MergeMode::FastForwardOnly, "m", &merger());
    assert!(
        matches!(&refused, Err(GitError::DirtyWorktree { files, .. }) if files == &["README.md".to_owned()]),
        "{refused:?}"
    );
    assert_eq!(fixture.user_state(), before);
    fixture.git(&["checkout", "--", "README.md"]);

    // The user committed meanwhile: diverged.
    fixture.git(&["commit", "-q", "--allow-empty", "-m", "user's own"]);
    std::fs::write(fixture.path.join("README.md"), "ours\n").unwrap();
    fixture.git(&["commit", "-q", "-am", "ours"]);
    let before = fixture.user_state();
    assert!(matches!(
        repo.merge_into_checked_out("main", &theirs, MergeMode::FastForwardOnly, "m", &merger()),
        Err(GitError::NotFastForward { .. })
    ));
    assert_eq!(
        repo.merge_into_checked_out("main", &theirs, MergeMode::NoFastForward, "m", &merger())
            .unwrap(),
        MergeOutcome::Conflict {
            files: vec!["README.md".to_owned()]
        }
    );
    assert_eq!(
        fixture.user_state(),
        before,
        "no conflict markers, no MERGE_HEAD"
    );
    assert!(!fixture.path.join(".git/MERGE_HEAD").exists());

    // Another branch checked out.
    assert!(matches!(
        repo.merge_into_checked_out("other", &theirs, MergeMode::NoFastForward, "m", &merger()),
        Err(GitError::NotCheckedOut { .. })
    ));
}

#[test]
fn a_branch_nobody_has_checked_out_moves_by_the_mode() {
    let fixture = Fixture::new();
    let repo = fixture.repo();
    let base = fixture.head();
    let ahead = fixture.commit(&base, &[("a.txt", Some("a\n"))], "ahead");
    let other = fixture.commit(&base, &[("b.txt", Some("b\n"))], "other");
    repo.create_branch("release", &base).unwrap();
    let user_before = fixture.user_state();

    let merged = repo
        .merge_into_branch_with(
            "release",
            &ahead,
            MergeMode::NoFastForward,
            "Merge",
            &merger(),
        )
        .unwrap();
    let MergeOutcome::Merged { head } = merged else {
        panic!("expected a merge commit, got {merged:?}");
    };
    assert_eq!(
        fixture.git(&["rev-list", "--parents", "-n", "1", head.as_str()]),
        format!("{head} {base} {ahead}")
    );
    assert!(matches!(
        repo.merge_into_branch_with(
            "release",
            &other,
            MergeMode::FastForwardOnly,
            "m",
            &merger()
        ),
        Err(GitError::NotFastForward { .. })
    ));
    assert_eq!(repo.branch_commit("release").unwrap(), Some(head));
    assert_eq!(fixture.user_state(), user_before);
}
