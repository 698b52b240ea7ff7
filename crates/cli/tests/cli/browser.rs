//! The web UI in real headless Chromium, against the real `spectask serve` with our scripted ACP
//! test agent and a loopback planner: `tests/browser/flow.mjs` (playwright-core) drives the whole
//! flow as a person would, and this test checks what the server holds afterwards. Screenshots and
//! accessibility reports land in `target/browser-screenshots/flow/`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use spectask_testkit::{
    BrowserTools, FakeOpenAi, FakeReply, TestRepo, require_browser, require_test_agent,
};

use crate::support;

/// The marker of the follow-up message the browser sends; the agent answers it with a line the
/// browser then finds in the thread.
const FOLLOW_UP: &str = "FOLLOWUP-7";

/// A planner reply that satisfies the output contract: three independent parts and a fourth task
/// that depends on them. Revision 2 adds a requirement.
fn spec_reply(revision: u32) -> String {
    let extra = if revision > 1 {
        "\n## Requirement 2\n\n**User Story:** As a reviewer, I want the parts signed.\n\n\
         ### Acceptance Criteria\n\n1. WHEN a part is written THE SYSTEM SHALL sign it.\n"
    } else {
        ""
    };
    format!(
        "# Requirements: Greeting parts\n\n## Requirement 1\n\n**User Story:** As a user, I want \
         a greeting in three parts.\n\n### Acceptance Criteria\n\n\
         1. WHEN part one is written THE SYSTEM SHALL say hello.\n\
         2. WHEN part two is written THE SYSTEM SHALL say dear.\n\
         3. WHEN part three is written THE SYSTEM SHALL say world.\n{extra}\n\
         # Design: Greeting parts\n\n## Overview\n\nEach part is one file.\n\n\
         | Part | File |\n|------|------|\n| one | part-one.txt |\n| two | part-two.txt |\n\
         | three | part-three.txt |\n\n```rust\nfn main() {{ println!(\"hello\"); }}\n```\n\n\
         # Implementation Plan: Greeting parts\n\n\
         - [ ] 1. Write part one\n  - _Requirements: 1.1_\n  - _Verify: test -f part-one.txt_\n\
         - [ ] 2. Write part two\n  - _Requirements: 1.2_\n\
         - [ ] 3. Write part three\n  - _Requirements: 1.3_\n\
         - [ ] 4. Wire the parts together\n  - Depends on: 1, 2, 3\n  - _Requirements: 1.1, 1.2, 1.3_\n"
    )
}

/// The reply streamed in small pieces, so the browser sees planning arrive.
fn streamed(text: &str) -> FakeReply {
    let chunks = text
        .split_inclusive('\n')
        .map(str::to_owned)
        .collect::<Vec<_>>();
    FakeReply::Stream {
        chunks,
        delay: Duration::from_millis(60),
    }
}

/// The test agent's script: each part's session writes its file, which under the `ask` policy
/// waits for a person's answer (so all three are running at once until the browser answers), the
/// fourth writes its own, and the follow-up message is acknowledged.
fn agent_script() -> Value {
    // A session's brief names its own task as `Task <key>: <title>` (the plan, also in the
    // brief, lists every title).
    let part = |key: u32, name: &str| {
        json!({"prompt_contains": format!("Task {key}: Write part {name}"), "steps": [
            {"kind": "plan", "entries": [
                {"content": format!("Write part-{name}.txt"), "status": "in_progress"},
                {"content": "Tell the reviewer", "status": "pending"}]},
            {"kind": "thought", "text": format!("Part {name} goes in its own file.")},
            {"kind": "chunks", "count": 2, "delay_ms": 100},
            {"kind": "usage", "used": 1200, "size": 200000},
            {"kind": "write_file", "path": format!("part-{name}.txt"), "content": format!("{name}\n")},
            {"kind": "message", "text": format!("Wrote part {name}.\n")},
        ]})
    };
    json!({
        "steps": [
            {"kind": "write_file", "path": "wire.txt", "content": "one two three\n"},
            {"kind": "message", "text": "Wired the parts together.\n"},
        ],
        "rules": [
            {"prompt_contains": FOLLOW_UP, "steps": [
                {"kind": "message", "text": format!("Follow-up {FOLLOW_UP} acknowledged.\n")}]},
            part(1, "one"), part(2, "two"), part(3, "three"),
        ],
    })
}

/// Runs `tests/browser/<name>.mjs` against the server at `url` with `env`, its screenshots in
/// `target/browser-screenshots/<name>`, and fails the test (printing its output) if it fails.
async fn run_script(browser: &BrowserTools, name: &str, url: &str, env: &[(&str, &str)]) {
    let output = tokio::process::Command::new(&browser.node)
        .arg(format!("{name}.mjs"))
        .current_dir(&browser.dir)
        .env("SPECTASK_URL", url)
        .env("SPECTASK_CHROMIUM", &browser.chromium)
        .env(
            "SPECTASK_SCREENSHOTS",
            spectask_testkit::screenshots_dir(name),
        )
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(600), output)
        .await
        .unwrap_or_else(|_| panic!("{name}.mjs did not finish in 10 minutes"))
        .unwrap();
    eprintln!(
        "--- {name}.mjs stdout\n{}\n--- {name}.mjs stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{name}.mjs failed: {}",
        output.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_runs_a_task_from_prompt_to_done_in_the_browser() {
    let Some(browser) = require_browser() else {
        return;
    };
    let Some(agent) = require_test_agent() else {
        return;
    };
    let planner = FakeOpenAi::start().await;
    planner.push(streamed(&spec_reply(1)));
    planner.push(streamed(&spec_reply(2)));
    let repo = TestRepo::new();
    let cwd = tempfile::tempdir().unwrap();
    support::configure_test_agent(cwd.path(), &agent, &agent_script());
    let base_url = planner.base_url();
    let (mut server, url) = support::start(
        cwd.path(),
        &[
            "--llm-base-url",
            &base_url,
            "--llm-model",
            "fake-planner",
            "--max-parallel-threads",
            "4",
        ],
    )
    .await;

    run_script(
        &browser,
        "flow",
        &url,
        &[
            ("SPECTASK_PROJECT", repo.path().to_string_lossy().as_ref()),
            ("SPECTASK_FOLLOW_UP", FOLLOW_UP),
        ],
    )
    .await;

    // What the browser did is what the server holds.
    let client = reqwest::Client::new();
    let tasks = support::get_json(&client, format!("{url}/api/v1/spec-tasks?archived=all")).await;
    let task = &tasks["spec_tasks"][0];
    assert_eq!(task["status"], "done", "{task}");
    assert_eq!(task["spec_approved_revision"], 2, "{task}");
    let id = task["id"].as_str().unwrap();
    let sessions = support::get_json(
        &client,
        format!("{url}/api/v1/spec-tasks/{id}/work-sessions"),
    )
    .await;
    let sessions = sessions["work_sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 4, "{sessions:?}");
    assert!(
        sessions.iter().all(|ws| ws["status"] == "completed"),
        "{sessions:?}"
    );
    let comments =
        support::get_json(&client, format!("{url}/api/v1/spec-tasks/{id}/comments")).await;
    assert!(
        !comments["comments"].as_array().unwrap().is_empty(),
        "{comments}"
    );
    let branch = task["branch_name"].as_str().unwrap();
    eprintln!(
        "task branch {branch}:\n{}\n{}",
        repo.git(&["log", "--stat", "--graph", "--format=%h %s", branch]),
        repo.git(&["ls-tree", "-r", "--name-only", branch])
    );
    for part in ["one", "two", "three"] {
        assert_eq!(
            repo.show(
                task["branch_name"].as_str().unwrap(),
                &format!("part-{part}.txt")
            )
            .as_deref(),
            Some(format!("{part}\n").as_str())
        );
    }
    server.start_kill().unwrap();
    let _ = server.wait().await;
}

/// A server on a non-loopback address requires its token: the browser signs in through the login
/// page (`tests/browser/login.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_with_the_api_token() {
    let Some(browser) = require_browser() else {
        return;
    };
    const TOKEN: &str = "browser-test-token-0123456789abcdef";
    let cwd = tempfile::tempdir().unwrap();
    let (mut server, url) =
        support::start_on(cwd.path(), "0.0.0.0:0", &["--api-token", TOKEN]).await;
    run_script(&browser, "login", &url, &[("SPECTASK_TOKEN", TOKEN)]).await;
    server.start_kill().unwrap();
    let _ = server.wait().await;
}
