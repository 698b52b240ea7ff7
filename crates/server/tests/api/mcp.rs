//! spectask's MCP server as agents use it: our scripted ACP test agent, a real process, calls the
//! tools named in its session's `mcpServers` with the per-thread bearer token it was given, and
//! the effects show over the REST API and in the workspace. Runs on SQLite and PostgreSQL.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use spectask_domain::WorkSessionId;
use spectask_store::TokenMint;
use spectask_testkit::{TestApp, backend_tests, fast_engine, test_agent_profile};

use crate::support::{
    acp_runtime, app_with_runtime, approved_task, wait_for_session, wait_for_session_named,
    work_sessions,
};

fn reply(tasks: &str) -> String {
    format!(
        "# Requirements: Files\n\n1.1 WHEN asked THE SYSTEM SHALL write files.\n\n## Open Questions\n\n- None.\n\n\
         # Design: Files\n\nTwo files.\n\n# Implementation Plan: Files\n\n{tasks}"
    )
}

/// How a test mints a token of its own, as a thread set-up would.
fn mint() -> TokenMint<'static> {
    TokenMint {
        instance_id: "test-instance",
        minted_by: "test/process",
        ttl: Duration::from_secs(3600),
    }
}

fn tool(name: &str, arguments: Value) -> Value {
    json!({"kind": "call_mcp_tool", "server": "spectask", "tool": name, "arguments": arguments})
}

/// A server whose ACP runtime runs our test agent with `script`, with the plan `tasks` approved
/// and implementation under way. Returns the app and the task id.
async fn implementing(
    db: spectask_testkit::TestDatabase,
    workspace: &Path,
    state: &Path,
    script: &Value,
    tasks: &str,
) -> Option<(TestApp, String)> {
    let mut engine = fast_engine();
    engine.turn_timeout = Duration::from_secs(60);
    implementing_with(db, workspace, state, script, tasks, engine).await
}

/// [`implementing`] with the given engine settings.
async fn implementing_with(
    db: spectask_testkit::TestDatabase,
    workspace: &Path,
    state: &Path,
    script: &Value,
    tasks: &str,
    engine: spectask_engine::EngineSettings,
) -> Option<(TestApp, String)> {
    let profile = test_agent_profile("test-agent", script, state)?;
    let runtime = Arc::new(acp_runtime(profile, state));
    let (app, _planner) = app_with_runtime(db, runtime, engine, &reply(tasks)).await;
    let id = approved_task(&app, "write files", workspace).await;
    Some((app, id))
}

async fn session_named(app: &TestApp, id: &str, prefix: &str) -> Value {
    wait_for_session_named(app, id, prefix, None).await
}

async fn session_status(app: &TestApp, ws: &str) -> Value {
    app.get(&format!("/api/v1/work-sessions/{ws}")).await.body
}

/// Waits (as `what`) until the work session's agent has made `call` (`title (status)`, see
/// [`tool_calls`]); returns the session's detail.
async fn wait_for_tool_call(app: &TestApp, ws: &str, what: &str, call: &str) -> Value {
    app.wait_until(what, |app| async move {
        let detail = session_status(app, ws).await;
        tool_calls(app, &detail)
            .await
            .iter()
            .any(|made| made == call)
            .then_some(detail)
    })
    .await
}

/// A raw MCP `initialize` with `authorization`, as any MCP client sends it first.
async fn mcp_initialize(app: &TestApp, authorization: Option<&str>) -> (StatusCode, String) {
    let mut request = app
        .client
        .post(app.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}}}));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// `title (last status)` of every tool call the work session's agent made, in order, from the
/// entries API (a call's states may be stored as several entries, depending on batching).
async fn tool_calls(app: &TestApp, detail: &Value) -> Vec<String> {
    let session = &detail["helix_session"];
    let mut calls: Vec<(String, String)> = Vec::new();
    for interaction in session["interactions"].as_array().unwrap() {
        let path = format!(
            "/api/v1/sessions/{}/interactions/{}/entries",
            session["id"].as_str().unwrap(),
            interaction["id"].as_str().unwrap()
        );
        for entry in app.get(&path).await.body["entries"].as_array().unwrap() {
            if entry["kind"] == "tool_call" {
                let payload = &entry["payload"];
                let id = payload["tool_call_id"].as_str().unwrap().to_owned();
                let shown = format!(
                    "{} ({})",
                    payload["title"].as_str().unwrap(),
                    payload["status"].as_str().unwrap()
                );
                match calls.iter_mut().find(|(known, _)| *known == id) {
                    Some(call) => call.1 = shown,
                    None => calls.push((id, shown)),
                }
            }
        }
    }
    calls.into_iter().map(|(_, shown)| shown).collect()
}

fn response_text(detail: &Value) -> String {
    detail["helix_session"]["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["response_message"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

backend_tests! {
    async fn agents_read_their_spec_report_progress_spawn_and_complete_over_mcp(db) {
        let workspace = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let script = json!({
            "steps": [{"kind": "chunks", "count": 1}],
            "rules": [
                {"prompt_contains": "Task 1:", "steps": [
                    tool("get_spec", json!({})),
                    tool("report_progress", json!({"task_key": "1", "status": "completed", "note": "first file written"})),
                    tool("report_progress", json!({"task_key": "2", "status": "completed", "note": "not mine"})),
                    tool("spawn_work_session", json!({"name": "Security audit", "description": "Audit what was written."})),
                    tool("list_work_sessions", json!({})),
                    {"kind": "hang"},
                ]},
                {"prompt_contains": "Task 2:", "steps": [
                    tool("complete_work_session", json!({"summary": "second file written and checked"})),
                    {"kind": "chunks", "count": 1},
                ]},
            ],
        });
        let tasks = "- [ ] 1. Write the first file\n- [ ] 2. Write the second file\n";
        let Some((app, id)) = implementing(db, workspace.path(), state.path(), &script, tasks).await else { return };

        // Task 1's checkbox flips and its status changes while its agent is still at work.
        let tasks_md = workspace.path().join(".spectask").join("specs").join(&id).join("tasks.md");
        app.wait_until("tasks.md to show task 1 done", |_| {
            let tasks_md = tasks_md.clone();
            async move { std::fs::read_to_string(&tasks_md).ok().filter(|md| md.contains("- [x] 1. Write the first file")) }
        })
        .await;
        let first = session_named(&app, &id, "1.").await;
        let ws1 = first["id"].as_str().unwrap().to_owned();
        assert_eq!(session_status(&app, &ws1).await["work_session"]["status"], "active", "the report took effect mid-turn");
        let listed = app.get(&format!("/api/v1/spec-tasks/{id}/implementation-tasks")).await.body;
        let by_key = |key: &str| listed["implementation_tasks"].as_array().unwrap().iter().find(|t| t["key"] == key).unwrap().clone();
        assert_eq!(by_key("1")["status"], "completed");

        // The spawned session is dispatched and runs to completion on its own thread.
        let audit = session_named(&app, &id, "Security audit").await;
        assert_eq!(audit["parent_work_session_id"], ws1.as_str());
        let audit = wait_for_session(&app, audit["id"].as_str().unwrap(), "completed").await;
        assert!(response_text(&audit).contains("chunk 1/1"));

        // The second agent declared its work done with a summary; the session completed.
        let second = session_named(&app, &id, "2.").await;
        let second = wait_for_session(&app, second["id"].as_str().unwrap(), "completed").await;
        assert_eq!(second["work_session"]["agent_summary"], "second file written and checked");

        // Authentication: a token is needed, must be known, and dies with its session.
        let (status, body) = mcp_initialize(&app, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["code"], "unauthorized");
        let (status, body) = mcp_initialize(&app, Some(&format!("Bearer {}", "ab".repeat(32)))).await;
        assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()["error"]["code"].clone()), (StatusCode::UNAUTHORIZED, json!("unauthorized")));
        let (status, _) = mcp_initialize(&app, Some("Basic abc")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let ws1_id = WorkSessionId::parse(&ws1).unwrap();
        let live = app.store.issue_agent_token(&ws1_id, mint()).await.unwrap();
        let (status, body) = mcp_initialize(&app, Some(&format!("Bearer {live}"))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("spectask"), "{body}");
        let done = app.store.issue_agent_token(&WorkSessionId::parse(second["work_session"]["id"].as_str().unwrap()).unwrap(), mint()).await.unwrap();
        let (status, _) = mcp_initialize(&app, Some(&format!("Bearer {done}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a completed session's token is refused");

        // The hanging first session is cancelled by a human; its token stops working.
        let cancelled = app.post(&format!("/api/v1/work-sessions/{ws1}/cancel"), &json!({})).await;
        assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
        let (status, _) = mcp_initialize(&app, Some(&format!("Bearer {live}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a cancelled session's token is refused");

        // What the first agent saw: its own assignment, and a refusal for another session's task.
        let first = wait_for_tool_call(&app, &ws1, "the first session's output", "mcp__spectask__list_work_sessions (completed)").await;
        let output = response_text(&first);
        assert!(output.contains("\"title\": \"Write the first file\""), "{output}");
        assert!(!output.contains("\"title\": \"Write the second file\""), "get_spec lists only this session's tasks: {output}");
        assert!(output.contains("\"implementation_plan\":"), "{output}");
        let calls = tool_calls(&app, &first).await;
        assert_eq!(calls, [
            "mcp__spectask__get_spec (completed)",
            "mcp__spectask__report_progress (completed)",
            "mcp__spectask__report_progress (failed)",
            "mcp__spectask__spawn_work_session (completed)",
            "mcp__spectask__list_work_sessions (completed)",
        ], "another session's task is refused");
        assert!(output.contains("\"this_session\": true") && output.contains("Security audit"), "{output}");

        // Tokens are never readable over the API.
        let mut everything = String::new();
        for path in [format!("/api/v1/spec-tasks/{id}/events"), format!("/api/v1/spec-tasks/{id}/zed-threads"), format!("/api/v1/spec-tasks/{id}/work-sessions"), format!("/api/v1/work-sessions/{ws1}")] {
            everything.push_str(&app.get(&path).await.body.to_string());
        }
        assert!(!everything.contains("Bearer") && !everything.contains(&live), "a token leaked into the API");
    }

    async fn an_agent_that_gives_up_fails_its_session_for_good_and_blocks_dependants(db) {
        let workspace = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let script = json!({
            "steps": [{"kind": "chunks", "count": 1}],
            "rules": [
                {"prompt_contains": "Task 1:", "steps": [
                    tool("fail_work_session", json!({"reason": "the API it needs does not exist"})),
                    tool("report_progress", json!({"task_key": "1", "status": "completed", "note": "keeps going"})),
                    {"kind": "chunks", "count": 1},
                ]},
            ],
        });
        let tasks = "- [ ] 1. Write the first file\n- [ ] 2. Write the second file\n  - Depends on: 1\n";
        let Some((app, id)) = implementing(db, workspace.path(), state.path(), &script, tasks).await else { return };
        let task = app.wait_for_task_status(&id, "implementation_failed").await;
        assert!(task["error"].as_str().unwrap().contains("the agent gave up: the API it needs does not exist"), "{task}");
        let first = session_named(&app, &id, "1.").await;
        let ws1 = first["id"].as_str().unwrap().to_owned();
        let detail = session_status(&app, &ws1).await;
        assert_eq!(detail["work_session"]["status"], "failed");
        assert_eq!(detail["work_session"]["agent_gave_up"], "the API it needs does not exist");
        assert_eq!(detail["turns"].as_array().unwrap().len(), 1, "no retry after giving up");
        let calls = tool_calls(&app, &detail).await;
        assert_eq!(calls, ["mcp__spectask__fail_work_session (completed)", "mcp__spectask__report_progress (failed)"], "reports after giving up are refused");
        let second = session_named(&app, &id, "2.").await;
        assert_eq!(second["status"], "blocked");
        let listed = app.get(&format!("/api/v1/spec-tasks/{id}/implementation-tasks")).await.body;
        let statuses: Vec<_> = listed["implementation_tasks"].as_array().unwrap().iter().map(|t| t["status"].clone()).collect();
        assert_eq!(statuses, [json!("failed"), json!("blocked")]);
        let token = app.store.issue_agent_token(&WorkSessionId::parse(&ws1).unwrap(), mint()).await.unwrap();
        let (status, _) = mcp_initialize(&app, Some(&format!("Bearer {token}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a failed session's token is refused");
    }

    async fn tokens_die_at_session_end_stay_dead_after_a_retry_and_expire_with_their_ttl(db) {
        let workspace = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let script = json!({
            "steps": [{"kind": "chunks", "count": 1}],
            "rules": [
                // The first turn reports, then goes silent until the watchdog fails it.
                {"prompt_contains": "Task 1:", "times": 1, "steps": [
                    tool("report_progress", json!({"task_key": "1", "status": "in_progress", "note": "started"})),
                    {"kind": "hang"},
                ]},
                // The retried session's turn: its thread was set up again with a fresh token.
                {"prompt_contains": "Task 1:", "steps": [
                    tool("get_spec", json!({})),
                    {"kind": "hang"},
                ]},
            ],
        });
        let mut engine = fast_engine();
        engine.turn_timeout = Duration::from_secs(5);
        engine.max_turn_retries = 0;
        let tasks = "- [ ] 1. Write the first file\n";
        let Some((app, id)) = implementing_with(db, workspace.path(), state.path(), &script, tasks, engine).await else { return };
        let ws = session_named(&app, &id, "1.").await["id"].as_str().unwrap().to_owned();
        let ws_id = WorkSessionId::parse(&ws).unwrap();
        // The agent's first report went through with its thread set-up's token: that set-up is done
        // (an implementation task turns in_progress when its session starts, before the set-up).
        wait_for_tool_call(&app, &ws, "the first report", "mcp__spectask__report_progress (completed)").await;
        // A token of the first run (minted while it is active, as a thread set-up would; minting
        // revokes the set-up's, which no later set-up of this run revokes in turn).
        let old = app.store.issue_agent_token(&ws_id, mint()).await.unwrap();
        let (status, body) = mcp_initialize(&app, Some(&format!("Bearer {old}"))).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        // The session fails (silence, no retry budget): its tokens are revoked.
        wait_for_session(&app, &ws, "failed").await;
        let (status, _) = mcp_initialize(&app, Some(&format!("Bearer {old}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a failed session's token is refused");

        // A human retries it: the agent works again over MCP with a fresh token; the old one
        // stays dead although the session is active again.
        let retried = app.post(&format!("/api/v1/work-sessions/{ws}/retry"), &json!({})).await;
        assert_eq!(retried.status, StatusCode::OK, "{:?}", retried.body);
        let detail = wait_for_tool_call(&app, &ws, "the retried turn's get_spec", "mcp__spectask__get_spec (completed)").await;
        assert_eq!(detail["work_session"]["status"], "active");
        let (status, _) = mcp_initialize(&app, Some(&format!("Bearer {old}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a retry does not revive a token minted before the failure");

        // A token lives no longer than its TTL, whatever its session does (still active here).
        let short = app
            .store
            .issue_agent_token(&ws_id, TokenMint { ttl: Duration::from_millis(200), ..mint() })
            .await
            .unwrap();
        app.wait_until("the short-lived token to expire", |app| {
            let short = short.clone();
            async move {
                (mcp_initialize(app, Some(&format!("Bearer {short}"))).await.0 == StatusCode::UNAUTHORIZED).then_some(())
            }
        })
        .await;
        let cancelled = app.post(&format!("/api/v1/work-sessions/{ws}/cancel"), &json!({})).await;
        assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
    }

    async fn spawns_are_capped_and_repeated_tool_calls_change_nothing(db) {
        let workspace = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let script = json!({
            "steps": [{"kind": "chunks", "count": 1}],
            "rules": [
                {"prompt_contains": "Task 1:", "steps": [
                    tool("spawn_work_session", json!({"name": "Security audit", "description": "Audit what was written."})),
                    tool("spawn_work_session", json!({"name": "Security audit", "description": "Audit it again."})),
                    tool("spawn_work_session", json!({"name": "Docs", "description": "Past the per-task cap."})),
                    tool("report_progress", json!({"task_key": "1", "status": "completed", "note": "done"})),
                    tool("report_progress", json!({"task_key": "1", "status": "completed", "note": "done, said again"})),
                    tool("complete_work_session", json!({"summary": "first"})),
                    tool("complete_work_session", json!({"summary": "second"})),
                    {"kind": "chunks", "count": 1},
                ]},
                // The spawned session is one spawn deep: under max_spawn_depth 1 it cannot spawn.
                {"prompt_contains": "Spawned during implementation", "steps": [
                    tool("spawn_work_session", json!({"name": "Deeper", "description": "Past the depth cap."})),
                    {"kind": "chunks", "count": 1},
                ]},
            ],
        });
        let mut engine = fast_engine();
        engine.turn_timeout = Duration::from_secs(60);
        engine.max_spawned_sessions = 1;
        engine.max_spawn_depth = 1;
        let tasks = "- [ ] 1. Write the first file\n";
        let Some((app, id)) = implementing_with(db, workspace.path(), state.path(), &script, tasks, engine).await else { return };
        let first = session_named(&app, &id, "1.").await;
        let ws1 = first["id"].as_str().unwrap().to_owned();
        let first = wait_for_session(&app, &ws1, "completed").await;
        assert_eq!(first["work_session"]["agent_summary"], "first", "a repeated completion changes nothing");
        assert_eq!(tool_calls(&app, &first).await, [
            "mcp__spectask__spawn_work_session (completed)",
            "mcp__spectask__spawn_work_session (completed)",
            "mcp__spectask__spawn_work_session (failed)",
            "mcp__spectask__report_progress (completed)",
            "mcp__spectask__report_progress (completed)",
            "mcp__spectask__complete_work_session (completed)",
            "mcp__spectask__complete_work_session (completed)",
        ], "a repeat is answered, a spawn past the cap refused");
        let output = response_text(&first);
        assert!(output.contains("\"already_spawned\": true"), "{output}");
        let audit = session_named(&app, &id, "Security audit").await;
        let audit = wait_for_session(&app, audit["id"].as_str().unwrap(), "completed").await;
        assert_eq!(tool_calls(&app, &audit).await, ["mcp__spectask__spawn_work_session (failed)"], "past the depth cap");
        let names: Vec<String> = work_sessions(&app, &id).await.iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect();
        assert_eq!(names.len(), 2, "one plan session and one spawn: {names:?}");
        let events = app.get(&format!("/api/v1/spec-tasks/{id}/events?limit=1000")).await.body;
        let count = |kind: &str| events["events"].as_array().unwrap().iter().filter(|e| e["kind"] == kind).count();
        assert_eq!(count("agent.progress_reported"), 1, "a repeated report writes nothing");
        assert_eq!(count("agent.completion_declared"), 1, "a repeated completion writes nothing");
    }
}
