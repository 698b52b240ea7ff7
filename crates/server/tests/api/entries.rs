//! Interaction entries end to end: our test agent, a real ACP process, streams chunks, a thought,
//! a plan, a tool call with its updates and a usage report; the entries endpoint returns them in
//! order with the tool call's merged state, pages through them and rejects bad parameters; a
//! turn re-run after a restart starts with no entries. Runs on SQLite and PostgreSQL.

use std::path::Path;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use spectask_engine::PlannerRegistry;
use spectask_testkit::{
    Behaviour, FakeOpenAi, Script, ScriptedRuntime, TestApp, TestDatabase, TestOptions,
    backend_tests, fast_engine, fast_planner, test_agent_profile,
};

use crate::support::{acp_runtime, approved_task, wait_for_body};

const REPLY: &str = "# Requirements: Entries\n\n1.1 WHEN working THE SYSTEM SHALL record it.\n\n\
    ## Open Questions\n\n- None.\n\n# Design: Entries\n\nOne task.\n\n\
    # Implementation Plan: Entries\n\n- [ ] 1. Write the file\n";

/// The server with our test agent as its default profile, planning with `fake` (which outlives a
/// server: a test restarts it); `None` when the agent was not built.
async fn spawn(
    db: TestDatabase,
    state: &Path,
    script: &Value,
    fake: &FakeOpenAi,
) -> Option<TestApp> {
    let profile = test_agent_profile("test-agent", script, state)?;
    let options = TestOptions {
        planners: PlannerRegistry::new(Some(fast_planner("default", &fake.base_url())), []),
        engine: fast_engine(),
        runtime: Some(Arc::new(acp_runtime(profile, state))),
        ..TestOptions::default()
    };
    Some(TestApp::spawn_with_options(db, options).await)
}

/// The work session's Helix session, once its first interaction satisfies `done`.
async fn helix_session(
    app: &TestApp,
    task: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let sessions = wait_for_body(
        app,
        &format!("/api/v1/spec-tasks/{task}/work-sessions"),
        "with a work session",
        |s| s["work_sessions"].as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    let ws = sessions["work_sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let detail = wait_for_body(app, &format!("/api/v1/work-sessions/{ws}"), what, |d| {
        d["helix_session"]["interactions"].get(0).is_some_and(&done)
    })
    .await;
    detail["helix_session"].clone()
}

fn entries_path(session: &Value) -> String {
    format!(
        "/api/v1/sessions/{}/interactions/{}/entries",
        session["id"].as_str().unwrap(),
        session["interactions"][0]["id"].as_str().unwrap()
    )
}

/// Kinds in order, with runs of the same kind folded into one (batching may split a run).
fn kind_runs(entries: &[Value]) -> Vec<String> {
    let mut runs: Vec<String> = Vec::new();
    for entry in entries {
        let kind = entry["kind"].as_str().unwrap().to_owned();
        if runs.last() != Some(&kind) {
            runs.push(kind);
        }
    }
    runs
}

fn text_of(entries: &[Value], kind: &str) -> String {
    entries
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| e["payload"]["text"].as_str().unwrap())
        .collect()
}

backend_tests! {
    async fn a_turn_is_recorded_as_ordered_entries_with_merged_tool_calls(db) {
        let workspace = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let script = json!({"steps": [
            {"kind": "chunks", "count": 2},
            {"kind": "thought", "text": "the file goes in src"},
            {"kind": "plan", "entries": [
                {"content": "write the file", "priority": "high", "status": "in_progress"},
                {"content": "report", "priority": "low"},
            ]},
            {"kind": "write_file", "path": "src/out.txt", "content": "out\n"},
            {"kind": "chunks", "count": 1},
            {"kind": "usage", "used": 1200, "size": 200000},
        ]});
        let fake = FakeOpenAi::start().await;
        fake.push_text_reply(REPLY);
        let Some(app) = spawn(db, state.path(), &script, &fake).await else { return };
        let task = approved_task(&app, "record entries", workspace.path()).await;
        app.wait_for_task_status(&task, "implementation_review").await;
        let session = helix_session(&app, &task, "completed", |i| i["state"] == "complete").await;
        let interaction = &session["interactions"][0];
        let path = entries_path(&session);

        let page = app.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let entries = page.body["entries"].as_array().unwrap().clone();
        let seqs: Vec<i64> = entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, (0..entries.len() as i64).collect::<Vec<_>>(), "seqs are 0.. without gaps");
        assert_eq!(interaction["entry_count"].as_u64().unwrap(), entries.len() as u64);
        assert_eq!(page.body["next_after_seq"], json!(entries.len() - 1));
        assert_eq!(kind_runs(&entries), ["message", "thought", "plan", "tool_call", "message", "usage"]);

        // The reply text is the agent's message text only; the message entries carry the same.
        let response = interaction["response_message"].as_str().unwrap();
        assert_eq!(response, "chunk 1/2\nchunk 2/2\nchunk 1/1\n");
        assert_eq!(text_of(&entries, "message"), response);
        assert_eq!(text_of(&entries, "thought"), "the file goes in src");

        let plan = entries.iter().find(|e| e["kind"] == "plan").unwrap();
        assert_eq!(plan["payload"]["entries"], json!([
            {"content": "write the file", "priority": "high", "status": "in_progress"},
            {"content": "report", "priority": "low", "status": "pending"},
        ]));

        // The latest report of the call is its merged state: the start's title, kind, input and
        // location with the update's status and content.
        let project = app.get(&format!("/api/v1/spec-tasks/{task}")).await.body["project_path"].as_str().unwrap().to_owned();
        let written = Path::new(&project).join("src/out.txt");
        let call = entries.iter().rev().find(|e| e["kind"] == "tool_call").unwrap();
        let call = &call["payload"];
        assert_eq!(call["status"], "completed");
        assert_eq!(call["kind"], "edit");
        assert_eq!(call["title"], format!("Write {}", written.display()));
        assert_eq!(call["raw_input"]["content"], "out\n");
        assert_eq!(call["raw_input_truncated"], false);
        assert_eq!(call["locations"], json!([{"path": written.display().to_string(), "line": null}]));
        assert_eq!(call["content"], json!([{"type": "text", "text": "ok", "truncated": false}]));

        let usage = entries.last().unwrap();
        assert_eq!(usage["payload"], json!({"used": 1200, "size": 200000, "cost": null}));

        // Paging with the cursor visits every entry once, in order.
        let mut paged: Vec<Value> = Vec::new();
        let mut cursor: Option<i64> = None;
        loop {
            let query = match cursor {
                Some(seq) => format!("{path}?limit=2&after_seq={seq}"),
                None => format!("{path}?limit=2"),
            };
            let page = app.get(&query).await.body;
            let batch = page["entries"].as_array().unwrap();
            assert!(batch.len() <= 2);
            if batch.is_empty() {
                assert_eq!(page["next_after_seq"], Value::Null);
                break;
            }
            paged.extend(batch.iter().cloned());
            cursor = page["next_after_seq"].as_i64();
        }
        assert_eq!(paged, entries);

        // Each written batch announced its entries once, in seq order, on the event log (and so
        // on the live stream).
        let events = app.get(&format!("/api/v1/spec-tasks/{task}/events?limit=1000")).await.body;
        let announced: Vec<(i64, i64)> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "interaction.updated" && e["entity_id"] == interaction["id"])
            .filter_map(|e| Some((e["payload"]["entries"]["first_seq"].as_i64()?, e["payload"]["entries"]["count"].as_i64()?)))
            .collect();
        let mut next = 0;
        for (first, count) in &announced {
            assert_eq!(*first, next, "batches announced in order: {announced:?}");
            next += count;
        }
        assert_eq!(next, entries.len() as i64);

        let doc = app.get("/api/v1/openapi.json").await.body;
        assert!(doc["paths"]["/api/v1/sessions/{id}/interactions/{interaction_id}/entries"]["get"].is_object());
        for schema in ["EntryPage", "InteractionEntry", "EntryBody", "ToolCallEntry"] {
            assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema} missing");
        }

        // Bad parameters are 400; unknown or mismatched ids are 404.
        for query in ["limit=0", "limit=5001", "after_seq=-1", "after_seq=x", "limit=1.5", "colour=red"] {
            let response = app.get(&format!("{path}?{query}")).await;
            assert_eq!(response.status, StatusCode::BAD_REQUEST, "{query}: {}", response.body);
            assert_eq!(response.error_code(), "invalid_query", "{query}");
        }
        assert_eq!(app.get(&format!("{path}?limit=5000")).await.status, StatusCode::OK);
        let interaction_id = interaction["id"].as_str().unwrap();
        let session_id = session["id"].as_str().unwrap();
        let planning = app.get(&format!("/api/v1/spec-tasks/{task}")).await.body["spec_session_id"].as_str().unwrap().to_owned();
        for (missing, path) in [
            ("session", format!("/api/v1/sessions/ses_01J00000000000000000000000/interactions/{interaction_id}/entries")),
            ("session", format!("/api/v1/sessions/nonsense/interactions/{interaction_id}/entries")),
            ("interaction", format!("/api/v1/sessions/{session_id}/interactions/int_01J00000000000000000000000/entries")),
            ("interaction", format!("/api/v1/sessions/{session_id}/interactions/nonsense/entries")),
            ("interaction of another session", format!("/api/v1/sessions/{planning}/interactions/{interaction_id}/entries")),
        ] {
            let response = app.get(&path).await;
            assert_eq!(response.status, StatusCode::NOT_FOUND, "{missing}: {}", response.body);
            assert_eq!(response.error_code(), "not_found", "{missing}");
        }
    }

    async fn the_scripted_runtime_s_tool_calls_become_entries(db) {
        let workspace = tempfile::tempdir().unwrap();
        let fake = FakeOpenAi::start().await;
        fake.push_text_reply(REPLY);
        let runtime = ScriptedRuntime::new(Script::always(Behaviour::ToolCalls { calls: 2, chunk_delay_ms: 30 }));
        let options = TestOptions {
            planners: PlannerRegistry::new(Some(fast_planner("default", &fake.base_url())), []),
            engine: fast_engine(),
            runtime: Some(Arc::new(runtime)),
            ..TestOptions::default()
        };
        let app = TestApp::spawn_with_options(db, options).await;
        let task = approved_task(&app, "record entries", workspace.path()).await;
        let session = helix_session(&app, &task, "completed", |i| i["state"] == "complete").await;
        assert_eq!(session["interactions"][0]["response_message"], "", "tool calls are not reply text");
        let entries = app.get(&entries_path(&session)).await.body;
        let entries = entries["entries"].as_array().unwrap();
        assert!(entries.iter().all(|e| e["kind"] == "tool_call"), "{entries:?}");
        // The latest entry of each call is its final state.
        for i in 1..=2 {
            let id = format!("call-{i}");
            let last = entries.iter().rev().find(|e| e["payload"]["tool_call_id"] == id.as_str()).unwrap();
            assert_eq!(last["payload"]["status"], "completed");
            assert_eq!(last["payload"]["title"], format!("Edit file {i}"));
            assert_eq!(last["payload"]["locations"][0]["path"], format!("file-{i}.txt"));
            assert_eq!(last["payload"]["content"][0]["text"], format!("edited file-{i}.txt"));
        }
    }

    async fn a_turn_re_run_after_a_restart_starts_with_no_entries(db) {
        let workspace = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        // The first attempt records a thought, a tool call and a chunk, then hangs until the server
        // stops; the re-run (the rule's one use is spent) only streams two chunks.
        let script = json!({
            "steps": [{"kind": "chunks", "count": 2}],
            "rules": [{"prompt_contains": "Task 1:", "times": 1, "steps": [
                {"kind": "thought", "text": "first attempt"},
                {"kind": "write_file", "path": "first.txt", "content": "1\n"},
                {"kind": "chunks", "count": 1},
                {"kind": "hang"},
            ]}],
        });
        let fake = FakeOpenAi::start().await;
        fake.push_text_reply(REPLY);
        let Some(app) = spawn(db, state.path(), &script, &fake).await else { return };
        let task = approved_task(&app, "record entries", workspace.path()).await;
        let first = helix_session(&app, &task, "with the first attempt's output", |i| {
            i["entry_count"].as_i64().unwrap() >= 3 && i["response_message"] == "chunk 1/1\n"
        })
        .await;
        let path = entries_path(&first);
        let before = app.get(&path).await.body;
        assert_eq!(kind_runs(before["entries"].as_array().unwrap()), ["thought", "tool_call", "message"]);

        // A graceful stop hands the running turn back; the next server re-runs it on the same
        // interaction, which must start clean.
        let db = app.stop().await;
        let app = spawn(db, state.path(), &script, &fake).await.expect("the test agent ran a moment ago");
        app.wait_for_task_status(&task, "implementation_review").await;
        let session = helix_session(&app, &task, "completed", |i| i["state"] == "complete").await;
        assert_eq!(session["interactions"][0]["id"], first["interactions"][0]["id"], "the same interaction was re-run");
        let after = app.get(&path).await.body;
        let entries = after["entries"].as_array().unwrap();
        assert_eq!(kind_runs(entries), ["message"], "nothing of the first attempt is left: {after}");
        assert_eq!(entries[0]["seq"], 0);
        assert_eq!(text_of(entries, "message"), "chunk 1/2\nchunk 2/2\n");
        assert_eq!(session["interactions"][0]["response_message"], "chunk 1/2\nchunk 2/2\n");
        assert_eq!(session["interactions"][0]["entry_count"].as_u64().unwrap(), entries.len() as u64);
    }
}
