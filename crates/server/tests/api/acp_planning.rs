//! Planning over ACP: a task whose `spec_agent` names an agent profile is planned by a real ACP
//! agent process (our scripted test agent) in the task's workspace. The agent writes the three
//! documents into the spec directory through the client's file interface; the server checks them
//! like the LLM planner's reply, corrects once, revises and retries in the same ACP session, and
//! implementation then runs on the same instance. Runs on SQLite and PostgreSQL.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use spectask_engine::{EngineSettings, PlannerRegistry};
use spectask_runtimes::agent::acp::{AcpProfile, AcpRuntime};
use spectask_testkit::{
    FakeOpenAi, TestApp, TestDatabase, TestOptions, backend_tests, fast_engine, fast_planner,
};

use crate::support::{requests, wait_for_body, with_method};

const AGENT: &str = "planner-agent";
/// A second profile of the same test agent, for implementation by another agent.
const CODER: &str = "coder-agent";
/// The first planning prompt (and only it) says this.
const PLANNING: &str = "First explore the workspace";
/// The corrective prompt says this.
const CORRECTION: &str = "cannot be used because";
/// The revision prompt says this.
const REVISION: &str = "requested changes";

/// A server whose only agent profile is the test agent, reading its script from a file the test
/// rewrites (the spec directory's path is only known once the task exists).
struct Rig {
    app: TestApp,
    workspace: tempfile::TempDir,
    _state: tempfile::TempDir,
    script: PathBuf,
    log: PathBuf,
}

impl Rig {
    async fn start(db: TestDatabase) -> Option<Self> {
        Self::start_with(db, fast_engine(), PlannerRegistry::default()).await
    }

    async fn start_with(
        db: TestDatabase,
        engine: EngineSettings,
        planners: PlannerRegistry,
    ) -> Option<Self> {
        let agent = spectask_testkit::require_test_agent()?;
        let workspace = tempfile::tempdir().unwrap();
        std::fs::write(
            workspace.path().join("README.md"),
            "# Sample project\n\nA library.\n",
        )
        .unwrap();
        let state = tempfile::tempdir().unwrap();
        let script = state.path().join("script.json");
        let log = state.path().join("requests.jsonl");
        std::fs::write(&script, json!({"steps": []}).to_string()).unwrap();
        let profile = |name: &str| {
            AcpProfile::new(name, agent.to_str().unwrap(), Vec::<String>::new())
                .with_env("SPECTASK_TEST_AGENT_SCRIPT_FILE", script.to_str().unwrap())
                .with_env("SPECTASK_TEST_AGENT_STATE", state.path().to_str().unwrap())
                .with_env("SPECTASK_TEST_AGENT_LOG", log.to_str().unwrap())
                .with_sandbox(
                    spectask_runtimes::agent::sandbox::SandboxSettings::default()
                        .with_state([state.path().to_str().unwrap()], Vec::<String>::new()),
                )
        };
        let runtime = AcpRuntime::new(
            vec![profile(AGENT), profile(CODER)],
            Some(AGENT.to_owned()),
            spectask_testkit::agent_shim(&state.path().join("run")),
        );
        let options = TestOptions {
            planners,
            engine,
            runtime: Some(Arc::new(runtime)),
            ..TestOptions::default()
        };
        let app = TestApp::spawn_with_options(db, options).await;
        Some(Self {
            app,
            workspace,
            _state: state,
            script,
            log,
        })
    }

    /// Creates a task planned by the agent, waiting in backlog until the script is written.
    async fn create_task(&self) -> String {
        self.create_task_with(json!({})).await
    }

    /// Like [`Rig::create_task`], with more fields of the request.
    async fn create_task_with(&self, extra: Value) -> String {
        let mut body = json!({"prompt": "Add a greeting module", "spec_agent": AGENT, "auto_start": false,
                              "project_path": self.workspace.path().to_str().unwrap()});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let created = self.app.post("/api/v1/spec-tasks/from-prompt", &body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        assert_eq!(created.body["status"], "backlog");
        created.body["id"].as_str().unwrap().to_owned()
    }

    fn script(&self, script: &Value) {
        std::fs::write(&self.script, script.to_string()).unwrap();
    }

    async fn start_planning(&self, id: &str) {
        let started = self
            .app
            .post(
                &format!("/api/v1/spec-tasks/{id}/start-planning"),
                &json!({}),
            )
            .await;
        assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    }

    fn spec_dir(&self, id: &str) -> PathBuf {
        self.workspace
            .path()
            .canonicalize()
            .unwrap()
            .join(".spectask/specs")
            .join(id)
    }

    /// The agent's request log: one JSON object per request it received.
    fn requests(&self) -> Vec<Value> {
        requests(&self.log)
    }

    fn requests_of(&self, method: &str) -> Vec<Value> {
        with_method(&self.requests(), method)
            .into_iter()
            .cloned()
            .collect()
    }

    async fn planning_session(&self, id: &str) -> Value {
        let sessions = self
            .app
            .get(&format!("/api/v1/spec-tasks/{id}/sessions"))
            .await
            .body;
        let planning = sessions["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["role"] == "planning")
            .unwrap()
            .clone();
        self.app
            .get(&format!(
                "/api/v1/sessions/{}",
                planning["id"].as_str().unwrap()
            ))
            .await
            .body
    }

    async fn turns(&self, id: &str) -> Vec<Value> {
        self.app
            .get(&format!("/api/v1/spec-tasks/{id}/turns"))
            .await
            .body["turns"]
            .as_array()
            .unwrap()
            .clone()
    }
}

async fn wait_for(app: &TestApp, id: &str, status: &str) -> Value {
    app.wait_for_task_status(id, status).await
}

fn requirements() -> String {
    "# Requirements: Greeting\n\n1. As a user I want a greeting.\n\n1.1 WHEN asked THE SYSTEM SHALL greet.\n\n\
     ## Open Questions\n\n- None.\n"
        .to_owned()
}

fn design() -> String {
    "# Design: Greeting\n\nA `greeting` module next to the README.\n".to_owned()
}

/// A valid plan with `tasks` independent top-level tasks.
fn plan(tasks: usize) -> String {
    let mut plan = "# Implementation Plan: Greeting\n\n".to_owned();
    for n in 1..=tasks {
        plan.push_str(&format!(
            "- [ ] {n}. Write greeting part {n}\n  - _Requirements: 1.1_\n"
        ));
    }
    plan
}

fn write(dir: &Path, file: &str, content: &str) -> Value {
    json!({"kind": "write_file", "path": dir.join(file).to_str().unwrap(), "content": content})
}

/// Steps writing all three documents.
fn write_docs(dir: &Path, plan: &str) -> Vec<Value> {
    vec![
        write(dir, "requirements.md", &requirements()),
        write(dir, "design.md", &design()),
        write(dir, "tasks.md", plan),
    ]
}

fn rule(needle: &str, steps: Vec<Value>) -> Value {
    json!({"prompt_contains": needle, "steps": steps})
}

fn prompt_sessions(rig: &Rig) -> Vec<String> {
    rig.requests_of("session/prompt")
        .iter()
        .map(|r| r["session_id"].as_str().unwrap().to_owned())
        .collect()
}

backend_tests! {
    async fn an_agent_plans_in_the_workspace_revises_in_the_same_session_then_implements(db) {
        let Some(rig) = Rig::start(db).await else { return };
        let app = &rig.app;
        // spec_agent is checked before anything is written.
        let before = app.get("/api/v1/spec-tasks").await.body["total"].clone();
        let unknown = app.post("/api/v1/spec-tasks/from-prompt", &json!({"prompt": "x", "spec_agent": "nobody"})).await;
        assert_eq!((unknown.status, unknown.error_code()), (StatusCode::UNPROCESSABLE_ENTITY, "unknown_planner"));
        let no_checkout = app.post("/api/v1/spec-tasks/from-prompt", &json!({"prompt": "x", "spec_agent": AGENT})).await;
        assert_eq!((no_checkout.status, no_checkout.error_code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
        assert_eq!(app.get("/api/v1/spec-tasks").await.body["total"], before, "refusals created nothing");

        let id = rig.create_task().await;
        let dir = rig.spec_dir(&id);
        let mut first = vec![json!({"kind": "read_file", "path": "README.md"})];
        first.extend(write_docs(&dir, &plan(1)));
        first.push(json!({"kind": "chunks", "count": 1}));
        let mut revised = write_docs(&dir, &plan(2));
        revised.push(json!({"kind": "chunks", "count": 2}));
        let implement = |file: &str| vec![
            json!({"kind": "write_file", "path": format!("src/{file}"), "content": format!("{file}\n")}),
            json!({"kind": "chunks", "count": 1}),
        ];
        rig.script(&json!({
            "steps": [{"kind": "chunks", "count": 1}],
            "rules": [
                rule(PLANNING, first),
                rule(REVISION, revised),
                rule("Task 1:", implement("one.txt")),
                rule("Task 2:", implement("two.txt")),
            ],
        }));
        rig.start_planning(&id).await;
        let task = wait_for(app, &id, "spec_review").await;
        assert_eq!(task["requirements_spec"].as_str().unwrap(), requirements().trim());
        assert_eq!(task["technical_design"].as_str().unwrap(), design().trim());
        assert_eq!(task["implementation_plan"].as_str().unwrap(), plan(1).trim());
        assert_eq!(task["name"], "Greeting", "the derived name comes from the requirements title");
        let instance = task["zed_instance_id"].as_str().expect("planning set the task's instance").to_owned();
        let session = rig.planning_session(&id).await;
        let thread = session["agent_thread_id"].as_str().expect("the ACP session is recorded").to_owned();
        let response = session["interactions"][0]["response_message"].as_str().unwrap();
        assert!(response.contains("# Sample project"), "the agent read the workspace: {response}");
        assert!(response.contains("chunk 1/1"), "{response}");
        // The agent's file writes are the interaction's tool-call entries.
        let entries = app.get(&format!("/api/v1/sessions/{}/interactions/{}/entries", session["id"].as_str().unwrap(), session["interactions"][0]["id"].as_str().unwrap())).await.body;
        let written: BTreeSet<String> = entries["entries"].as_array().unwrap().iter()
            .filter(|e| e["kind"] == "tool_call" && e["payload"]["kind"] == "edit")
            .map(|e| e["payload"]["locations"][0]["path"].as_str().unwrap().to_owned())
            .collect();
        let expected: BTreeSet<String> = ["requirements.md", "design.md", "tasks.md"].iter().map(|f| dir.join(f).display().to_string()).collect();
        assert_eq!(written, expected);
        let prompt = session["interactions"][0]["prompt_message"].as_str().unwrap();
        assert!(prompt.contains(dir.join("tasks.md").to_str().unwrap()), "{prompt}");

        // A reviewer's comment goes back to the same ACP session, which revises the files.
        let comment = app.post(&format!("/api/v1/spec-tasks/{id}/comments"), &json!({"document": "plan", "comment": "Split it in two."})).await;
        assert_eq!(comment.status, StatusCode::CREATED, "{}", comment.body);
        let changes = app.post(&format!("/api/v1/spec-tasks/{id}/approve-specs"), &json!({"approved": false, "comments": "Two tasks, please."})).await;
        assert_eq!(changes.status, StatusCode::OK, "{}", changes.body);
        let task = wait_for_body(app, &format!("/api/v1/spec-tasks/{id}"), "to be revised", |task| {
            task["status"] == "spec_review" && task["implementation_plan"].as_str().unwrap().contains("- [ ] 2.")
        }).await;
        assert_eq!(task["implementation_plan"].as_str().unwrap(), plan(2).trim());
        let revision = app.get(&format!("/api/v1/spec-tasks/{id}/revisions/2")).await;
        assert_eq!(revision.status, StatusCode::OK);
        let session = rig.planning_session(&id).await;
        let revision_prompt = session["interactions"][1]["prompt_message"].as_str().unwrap();
        assert!(revision_prompt.contains("Split it in two.") && revision_prompt.contains("revise them in place"), "{revision_prompt}");
        let comments = app.get(&format!("/api/v1/spec-tasks/{id}/comments")).await.body;
        assert_eq!(comments["comments"][0]["resolved"], true);
        assert_eq!(prompt_sessions(&rig), [thread.clone(), thread.clone()], "both planning turns ran in the one ACP session");
        assert_eq!(rig.requests_of("session/new").len(), 1);

        // Implementation reuses the instance (the same agent process) and works as before.
        let approved = app.post(&format!("/api/v1/spec-tasks/{id}/approve-specs"), &json!({"approved": true})).await;
        assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
        let task = wait_for(app, &id, "implementation_review").await;
        assert_eq!(task["zed_instance_id"], instance);
        for file in ["one.txt", "two.txt"] {
            assert_eq!(std::fs::read_to_string(rig.workspace.path().join("src").join(file)).unwrap(), format!("{file}\n"));
        }
        let pids: BTreeSet<_> = rig.requests().iter().map(|r| r["pid"].as_u64().unwrap()).collect();
        assert_eq!(pids.len(), 1, "planning and implementation share one agent process");
        assert_eq!(rig.requests_of("session/new").len(), 3, "one ACP session for planning, one per work session");
        let threads = app.get(&format!("/api/v1/spec-tasks/{id}/zed-threads")).await.body;
        let implementation_threads: BTreeSet<String> = threads["zed_threads"].as_array().unwrap().iter().map(|t| t["zed_thread_id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(implementation_threads.len(), 2);
        assert!(!implementation_threads.contains(&thread), "planning's session is not an implementation thread");
    }

    async fn invalid_documents_get_one_correction_in_the_same_session(db) {
        let Some(rig) = Rig::start(db).await else { return };
        let id = rig.create_task().await;
        let dir = rig.spec_dir(&id);
        rig.script(&json!({"rules": [
            rule(PLANNING, write_docs(&dir, "# Implementation Plan: Greeting\n\nWe will write it.\n")),
            rule(CORRECTION, vec![write(&dir, "tasks.md", &plan(1))]),
        ]}));
        rig.start_planning(&id).await;
        let task = wait_for(&rig.app, &id, "spec_review").await;
        assert_eq!(task["implementation_plan"].as_str().unwrap(), plan(1).trim());
        let turns = rig.turns(&id).await;
        let kinds: Vec<_> = turns.iter().map(|t| (t["kind"].as_str().unwrap(), t["status"].as_str().unwrap())).collect();
        assert_eq!(kinds, [("planning", "completed"), ("correction", "completed")]);
        let session = rig.planning_session(&id).await;
        let fix = session["interactions"][1]["prompt_message"].as_str().unwrap();
        assert!(fix.contains("the implementation plan has no tasks") && fix.contains(dir.join("tasks.md").to_str().unwrap()), "{fix}");
        let thread = session["agent_thread_id"].as_str().unwrap();
        assert_eq!(prompt_sessions(&rig), [thread, thread]);
        assert_eq!(rig.requests_of("session/new").len(), 1);
        assert_eq!(app_revisions(&rig.app, &id).await, 1);
    }

    async fn documents_still_invalid_after_the_correction_fail_and_a_retry_resumes_the_session(db) {
        let Some(rig) = Rig::start(db).await else { return };
        let id = rig.create_task().await;
        let dir = rig.spec_dir(&id);
        let broken = plan(1).replace("  - _Requirements: 1.1_\n", "  - Depends on: 7\n");
        rig.script(&json!({"rules": [
            rule(PLANNING, vec![write(&dir, "requirements.md", &requirements())]),
            rule(CORRECTION, vec![write(&dir, "design.md", &design()), write(&dir, "tasks.md", &broken)]),
        ]}));
        rig.start_planning(&id).await;
        let task = wait_for(&rig.app, &id, "spec_failed").await;
        let error = task["error"].as_str().unwrap();
        assert!(error.starts_with("the agent's documents broke the output contract twice:") && error.contains("implementation plan:"), "{error}");
        let session = rig.planning_session(&id).await;
        let fix = session["interactions"][1]["prompt_message"].as_str().unwrap();
        assert!(fix.contains(&format!("`{}` was not written", dir.join("design.md").display())), "{fix}");
        assert_eq!(app_revisions(&rig.app, &id).await, 0);

        // A retry runs in the same ACP session; an agent that refuses fails the planning.
        rig.script(&json!({"steps": [{"kind": "chunks", "count": 1}, {"kind": "stop", "reason": "refusal"}]}));
        rig.start_planning(&id).await;
        let task = wait_for(&rig.app, &id, "spec_failed").await;
        assert!(task["error"].as_str().unwrap().contains("stopped with `refusal`"), "{task}");
        let thread = session["agent_thread_id"].as_str().unwrap();
        assert_eq!(prompt_sessions(&rig), [thread, thread, thread]);
        assert_eq!(rig.requests_of("session/new").len(), 1);
    }

    async fn an_agent_crashing_mid_planning_is_restarted_and_the_session_loaded(db) {
        let Some(rig) = Rig::start(db).await else { return };
        let id = rig.create_task().await;
        let dir = rig.spec_dir(&id);
        let mut done = write_docs(&dir, &plan(1));
        done.push(json!({"kind": "chunks", "count": 1}));
        rig.script(&json!({"rules": [
            {"prompt_contains": PLANNING, "times": 1, "steps": [{"kind": "chunks", "count": 3}, {"kind": "crash", "exit_code": 3}]},
            rule(PLANNING, done),
        ]}));
        rig.start_planning(&id).await;
        let task = wait_for(&rig.app, &id, "spec_review").await;
        assert_eq!(task["implementation_plan"].as_str().unwrap(), plan(1).trim());
        let turns = rig.turns(&id).await;
        assert_eq!(turns.len(), 1);
        assert_eq!((turns[0]["status"].as_str().unwrap(), turns[0]["attempts"].as_i64().unwrap()), ("completed", 2));
        let session = rig.planning_session(&id).await;
        let thread = session["agent_thread_id"].as_str().unwrap();
        let response = session["interactions"][0]["response_message"].as_str().unwrap();
        assert!(!response.contains("chunk 3/3") && response.contains("chunk 1/1"), "the crashed attempt's output is void: {response}");
        assert_eq!(prompt_sessions(&rig), [thread, thread]);
        let pids: BTreeSet<_> = rig.requests().iter().map(|r| r["pid"].as_u64().unwrap()).collect();
        assert_eq!(pids.len(), 2, "the agent was restarted");
        assert_eq!(rig.requests_of("session/new").len(), 1, "no second session was opened");
        let loads = rig.requests_of("session/load");
        assert_eq!(loads.len(), 1);
        assert_eq!(loads[0]["session_id"], thread);
    }

    async fn the_reply_streams_live_and_a_silent_agent_is_timed_out(db) {
        let mut engine = fast_engine();
        // Short, but long enough for a loaded machine to see the chunks before the watchdog ends
        // the silent turn.
        engine.turn_timeout = Duration::from_secs(5);
        let Some(rig) = Rig::start_with(db, engine, PlannerRegistry::default()).await else { return };
        let id = rig.create_task().await;
        rig.script(&json!({"steps": [{"kind": "chunks", "count": 2}, {"kind": "hang"}]}));
        rig.start_planning(&id).await;
        // The chunks are in the interaction while the turn is still running.
        rig.app.wait_until("the chunks while the turn runs", |app| {
            let (rig, id) = (&rig, &id);
            async move {
                let session = rig.planning_session(id).await;
                let task = app.get(&format!("/api/v1/spec-tasks/{id}")).await.body;
                assert_eq!(task["status"], "spec_generation", "no live output before the turn ended: {session}");
                let response = session["interactions"][0]["response_message"].as_str().unwrap_or_default();
                response.contains("chunk 2/2").then_some(())
            }
        })
        .await;
        let task = wait_for(&rig.app, &id, "spec_failed").await;
        assert!(task["error"].as_str().unwrap().starts_with("no activity from the planning agent `planner-agent`"), "{task}");
        assert_eq!(rig.requests_of("session/cancel").len(), 1, "the silent turn was cancelled at the agent");
    }

    async fn a_session_the_agent_cannot_load_fails_and_only_a_retry_opens_a_new_one(db) {
        let Some(rig) = Rig::start(db).await else { return };
        let id = rig.create_task().await;
        let dir = rig.spec_dir(&id);
        rig.script(&json!({"load_session": false, "rules": [
            {"prompt_contains": PLANNING, "steps": [{"kind": "chunks", "count": 1}, {"kind": "crash", "exit_code": 3}]},
        ]}));
        rig.start_planning(&id).await;
        let task = wait_for(&rig.app, &id, "spec_failed").await;
        let error = task["error"].as_str().unwrap();
        assert!(error.contains("could not be resumed") && error.contains("start planning again"), "{error}");
        let session = rig.planning_session(&id).await;
        assert!(session.get("agent_thread_id").is_none(), "the lost session is forgotten: {session}");
        assert_eq!(rig.requests_of("session/new").len(), 1, "no new session behind the reviewer's back");
        let lost = prompt_sessions(&rig);

        rig.script(&json!({"load_session": false, "rules": [rule(PLANNING, write_docs(&dir, &plan(1)))]}));
        rig.start_planning(&id).await;
        wait_for(&rig.app, &id, "spec_review").await;
        let session = rig.planning_session(&id).await;
        let thread = session["agent_thread_id"].as_str().unwrap();
        assert_ne!(thread, lost[0]);
        assert_eq!(rig.requests_of("session/new").len(), 2);
        assert!(rig.requests_of("session/load").is_empty());
    }

    async fn implementation_by_another_profile_restarts_the_instance_s_agent(db) {
        let Some(rig) = Rig::start(db).await else { return };
        let id = rig.create_task_with(json!({"implementation_agent": CODER})).await;
        let dir = rig.spec_dir(&id);
        rig.script(&json!({
            "steps": [{"kind": "chunks", "count": 1}],
            "rules": [rule(PLANNING, write_docs(&dir, &plan(1)))],
        }));
        rig.start_planning(&id).await;
        let task = wait_for(&rig.app, &id, "spec_review").await;
        let instance = task["zed_instance_id"].as_str().unwrap().to_owned();
        rig.app.post(&format!("/api/v1/spec-tasks/{id}/approve-specs"), &json!({"approved": true})).await;
        let task = wait_for(&rig.app, &id, "implementation_review").await;
        assert_eq!(task["zed_instance_id"], instance.as_str(), "one instance for the whole task");
        let prompts = rig.requests_of("session/prompt");
        assert_eq!(prompts.len(), 2);
        assert!(prompts[0]["prompt"].as_str().unwrap().contains(PLANNING));
        assert_ne!(prompts[0]["pid"], prompts[1]["pid"], "the instance's agent was restarted with the implementation profile");
    }

    async fn a_planner_profile_wins_over_an_agent_profile_of_the_same_name(db) {
        let fake = FakeOpenAi::start().await;
        fake.push_text_reply(&format!("{}\n{}\n{}", requirements(), design(), plan(1)));
        let planners = PlannerRegistry::new(None, [fast_planner(AGENT, &fake.base_url())]);
        let Some(rig) = Rig::start_with(db, fast_engine(), planners).await else { return };
        let id = rig.create_task().await;
        rig.start_planning(&id).await;
        let task = wait_for(&rig.app, &id, "spec_review").await;
        assert_eq!(task["implementation_plan"].as_str().unwrap(), plan(1).trim());
        assert_eq!(fake.requests().len(), 1, "the LLM planner answered");
        assert!(!rig.log.exists(), "no agent was started");
        assert_eq!(task["zed_instance_id"], Value::Null);
    }
}

async fn app_revisions(app: &TestApp, id: &str) -> usize {
    app.get(&format!("/api/v1/spec-tasks/{id}/revisions"))
        .await
        .body["revisions"]
        .as_array()
        .unwrap()
        .len()
}
