//! Git isolation, step by step, on a real repository: each work session works in its own
//! worktree on its own branch, a finished session is committed and merged into the task branch
//! before it completes (so a dependant starts from its dependencies' work), a conflict becomes a
//! follow-up turn or blocks the session for a human, merged worktrees are removed, the user's
//! working tree and branch are never touched, and a project that is not a repository runs
//! shared.

use spectask_domain::{EventKind, SpecTaskStatus, WorkSessionStatus, WorkspaceIsolation};
use spectask_engine::EngineSettings;
use spectask_store::EventQuery;
use spectask_testkit::{FileWrite, TestRepo, wait_until};

use crate::support::*;

fn writes(files: &[(&str, &str)]) -> Behaviour {
    Behaviour::WriteFiles {
        files: files.iter().map(|(p, c)| FileWrite::new(p, c)).collect(),
    }
}

/// Writes `files` once gate `go` opens: both sessions' worktrees then exist before either
/// merges, so their same-line changes conflict (a session dispatched after the other merged
/// would simply start from its work).
fn writes_after_go(files: &[(&str, &str)]) -> Behaviour {
    Behaviour::EditFiles {
        paths: Vec::new(),
        before: Some("go".to_owned()),
        after: None,
        then: Some(Box::new(writes(files))),
    }
}

/// Starts both sessions' first turns, waits until both run (their worktrees made), lets them
/// write, then steps until nothing is left to do.
async fn run_both_at_once(h: &Harness) {
    let mut running = tokio::task::JoinSet::new();
    h.tick_into(&mut running).await;
    wait_until("both first turns to run", || async {
        match h.runtime.running_turns() {
            2 => Ok(()),
            n => Err(format!("{n} running")),
        }
    })
    .await;
    h.runtime.open_gate("go");
    while let Some(ended) = running.join_next().await {
        ended.unwrap();
    }
    h.steps_until_idle(10).await;
}

fn with_worktrees(dir: &std::path::Path, threads: usize) -> EngineSettings {
    settings(|s| {
        s.max_parallel_threads = threads;
        s.git.worktrees_dir = Some(dir.to_path_buf());
    })
}

async fn event_kinds(h: &Harness, kind: EventKind) -> Vec<serde_json::Value> {
    h.store
        .list_events(&EventQuery {
            limit: 10_000,
            ..EventQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.payload)
        .collect()
}

step_tests! {
    async fn sessions_work_in_worktrees_and_merge_in_dependency_order(db) {
        let repo = TestRepo::new();
        let worktrees = tempfile::tempdir().unwrap();
        let script = Script {
            default: succeed(),
            rules: vec![
                rule("Task 1: Schema", writes(&[("db/schema.sql", "CREATE TABLE t (id INT);\n")]), None),
                rule("Task 2: Endpoints", writes(&[("src/api.rs", "// uses db/schema.sql\n")]), None),
                rule("Task 3: Docs", writes(&[("docs/guide.md", "# Guide\n")]), None),
            ],
        };
        let h = Harness::new(db, script, with_worktrees(worktrees.path(), 4)).await;
        let user_head = repo.rev("HEAD");
        let id = h
            .approved_task_in(&[("1", "Schema", &[]), ("2", "Endpoints", &["1"]), ("3", "Docs", &[])], Some(repo.path().to_str().unwrap()), None)
            .await;

        // Step 1: the task branch is made from HEAD; sessions 1 and 3 run in their own worktrees.
        assert_eq!(h.step().await, ticked(1, 1, 2, 2));
        let task = h.task(&id).await;
        assert_eq!(task.isolation, Some(WorkspaceIsolation::Worktree));
        let branch = task.branch_name.clone().unwrap();
        assert!(branch.starts_with("spectask/steps-"), "{branch}");
        assert_eq!(task.base_commit.as_deref(), Some(user_head.as_str()));
        assert_eq!(task.base_branch.as_deref(), Some("main"));
        let (one, three) = (h.session(&id, "1").await, h.session(&id, "3").await);
        for ws in [&one, &three] {
            assert_eq!(ws.status, WorkSessionStatus::Completed, "{ws:#?}");
            assert_eq!(ws.commits.len(), 1, "one commit per session: {ws:#?}");
            assert!(ws.branch_name.as_deref().unwrap().starts_with(&format!("{branch}--")));
            assert_eq!(ws.worktree_path, None, "a merged worktree is removed");
            let cwd = h.runtime.thread_cwd(&spectask_domain::AgentThreadId::new(h.thread(&ws.id).await.zed_thread_id.as_str())).unwrap();
            assert!(cwd.starts_with(worktrees.path()), "{}", cwd.display());
            assert!(cwd.ends_with(ws.id.as_str()), "{}", cwd.display());
        }
        assert!(one.commits[0].summary.starts_with("1 Schema"), "{:?}", one.commits);
        assert_eq!(one.commits[0].author, "spectask <spectask@localhost>");
        let message = repo.git(&["log", "-1", "--format=%B", &one.commits[0].id]);
        assert!(message.contains("Requirements: 1.1"), "{message}");
        assert!(message.contains(&format!("Spectask-Work-Session: {}", one.id)), "{message}");

        // Step 2: the dependant starts from the task branch with its dependency merged.
        assert_eq!(h.step().await, ticked(0, 0, 1, 1));
        let two = h.session(&id, "2").await;
        assert_eq!(two.status, WorkSessionStatus::Completed);
        assert_eq!(two.commits.len(), 1);
        assert!(repo.is_ancestor(&one.commits[0].id, &two.commits[0].id), "2 was built on 1's work");
        let task = h.task(&id).await;
        assert_eq!(task.status, SpecTaskStatus::ImplementationReview);
        assert_eq!(task.head_commit.as_deref(), Some(repo.rev(&branch).as_str()));
        for (path, content) in [("db/schema.sql", "CREATE TABLE t (id INT);\n"), ("src/api.rs", "// uses db/schema.sql\n"), ("docs/guide.md", "# Guide\n")] {
            assert_eq!(repo.show(&branch, path).as_deref(), Some(content), "{path} on the task branch");
        }
        // The user's working tree, index and branch are untouched.
        // (Only the spec projection, `.spectask/`, which planning writes into the project.)
        assert_eq!(repo.status(), "?? .spectask/");
        assert_eq!(repo.current_branch(), "main");
        assert_eq!(repo.rev("HEAD"), user_head);
        assert!(!repo.path().join("db").exists());
        assert!(repo.linked_worktrees().is_empty(), "{:?}", repo.linked_worktrees());
        assert_eq!(event_kinds(&h, EventKind::WorkSessionMerged).await.len(), 3);

        // Approval ends the task: the reaper removes its session branches, the task branch stays.
        h.engine.approve_implementation(&id, spectask_domain::ApprovalMerge::None, "reviewer").await.unwrap();
        h.step().await;
        assert_eq!(repo.branches(&format!("{branch}--")), Vec::<String>::new());
        assert_eq!(repo.branches("spectask/"), vec![branch.clone()]);
        assert!(!worktrees.path().join(id.as_str()).exists());
    }

    async fn a_session_that_changed_nothing_commits_nothing(db) {
        let repo = TestRepo::new();
        let worktrees = tempfile::tempdir().unwrap();
        let h = Harness::new(db, Script::always(succeed()), with_worktrees(worktrees.path(), 1)).await;
        let id = h.approved_task_in(&[("1", "Look around", &[])], Some(repo.path().to_str().unwrap()), None).await;
        h.steps_until_idle(5).await;
        let one = h.session(&id, "1").await;
        assert_eq!(one.status, WorkSessionStatus::Completed);
        assert!(one.commits.is_empty(), "{:?}", one.commits);
        let committed = event_kinds(&h, EventKind::WorkSessionCommitted).await;
        assert_eq!(committed.len(), 1);
        assert_eq!(committed[0]["commit"], serde_json::Value::Null);
        assert_eq!(committed[0]["note"], "no changes to commit");
        let task = h.task(&id).await;
        assert_eq!(repo.rev(task.branch_name.as_deref().unwrap()), repo.rev("main"));
    }

    async fn a_merge_conflict_is_resolved_by_a_follow_up_turn(db) {
        let repo = TestRepo::new();
        repo.write("shared.txt", "base\n");
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "-qm", "shared file"]);
        let worktrees = tempfile::tempdir().unwrap();
        let script = Script {
            default: succeed(),
            rules: vec![
                rule("could not be merged", writes(&[("shared.txt", "left\nright\n")]), None),
                rule("Task 1: Left", writes_after_go(&[("shared.txt", "left\n")]), None),
                rule("Task 2: Right", writes_after_go(&[("shared.txt", "right\n")]), None),
            ],
        };
        let h = Harness::new(db, script, with_worktrees(worktrees.path(), 2)).await;
        let id = h.approved_task_in(&[("1", "Left", &[]), ("2", "Right", &[])], Some(repo.path().to_str().unwrap()), None).await;
        run_both_at_once(&h).await;

        let task = h.task(&id).await;
        assert_eq!(task.status, SpecTaskStatus::ImplementationReview, "{:#?} {:#?}", h.store.list_work_sessions(&id).await.unwrap(), h.runtime.dispatches());
        let branch = task.branch_name.unwrap();
        assert_eq!(
            repo.show(&branch, "shared.txt").as_deref(),
            Some("left\nright\n"),
            "{:#?}\n{}",
            h.runtime.dispatches().iter().map(|d| (d.prompt.chars().take(120).collect::<String>(), d.outcome.clone())).collect::<Vec<_>>(),
            repo.git(&["log", "--graph", "--format=%h %s", &branch])
        );
        let conflicts = event_kinds(&h, EventKind::MergeConflict).await;
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert_eq!(conflicts[0]["files"], serde_json::json!(["shared.txt"]));
        assert_eq!(conflicts[0]["blocked"], false);
        for key in ["1", "2"] {
            let ws = h.session(&id, key).await;
            assert_eq!(ws.status, WorkSessionStatus::Completed);
            assert_eq!(ws.merge_attempts, 0);
            assert!(ws.conflict_files.is_empty());
            assert!(!ws.commits.is_empty());
            // Nothing either session committed is lost.
            for commit in &ws.commits {
                assert!(repo.is_ancestor(&commit.id, &branch), "{} lost", commit.id);
            }
        }
        assert!(repo.linked_worktrees().is_empty());
    }

    async fn an_unresolved_conflict_blocks_the_session_until_a_human_resolves_it(db) {
        let repo = TestRepo::new();
        repo.write("shared.txt", "base\n");
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "-qm", "shared file"]);
        let worktrees = tempfile::tempdir().unwrap();
        let script = Script {
            default: succeed(),
            rules: vec![
                rule("Task 1: Left", writes_after_go(&[("shared.txt", "left\n")]), None),
                rule("Task 2: Right", writes_after_go(&[("shared.txt", "right\n")]), None),
            ],
        };
        let h = Harness::new(db, script, with_worktrees(worktrees.path(), 2)).await;
        let id = h.approved_task_in(&[("1", "Left", &[]), ("2", "Right", &[])], Some(repo.path().to_str().unwrap()), None).await;
        run_both_at_once(&h).await;

        let sessions = h.store.list_work_sessions(&id).await.unwrap();
        let blocked: Vec<_> = sessions.iter().filter(|s| s.status == WorkSessionStatus::Blocked).collect();
        assert_eq!(blocked.len(), 1, "{sessions:#?}");
        let blocked = blocked[0].clone();
        assert_eq!(blocked.conflict_files, vec!["shared.txt".to_owned()]);
        let error = blocked.error.clone().unwrap();
        assert!(error.contains("shared.txt") && error.contains("merge conflict"), "{error}");
        let worktree = blocked.worktree_path.clone().expect("the worktree stays for the human");
        let conflicted = std::fs::read_to_string(std::path::Path::new(&worktree).join("shared.txt")).unwrap();
        assert!(conflicted.contains("<<<<<<<"), "{conflicted}");
        assert_eq!(h.task(&id).await.status, SpecTaskStatus::Implementation);
        let conflicts = event_kinds(&h, EventKind::MergeConflict).await;
        assert_eq!(conflicts.last().unwrap()["blocked"], true);

        // The human resolves it in the worktree and retries: a follow-up turn, commit, merge.
        std::fs::write(std::path::Path::new(&worktree).join("shared.txt"), "left and right\n").unwrap();
        let resumed = h.engine.retry_work_session(&blocked.id, "human").await.unwrap();
        assert_eq!(resumed.status, WorkSessionStatus::Active);
        h.steps_until_idle(5).await;
        let task = h.task(&id).await;
        assert_eq!(task.status, SpecTaskStatus::ImplementationReview);
        assert_eq!(repo.show(task.branch_name.as_deref().unwrap(), "shared.txt").as_deref(), Some("left and right\n"));
        assert!(repo.linked_worktrees().is_empty(), "{:?}", repo.linked_worktrees());
    }

    async fn a_project_that_is_not_a_repository_runs_shared(db) {
        let project = tempfile::tempdir().unwrap();
        let project_path = project.path().canonicalize().unwrap();
        let worktrees = tempfile::tempdir().unwrap();
        let script = Script::always(writes(&[("notes.md", "written in place\n")]));
        let h = Harness::new(db, script, with_worktrees(worktrees.path(), 1)).await;
        let id = h.approved_task_in(&[("1", "Write notes", &[])], Some(project_path.to_str().unwrap()), None).await;
        h.steps_until_idle(5).await;
        let task = h.task(&id).await;
        assert_eq!(task.status, SpecTaskStatus::ImplementationReview);
        assert_eq!(task.isolation, Some(WorkspaceIsolation::Shared));
        assert_eq!(task.branch_name, None);
        let one = h.session(&id, "1").await;
        assert_eq!(one.worktree_path, None);
        assert!(one.commits.is_empty());
        assert_eq!(std::fs::read_to_string(project_path.join("notes.md")).unwrap(), "written in place\n");
        assert!(std::fs::read_dir(worktrees.path()).unwrap().next().is_none());
    }

    async fn under_serialize_a_resumed_thread_continues_from_the_earlier_threads_merged_work(db) {
        let repo = TestRepo::new();
        let worktrees = tempfile::tempdir().unwrap();
        let script = Script {
            default: succeed(),
            rules: vec![
                // The second thread's resumed turn: it just ends.
                rule("another thread (1. Schema) was editing src/lib.rs", succeed(), Some(1)),
                // The first edits src/lib.rs, waits for `1-done`, then writes it and ends.
                rule("Task 1: Schema", Behaviour::EditFiles {
                    paths: vec!["src/lib.rs".to_owned()],
                    before: None,
                    after: Some("1-done".to_owned()),
                    then: Some(Box::new(writes(&[("src/lib.rs", "pub fn schema() {}\n")]))),
                }, Some(1)),
                // The second touches the same file once the first has; its gate never opens.
                rule("Task 2: Endpoints", Behaviour::EditFiles {
                    paths: vec!["src/lib.rs".to_owned()],
                    before: Some("1-edited".to_owned()),
                    after: Some("never".to_owned()),
                    then: None,
                }, Some(1)),
            ],
        };
        let h = Harness::new(db, script, with_worktrees(worktrees.path(), 2)).await;
        let config = serde_json::json!({ "overlap_policy": "serialize" });
        let id = h
            .approved_task_in(&[("1", "Schema", &[]), ("2", "Endpoints", &[])], Some(repo.path().to_str().unwrap()), Some(config))
            .await;
        let mut running = tokio::task::JoinSet::new();
        h.tick_into(&mut running).await;
        let one = h.session(&id, "1").await;
        wait_until("the first thread to record its edit", || async {
            match h.store.touched_files(&one.id).await.unwrap().len() {
                0 => Err("nothing yet".to_owned()),
                _ => Ok(()),
            }
        })
        .await;
        h.runtime.open_gate("1-edited");
        let two = h.session(&id, "2").await;
        wait_until("the second thread to wait for the first", || async {
            let ws = h.store.get_work_session(&two.id).await.unwrap();
            ws.waiting_for.clone().ok_or_else(|| format!("{:?}", ws.status))
        })
        .await;
        h.runtime.open_gate("1-done");
        while let Some(ended) = running.join_next().await {
            ended.unwrap();
        }
        h.steps_until_idle(5).await;

        let task = h.task(&id).await;
        assert_eq!(task.status, SpecTaskStatus::ImplementationReview);
        let (one, two) = (h.session(&id, "1").await, h.session(&id, "2").await);
        assert_eq!(one.commits.len(), 1, "{one:#?}");
        // The second resumed from the first's merged work: its tip descends from that commit.
        let two_head = two.head_commit.clone().expect("the second session was merged");
        assert!(repo.is_ancestor(&one.commits[0].id, &two_head), "{two:#?}");
        assert_eq!(repo.show(task.branch_name.as_deref().unwrap(), "src/lib.rs").as_deref(), Some("pub fn schema() {}\n"));
        assert!(repo.linked_worktrees().is_empty());
    }

    async fn requested_changes_run_in_a_fresh_worktree_and_merge_again(db) {
        let repo = TestRepo::new();
        let worktrees = tempfile::tempdir().unwrap();
        let script = Script {
            default: succeed(),
            rules: vec![
                rule("Add an index", writes(&[("db/schema.sql", "CREATE TABLE t (id INT);\nCREATE INDEX i ON t (id);\n")]), None),
                rule("Task 1: Schema", writes(&[("db/schema.sql", "CREATE TABLE t (id INT);\n")]), None),
            ],
        };
        let h = Harness::new(db, script, with_worktrees(worktrees.path(), 1)).await;
        let id = h.approved_task_in(&[("1", "Schema", &[])], Some(repo.path().to_str().unwrap()), None).await;
        h.steps_until_idle(5).await;
        assert_eq!(h.task(&id).await.status, SpecTaskStatus::ImplementationReview);
        assert!(repo.linked_worktrees().is_empty());

        h.engine.request_implementation_changes(&id, "Add an index.", &[], "reviewer").await.unwrap();
        h.steps_until_idle(5).await;
        let task = h.task(&id).await;
        assert_eq!(task.status, SpecTaskStatus::ImplementationReview);
        let branch = task.branch_name.unwrap();
        assert_eq!(
            repo.show(&branch, "db/schema.sql").as_deref(),
            Some("CREATE TABLE t (id INT);\nCREATE INDEX i ON t (id);\n")
        );
        let one = h.session(&id, "1").await;
        assert_eq!(one.commits.len(), 2, "the first turn's commit and the change's: {:#?}", one.commits);
        assert!(repo.is_ancestor(&one.commits[0].id, &one.commits[1].id));
        assert_eq!(one.worktree_path, None);
        assert!(repo.linked_worktrees().is_empty());
        assert_eq!(event_kinds(&h, EventKind::WorktreeCreated).await.len(), 2, "made again for the change");
    }
}
