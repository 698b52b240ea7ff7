//! The integration tier against a real third-party agent, through the whole server: a SpecTask
//! created, planned (by the fake OpenAI planner), approved and implemented over the HTTP API, its
//! work sessions run by Claude Code through `claude-agent-acp` (installed by `npm ci` in
//! `tools/agents`) under the production ACP runtime, against [`FakeAnthropic`]. Runs on SQLite and
//! PostgreSQL.
//!
//! The work sessions run at the same time, so each one's model replies are routed by its
//! assignment line (`Task 2: …`), which every request of its conversation repeats. The agent is
//! started through `sh`, which appends its process id to a file before `exec`: that file is how
//! the tests count agent processes.
//!
//! The agent also reaches spectask's own MCP server (`/mcp`, passed in `session/new`): its tools
//! are deferred, so the scripted model loads them with `ToolSearch` (`select:mcp__spectask__…`)
//! before calling them, and a reply held behind the fake's gate lets a test look at the middle of
//! a turn.
//!
//! Without the installed agent each scenario prints `SKIPPED (…)` and passes rather than being
//! ignored, unless `SPECTASK_REQUIRE_TIERS` requires the tier (see `spectask_testkit::skip`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use spectask_engine::PlannerRegistry;
use spectask_runtimes::agent::acp::AcpRuntime;
use spectask_testkit::{
    AnthropicReply, FakeAnthropic, FakeOpenAi, TestApp, TestDatabase, TestOptions, backend_tests,
    claude_profile, fast_engine, fast_planner, prepare_claude_home, tool_results,
};

/// Generous: the agent starts a Claude Code process per session, on a machine shared with builds.
const PATIENCE: Duration = Duration::from_secs(120);

macro_rules! require_agent {
    () => {
        match spectask_testkit::require_claude_agent() {
            Some(path) => path,
            None => return,
        }
    };
}

/// The workspace, the agent's `HOME` and the file of agent process ids, in one temporary
/// directory.
struct Fixture {
    dir: tempfile::TempDir,
    fake: FakeAnthropic,
    planner: FakeOpenAi,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ws")).unwrap();
        prepare_claude_home(&dir.path().join("home"));
        Self {
            dir,
            fake: FakeAnthropic::start().await,
            planner: FakeOpenAi::start().await,
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    fn workspace(&self) -> PathBuf {
        self.root().join("ws")
    }

    /// The process ids of every agent process started so far.
    fn agent_pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.root().join("pids/agent-pids"))
            .unwrap_or_default()
            .lines()
            .map(|line| line.trim().parse().unwrap())
            .collect()
    }

    /// The server, planning `plan` and implementing with the agent as its default profile.
    async fn app(&self, db: TestDatabase, agent: &Path, plan: &str) -> TestApp {
        // `$0` is the pid file, `$1` the agent: the shell records its pid, then becomes the agent.
        let args = vec![
            "-c".to_owned(),
            r#"echo $$ >> "$0" && exec "$1""#.to_owned(),
            self.root()
                .join("pids/agent-pids")
                .to_string_lossy()
                .into_owned(),
            agent.to_string_lossy().into_owned(),
        ];
        let mut profile = claude_profile(
            "claude",
            "/bin/sh",
            args,
            &self.root().join("home"),
            &self.fake,
        );
        // The pid file is written inside the agent's sandbox: its directory is state.
        let pids = self.root().join("pids");
        std::fs::create_dir_all(&pids).unwrap();
        profile
            .sandbox
            .state_dirs
            .push(pids.to_string_lossy().into_owned());
        let runtime = AcpRuntime::new(
            vec![profile],
            Some("claude".to_owned()),
            spectask_testkit::agent_shim(&self.root().join("run")),
        );
        self.planner.push_text_reply(plan);
        let mut engine = fast_engine();
        // The watchdog must not fail a turn while a Claude Code session is still starting.
        engine.turn_timeout = Duration::from_secs(60);
        // No lease may expire under a slow machine: a requeued turn would re-prompt the agent,
        // whose scripted replies are used up. A cancel is still seen within a heartbeat (3 s).
        engine.turn_lease = Duration::from_secs(9);
        let options = TestOptions {
            planners: PlannerRegistry::new(
                Some(fast_planner("default", &self.planner.base_url())),
                [],
            ),
            engine,
            runtime: Some(Arc::new(runtime)),
            ..TestOptions::default()
        };
        TestApp::spawn_with_options(db, options).await
    }
}

/// A plan whose top-level tasks have the given titles.
fn plan(titles: &[&str]) -> String {
    let tasks: String = titles
        .iter()
        .enumerate()
        .map(|(i, title)| format!("- [ ] {}. {title}\n  - _Requirements: 1.1_\n", i + 1))
        .collect();
    format!(
        "# Requirements: Notes\n\n1.1 WHEN asked THE SYSTEM SHALL write notes.\n\n## Open Questions\n\n- None.\n\n\
         # Design: Notes\n\nOne file per task.\n\n# Implementation Plan: Notes\n\n{tasks}"
    )
}

/// A scripted `Write` tool call.
fn write(path: &Path, content: &str) -> AnthropicReply {
    AnthropicReply::ToolUse {
        text: Some("Writing the note.".to_owned()),
        name: "Write".to_owned(),
        input: json!({"file_path": path, "content": content}),
    }
}

async fn wait_for(app: &TestApp, id: &str, status: &str) -> Value {
    app.wait_for_task_status(id, status).await
}

/// Creates a task in `workspace`, waits for its plan and approves it.
async fn approved_task(app: &TestApp, workspace: &Path) -> String {
    let task = app
        .post(
            "/api/v1/spec-tasks/from-prompt",
            &json!({"prompt": "write the notes", "project_path": workspace}),
        )
        .await;
    assert_eq!(task.status, StatusCode::CREATED, "{}", task.body);
    let id = task.body["id"].as_str().unwrap().to_owned();
    wait_for(app, &id, "spec_review").await;
    let approved = app
        .post(
            &format!("/api/v1/spec-tasks/{id}/approve-specs"),
            &json!({"approved": true}),
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    id
}

/// The work session whose plan task is `key`, in detail (session, interactions, turns).
async fn work_session(app: &TestApp, id: &str, key: usize) -> Value {
    let sessions = app
        .get(&format!("/api/v1/spec-tasks/{id}/work-sessions"))
        .await
        .body;
    let ws = sessions["work_sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"].as_str().unwrap().starts_with(&format!("{key}.")))
        .unwrap_or_else(|| panic!("no work session for task {key}: {sessions}"));
    app.get(&format!(
        "/api/v1/work-sessions/{}",
        ws["id"].as_str().unwrap()
    ))
    .await
    .body
}

/// The tool calls of a work session's first interaction, each in its last reported state, in
/// the order they started.
async fn tool_calls(app: &TestApp, detail: &Value) -> Vec<Value> {
    let session = detail["helix_session"]["id"].as_str().unwrap();
    let interaction = detail["helix_session"]["interactions"][0]["id"]
        .as_str()
        .unwrap();
    let entries = app
        .get(&format!(
            "/api/v1/sessions/{session}/interactions/{interaction}/entries"
        ))
        .await
        .body;
    let mut calls: Vec<Value> = Vec::new();
    for entry in entries["entries"].as_array().unwrap() {
        if entry["kind"] != "tool_call" {
            continue;
        }
        let call = entry["payload"].clone();
        match calls
            .iter_mut()
            .find(|known| known["tool_call_id"] == call["tool_call_id"])
        {
            Some(known) => *known = call,
            None => calls.push(call),
        }
    }
    calls
}

/// A scripted call of one of spectask's MCP tools, under the name the agent gives it.
fn spectask_tool(tool: &str, input: Value) -> AnthropicReply {
    AnthropicReply::ToolUse {
        text: None,
        name: format!("mcp__spectask__{tool}"),
        input,
    }
}

/// The text of a `tool_result` block (a string, or text blocks), for assertions.
fn result_text(result: &Value) -> String {
    match &result["content"] {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|block| block["text"].as_str().unwrap_or_default())
            .collect(),
        other => other.to_string(),
    }
}

fn turn_statuses(detail: &Value) -> Vec<String> {
    detail["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap().to_owned())
        .collect()
}

backend_tests! {
    /// Three work sessions as three ACP sessions of one agent process, at the same time. Each:
    /// the model asks to write a file, the agent asks permission, the profile's
    /// `allow_workspace_edits` allows it, the agent writes the file itself and reports back, the
    /// model answers and the turn ends with `end_turn`. The third first asks to write beside the
    /// workspace, which the same policy rejects: the model gets an error result and nothing is
    /// written there. The task reaches `implementation_review`; approving it stops the agent.
    async fn a_spec_task_is_implemented_by_three_sessions_of_one_claude_agent(db) {
        let agent = require_agent!();
        let fixture = Fixture::new().await;
        let titles = ["Write alpha", "Write beta", "Write gamma"];
        let outside = fixture.root().join("outside.txt");
        for (n, title) in (1..=3).zip(titles) {
            let marker = format!("Task {n}: {title}");
            if n == 3 {
                fixture.fake.push_for(&marker, write(&outside, "must not be written\n"));
            }
            let path = fixture.workspace().join(format!("notes/{n}.txt"));
            fixture.fake.push_for(&marker, write(&path, &format!("note {n}\n")));
            fixture.fake.push_for(&marker, AnthropicReply::Text(format!("Done with note {n}.")));
        }
        let app = fixture.app(db, &agent, &plan(&titles)).await;
        let id = approved_task(&app, &fixture.workspace()).await;
        wait_for(&app, &id, "implementation_review").await;

        for n in 1..=3 {
            let path = fixture.workspace().join(format!("notes/{n}.txt"));
            assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("note {n}\n"));
        }
        assert!(!outside.exists(), "written outside the workspace");
        assert_eq!(fixture.fake.pending_replies(), 0, "every scripted reply was used");

        // One process, one instance, three threads: three distinct ACP sessions.
        assert_eq!(fixture.agent_pids().len(), 1, "one agent process hosts the instance");
        let instance = app.get(&format!("/api/v1/spec-tasks/{id}/zed-instance")).await.body;
        assert!(instance["zed_instance_id"].is_string(), "{instance}");
        assert_eq!(instance["thread_count"], 3, "{instance}");
        let threads = app.get(&format!("/api/v1/spec-tasks/{id}/zed-threads")).await.body;
        let thread_ids: BTreeSet<&str> = threads["zed_threads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["zed_thread_id"].as_str().unwrap())
            .collect();
        assert_eq!(thread_ids.len(), 3, "three ACP sessions: {threads}");

        for (n, title) in (1..=3).zip(titles) {
            let detail = work_session(&app, &id, n).await;
            assert_eq!(detail["work_session"]["status"], "completed", "{detail}");
            // Only `end_turn` completes a turn.
            assert_eq!(turn_statuses(&detail), ["completed"], "{detail}");
            let response = detail["helix_session"]["interactions"][0]["response_message"]
                .as_str()
                .unwrap();
            assert!(response.contains("Writing the note."), "{detail}");
            assert!(response.ends_with(&format!("Done with note {n}.")), "{response}");
            // The writes as tool calls, in the interaction's entries: each call's last state.
            let calls = tool_calls(&app, &detail).await;
            let completed = calls.last().unwrap();
            assert_eq!(completed["status"], "completed", "{calls:?}");
            assert_eq!(
                completed["raw_input"]["file_path"],
                json!(fixture.workspace().join(format!("notes/{n}.txt"))),
                "{calls:?}"
            );

            // What the agent reported to the model after each tool call.
            let turns = fixture.fake.model_turns_mentioning(&format!("Task {n}: {title}"));
            let results: Vec<Value> = turns[1..].iter().flat_map(tool_results).collect();
            if n == 3 {
                assert_eq!(turns.len(), 3, "two tool calls, then the answer");
                assert_eq!(results[0]["is_error"], json!(true), "refused by policy: {results:?}");
                assert_eq!(calls.len(), 2, "{calls:?}");
                assert_eq!(calls[0]["status"], "failed", "the refused write: {calls:?}");
            } else {
                assert_eq!(turns.len(), 2, "one tool call, then the answer");
                assert_eq!(calls.len(), 1, "{calls:?}");
            }
            assert_ne!(results.last().unwrap()["is_error"], json!(true), "{results:?}");
        }

        let done = app
            .post(&format!("/api/v1/spec-tasks/{id}/approve-implementation"), &json!({}))
            .await;
        assert_eq!((done.status, done.body["status"].clone()), (StatusCode::OK, json!("done")));
        let pid = fixture.agent_pids()[0];
        let proc_dir = format!("/proc/{pid}");
        let proc_dir = Path::new(&proc_dir);
        spectask_testkit::wait_until(&format!("agent {pid} to stop after done"), || async move {
            (!proc_dir.exists()).then_some(())
        })
        .await;
    }

    /// A work session cancelled through the API while the model is still answering: the agent
    /// aborts the model request, the turn ends `cancelled`, and the same agent process goes on
    /// serving: the other session completes, and a change requested afterwards runs to
    /// `end_turn` on it.
    async fn a_work_session_is_cancelled_mid_turn_and_the_agent_goes_on(db) {
        let agent = require_agent!();
        let fixture = Fixture::new().await;
        let titles = ["Think forever", "Write delta"];
        let hanging = "Task 1: Think forever";
        let writing = "Task 2: Write delta";
        fixture.fake.push_for(hanging, AnthropicReply::Hang { text: "Thinking".to_owned() });
        let delta = fixture.workspace().join("delta.txt");
        let epsilon = fixture.workspace().join("epsilon.txt");
        fixture.fake.push_for(writing, write(&delta, "delta\n"));
        fixture.fake.push_for(writing, AnthropicReply::Text("Delta done.".to_owned()));
        fixture.fake.push_for(writing, write(&epsilon, "epsilon\n"));
        fixture.fake.push_for(writing, AnthropicReply::Text("Epsilon done.".to_owned()));
        let app = fixture.app(db, &agent, &plan(&titles)).await;
        let id = approved_task(&app, &fixture.workspace()).await;

        let asked = fixture.fake.wait_for_model_turns_mentioning(hanging, 1, PATIENCE).await;
        assert_eq!(asked.len(), 1, "the model was asked for task 1");
        // Let the first streamed text reach the agent, so the cancel lands mid-stream.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let first = work_session(&app, &id, 1).await;
        let ws1 = first["work_session"]["id"].as_str().unwrap().to_owned();
        assert_eq!(turn_statuses(&first), ["running"], "{first}");
        let cancelled = app.post(&format!("/api/v1/work-sessions/{ws1}/cancel"), &json!({})).await;
        assert_eq!((cancelled.status, cancelled.body["status"].clone()), (StatusCode::OK, json!("cancelled")));

        // The cancel reaches the agent, which drops its request to the model.
        let fake = &fixture.fake;
        spectask_testkit::wait_until("the agent to abort the model request", || async move {
            (fake.hangs_closed_by_client() > 0).then_some(())
        })
        .await;
        wait_for(&app, &id, "implementation_review").await;
        assert_eq!(turn_statuses(&work_session(&app, &id, 1).await), ["cancelled"]);
        assert_eq!(std::fs::read_to_string(&delta).unwrap(), "delta\n");

        let second = work_session(&app, &id, 2).await;
        let ws2 = second["work_session"]["id"].as_str().unwrap().to_owned();
        let reopened = app
            .post(
                &format!("/api/v1/spec-tasks/{id}/request-changes"),
                &json!({"comment": "Also write epsilon.", "work_session_ids": [ws2]}),
            )
            .await;
        assert_eq!((reopened.status, reopened.body["status"].clone()), (StatusCode::OK, json!("implementation")));
        wait_for(&app, &id, "implementation_review").await;
        assert_eq!(std::fs::read_to_string(&epsilon).unwrap(), "epsilon\n");
        let second = work_session(&app, &id, 2).await;
        assert_eq!(turn_statuses(&second), ["completed", "completed"], "{second}");
        let follow_up = second["helix_session"]["interactions"][1]["response_message"].as_str().unwrap();
        assert!(follow_up.ends_with("Epsilon done."), "{follow_up}");
        assert_eq!(fixture.fake.pending_replies(), 0, "every scripted reply was used");
        assert_eq!(fixture.agent_pids().len(), 1, "the same agent process throughout");
    }

    /// The real agent calls spectask's own MCP tools, as the model asks: it loads the deferred
    /// tools with `ToolSearch`, reads its spec with `get_spec` (the model gets the assignment
    /// back), reports its task done with `report_progress` (the task's status and the `tasks.md`
    /// checkbox change while the turn is still running) and declares the work done with
    /// `complete_work_session` (the summary lands on the work session); the turn ends `end_turn`.
    async fn a_claude_agent_reads_its_spec_and_reports_through_spectask_mcp_tools(db) {
        let agent = require_agent!();
        let fixture = Fixture::new().await;
        let marker = "Task 1: Write alpha";
        let tools = "mcp__spectask__get_spec,mcp__spectask__report_progress,mcp__spectask__complete_work_session";
        fixture.fake.push_for(marker, AnthropicReply::ToolUse {
            text: Some("Loading the spectask tools.".to_owned()),
            name: "ToolSearch".to_owned(),
            // The input schema the agent gives the model for it: `query` and `max_results`.
            input: json!({"query": format!("select:{tools}"), "max_results": 3}),
        });
        fixture.fake.push_for(marker, spectask_tool("get_spec", json!({})));
        fixture.fake.push_for(marker, spectask_tool(
            "report_progress",
            json!({"task_key": "1", "status": "completed", "note": "alpha written"}),
        ));
        // Held until the test has seen the report's effects mid-turn.
        fixture.fake.push_for(marker, AnthropicReply::AfterGate(Box::new(spectask_tool(
            "complete_work_session",
            json!({"summary": "Alpha is written and reported."}),
        ))));
        fixture.fake.push_for(marker, AnthropicReply::Text("All done.".to_owned()));
        let app = fixture.app(db, &agent, &plan(&["Write alpha"])).await;
        let id = approved_task(&app, &fixture.workspace()).await;

        // The model turn after `report_progress` has arrived and waits at the gate.
        let turns = fixture.fake.wait_for_model_turns_mentioning(marker, 4, PATIENCE).await;
        assert_eq!(turns.len(), 4, "ToolSearch, get_spec and report_progress, each answered");
        let detail = work_session(&app, &id, 1).await;
        assert_eq!(detail["work_session"]["status"], "active", "{detail}");
        let listed = app.get(&format!("/api/v1/spec-tasks/{id}/implementation-tasks")).await.body;
        let task = &listed["implementation_tasks"][0];
        assert_eq!((task["key"].as_str(), task["status"].as_str()), (Some("1"), Some("completed")), "{listed}");
        let tasks_md = fixture.workspace().join(format!(".spectask/specs/{id}/tasks.md"));
        let rendered = std::fs::read_to_string(&tasks_md).unwrap();
        assert!(rendered.contains("- [x] 1. Write alpha"), "{rendered}");
        fixture.fake.open_gate();

        wait_for(&app, &id, "implementation_review").await;
        let detail = work_session(&app, &id, 1).await;
        assert_eq!(detail["work_session"]["status"], "completed", "{detail}");
        assert_eq!(detail["work_session"]["agent_summary"], "Alpha is written and reported.", "{detail}");
        assert_eq!(turn_statuses(&detail), ["completed"], "only `end_turn` completes a turn: {detail}");
        let response = detail["helix_session"]["interactions"][0]["response_message"].as_str().unwrap();
        assert!(response.ends_with("All done."), "{response}");
        assert_eq!(fixture.fake.pending_replies(), 0, "every scripted reply was used");

        // What the agent sent back to the model after each tool call.
        let turns = fixture.fake.model_turns_mentioning(marker);
        assert_eq!(turns.len(), 5, "four tool calls, then the answer");
        let results: Vec<Value> = turns[1..].iter().flat_map(tool_results).collect();
        assert_eq!(results.len(), 4, "{results:?}");
        for result in &results {
            assert_ne!(result["is_error"], json!(true), "{results:?}");
        }
        // `get_spec`: the documents and this session's assignment, as the model read them.
        let spec: Value = serde_json::from_str(&result_text(&results[1])).unwrap();
        assert!(spec["requirements"].as_str().unwrap().contains("WHEN asked THE SYSTEM SHALL write notes"), "{spec}");
        let assignment = &spec["work_session"]["tasks"][0];
        assert_eq!((assignment["key"].as_str(), assignment["title"].as_str()), (Some("1"), Some("Write alpha")), "{spec}");
        assert!(result_text(&results[3]).contains("Alpha is written and reported."), "{results:?}");

        // The deferred tools were loaded by name, then called.
        let loaded: Vec<&str> = results[0]["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|block| block["tool_name"].as_str().unwrap())
            .collect();
        assert_eq!(loaded, tools.split(',').collect::<Vec<_>>(), "{results:?}");

        // The calls as tool calls in the interaction's entries, each completed.
        let calls: Vec<(String, String)> = tool_calls(&app, &detail)
            .await
            .iter()
            .map(|call| (call["title"].as_str().unwrap().to_owned(), call["status"].as_str().unwrap().to_owned()))
            .collect();
        let expected: Vec<(String, String)> = ["ToolSearch", "mcp__spectask__get_spec", "mcp__spectask__report_progress", "mcp__spectask__complete_work_session"]
            .iter()
            .map(|title| ((*title).to_owned(), "completed".to_owned()))
            .collect();
        assert_eq!(calls, expected);

        // The report is in the task's history, as the agent's, with its note.
        let events = app.get(&format!("/api/v1/spec-tasks/{id}/events?after=0&limit=500")).await.body;
        let reported = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "agent.progress_reported")
            .unwrap_or_else(|| panic!("no progress event: {events}"));
        assert_eq!((reported["payload"]["note"].as_str(), reported["payload"]["status"].as_str()), (Some("alpha written"), Some("completed")), "{reported}");
        assert!(reported["actor"].as_str().unwrap().starts_with("agent:"), "{reported}");
    }
}
