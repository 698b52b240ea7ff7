//! `Repository::diff` on a 200-file change: statuses (added, modified, deleted, renamed), totals
//! over all files, paging, a binary file, a path git quotes, and patch truncation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::BTreeSet;

use common::Fixture;
use spectask_git::{CommitId, DiffPage, FileStatus, Repository, Signature};

const ODD_NAME: &str = "odd name \"q\".txt";

/// Base: f000..f149 (five lines each). Head: f000..f049 get a line more, f050..f079 are
/// deleted, f080..f109 move to moved/, 87 new two-line files, a binary file, a 1000-line file
/// and a file whose name git quotes: 200 changed files, 1228 lines added, 150 deleted.
fn two_hundred_changes(fixture: &Fixture) -> (Repository, CommitId, CommitId) {
    let repo = fixture.repo();
    let path = fixture.root.join("wt/diff");
    repo.add_worktree(&path, "diff", &fixture.head()).unwrap();
    let worktree = repo.worktree(&path).unwrap();
    let file = |n: usize| path.join(format!("f{n:03}.txt"));
    for n in 0..150 {
        let lines: String = (0..5).map(|k| format!("line {k} of file {n}\n")).collect();
        std::fs::write(file(n), lines).unwrap();
    }
    let base = worktree
        .commit_all("base", &Signature::default())
        .unwrap()
        .unwrap();

    for n in 0..50 {
        let mut text = std::fs::read_to_string(file(n)).unwrap();
        text.push_str("added\n");
        std::fs::write(file(n), text).unwrap();
    }
    for n in 50..80 {
        std::fs::remove_file(file(n)).unwrap();
    }
    std::fs::create_dir(path.join("moved")).unwrap();
    for n in 80..110 {
        std::fs::rename(file(n), path.join(format!("moved/f{n:03}.txt"))).unwrap();
    }
    for n in 0..87 {
        std::fs::write(
            path.join(format!("n{n:03}.txt")),
            format!("new {n}\nsecond\n"),
        )
        .unwrap();
    }
    std::fs::write(path.join("bin.dat"), [0u8, 1, 2, 3, 255, 0, 7]).unwrap();
    let big: String = (0..1000).map(|k| format!("big line {k}\n")).collect();
    std::fs::write(path.join("big.txt"), big).unwrap();
    std::fs::write(path.join(ODD_NAME), "odd\n").unwrap();
    let head = worktree
        .commit_all("head", &Signature::default())
        .unwrap()
        .unwrap();
    (repo, base, head)
}

#[test]
fn a_200_file_diff_pages_with_totals_over_all_files() {
    let fixture = Fixture::new();
    let (repo, base, head) = two_hundred_changes(&fixture);
    let page = |offset| DiffPage {
        offset,
        limit: 50,
        max_patch_bytes: 1000,
        with_patches: true,
    };

    let mut seen = Vec::new();
    let mut offset = Some(0);
    let mut pages = 0;
    while let Some(at) = offset {
        let diff = repo.diff(&base, &head, page(at)).unwrap();
        assert_eq!(diff.base, base);
        assert_eq!(diff.head, head);
        assert_eq!(diff.total_files, 200);
        assert_eq!(
            (diff.additions, diff.deletions),
            (50 + 87 * 2 + 1000 + 1, 30 * 5)
        );
        assert!(diff.files.len() <= 50);
        seen.extend(diff.files);
        offset = diff.next_offset;
        pages += 1;
    }
    assert_eq!(pages, 4);
    let paths: Vec<&str> = seen.iter().map(|f| f.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "files are sorted by path");
    assert_eq!(paths.iter().collect::<BTreeSet<_>>().len(), 200);

    let find = |path: &str| seen.iter().find(|f| f.path == path).unwrap();
    let modified = find("f000.txt");
    assert_eq!(modified.status, FileStatus::Modified);
    assert_eq!((modified.additions, modified.deletions), (1, 0));
    let patch = modified.patch.as_deref().unwrap();
    assert!(
        patch.starts_with("diff --git a/f000.txt b/f000.txt\n"),
        "{patch}"
    );
    assert!(patch.contains("\n+added\n"));
    assert!(!modified.patch_truncated);

    let deleted = find("f050.txt");
    assert_eq!(deleted.status, FileStatus::Deleted);
    assert_eq!((deleted.additions, deleted.deletions), (0, 5));
    assert!(
        deleted
            .patch
            .as_deref()
            .unwrap()
            .contains("deleted file mode")
    );

    let renamed = find("moved/f080.txt");
    assert_eq!(renamed.status, FileStatus::Renamed);
    assert_eq!(renamed.old_path.as_deref(), Some("f080.txt"));
    assert!(
        renamed
            .patch
            .as_deref()
            .unwrap()
            .contains("rename from f080.txt\nrename to moved/f080.txt")
    );

    let added = find("n000.txt");
    assert_eq!(added.status, FileStatus::Added);
    assert_eq!((added.additions, added.deletions), (2, 0));
    assert!(
        added
            .patch
            .as_deref()
            .unwrap()
            .contains("+new 0\n+second\n")
    );

    let binary = find("bin.dat");
    assert!(binary.binary);
    assert_eq!(binary.status, FileStatus::Added);
    assert_eq!(binary.patch, None);

    let odd = find(ODD_NAME);
    assert!(odd.patch.as_deref().unwrap().contains("+odd\n"));

    let big = find("big.txt");
    assert_eq!(big.additions, 1000);
    assert!(big.patch_truncated);
    let cut = big.patch.as_deref().unwrap();
    assert!(cut.len() <= 1000 && cut.ends_with('\n') && cut.contains("+big line 0\n"));

    let statuses: BTreeSet<String> = seen.iter().map(|f| format!("{:?}", f.status)).collect();
    assert_eq!(statuses.len(), 4);
}

#[test]
fn without_patches_and_past_the_end() {
    let fixture = Fixture::new();
    let (repo, base, head) = two_hundred_changes(&fixture);
    let all = repo
        .diff(
            &base,
            &head,
            DiffPage {
                offset: 0,
                limit: 500,
                max_patch_bytes: 0,
                with_patches: false,
            },
        )
        .unwrap();
    assert_eq!(all.files.len(), 200);
    assert_eq!(all.next_offset, None);
    assert!(
        all.files
            .iter()
            .all(|f| f.patch.is_none() && !f.patch_truncated)
    );

    let beyond = repo
        .diff(
            &base,
            &head,
            DiffPage {
                offset: 500,
                ..DiffPage::default()
            },
        )
        .unwrap();
    assert!(beyond.files.is_empty());
    assert_eq!(beyond.total_files, 200);
    assert_eq!(beyond.next_offset, None);

    // The whole diff with every patch in one page still splits per file correctly.
    let every = repo
        .diff(
            &base,
            &head,
            DiffPage {
                offset: 0,
                limit: 200,
                max_patch_bytes: 1 << 20,
                with_patches: true,
            },
        )
        .unwrap();
    for file in &every.files {
        assert_eq!(file.patch.is_some(), !file.binary, "{}", file.path);
        assert!(!file.patch_truncated);
    }
    let empty = repo.diff(&head, &head, DiffPage::default()).unwrap();
    assert_eq!(
        (empty.total_files, empty.additions, empty.deletions),
        (0, 0, 0)
    );
}

#[test]
fn outputs_serialise_as_the_server_sends_them() {
    let status = serde_json::to_value(FileStatus::TypeChanged).unwrap();
    assert_eq!(status, serde_json::json!("type_changed"));
    let id: CommitId = "0123456789abcdef0123456789ABCDEF01234567".parse().unwrap();
    assert_eq!(
        serde_json::to_value(spectask_git::MergeOutcome::Merged { head: id.clone() }).unwrap(),
        serde_json::json!({"outcome": "merged", "head": "0123456789abcdef0123456789abcdef01234567"})
    );
    assert_eq!(
        serde_json::to_value(spectask_git::MergeStart::Merged(id)).unwrap(),
        serde_json::json!({"merged": "0123456789abcdef0123456789abcdef01234567"})
    );
    assert!("0123".parse::<CommitId>().is_err());
    assert!(
        "g123456789abcdef0123456789abcdef01234567"
            .parse::<CommitId>()
            .is_err()
    );
}
