//! The integration tier against a real third-party agent: Claude Code through
//! `@agentclientprotocol/claude-agent-acp`, installed by the project's own setup step
//! (`tools/agents`, `npm ci` in `.ci/run`), driven by the production `AcpRuntime` and pointed at
//! [`FakeAnthropic`], a loopback Messages API whose replies each test scripts.
//!
//! The agent's offline set-up (its own `HOME`, the switches that silence its traffic) is
//! [`spectask_testkit::claude_profile`]. The agent starts new sessions in its `auto` mode, where
//! it asks the model (a side request) instead of the client whether a tool may run; `AcpRuntime`
//! switches every session to the agent's `default` mode (`session/set_mode`), so every edit
//! becomes a `session/request_permission` the profile's policy answers, as these scenarios check.
//! `claude_server.rs` runs the same agent under the whole server, a SpecTask end to end.
//!
//! Without `tools/agents/node_modules/.bin/claude-agent-acp` (no Node.js, or `npm ci` not run)
//! each scenario prints `SKIPPED (…)` and passes rather than being ignored, unless
//! `SPECTASK_REQUIRE_TIERS` requires the tier (see `spectask_testkit::skip`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spectask_runtimes::agent::acp::{AcpProfile, AcpRuntime};
use spectask_runtimes::agent::{AgentEvent, AgentRuntime, InstanceSpec, StopReason, TurnRequest};
use spectask_testkit::ids::{instance_id, thread_id, work_session};
use spectask_testkit::turns::{collect_turn, turn_request};
use spectask_testkit::{
    AnthropicReply, FakeAnthropic, TREE_VAR, agent_tree, claude_profile, init_test_logging,
    prepare_claude_home, tool_results, wait_for_agent_tree,
};

/// Generous for one turn: a real agent starts a Claude Code process per session (about a second)
/// and each turn is a few loopback round trips.
const TURN: Duration = Duration::from_secs(30);

macro_rules! require_agent {
    () => {
        match spectask_testkit::require_claude_agent() {
            Some(path) => path,
            None => return,
        }
    };
}

/// A temporary directory holding the workspace and the agent's own `HOME`.
struct Fixture {
    dir: tempfile::TempDir,
    agent: PathBuf,
}

impl Fixture {
    fn new(agent: PathBuf) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ws")).unwrap();
        prepare_claude_home(&dir.path().join("home"));
        Self { dir, agent }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    fn workspace(&self) -> PathBuf {
        self.root().join("ws")
    }

    fn profile(&self, fake: &FakeAnthropic) -> AcpProfile {
        claude_profile(
            "claude",
            self.agent.to_str().unwrap(),
            Vec::new(),
            &self.root().join("home"),
            fake,
        )
    }

    fn spec(&self, instance: &str) -> InstanceSpec {
        InstanceSpec {
            instance_id: instance_id(instance),
            spec_task_id: "spt_claude".to_owned(),
            workspace: Some(self.workspace()),
            agent: Some("claude".to_owned()),
            config: Value::Null,
            extra_roots: Vec::new(),
        }
    }
}

fn request(instance: &str, thread: &str, turn_id: &str, prompt: &str) -> TurnRequest {
    turn_request(instance, thread, turn_id, prompt)
}

/// Runs a turn to its end, collecting its events.
async fn turn(runtime: &AcpRuntime, request: &TurnRequest) -> (StopReason, Vec<AgentEvent>) {
    let (result, events) = collect_turn(runtime, request, 64, TURN).await;
    (result.expect("the turn succeeded"), events)
}

fn chunks(events: &[AgentEvent]) -> String {
    events
        .iter()
        .filter_map(|event| match event {
            AgentEvent::MessageChunk(text) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// The last status of each tool call, in the order the calls started.
fn final_tool_statuses(events: &[AgentEvent]) -> Vec<(String, String)> {
    let mut calls: Vec<(String, String)> = Vec::new();
    for event in events {
        if let AgentEvent::ToolCall(call) = event {
            let (id, status) = (&call.tool_call_id, &call.status);
            match calls.iter_mut().find(|(known, _)| known == id) {
                Some(call) => call.1.clone_from(status),
                None => calls.push((id.clone(), status.clone())),
            }
        }
    }
    calls
}

/// Starts instance `i1` of the fixture's agent.
async fn start(fixture: &Fixture, fake: &FakeAnthropic) -> AcpRuntime {
    let runtime = AcpRuntime::new(
        vec![fixture.profile(fake)],
        None,
        spectask_testkit::agent_shim(&fixture.root().join("run")),
    );
    tokio::time::timeout(TURN, runtime.ensure_instance(&fixture.spec("i1")))
        .await
        .expect("initialize in time")
        .expect("initialize");
    runtime
}

async fn new_thread(runtime: &AcpRuntime, work_session_id: &str) -> String {
    tokio::time::timeout(
        TURN,
        runtime.create_thread(&instance_id("i1"), &work_session(work_session_id), None),
    )
    .await
    .expect("session/new in time")
    .expect("session/new")
    .into_string()
}

/// A scripted `Write` tool call.
fn write(path: &Path, content: &str) -> AnthropicReply {
    AnthropicReply::ToolUse {
        text: Some("Writing the note.".to_owned()),
        name: "Write".to_owned(),
        input: json!({"file_path": path, "content": content}),
    }
}

/// Three work sessions as three ACP sessions of one agent process. Each turn: the model asks to
/// write a file, the agent asks permission, the profile's `allow_workspace_edits` allows it, the
/// agent writes the file itself and sends the tool result back, the model answers and the turn
/// ends with `end_turn`. The third session first asks to write beside the workspace, which the
/// same policy rejects: the model gets an error result, the file is not written, and the turn
/// goes on. That rejection is what shows the permission request reached the client's policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_threads_of_one_agent_write_files_through_permitted_tool_calls() {
    init_test_logging();
    let fixture = Fixture::new(require_agent!());
    let fake = FakeAnthropic::start().await;
    let runtime = start(&fixture, &fake).await;

    let mut threads = Vec::new();
    for n in 1..=3 {
        threads.push(new_thread(&runtime, &format!("stws_{n}")).await);
    }
    let distinct: std::collections::BTreeSet<&String> = threads.iter().collect();
    assert_eq!(distinct.len(), 3, "three sessions: {threads:?}");

    let outside = fixture.root().join("outside.txt");
    for (n, thread) in (1..=3).zip(&threads) {
        let path = fixture.workspace().join(format!("notes/session-{n}.txt"));
        let content = format!("written by session {n}\n");
        let before = fake.model_turns().len();
        if n == 3 {
            fake.push(write(&outside, "must not be written\n"));
        }
        fake.push(write(&path, &content));
        fake.push(AnthropicReply::Text(format!("Done with session {n}.")));

        let (stop, events) = turn(
            &runtime,
            &request("i1", thread, &format!("turn_{n}"), "write the note"),
        )
        .await;
        assert_eq!(stop, StopReason::EndTurn, "session {n}: {events:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), content);
        let text = chunks(&events);
        assert!(text.contains("Writing the note."), "streamed: {text:?}");
        assert!(
            text.ends_with(&format!("Done with session {n}.")),
            "streamed: {text:?}"
        );

        let calls = final_tool_statuses(&events);
        let turns = fake.model_turns();
        let results: Vec<Value> = turns[before + 1..].iter().flat_map(tool_results).collect();
        if n == 3 {
            assert_eq!(calls.len(), 2, "{events:?}");
            assert_eq!(calls[0].1, "failed", "the outside write: {events:?}");
            assert_eq!(results[0]["is_error"], json!(true), "{results:?}");
            assert!(!outside.exists(), "written outside the workspace");
        } else {
            assert_eq!(calls.len(), 1, "{events:?}");
        }
        assert_eq!(calls.last().unwrap().1, "completed", "{events:?}");
        assert_eq!(
            turns.len(),
            before + calls.len() + 1,
            "model turns of turn {n}"
        );
        assert_eq!(
            results.len(),
            calls.len(),
            "one result per call: {results:?}"
        );
        assert_ne!(
            results.last().unwrap()["is_error"],
            json!(true),
            "{results:?}"
        );
    }
    assert_eq!(fake.pending_replies(), 0);
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
}

/// A turn whose model never finishes is cancelled with `session/cancel`: `run_turn` ends with
/// `Cancelled`, and the same thread then runs another turn to `end_turn`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_is_cancelled_while_the_model_hangs() {
    init_test_logging();
    let fixture = Fixture::new(require_agent!());
    let fake = FakeAnthropic::start().await;
    let runtime = std::sync::Arc::new(start(&fixture, &fake).await);
    let thread = new_thread(&runtime, "stws_1").await;

    fake.push(AnthropicReply::Hang {
        text: "Thinking about it".to_owned(),
    });
    let running = tokio::spawn({
        let runtime = std::sync::Arc::clone(&runtime);
        let request = request("i1", &thread, "turn_1", "take your time");
        async move { turn(&runtime, &request).await }
    });
    let turns = fake.wait_for_model_turns(1, TURN).await;
    assert_eq!(turns.len(), 1, "the model was asked");
    // Let the first streamed text reach the agent, so the cancel lands mid-stream.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancelled_at = Instant::now();
    runtime
        .cancel_turn(&instance_id("i1"), &thread_id(&thread))
        .await
        .unwrap();
    let (stop, _events) = tokio::time::timeout(TURN, running)
        .await
        .expect("the turn ended after cancel")
        .unwrap();
    assert_eq!(stop, StopReason::Cancelled);
    assert!(cancelled_at.elapsed() < Duration::from_secs(10));

    fake.push(AnthropicReply::Text("Back again.".to_owned()));
    let (stop, events) = turn(&runtime, &request("i1", &thread, "turn_2", "go on")).await;
    assert_eq!(stop, StopReason::EndTurn);
    assert!(chunks(&events).ends_with("Back again."), "{events:?}");
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
}

/// The fake itself, without the agent (so it is checked where Node.js is missing too): a scripted
/// tool call as Anthropic's event stream, the script untouched by side requests, every request
/// recorded, `count_tokens` and unknown endpoints answered harmlessly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_speaks_the_messages_stream_and_records_requests() {
    let fake = FakeAnthropic::start().await;
    fake.push(AnthropicReply::ToolUse {
        text: None,
        name: "Write".to_owned(),
        input: json!({"file_path": "/w/a.txt", "content": "hi"}),
    });
    let client = reqwest::Client::new();
    let url = format!("{}/v1/messages?beta=true", fake.base_url());
    let tool = json!([{"name": "Write", "input_schema": {"type": "object"}}]);

    // A side request (no tools) gets text and leaves the script alone.
    let side: Value = client
        .post(&url)
        .json(&json!({"model": "m", "messages": [], "stream": false}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(side["stop_reason"], "end_turn");
    assert_eq!(fake.pending_replies(), 1);

    let body = json!({"model": "m", "stream": true, "tools": tool, "messages": [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t0", "content": "ok"}]}
    ]});
    let response = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let text = response.text().await.unwrap();
    let events: Vec<Value> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"message_start"));
    assert_eq!(kinds[1], "content_block_start");
    assert_eq!(events[1]["content_block"]["type"], "tool_use");
    assert_eq!(events[1]["content_block"]["name"], "Write");
    let input: String = events
        .iter()
        .filter(|e| e["delta"]["type"] == "input_json_delta")
        .map(|e| e["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&input).unwrap(),
        json!({"file_path": "/w/a.txt", "content": "hi"})
    );
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert!(delta["usage"]["output_tokens"].is_u64());
    assert_eq!(kinds.last(), Some(&"message_stop"));
    assert_eq!(fake.pending_replies(), 0);

    let count: Value = client
        .post(format!("{}/v1/messages/count_tokens", fake.base_url()))
        .json(&json!({"messages": []}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(count["input_tokens"].is_u64());
    let probe = client
        .get(format!("{}/api/hello", fake.base_url()))
        .send()
        .await
        .unwrap();
    assert!(probe.status().is_success());

    let requests = fake.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(requests[3].uri, "/api/hello");
    let turns = fake.model_turns();
    assert_eq!(turns, vec![body.clone()]);
    assert_eq!(tool_results(&turns[0])[0]["tool_use_id"], "t0");
}

/// Routed scripts, without the agent: a model turn mentioning a marker takes that conversation's
/// next reply, others take the shared script; a hanging reply whose client goes away is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_routes_replies_by_conversation_and_sees_aborted_hangs() {
    let fake = FakeAnthropic::start().await;
    fake.push(AnthropicReply::Text("shared".to_owned()));
    fake.push_for("Task 2:", AnthropicReply::Text("two".to_owned()));
    fake.push_for(
        "Task 3:",
        AnthropicReply::Hang {
            text: "thinking".to_owned(),
        },
    );
    assert_eq!(fake.pending_replies(), 3);
    let client = reqwest::Client::new();
    let url = format!("{}/v1/messages", fake.base_url());
    let turn = |prompt: &str, stream: bool| {
        json!({"model": "m", "stream": stream, "tools": [{"name": "Write"}], "messages": [
            {"role": "user", "content": [{"type": "text", "text": prompt}]}
        ]})
    };
    let text_of = |reply: Value| reply["content"][0]["text"].as_str().unwrap().to_owned();
    let ask = |body: Value| {
        let request = client.post(&url).json(&body);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };

    assert_eq!(text_of(ask(turn("Task 2: beta", false)).await), "two");
    assert_eq!(text_of(ask(turn("Task 1: alpha", false)).await), "shared");
    assert_eq!(
        text_of(ask(turn("Task 2: beta, again", false)).await),
        "(fake model: no scripted reply)"
    );
    assert_eq!(fake.model_turns_mentioning("Task 2:").len(), 2);

    let mut hanging = client
        .post(&url)
        .json(&turn("Task 3: gamma", true))
        .send()
        .await
        .unwrap();
    let first = hanging.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("message_start"));
    assert_eq!(fake.pending_replies(), 0);
    assert_eq!(fake.hangs_closed_by_client(), 0);
    drop(hanging);
    let fake = &fake;
    spectask_testkit::wait_until("the closed stream to be seen", || async move {
        (fake.hangs_closed_by_client() > 0).then_some(())
    })
    .await;
    let turns = fake
        .wait_for_model_turns_mentioning("Task 3:", 1, Duration::from_secs(1))
        .await;
    assert_eq!(turns.len(), 1);
}

/// The gate, without the agent: a reply behind it is held (its request already recorded) until
/// the test opens the gate; once open, later gated replies go straight out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_holds_gated_replies_until_the_gate_opens() {
    let fake = FakeAnthropic::start().await;
    let gated =
        |text: &str| AnthropicReply::AfterGate(Box::new(AnthropicReply::Text(text.to_owned())));
    fake.push(gated("held"));
    fake.push(gated("passed"));
    let client = reqwest::Client::new();
    let url = format!("{}/v1/messages", fake.base_url());
    let turn = json!({"model": "m", "stream": false, "tools": [{"name": "Write"}], "messages": []});
    let ask = {
        let request = client.post(&url).json(&turn);
        tokio::spawn(async move { request.send().await.unwrap().json::<Value>().await.unwrap() })
    };

    let turns = fake.wait_for_model_turns(1, Duration::from_secs(10)).await;
    assert_eq!(
        turns.len(),
        1,
        "the request is recorded while its reply is held"
    );
    assert!(!ask.is_finished(), "answered before the gate opened");
    fake.open_gate();
    assert_eq!(ask.await.unwrap()["content"][0]["text"], "held");

    let reply: Value = client
        .post(&url)
        .json(&turn)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["content"][0]["text"], "passed");
    assert_eq!(fake.pending_replies(), 0);
}

/// When the server dies, even by SIGKILL, the kernel sends the agent's shim SIGTERM (its death
/// signal); this test, which cannot die itself, sends that signal by hand. Afterwards no process
/// of the real agent's tree is left: not claude-agent-acp, not the Claude Code process it
/// started, not the command its Bash tool left running in a session of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_claude_process_outlives_the_server() {
    init_test_logging();
    let fixture = Fixture::new(require_agent!());
    let fake = FakeAnthropic::start().await;
    let marker = fixture.root().to_string_lossy().into_owned();
    let run_dir = fixture.root().join("run");
    let runtime = AcpRuntime::new(
        vec![fixture.profile(&fake).with_env(TREE_VAR, &marker)],
        None,
        spectask_testkit::agent_shim(&run_dir),
    );
    tokio::time::timeout(TURN, runtime.ensure_instance(&fixture.spec("i1")))
        .await
        .expect("initialize in time")
        .expect("initialize");
    let thread = new_thread(&runtime, "stws_1").await;
    fake.push(AnthropicReply::ToolUse {
        text: Some("Starting the watcher.".to_owned()),
        name: "Bash".to_owned(),
        input: json!({
            "command": "setsid sleep 600 >/dev/null 2>&1 &",
            "description": "Start a watcher in the background",
        }),
    });
    fake.push(AnthropicReply::Text("Started.".to_owned()));
    let (stop, events) = turn(&runtime, &request("i1", &thread, "turn_1", "start it")).await;
    assert_eq!(stop, StopReason::EndTurn, "{events:?}");
    wait_for_agent_tree(
        &marker,
        "the Bash command's sleeper never ran",
        TURN,
        |tree| tree.iter().any(|(_, comm)| comm == "sleep"),
    )
    .await;
    let before = agent_tree(&marker);
    assert!(before.len() >= 3, "shim, agent and more: {before:?}");

    let record = std::fs::read_dir(&run_dir)
        .unwrap()
        .next()
        .expect("the shim's record")
        .unwrap()
        .path();
    let record: Value = serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    let shim = record["shim_pid"].as_i64().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &shim])
        .status()
        .unwrap();
    wait_for_agent_tree(
        &marker,
        "processes of the agent's tree outlived the server's death signal",
        TURN,
        <[_]>::is_empty,
    )
    .await;
    drop(runtime);
}

/// The OS sandbox holds what the policy grants: the model runs a Bash command that writes beside
/// the workspace through an interpreter (no path the agent could name, so the permission request
/// is granted), then writes inside it. The inside file appears, the outside one does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_bash_command_cannot_write_beside_the_workspace() {
    init_test_logging();
    let fixture = Fixture::new(require_agent!());
    let fake = FakeAnthropic::start().await;
    let runtime = start(&fixture, &fake).await;
    let status = runtime
        .sandbox_status(&instance_id("i1"))
        .expect("the instance runs");
    assert!(status.active, "{status:?}");
    let thread = new_thread(&runtime, "stws_1").await;
    fake.push(AnthropicReply::ToolUse {
        text: Some("Writing the files.".to_owned()),
        name: "Bash".to_owned(),
        input: json!({
            "command": "python3 -c \"open('../escaped.txt','w').write('x')\"; echo ok > inside.txt",
            "description": "Write the files",
        }),
    });
    fake.push(AnthropicReply::Text("Done.".to_owned()));
    let (stop, events) = turn(&runtime, &request("i1", &thread, "turn_1", "write them")).await;
    assert_eq!(stop, StopReason::EndTurn, "{events:?}");
    assert_eq!(
        std::fs::read_to_string(fixture.workspace().join("inside.txt")).unwrap(),
        "ok\n",
        "the granted command ran: {events:?}"
    );
    assert!(
        !fixture.root().join("escaped.txt").exists(),
        "the interpreter's write beside the workspace was refused by the kernel"
    );
    drop(runtime);
}
