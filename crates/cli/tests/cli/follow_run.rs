//! `spectask task follow` and `spectask run` in a pseudo-terminal (expectrl), against the real
//! `spectask serve` with a loopback planner that streams slowly and our scripted ACP test agent
//! under the `ask` permission policy: the planner's output and the progress lines appear and
//! update, a permission prompt is answered from the keyboard, the exit codes match where the task
//! stopped, and `follow` survives the server restarting mid-run.

use std::path::Path;
use std::time::Duration;

use expectrl::Expect;
use expectrl::session::OsSession as Session;
use serde_json::{Value, json};
use spectask_testkit::{FakeOpenAi, FakeReply, TestRepo, require_test_agent};

use crate::support;

/// A planner reply that satisfies the output contract: two tasks, the second after the first.
fn spec_reply() -> String {
    "# Requirements: Greeting\n\n## Requirement 1\n\n**User Story:** As a user, I want a \
     greeting.\n\n### Acceptance Criteria\n\n\
     1. WHEN the greeting is written THE SYSTEM SHALL say hello.\n\n\
     # Design: Greeting\n\n## Overview\n\nOne file, then its wiring.\n\n\
     # Implementation Plan: Greeting\n\n\
     - [ ] 1. Write part one\n  - _Requirements: 1.1_\n\
     - [ ] 2. Wire the parts together\n  - Depends on: 1\n  - _Requirements: 1.1_\n"
        .to_owned()
}

/// The reply streamed line by line, slowly enough to be seen arriving.
fn streamed(text: &str, delay_ms: u64) -> FakeReply {
    FakeReply::Stream {
        chunks: text.split_inclusive('\n').map(str::to_owned).collect(),
        delay: Duration::from_millis(delay_ms),
    }
}

/// Part one asks a person (its first option refuses, the second allows), then reports; the
/// wiring task just answers.
fn agent_script() -> Value {
    json!({
        "steps": [{"kind": "message", "text": "Wired the parts together.\n"}],
        "rules": [
            {"prompt_contains": "Task 1: Write part one", "steps": [
                {"kind": "plan", "entries": [
                    {"content": "Ask to write", "status": "completed"},
                    {"content": "Write part one", "status": "in_progress"}]},
                {"kind": "request_permission", "title": "Write part-one.txt", "options": [
                    {"id": "reject", "name": "Refuse", "kind": "reject_once"},
                    {"id": "allow", "name": "Allow once", "kind": "allow_once"}]},
                {"kind": "chunks", "count": 2, "delay_ms": 100},
                {"kind": "message", "text": "Wrote part one.\n"},
            ]},
        ],
    })
}

/// A working directory with the data directory's configuration: the test agent under `ask`.
struct Setup {
    cwd: tempfile::TempDir,
    repo: TestRepo,
    planner: FakeOpenAi,
}

async fn setup(agent: &Path) -> Setup {
    let planner = FakeOpenAi::start().await;
    let repo = TestRepo::new();
    let cwd = tempfile::tempdir().unwrap();
    support::configure_test_agent(cwd.path(), agent, &agent_script());
    Setup { cwd, repo, planner }
}

impl Setup {
    fn serve_args(&self) -> Vec<String> {
        vec![
            "--llm-base-url".into(),
            self.planner.base_url(),
            "--llm-model".into(),
            "fake-planner".into(),
        ]
    }

    /// `spectask <args>` in a pseudo-terminal, against `url`.
    fn spawn(&self, url: &str, args: &[&str], env: &[(&str, &str)]) -> Session {
        let mut cmd = std::process::Command::new(support::BIN);
        cmd.current_dir(self.cwd.path())
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("SPECTASK_BIND")
            .env_remove("SPECTASK_DATA_DIR")
            .env_remove("SPECTASK_API_TOKEN")
            .env_remove("RUST_LOG")
            .env("SPECTASK_SERVER", url)
            .env("NO_COLOR", "1")
            .env("TERM", "xterm")
            .envs(env.iter().copied());
        let mut session = Session::spawn(cmd).expect("spawn spectask in a pty");
        session.set_expect_timeout(Some(Duration::from_secs(120)));
        session
    }
}

/// Waits for `text` in the session's output.
fn expect(session: &mut Session, text: &str) {
    if let Err(err) = session.expect(text) {
        panic!("waiting for {text:?}: {err}");
    }
}

/// The exit code of the session's process, after it ends.
fn exit_code(session: &mut Session) -> i32 {
    let _ = session.expect(expectrl::Eof);
    match session.get_process().wait().unwrap() {
        expectrl::process::unix::WaitStatus::Exited(_, code) => code,
        other => panic!("spectask did not exit normally: {other:?}"),
    }
}

async fn create_task(url: &str, repo: &TestRepo) -> String {
    let client = reqwest::Client::new();
    let task = support::post_json(
        &client,
        format!("{url}/api/v1/spec-tasks/from-prompt"),
        &json!({"prompt": "Write a greeting", "project_path": repo.path()}),
    )
    .await;
    task["id"].as_str().expect("task id").to_owned()
}

async fn task_status(url: &str, id: &str) -> String {
    let task = support::get_json(
        &reqwest::Client::new(),
        format!("{url}/api/v1/spec-tasks/{id}"),
    )
    .await;
    task["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_streams_planning_then_implementation_and_answers_a_permission_prompt() {
    let Some(agent) = require_test_agent() else {
        return;
    };
    let setup = setup(&agent).await;
    setup.planner.push(streamed(&spec_reply(), 80));
    let (mut server, url) = support::start(
        setup.cwd.path(),
        &setup
            .serve_args()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
    .await;
    let id = create_task(&url, &setup.repo).await;

    // Planning: the output arrives as it streams; follow stops at the review with 0.
    let (setup, id2, url2) = (setup, id.clone(), url.clone());
    let setup = tokio::task::spawn_blocking(move || {
        let mut follow = setup.spawn(&url2, &["task", "follow", &id2], &[]);
        expect(&mut follow, "Following");
        expect(&mut follow, "── planner output ──");
        expect(&mut follow, "# Requirements: Greeting");
        expect(&mut follow, "# Implementation Plan: Greeting");
        expect(&mut follow, "→ spec_review");
        assert_eq!(exit_code(&mut follow), 0);
        setup
    })
    .await
    .unwrap();

    let client = reqwest::Client::new();
    let approved = support::post_json(
        &client,
        format!("{url}/api/v1/spec-tasks/{id}/approve-specs"),
        &json!({"approved": true}),
    )
    .await;
    assert_eq!(approved["status"], "spec_approved", "{approved}");

    // Implementation: the plan's tree, a line per session that updates, the prompt answered with
    // the arrow key and Enter (the second option, "Allow once"), and 0 at the review.
    let (id2, url2) = (id.clone(), url.clone());
    let setup = tokio::task::spawn_blocking(move || {
        let mut follow = setup.spawn(&url2, &["task", "follow", &id2], &[]);
        expect(&mut follow, "Plan");
        expect(&mut follow, "└─ 2. Wire the parts together");
        expect(&mut follow, "Write part one");
        expect(&mut follow, "active");
        expect(&mut follow, "the agent wants to Write part-one.txt");
        expect(&mut follow, "Allow once");
        follow.send("\x1b[B").unwrap();
        follow.send("\r").unwrap();
        expect(&mut follow, "answered: Allow once");
        expect(&mut follow, "steps 1/2");
        expect(&mut follow, "completed");
        expect(&mut follow, "→ implementation_review");
        assert_eq!(exit_code(&mut follow), 0);
        setup
    })
    .await
    .unwrap();
    assert_eq!(task_status(&url, &id).await, "implementation_review");
    let requests = support::get_json(
        &client,
        format!("{url}/api/v1/spec-tasks/{id}/permission-requests"),
    )
    .await;
    assert_eq!(
        requests["permission_requests"][0]["choice"], "allow",
        "{requests}"
    );
    drop(setup);
    server.start_kill().unwrap();
    let _ = server.wait().await;
}

/// A free loopback port (bound, then released) for a server that restarts on the same address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_survives_the_server_restarting_mid_run() {
    let Some(agent) = require_test_agent() else {
        return;
    };
    let setup = setup(&agent).await;
    // The first attempt dies with the server; the re-run after the restart finishes.
    setup.planner.push(streamed(&spec_reply(), 150));
    setup.planner.push(streamed(&spec_reply(), 20));
    let bind = format!("127.0.0.1:{}", free_port());
    let args = setup.serve_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut server, url) = support::start_on(setup.cwd.path(), &bind, &args).await;
    let id = create_task(&url, &setup.repo).await;
    let cwd = setup.cwd.path().to_owned();

    let (streaming_tx, streaming_rx) = tokio::sync::oneshot::channel();
    let (id2, url2) = (id.clone(), url.clone());
    let follow = tokio::task::spawn_blocking(move || {
        let mut follow = setup.spawn(&url2, &["task", "follow", &id2], &[]);
        expect(&mut follow, "# Requirements: Greeting");
        streaming_tx.send(()).unwrap();
        expect(&mut follow, "connection lost");
        expect(&mut follow, "reconnected");
        expect(&mut follow, "→ spec_review");
        let code = exit_code(&mut follow);
        (setup, code)
    });
    streaming_rx.await.unwrap();
    server.start_kill().unwrap();
    let _ = server.wait().await;
    // Same data directory, same address: the follower reconnects and resumes.
    let (mut server, url) = support::start_on(&cwd, &bind, &args).await;
    let (_setup, code) = follow.await.unwrap();
    assert_eq!(code, 0);
    assert_eq!(task_status(&url, &id).await, "spec_review");
    server.start_kill().unwrap();
    let _ = server.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_json_prints_the_events_as_json_lines() {
    let Some(agent) = require_test_agent() else {
        return;
    };
    let setup = setup(&agent).await;
    setup.planner.push(streamed(&spec_reply(), 20));
    let args = setup.serve_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut server, url) = support::start(setup.cwd.path(), &args).await;
    let client = reqwest::Client::new();
    let created = support::post_json(
        &client,
        format!("{url}/api/v1/spec-tasks/from-prompt"),
        &serde_json::json!({"prompt": "Write a greeting in parts",
                            "project_path": setup.repo.path(), "auto_start": false}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut follow = support::command(setup.cwd.path())
        .args(["task", "follow", &id, "--json", "--server", &url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(follow.stdout.take().unwrap()));
    // The follower is connected once it prints an event: rename the task until it does, then
    // start planning.
    let mut printed = Vec::new();
    for attempt in 0.. {
        let rename = client
            .patch(format!("{url}/api/v1/spec-tasks/{id}"))
            .json(&serde_json::json!({"name": format!("Greeting {attempt}")}))
            .send()
            .await
            .unwrap();
        assert!(rename.status().is_success());
        match tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await {
            Ok(line) => {
                printed.push(line.unwrap().expect("a JSON line before the end"));
                break;
            }
            Err(_) => assert!(attempt < 120, "the follower printed no event"),
        }
    }
    let started = client
        .post(format!("{url}/api/v1/spec-tasks/{id}/start-planning"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert!(started.status().is_success());
    while let Some(line) = lines.next_line().await.unwrap() {
        printed.push(line);
    }
    assert!(follow.wait().await.unwrap().success());
    let events: Vec<Value> = printed
        .iter()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert!(events.iter().all(|e| e["spec_task_id"] == id.as_str()));
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "spec_task.status_changed"),
        "{events:?}"
    );
    assert!(events.iter().any(|e| e["kind"] == "interaction.updated"));
    assert_eq!(task_status(&url, &id).await, "spec_review");
    server.start_kill().unwrap();
    let _ = server.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_takes_a_prompt_to_done_with_answers_from_the_keyboard() {
    let Some(agent) = require_test_agent() else {
        return;
    };
    let setup = setup(&agent).await;
    setup.planner.push(streamed(&spec_reply(), 20));
    setup.planner.push(streamed(
        &spec_reply().replace("say hello", "say hello warmly"),
        20,
    ));
    let args = setup.serve_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut server, url) = support::start(setup.cwd.path(), &args).await;
    let project = setup.repo.path().to_string_lossy().into_owned();

    let url2 = url.clone();
    let (setup, code) = tokio::task::spawn_blocking(move || {
        let mut run = setup.spawn(
            &url2,
            &["run", "Write a greeting", "--project", &project],
            &[("PAGER", "cat")],
        );
        expect(&mut run, "Created");
        expect(&mut run, "# Requirements: Greeting");
        // Revision 1 in the pager; ask for changes with a comment.
        expect(&mut run, "Revision 1 of the spec");
        run.send("\x1b[B").unwrap();
        run.send("\r").unwrap();
        expect(&mut run, "What should change?");
        run.send("Say it warmly\r").unwrap();
        expect(&mut run, "the planner is writing revision 2");
        expect(&mut run, "say hello warmly");
        // Revision 2: approve (the first choice).
        expect(&mut run, "Revision 2 of the spec");
        run.send("\r").unwrap();
        expect(&mut run, "Approved revision 2");
        // Implementation: the agent's question, answered "Allow once".
        expect(&mut run, "the agent wants to Write part-one.txt");
        expect(&mut run, "Allow once");
        run.send("\x1b[B").unwrap();
        run.send("\r").unwrap();
        expect(&mut run, "answered: Allow once");
        expect(&mut run, "The implementation is ready");
        run.send("\r").unwrap();
        expect(&mut run, "Approved: the task is done.");
        let code = exit_code(&mut run);
        (setup, code)
    })
    .await
    .unwrap();
    assert_eq!(code, 0);
    let client = reqwest::Client::new();
    let tasks = support::get_json(&client, format!("{url}/api/v1/spec-tasks")).await;
    let task = &tasks["spec_tasks"][0];
    assert_eq!(task["status"], "done", "{task}");
    assert_eq!(task["spec_approved_revision"], 2, "{task}");
    drop(setup);
    server.start_kill().unwrap();
    let _ = server.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_starts_an_embedded_server_when_none_answers() {
    let Some(agent) = require_test_agent() else {
        return;
    };
    let setup = setup(&agent).await;
    setup.planner.push(streamed(&spec_reply(), 10));
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let project = setup.repo.path().to_string_lossy().into_owned();
    let base_url = setup.planner.base_url();
    let (setup, code) = tokio::task::spawn_blocking(move || {
        let mut run = setup.spawn(
            &nobody,
            &["run", "Write a greeting", "--project", &project],
            &[
                ("PAGER", "cat"),
                ("SPECTASK_LLM_BASE_URL", &base_url),
                ("SPECTASK_LLM_MODEL", "fake-planner"),
            ],
        );
        expect(&mut run, "Started a server on 127.0.0.1:");
        expect(&mut run, "Created");
        expect(&mut run, "Revision 1 of the spec");
        // Quit: the task waits in spec review.
        run.send("\x1b[B").unwrap();
        run.send("\x1b[B").unwrap();
        run.send("\r").unwrap();
        expect(&mut run, "Left in spec review");
        let code = exit_code(&mut run);
        (setup, code)
    })
    .await
    .unwrap();
    assert_eq!(code, 0);
    // The embedded server used the data directory: its database holds the task, and it logged
    // to run.log, not the terminal.
    let data_dir = setup.cwd.path().join(".spectask");
    assert!(data_dir.join("spectask.db").is_file());
    let log = std::fs::read_to_string(data_dir.join("run.log")).unwrap();
    assert!(log.contains("spectask listening"), "{log}");
}
