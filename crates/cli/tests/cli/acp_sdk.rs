//! `spectask acp` driven by the official ACP TypeScript SDK (`@agentclientprotocol/sdk`, pinned
//! in `tests/acp-sdk/`): `tests/acp-sdk/flow.mjs` is the editor, so the wire format is checked by
//! code we did not write. Same server and agent as `acp.rs` (loopback planner, our scripted test
//! agent under the `ask` policy): the first prompt plans, is approved, implements and reaches
//! review; `session/list`, `session/load` and `approve` finish the task. This test then checks
//! what the server holds.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use spectask_testkit::{require_acp_sdk, require_test_agent};

use crate::acp::{Fixture, spec_reply, streamed};
use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_typescript_sdk_drives_a_task_from_prompt_to_done() {
    let Some(sdk) = require_acp_sdk() else {
        return;
    };
    let Some(agent) = require_test_agent() else {
        return;
    };
    let fixture = Fixture::start(&agent).await;
    fixture.planner.push(streamed(&spec_reply("Greeting"), 20));

    // The script spawns `spectask acp`, which inherits this environment: keep it as clean as
    // `support::command` keeps the binary's.
    let mut node = tokio::process::Command::new(&sdk.node);
    support::without_spectask_env(&mut node);
    let output = node
        .arg(&sdk.script)
        .current_dir(&sdk.dir)
        .env("SPECTASK_BIN", support::BIN)
        .env("SPECTASK_SERVER", &fixture.url)
        .env("ACP_PROJECT", fixture.repo.path())
        .env("ACP_CWD", fixture.cwd.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), output)
        .await
        .expect("flow.mjs did not finish in 5 minutes")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "flow.mjs failed ({}):\n--- stderr\n{stderr}\n--- stdout\n{stdout}",
        output.status
    );
    let summary: Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("flow.mjs printed no JSON summary:\n{stdout}\n{stderr}"));
    eprintln!("flow.mjs: {summary}");

    // What the editor did is what the server holds.
    let id = summary["taskId"].as_str().expect("the summary's taskId");
    let task = fixture.get(&format!("/spec-tasks/{id}")).await;
    assert_eq!(task["status"], "done", "{task}");
    let requests = fixture
        .get(&format!("/spec-tasks/{id}/permission-requests"))
        .await;
    let requests = requests["permission_requests"]
        .as_array()
        .unwrap_or_else(|| panic!("{requests}"));
    assert!(!requests.is_empty(), "no permission request was recorded");
    assert!(
        requests.iter().all(|r| r["choice"] == "allow"),
        "{requests:?}"
    );
    let sessions = fixture
        .get(&format!("/spec-tasks/{id}/work-sessions"))
        .await;
    let mut ws_ids: Vec<&str> = sessions["work_sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("{sessions}"))
        .iter()
        .filter_map(|ws| ws["id"].as_str())
        .collect();
    let mut listed: Vec<&str> = summary["workSessions"]
        .as_array()
        .expect("the summary's workSessions")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ws_ids.sort_unstable();
    listed.sort_unstable();
    assert_eq!(listed, ws_ids, "session/list and the API disagree");
    fixture.stop().await;
}
