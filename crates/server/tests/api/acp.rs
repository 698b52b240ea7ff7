//! A SpecTask implemented by a real ACP agent process: the ACP runtime hosts the task's instance
//! (one agent process) and its threads (one ACP session per work session); the agent, our
//! scripted test agent, asks permission, writes files into the workspace through the client's
//! file interface, streams text and ends its turns. Runs on SQLite and PostgreSQL.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use spectask_engine::EngineSettings;
use spectask_runtimes::agent::acp::PermissionPolicy;
use spectask_testkit::{backend_tests, fast_engine, test_agent_profile};

use crate::support::{
    LateDesk, acp_runtime, app_with_runtime, approved_task, is_named, log_in, requests,
    wait_for_body, wait_for_pending_permission, wait_for_session_named, work_sessions,
};

fn reply() -> String {
    let mut plan = String::new();
    for (key, title) in [
        ("1", "Write the first file"),
        ("2", "Write the second file"),
        ("3", "Write the third file"),
    ] {
        plan.push_str(&format!("- [ ] {key}. {title}\n  - _Requirements: 1.1_\n"));
    }
    format!(
        "# Requirements: Files\n\n1.1 WHEN asked THE SYSTEM SHALL write files.\n\n## Open Questions\n\n- None.\n\n\
         # Design: Files\n\nThree files.\n\n# Implementation Plan: Files\n\n{plan}"
    )
}

fn script() -> Value {
    let rule = |needle: &str, file: &str| {
        json!({"prompt_contains": needle, "steps": [
            {"kind": "request_permission", "title": format!("Create {file}")},
            {"kind": "write_file", "path": format!("src/{file}"), "content": format!("contents of {file}\n")},
            {"kind": "chunks", "count": 2},
        ]})
    };
    json!({
        "steps": [{"kind": "chunks", "count": 1}],
        "rules": [rule("Task 1:", "one.txt"), rule("Task 2:", "two.txt"), rule("Task 3:", "three.txt")],
    })
}

backend_tests! {
    async fn three_work_sessions_run_as_three_acp_sessions_of_one_agent(db) {
        let workspace = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let log = log_in(state.path());
        let Some(profile) = test_agent_profile("test-agent", &script(), state.path()) else { return };
        let profile = profile.with_env("SPECTASK_TEST_AGENT_LOG", log.to_str().unwrap());
        let runtime = Arc::new(acp_runtime(profile, state.path()));
        let (app, _planner) = app_with_runtime(db, runtime, fast_engine(), &reply()).await;
        let unknown = app.post("/api/v1/spec-tasks/from-prompt", &json!({"prompt": "x", "implementation_agent": "nobody"})).await;
        assert_eq!((unknown.status, unknown.error_code()), (reqwest::StatusCode::UNPROCESSABLE_ENTITY, "unknown_agent"));
        let id = approved_task(&app, "write three files", workspace.path()).await;
        app.wait_for_task_status(&id, "implementation_review").await;

        for file in ["one.txt", "two.txt", "three.txt"] {
            let written = std::fs::read_to_string(workspace.path().join("src").join(file)).unwrap();
            assert_eq!(written, format!("contents of {file}\n"));
        }
        // The agent still runs, inside the OS sandbox (best effort by default).
        let instance = app.get(&format!("/api/v1/spec-tasks/{id}/zed-instance")).await.body;
        assert_eq!((instance["sandbox"]["active"].clone(), instance["sandbox"]["mode"].clone()), (json!(true), json!("best_effort")), "{instance}");
        let requests = requests(&log);
        let pids: BTreeSet<_> = requests.iter().map(|r| r["pid"].as_u64().unwrap()).collect();
        assert_eq!(pids.len(), 1, "one agent process hosts the instance");
        let new_sessions: Vec<_> = requests.iter().filter(|r| r["method"] == "session/new").collect();
        assert_eq!(new_sessions.len(), 3, "one ACP session per work session");
        let acp_sessions: BTreeSet<String> = requests
            .iter()
            .filter(|r| r["method"] == "session/prompt")
            .map(|r| r["session_id"].as_str().unwrap().to_owned())
            .collect();
        let threads = app.get(&format!("/api/v1/spec-tasks/{id}/zed-threads")).await.body;
        let thread_ids: BTreeSet<String> = threads["zed_threads"].as_array().unwrap().iter().map(|t| t["zed_thread_id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(thread_ids, acp_sessions, "each thread is the ACP session that ran its turns");
        for ws in &work_sessions(&app, &id).await {
            assert_eq!(ws["status"], "completed");
            let detail = app.get(&format!("/api/v1/work-sessions/{}", ws["id"].as_str().unwrap())).await.body;
            let interaction = &detail["helix_session"]["interactions"][0];
            // The reply is the agent's text alone; the tool calls are entries.
            assert_eq!(interaction["response_message"], "chunk 1/2\nchunk 2/2\n");
            let entries = app.get(&format!("/api/v1/sessions/{}/interactions/{}/entries", detail["helix_session"]["id"].as_str().unwrap(), interaction["id"].as_str().unwrap())).await.body;
            let write = entries["entries"].as_array().unwrap().iter().rev().find(|e| e["kind"] == "tool_call" && e["payload"]["kind"] == "edit").unwrap();
            assert_eq!(write["payload"]["status"], "completed", "{entries}");
        }
    }

    async fn ask_policy_waits_for_a_human_answer_or_times_out(db) {
        let workspace = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let script = json!({
            "steps": [{"kind": "chunks", "count": 1}],
            "rules": [
                {"prompt_contains": "Task 1:", "steps": [
                    {"kind": "request_permission", "title": "Create approved.txt"},
                    {"kind": "write_file", "path": "approved.txt", "content": "yes\n"},
                ]},
                {"prompt_contains": "Task 2:", "steps": [
                    {"kind": "request_permission", "title": "Create ignored.txt"},
                    {"kind": "write_file", "path": "ignored.txt", "content": "no\n"},
                ]},
            ],
        });
        let Some(profile) = test_agent_profile("asking", &script, state.path()) else { return };
        let profile = profile.with_policy(PermissionPolicy::Ask);
        let desk = Arc::new(LateDesk::default());
        let runtime = Arc::new(acp_runtime(profile, state.path()).with_broker(desk.clone()));
        let plan = "# Requirements: Ask\n\n1.1 WHEN asked THE SYSTEM SHALL wait.\n\n## Open Questions\n\n- None.\n\n\
                    # Design: Ask\n\nAsk first.\n\n# Implementation Plan: Ask\n\n- [ ] 1. Approved write\n- [ ] 2. Ignored write\n";
        // A turn waiting for a human is silent: the silence watchdog must not end it first.
        let engine = EngineSettings { turn_timeout: Duration::from_secs(120), ..fast_engine() };
        let (app, _planner) = app_with_runtime(db, runtime, engine, plan).await;
        // Long enough that the first request is still pending when a loaded machine gets round to
        // answering it; the second one is left to time out.
        desk.bind(&app, Duration::from_secs(15));
        let id = approved_task(&app, "ask before writing", workspace.path()).await;

        // Find the first session's pending request and answer it; leave the second one alone.
        let ws = wait_for_session_named(&app, &id, "1.", None).await["id"].as_str().unwrap().to_owned();
        let request = wait_for_pending_permission(&app, &ws).await;
        assert_eq!(request["title"], "Create approved.txt");
        let rid = request["id"].as_str().unwrap();
        let offered: Vec<_> = request["options"].as_array().unwrap().iter().map(|o| o["option_id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(offered, ["allow", "reject"]);
        let bogus = app.post(&format!("/api/v1/work-sessions/{ws}/permission-requests/{rid}"), &json!({"option_id": "maybe"})).await;
        assert_eq!((bogus.status, bogus.error_code()), (reqwest::StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
        let answered = app.post(&format!("/api/v1/work-sessions/{ws}/permission-requests/{rid}"), &json!({"option_id": "allow"})).await;
        assert_eq!((answered.status, answered.body["status"].clone()), (reqwest::StatusCode::OK, json!("answered")));
        let again = app.post(&format!("/api/v1/work-sessions/{ws}/permission-requests/{rid}"), &json!({"option_id": "allow"})).await;
        assert_eq!((again.status, again.error_code()), (reqwest::StatusCode::CONFLICT, "conflict"));
        // The agent's own write of the file is put to the human as well: the request above named
        // no path, so it granted no write.
        let write = wait_for_pending_permission(&app, &ws).await;
        assert_eq!(write["tool_kind"], "edit");
        assert!(write["title"].as_str().unwrap().ends_with("approved.txt"), "{write}");
        let wid = write["id"].as_str().unwrap();
        let answered = app.post(&format!("/api/v1/work-sessions/{ws}/permission-requests/{wid}"), &json!({"option_id": "allow"})).await;
        assert_eq!(answered.status, reqwest::StatusCode::OK);

        app.wait_for_task_status(&id, "implementation_review").await;
        assert_eq!(std::fs::read_to_string(workspace.path().join("approved.txt")).unwrap(), "yes\n");
        assert!(!workspace.path().join("ignored.txt").exists(), "an unanswered request grants nothing");
        let sessions = work_sessions(&app, &id).await;
        let second = sessions.iter().find(|s| is_named(s, "2.")).unwrap()["id"].as_str().unwrap().to_owned();
        // The second session's request is its own: it expires unanswered.
        let listed = wait_for_body(&app, &format!("/api/v1/work-sessions/{second}/permission-requests"), "to list the request timed out", |body| {
            body["permission_requests"][0]["status"] == "timed_out"
        }).await;
        assert_eq!(listed["permission_requests"][0]["title"], "Create ignored.txt", "{listed}");
        let detail = app.get(&format!("/api/v1/work-sessions/{second}")).await.body;
        assert!(detail["helix_session"]["interactions"][0]["response_message"].as_str().unwrap().contains("permission refused: Create ignored.txt"));
    }

    async fn writes_waiting_for_a_human_in_two_threads_are_asked_at_once(db) {
        // One agent process hosts both threads: a write that waits for its answer must not hold
        // up the other thread's traffic (its own write request included).
        let workspace = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let write = |file: &str| json!([{"kind": "write_file", "path": file, "content": format!("{file}\n")}]);
        let script = json!({
            "steps": [{"kind": "chunks", "count": 1}],
            "rules": [
                {"prompt_contains": "Task 1:", "steps": write("first.txt")},
                {"prompt_contains": "Task 2:", "steps": write("second.txt")},
            ],
        });
        let Some(profile) = test_agent_profile("asking-writes", &script, state.path()) else { return };
        let profile = profile.with_policy(PermissionPolicy::Ask);
        let desk = Arc::new(LateDesk::default());
        let runtime = Arc::new(acp_runtime(profile, state.path()).with_broker(desk.clone()));
        let plan = "# Requirements: Ask\n\n1.1 WHEN asked THE SYSTEM SHALL wait.\n\n## Open Questions\n\n- None.\n\n\
                    # Design: Ask\n\nAsk first.\n\n# Implementation Plan: Ask\n\n- [ ] 1. First write\n- [ ] 2. Second write\n";
        let engine = EngineSettings { turn_timeout: Duration::from_secs(120), ..fast_engine() };
        let (app, _planner) = app_with_runtime(db, runtime, engine, plan).await;
        desk.bind(&app, Duration::from_secs(120));
        let id = approved_task(&app, "two writes at once", workspace.path()).await;

        let pending = wait_for_body(&app, "/api/v1/permission-requests", "both writes pending at once", |body| {
            body["permission_requests"].as_array().is_some_and(|list| list.len() == 2)
        }).await;
        let mut titles: Vec<String> = pending["permission_requests"].as_array().unwrap().iter()
            .map(|r| r["title"].as_str().unwrap().rsplit('/').next().unwrap().to_owned()).collect();
        titles.sort();
        assert_eq!(titles, ["first.txt", "second.txt"]);
        for request in pending["permission_requests"].as_array().unwrap() {
            let answer = app.post(&format!("/api/v1/spec-tasks/{id}/permission-requests/{}", request["id"].as_str().unwrap()), &json!({"option_id": "allow"})).await;
            assert_eq!(answer.status, reqwest::StatusCode::OK, "{}", answer.body);
        }
        app.wait_for_task_status(&id, "implementation_review").await;
        for file in ["first.txt", "second.txt"] {
            assert_eq!(std::fs::read_to_string(workspace.path().join(file)).unwrap(), format!("{file}\n"));
        }
    }

    async fn a_flood_of_ten_thousand_updates_is_stored_whole_and_in_order(db) {
        let workspace = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let script = json!({"steps": [{"kind": "flood", "updates": 10000}]});
        let Some(profile) = test_agent_profile("flood", &script, state.path()) else { return };
        let runtime = Arc::new(acp_runtime(profile, state.path()));
        let plan = "# Requirements: Flood\n\n1.1 WHEN flooded THE SYSTEM SHALL keep up.\n\n## Open Questions\n\n- None.\n\n# Design: Flood\n\nFast.\n\n# Implementation Plan: Flood\n\n- [ ] 1. Flood\n";
        let (app, _planner) = app_with_runtime(db, runtime, fast_engine(), plan).await;
        let id = approved_task(&app, "flood me", workspace.path()).await;
        app.wait_for_task_status(&id, "implementation_review").await;
        let ws = work_sessions(&app, &id).await[0]["id"].as_str().unwrap().to_owned();
        let detail = app.get(&format!("/api/v1/work-sessions/{ws}")).await.body;
        let response = detail["helix_session"]["interactions"][0]["response_message"].as_str().unwrap().to_owned();
        let expected: String = (1..=10_000).map(|i| format!("{i}\n")).collect();
        assert_eq!(response.len(), expected.len(), "updates were lost or duplicated");
        assert!(response == expected, "updates arrived out of order");
        // The entries hold the same text, in order, coalesced into far fewer entries than updates.
        let interaction = &detail["helix_session"]["interactions"][0];
        let entries = app.get(&format!("/api/v1/sessions/{}/interactions/{}/entries?limit=5000", detail["helix_session"]["id"].as_str().unwrap(), interaction["id"].as_str().unwrap())).await.body;
        let entries = entries["entries"].as_array().unwrap();
        assert_eq!(interaction["entry_count"].as_u64().unwrap(), entries.len() as u64);
        assert!(!entries.is_empty() && entries.len() < 1000, "{} entries for 10,000 chunks", entries.len());
        assert!(entries.iter().enumerate().all(|(i, e)| e["seq"] == i && e["kind"] == "message"));
        let texts: String = entries.iter().map(|e| e["payload"]["text"].as_str().unwrap()).collect();
        assert!(texts == expected, "the message entries differ from the updates");
    }
}
