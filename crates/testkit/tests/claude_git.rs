//! Git isolation with a real third-party agent: a SpecTask on a real repository (`TestRepo`) with
//! worktrees on, its three work sessions run by Claude Code through `claude-agent-acp` (installed
//! by `npm ci` in `tools/agents`) against [`FakeAnthropic`], through the whole server. Each
//! session's Claude Code runs in its own worktree (the working directory its environment names)
//! and writes its note with its `Write` tool at a path relative to that directory; the note is
//! committed on the session's branch and merged into the task branch, the third session (which
//! depends on the other two) is built on their commits, and the user's working tree is never
//! touched. Runs on SQLite and PostgreSQL.
//!
//! Without the installed agent the scenario prints `SKIPPED (…)` and passes rather than being
//! ignored, unless `SPECTASK_REQUIRE_TIERS` requires the tier (see `spectask_testkit::skip`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use spectask_engine::PlannerRegistry;
use spectask_runtimes::agent::acp::AcpRuntime;
use spectask_testkit::{
    AnthropicReply, FakeAnthropic, FakeOpenAi, TestApp, TestDatabase, TestOptions, TestRepo,
    backend_tests, claude_profile, fast_engine, fast_planner, prepare_claude_home, tool_results,
};

/// Notes 1 and 2 are independent; 3 depends on both.
fn plan() -> String {
    "# Requirements: Notes\n\n1.1 WHEN asked THE SYSTEM SHALL write notes.\n\n## Open Questions\n\n- None.\n\n\
     # Design: Notes\n\nOne file per task.\n\n# Implementation Plan: Notes\n\n\
     - [ ] 1. Write alpha\n  - _Requirements: 1.1_\n\
     - [ ] 2. Write beta\n  - _Requirements: 1.1_\n\
     - [ ] 3. Write gamma\n  - _Requirements: 1.1_\n  - Depends on: 1, 2\n"
        .to_owned()
}

const TITLES: [&str; 3] = ["Write alpha", "Write beta", "Write gamma"];

/// The server over `db`, planning with `planner` and implementing with Claude Code (`agent`)
/// against `fake`, its worktrees under `worktrees`; the agent's `HOME` and shim records in `root`.
async fn app(
    db: TestDatabase,
    agent: &Path,
    root: &Path,
    worktrees: &Path,
    fake: &FakeAnthropic,
    planner: &FakeOpenAi,
) -> TestApp {
    prepare_claude_home(&root.join("home"));
    let profile = claude_profile(
        "claude",
        &agent.to_string_lossy(),
        Vec::new(),
        &root.join("home"),
        fake,
    );
    let runtime = AcpRuntime::new(
        vec![profile],
        Some("claude".to_owned()),
        spectask_testkit::agent_shim(&root.join("run")),
    );
    planner.push_text_reply(&plan());
    let mut engine = fast_engine();
    // As in claude_server.rs: a Claude Code session is slow to start on a shared machine, and a
    // requeued turn would re-prompt the agent with its scripted replies used up.
    engine.turn_timeout = Duration::from_secs(60);
    engine.turn_lease = Duration::from_secs(9);
    engine.git.worktrees_dir = Some(worktrees.to_path_buf());
    let options = TestOptions {
        planners: PlannerRegistry::new(Some(fast_planner("default", &planner.base_url())), []),
        engine,
        runtime: Some(Arc::new(runtime)),
        ..TestOptions::default()
    };
    TestApp::spawn_with_options(db, options).await
}

backend_tests! {
    async fn claude_sessions_commit_in_their_worktrees_and_merge_into_the_task_branch(db) {
        let Some(agent) = spectask_testkit::require_claude_agent() else { return };
        let repo = TestRepo::new();
        let root = tempfile::tempdir().unwrap();
        let worktrees = tempfile::tempdir().unwrap();
        let (fake, planner) = (FakeAnthropic::start().await, FakeOpenAi::start().await);
        for (n, title) in (1..=3).zip(TITLES) {
            let marker = format!("Task {n}: {title}");
            // Relative to the agent's working directory: its session's worktree.
            fake.push_for(&marker, AnthropicReply::ToolUse {
                text: Some("Writing the note.".to_owned()),
                name: "Write".to_owned(),
                input: json!({"file_path": format!("notes/{n}.txt"), "content": format!("note {n}\n")}),
            });
            fake.push_for(&marker, AnthropicReply::Text(format!("Done with note {n}.")));
        }
        let app = app(db, &agent, root.path(), worktrees.path(), &fake, &planner).await;
        let user_head = repo.rev("HEAD");
        let created = app.post("/api/v1/spec-tasks/from-prompt", &json!({"prompt": "write the notes", "project_path": repo.path()})).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let id = created.body["id"].as_str().unwrap().to_owned();
        app.wait_for_task_status(&id, "spec_review").await;
        let approved = app.post(&format!("/api/v1/spec-tasks/{id}/approve-specs"), &json!({"approved": true})).await;
        assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
        app.wait_for_task_status(&id, "implementation_review").await;
        let repo = &repo;
        app.wait_until("every merged worktree to be removed", |_| async move {
            let left = repo.linked_worktrees();
            if left.is_empty() { Ok(()) } else { Err(json!(left)) }
        })
        .await;
        assert_eq!(fake.pending_replies(), 0, "every scripted reply was used");

        let task = app.get(&format!("/api/v1/spec-tasks/{id}")).await.body;
        assert_eq!(task["isolation"], "worktree", "{task}");
        let branch = task["branch_name"].as_str().unwrap().to_owned();
        let sessions = app.get(&format!("/api/v1/spec-tasks/{id}/work-sessions")).await.body;
        let sessions = sessions["work_sessions"].as_array().unwrap();
        let mut commits = Vec::new();
        for (n, title) in (1..=3).zip(TITLES) {
            let ws = sessions.iter().find(|s| s["name"].as_str().unwrap().starts_with(&format!("{n}."))).unwrap();
            let ws_id = ws["id"].as_str().unwrap();
            let detail = app.get(&format!("/api/v1/work-sessions/{ws_id}")).await.body;
            let ws = &detail["work_session"];
            assert_eq!(ws["status"], "completed", "{detail}");
            let worktree = worktrees.path().canonicalize().unwrap().join(&id).join(ws_id);

            // Claude Code ran in the session's worktree: its environment says so, and the write
            // it was asked for at a relative path succeeded there.
            let turns = fake.model_turns_mentioning(&format!("Task {n}: {title}"));
            assert_eq!(turns.len(), 2, "one tool call, then the answer");
            // (Claude Code puts its environment in a system message of the conversation.)
            let messages = turns[0]["messages"].to_string();
            let environment = format!("Primary working directory: {}", worktree.display());
            assert!(messages.contains(&environment), "{environment} not in {messages}");
            let results = tool_results(&turns[1]);
            assert_eq!(results.len(), 1, "{results:?}");
            assert_ne!(results[0]["is_error"], json!(true), "{results:?}");

            // One commit, on the session's branch, merged into the task branch.
            let session_branch = ws["branch_name"].as_str().unwrap();
            assert!(session_branch.starts_with(&format!("{branch}--")), "{ws}");
            let listed = ws["commits"].as_array().unwrap();
            assert_eq!(listed.len(), 1, "{ws}");
            assert!(listed[0]["summary"].as_str().unwrap().starts_with(&format!("{n} {title}")), "{ws}");
            let note = format!("notes/{n}.txt");
            assert_eq!(repo.show(session_branch, &note).as_deref(), Some(format!("note {n}\n").as_str()), "{note} on {session_branch}");
            assert_eq!(repo.show(&branch, &note).as_deref(), Some(format!("note {n}\n").as_str()), "{note} on {branch}");
            commits.push(listed[0]["id"].as_str().unwrap().to_owned());
        }
        assert!(repo.is_ancestor(&commits[0], &commits[2]) && repo.is_ancestor(&commits[1], &commits[2]), "3 was built on 1 and 2");

        // The user's working tree, HEAD and branch are untouched (`.spectask/` is the spec
        // projection planning writes into the project).
        assert_eq!(repo.status(), "?? .spectask/");
        assert_eq!((repo.current_branch(), repo.rev("HEAD")), ("main".to_owned(), user_head));
        assert!(!repo.path().join("notes").exists());
    }
}
