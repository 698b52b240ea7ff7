//! Durability across a SIGKILL of the server: data, a planning turn, and an agent's side effects.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use spectask_testkit::{FakeOpenAi, FakeReply, TestDatabase, wait_until_within};

use crate::support::{get_json, on_both_databases, post_json, start, wait_for};

/// Writes a mix of state, SIGKILLs the server, restarts it and compares everything.
async fn survives_sigkill(db: &TestDatabase, cwd: &Path, extra: &[&str]) {
    let client = reqwest::Client::new();
    let (mut child, base) = start(cwd, extra).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let task: Value = client
            .post(format!("{base}/api/v1/spec-tasks/from-prompt"))
            .json(&json!({"prompt": format!("task {i}"), "priority": if i % 2 == 0 { "high" } else { "low" }}))
            .send().await.unwrap().json().await.unwrap();
        ids.push(task["id"].as_str().unwrap().to_owned());
    }
    client
        .patch(format!("{base}/api/v1/spec-tasks/{}", ids[3]))
        .json(&json!({"name": "renamed"}))
        .send()
        .await
        .unwrap();
    client
        .post(format!("{base}/api/v1/spec-tasks/{}/archive", ids[4]))
        .send()
        .await
        .unwrap();
    client
        .delete(format!("{base}/api/v1/spec-tasks/{}", ids[5]))
        .send()
        .await
        .unwrap();
    let before: Value = client
        .get(format!("{base}/api/v1/spec-tasks?archived=all&limit=200"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events_before = db.store().await.last_event_id().await.unwrap();

    child.start_kill().unwrap(); // SIGKILL: no shutdown code runs.
    let status = child.wait().await.unwrap();
    assert!(!status.success());

    let (mut child, base) = start(cwd, extra).await;
    let after: Value = client
        .get(format!("{base}/api/v1/spec-tasks?archived=all&limit=200"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after, before);
    assert_eq!(after["total"], 19);
    let renamed: Value = client
        .get(format!("{base}/api/v1/spec-tasks/{}", ids[3]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["name"], "renamed");
    let deleted = client
        .get(format!("{base}/api/v1/spec-tasks/{}", ids[5]))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), reqwest::StatusCode::NOT_FOUND);
    assert_eq!(
        db.store().await.last_event_id().await.unwrap(),
        events_before
    );
    // And it keeps working after the restart.
    let created = client
        .post(format!("{base}/api/v1/spec-tasks/from-prompt"))
        .json(&json!({"prompt": "after restart"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn sqlite_data_survives_sigkill_and_restart() {
    let db = TestDatabase::sqlite().await;
    let cwd = tempfile::tempdir().unwrap();
    let dir = db.sqlite_dir().unwrap();
    survives_sigkill(&db, cwd.path(), &["--data-dir", dir.to_str().unwrap()]).await;
}

#[tokio::test]
async fn postgres_data_survives_sigkill_and_restart() {
    let Some(db) = TestDatabase::postgres().await else {
        spectask_testkit::skip_postgres("cli::sigkill::postgres_data_survives_sigkill_and_restart");
        return;
    };
    let cwd = tempfile::tempdir().unwrap();
    let url = db.url().to_owned();
    survives_sigkill(&db, cwd.path(), &["--database-url", &url]).await;
}

fn planning_reply(title: &str) -> String {
    format!(
        "# Requirements: {title}\n\n1. WHEN asked THE SYSTEM SHALL answer.\n\n## Open Questions\n\n- None.\n\n\
         # Design: {title}\n\nSimple.\n\n# Implementation Plan: {title}\n\n- [ ] 1. Build it\n  - _Requirements: 1_\n"
    )
}

/// The server's arguments for the fake model at `base_url` and a 2 s turn lease, then `extra`.
fn fake_planner_args<'a>(base_url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--llm-base-url",
        base_url,
        "--llm-model",
        "fake",
        "--llm-api-key",
        "k",
        "--turn-lease-secs",
        "2",
    ];
    args.extend_from_slice(extra);
    args
}

/// Kills the server while the planner is streaming, restarts it, and expects the same turn to be
/// re-run in the same session: no second session, no lost task.
async fn planning_survives_sigkill(extra: &[&str]) {
    let fake = FakeOpenAi::start().await;
    fake.push(FakeReply::StreamThenHang {
        chunks: vec!["# Requirements: Partial\n\n".into(), "half of it".into()],
    });
    let base_url = fake.base_url();
    let args = fake_planner_args(&base_url, extra);
    let cwd = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();

    let (mut child, base) = start(cwd.path(), &args).await;
    let task: Value = post_json(
        &client,
        format!("{base}/api/v1/spec-tasks/from-prompt"),
        &json!({"prompt": "Survive a crash while planning"}),
    )
    .await;
    let id = task["id"].as_str().unwrap().to_owned();
    let session = task["spec_session_id"].as_str().unwrap().to_owned();
    wait_until_within("the planner's output", Duration::from_secs(15), || async {
        let body = get_json(&client, format!("{base}/api/v1/sessions/{session}")).await;
        let written = body["interactions"][0]["response_message"]
            .as_str()
            .is_some_and(|t| t.contains("half of it"));
        if written { Ok(()) } else { Err(body) }
    })
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    fake.push_text_reply(&planning_reply("Recovered"));
    let (mut child, base) = start(cwd.path(), &args).await;
    let task = wait_until_within("planning to resume", Duration::from_secs(30), || async {
        let task = get_json(&client, format!("{base}/api/v1/spec-tasks/{id}")).await;
        if task["status"] == "spec_review" {
            Ok(task)
        } else {
            Err(task)
        }
    })
    .await;
    assert_eq!(task["spec_session_id"], session.as_str());
    assert_eq!(task["name"], "Recovered");
    let sessions = get_json(&client, format!("{base}/api/v1/spec-tasks/{id}/sessions")).await;
    assert_eq!(
        sessions["sessions"].as_array().unwrap().len(),
        1,
        "exactly one planning session"
    );
    let session = get_json(&client, format!("{base}/api/v1/sessions/{session}")).await;
    let interactions = session["interactions"].as_array().unwrap();
    assert_eq!(interactions.len(), 1, "the same interaction was re-run");
    assert_eq!(
        interactions[0]["response_message"],
        planning_reply("Recovered"),
        "the partial output was discarded"
    );
    let turns = get_json(&client, format!("{base}/api/v1/spec-tasks/{id}/turns")).await;
    let turns = turns["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 1);
    assert_eq!(
        (turns[0]["status"].clone(), turns[0]["attempts"].clone()),
        (json!("completed"), json!(2))
    );
    assert_eq!(fake.requests().len(), 2);
    child.kill().await.unwrap();
}

on_both_databases! {
    planning_survives_sigkill:
        sqlite_planning_resumes_after_sigkill,
        postgres_planning_resumes_after_sigkill
}

/// An implementation turn interrupted by a SIGKILL of the server is re-run, and our test agent
/// repeats what it did through spectask's tools (a spawn, a progress report): the repeats change
/// nothing, one spawned session exists, and the re-run prompt names what the first attempt did.
async fn agent_side_effects_happen_once_across_a_sigkill(extra: &[&str]) {
    let Some(agent) = spectask_testkit::require_test_agent() else {
        return;
    };
    let cwd = tempfile::tempdir().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let data_dir = cwd.path().join(".spectask");
    std::fs::create_dir_all(&data_dir).unwrap();
    // The agent's state and request log are its state directory: writable in its sandbox.
    let agent_state = cwd.path().join("agent-state");
    std::fs::create_dir_all(&agent_state).unwrap();
    let agent_log = agent_state.join("agent.jsonl");
    let tool = |name: &str, arguments: Value| json!({"kind": "call_mcp_tool", "server": "spectask", "tool": name, "arguments": arguments});
    let spawn = tool(
        "spawn_work_session",
        json!({"name": "Security audit", "description": "Audit what was written."}),
    );
    let report = tool(
        "report_progress",
        json!({"task_key": "1", "status": "in_progress", "note": "started"}),
    );
    let script = json!({
        "steps": [{"kind": "chunks", "count": 1}],
        "rules": [
            // The first attempt (counted in the agent's state directory, across restarts) acts,
            // then works on until the server is killed; the re-run repeats it all and ends.
            {"prompt_contains": "Task 1:", "times": 1, "steps": [spawn, report, {"kind": "hang"}]},
            {"prompt_contains": "Task 1:", "steps": [spawn, report, {"kind": "chunks", "count": 1}]},
        ],
    });
    let config = format!(
        "default_agent = \"test\"\n\n[agents.test]\ncommand = '{agent}'\n\
         env = {{ SPECTASK_TEST_AGENT_SCRIPT = '{script}', SPECTASK_TEST_AGENT_STATE = '{state}', \
         SPECTASK_TEST_AGENT_LOG = '{log}' }}\nstate_dirs = ['{state}']\n",
        agent = agent.display(),
        state = agent_state.display(),
        log = agent_log.display(),
    );
    std::fs::write(data_dir.join("spectask.toml"), config).unwrap();
    let fake = FakeOpenAi::start().await;
    fake.push_text_reply(
        "# Requirements: Once\n\n1.1 WHEN re-run THE SYSTEM SHALL act once.\n\n## Open Questions\n\n- None.\n\n\
         # Design: Once\n\nIdempotent tools.\n\n# Implementation Plan: Once\n\n- [ ] 1. Write the first file\n",
    );
    let base_url = fake.base_url();
    let args = fake_planner_args(&base_url, extra);
    let client = reqwest::Client::new();

    let (mut child, base) = start(cwd.path(), &args).await;
    let created: Value = post_json(
        &client,
        format!("{base}/api/v1/spec-tasks/from-prompt"),
        &json!({"prompt": "Act once", "project_path": workspace.path().to_str().unwrap()}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    wait_for("the specs", || {
        let (client, url) = (client.clone(), format!("{base}/api/v1/spec-tasks/{id}"));
        async move { (get_json(&client, url).await["status"] == "spec_review").then_some(()) }
    })
    .await;
    let approved = client
        .post(format!("{base}/api/v1/spec-tasks/{id}/approve-specs"))
        .json(&json!({"approved": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), reqwest::StatusCode::OK);
    // The first attempt spawned and reported, and is still at work.
    wait_for("the first attempt's spawn and report", || {
        let client = client.clone();
        let (sessions, events) = (
            format!("{base}/api/v1/spec-tasks/{id}/work-sessions"),
            format!("{base}/api/v1/spec-tasks/{id}/events?limit=1000"),
        );
        async move {
            let sessions = get_json(&client, sessions).await;
            let spawned = sessions["work_sessions"]
                .as_array()?
                .iter()
                .any(|s| s["name"] == "Security audit");
            let reported = get_json(&client, events).await["events"]
                .as_array()?
                .iter()
                .any(|e| e["kind"] == "agent.progress_reported");
            (spawned && reported).then_some(())
        }
    })
    .await;
    child.start_kill().unwrap(); // SIGKILL: no shutdown code runs.
    child.wait().await.unwrap();

    let (mut child, base) = start(cwd.path(), &args).await;
    let sessions = wait_for("the re-run turn to complete its session", || {
        let (client, url) = (
            client.clone(),
            format!("{base}/api/v1/spec-tasks/{id}/work-sessions"),
        );
        async move {
            let sessions = get_json(&client, url).await["work_sessions"]
                .as_array()?
                .clone();
            sessions
                .iter()
                .any(|s| s["parent_work_session_id"].is_null() && s["status"] == "completed")
                .then_some(sessions)
        }
    })
    .await;
    let audits = sessions
        .iter()
        .filter(|s| s["name"] == "Security audit")
        .count();
    assert_eq!(
        audits, 1,
        "the repeated spawn found the first one: {sessions:?}"
    );
    let events = get_json(
        &client,
        format!("{base}/api/v1/spec-tasks/{id}/events?limit=1000"),
    )
    .await;
    let events = events["events"].as_array().unwrap();
    let count = |kind: &str| events.iter().filter(|e| e["kind"] == kind).count();
    assert_eq!(
        count("agent.progress_reported"),
        1,
        "the repeated report wrote nothing"
    );

    // The agent was told what its first attempt had done, read from the store.
    let log = std::fs::read_to_string(&agent_log).unwrap();
    let prompts: Vec<String> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record["method"] == "session/prompt")
        .filter_map(|record| record["prompt"].as_str().map(str::to_owned))
        .filter(|prompt| prompt.contains("Task 1:"))
        .collect();
    assert_eq!(
        prompts.len(),
        2,
        "one first attempt, one re-run: {prompts:?}"
    );
    let rerun = &prompts[1];
    assert!(rerun.contains("was interrupted"), "{rerun}");
    assert!(
        rerun.contains("- spawned the work session \"Security audit\""),
        "{rerun}"
    );
    assert!(
        rerun.contains("- reported task 1 as in_progress"),
        "{rerun}"
    );
    child.kill().await.unwrap();
}

on_both_databases! {
    agent_side_effects_happen_once_across_a_sigkill:
        sqlite_agent_side_effects_happen_once_across_a_sigkill,
        postgres_agent_side_effects_happen_once_across_a_sigkill
}
