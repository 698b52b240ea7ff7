//! Permission requests of a planning agent under the `ask` policy, answered through the API: the
//! planning session's requests are recorded against it (no work session), listed per task with
//! what the tool call would do, and answered through the task's endpoint, which lets the
//! planning turn finish. The agent's own file writes are put to the human too. Runs on SQLite
//! and PostgreSQL, with our scripted test agent as a real ACP process.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use spectask_engine::EngineSettings;
use spectask_runtimes::agent::acp::PermissionPolicy;
use spectask_testkit::{TestApp, TestOptions, backend_tests, fast_engine, test_agent_profile};

use crate::support::{LateDesk, acp_runtime};

const AGENT: &str = "asking-planner";

fn requirements() -> String {
    "# Requirements: Greeting\n\n1. As a user I want a greeting.\n\n1.1 WHEN asked THE SYSTEM SHALL greet.\n\n\
     ## Open Questions\n\n- None.\n"
        .to_owned()
}

fn write(dir: &Path, file: &str, content: &str) -> Value {
    json!({"kind": "write_file", "path": dir.join(file).to_str().unwrap(), "content": content})
}

backend_tests! {
    async fn a_planning_agents_permission_requests_are_answered_through_the_task(db) {
        let workspace = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let script_file = state.path().join("script.json");
        std::fs::write(&script_file, json!({"steps": []}).to_string()).unwrap();
        let Some(profile) = test_agent_profile(AGENT, &json!({}), state.path()) else { return };
        let profile = profile
            .with_env("SPECTASK_TEST_AGENT_SCRIPT_FILE", script_file.to_str().unwrap())
            .with_policy(PermissionPolicy::Ask);
        let desk = Arc::new(LateDesk::default());
        let runtime = acp_runtime(profile, state.path()).with_broker(desk.clone());
        // A turn waiting for a human is silent: the silence watchdog must not end it first.
        let engine = EngineSettings { turn_timeout: Duration::from_secs(120), ..fast_engine() };
        let options = TestOptions { engine, runtime: Some(Arc::new(runtime)), ..TestOptions::default() };
        let app = TestApp::spawn_with_options(db, options).await;
        desk.bind(&app, Duration::from_secs(60));

        let created = app.post("/api/v1/spec-tasks/from-prompt", &json!({
            "prompt": "Add a greeting module", "spec_agent": AGENT, "auto_start": false,
            "project_path": workspace.path().to_str().unwrap()})).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let id = created.body["id"].as_str().unwrap().to_owned();
        let dir = workspace.path().canonicalize().unwrap().join(".spectask/specs").join(&id);
        // The script file wins over the profile's inline script: ask, then write the documents.
        std::fs::write(&script_file, json!({"steps": [
            {"kind": "request_permission", "title": "Run the test suite"},
            write(&dir, "requirements.md", &requirements()),
            write(&dir, "design.md", "# Design: Greeting\n\nA module.\n"),
            write(&dir, "tasks.md", "# Implementation Plan: Greeting\n\n- [ ] 1. Write it\n  - _Requirements: 1.1_\n"),
            {"kind": "chunks", "count": 1},
        ]}).to_string()).unwrap();
        let started = app.post(&format!("/api/v1/spec-tasks/{id}/start-planning"), &json!({})).await;
        assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);

        let sessions = app.get(&format!("/api/v1/spec-tasks/{id}/sessions")).await.body;
        let planning = sessions["sessions"].as_array().unwrap().iter().find(|s| s["role"] == "planning").unwrap()["id"].clone();
        // Answer every pending request through the task's endpoint until the plan is in review.
        let answered: std::cell::RefCell<Vec<Value>> = std::cell::RefCell::default();
        app.wait_until("planning to finish, answering every request", |app| {
            let (id, planning, answered) = (id.clone(), planning.clone(), &answered);
            async move {
                let task = app.get(&format!("/api/v1/spec-tasks/{id}")).await.body;
                if task["status"] == "spec_review" {
                    return Ok(());
                }
                assert_ne!(task["status"], "spec_failed", "{task}");
                let listed = app.get(&format!("/api/v1/spec-tasks/{id}/permission-requests")).await;
                assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
                for request in listed.body["permission_requests"].as_array().unwrap() {
                    if request["status"] != "pending" {
                        continue;
                    }
                    assert_eq!(request["session_id"], planning, "recorded against the planning session");
                    assert!(request["work_session_id"].is_null());
                    let rid = request["id"].as_str().unwrap();
                    let bogus = app.post(&format!("/api/v1/spec-tasks/{id}/permission-requests/{rid}"), &json!({"option_id": "maybe"})).await;
                    assert_eq!(bogus.status, StatusCode::UNPROCESSABLE_ENTITY);
                    let answer = app.post(&format!("/api/v1/spec-tasks/{id}/permission-requests/{rid}"), &json!({"option_id": "allow"})).await;
                    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
                    assert_eq!(answer.body["status"], "answered");
                    answered.borrow_mut().push(request.clone());
                }
                Err(format!("{task}; answered {:?}", answered.borrow()))
            }
        })
        .await;
        let answered = answered.into_inner();

        // The tool call's request, then one request per file the agent wrote itself.
        let titles: Vec<&str> = answered.iter().map(|r| r["title"].as_str().unwrap()).collect();
        assert_eq!(titles.len(), 4, "{titles:?}");
        assert_eq!(titles[0], "Run the test suite");
        assert_eq!(answered[0]["tool_kind"], "other");
        for (request, file) in answered[1..].iter().zip(["requirements.md", "design.md", "tasks.md"]) {
            let path = dir.join(file).display().to_string();
            assert_eq!(request["tool_kind"], "edit");
            assert_eq!(request["title"], format!("Write {path}"));
            assert_eq!(request["locations"], json!([path]));
        }
        let task = app.get(&format!("/api/v1/spec-tasks/{id}")).await.body;
        assert_eq!(task["requirements_spec"].as_str().unwrap(), requirements().trim());

        // The same request is not answered twice, and another task's endpoint does not know it.
        let rid = answered[0]["id"].as_str().unwrap();
        let again = app.post(&format!("/api/v1/spec-tasks/{id}/permission-requests/{rid}"), &json!({"option_id": "allow"})).await;
        assert_eq!(again.status, StatusCode::CONFLICT);
        let other = app.create_task("another").await;
        let foreign = app.post(&format!("/api/v1/spec-tasks/{}/permission-requests/{rid}", other["id"].as_str().unwrap()), &json!({"option_id": "allow"})).await;
        assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    }
}
