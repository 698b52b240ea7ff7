//! The edges: bad JSON-RPC on the wire, an editor that disappears mid-turn, cancel, no server at
//! `--server` (an embedded one), and a session an agent spawns.

use super::*;

/// Writes raw lines to `spectask acp` and reads its raw replies.
struct Wire {
    process: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Wire {
    fn new(mut process: tokio::process::Child) -> Self {
        let stdin = process.stdin.take().unwrap();
        let lines = BufReader::new(process.stdout.take().unwrap()).lines();
        Self {
            process,
            stdin,
            lines,
        }
    }

    async fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.write_all(b"\n").await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// The next message with `id` (notifications in between are skipped).
    async fn reply(&mut self, id: &Value) -> Value {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
                .await
                .expect("no reply within a minute")
                .unwrap()
                .expect("spectask acp closed its stdout");
            let message: Value = serde_json::from_str(&line)
                .unwrap_or_else(|err| panic!("stdout carried a non-JSON line {line:?}: {err}"));
            if message.get("id") == Some(id) && message.get("method").is_none() {
                return message;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_json_rpc_and_unknown_methods_get_errors_and_the_connection_goes_on() {
    let Some(agent) = require_test_agent() else {
        return;
    };
    let fixture = Fixture::start(&agent).await;
    let mut wire = Wire::new(fixture.spawn_acp());
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                      "params": {"protocolVersion": 1}});
    wire.send(&init.to_string()).await;
    let reply = wire.reply(&json!(1)).await;
    assert_eq!(reply["result"]["protocolVersion"], 1, "{reply}");

    wire.send(r#"{"jsonrpc":"2.0","id":2,"method":"spectask/nope","params":{}}"#)
        .await;
    let reply = wire.reply(&json!(2)).await;
    assert_eq!(reply["error"]["code"], -32601, "{reply}");

    // Bad parameters for a known method.
    wire.send(r#"{"jsonrpc":"2.0","id":3,"method":"session/new","params":{"cwd":42}}"#)
        .await;
    let reply = wire.reply(&json!(3)).await;
    assert_eq!(reply["error"]["code"], -32602, "{reply}");
    wire.send(r#"{"jsonrpc":"2.0","id":4,"method":"session/new","params":{"cwd":"relative/dir","mcpServers":[]}}"#)
        .await;
    let reply = wire.reply(&json!(4)).await;
    assert_eq!(reply["error"]["code"], -32602, "{reply}");

    // Unknown threads.
    wire.send(r#"{"jsonrpc":"2.0","id":5,"method":"session/prompt","params":{"sessionId":"spt_nope","prompt":[{"type":"text","text":"hi"}]}}"#)
        .await;
    let reply = wire.reply(&json!(5)).await;
    assert_eq!(reply["error"]["code"], -32002, "{reply}");
    wire.send(
        &json!({"jsonrpc": "2.0", "id": 6, "method": "session/load",
        "params": {"sessionId": "spt_01NOSUCHTASK", "cwd": fixture.repo.path(), "mcpServers": []}})
        .to_string(),
    )
    .await;
    let reply = wire.reply(&json!(6)).await;
    assert_eq!(reply["error"]["code"], -32002, "{reply}");

    // A line that is not JSON at all, then the connection still answers.
    wire.send("{this is not json").await;
    wire.send(
        &json!({"jsonrpc": "2.0", "id": 7, "method": "session/new",
        "params": {"cwd": fixture.repo.path(), "mcpServers": []}})
        .to_string(),
    )
    .await;
    let reply = wire.reply(&json!(7)).await;
    assert!(
        reply["result"]["sessionId"]
            .as_str()
            .is_some_and(|id| id.starts_with("new_")),
        "{reply}"
    );
    let thread = reply["result"]["sessionId"].clone();

    // An empty prompt is refused and creates nothing.
    wire.send(
        &json!({"jsonrpc": "2.0", "id": 8, "method": "session/prompt",
        "params": {"sessionId": thread, "prompt": [{"type": "text", "text": "  "}]}})
        .to_string(),
    )
    .await;
    let reply = wire.reply(&json!(8)).await;
    assert_eq!(reply["error"]["code"], -32602, "{reply}");
    let tasks = fixture.get("/spec-tasks").await;
    assert_eq!(tasks["total"], 0, "{tasks}");

    drop(wire.stdin);
    let status = tokio::time::timeout(Duration::from_secs(60), wire.process.wait())
        .await
        .expect("spectask acp did not exit when its stdin closed")
        .unwrap();
    assert!(status.success(), "{status}");
    fixture.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_that_disappears_mid_turn_leaves_the_task_going() {
    let Some(agent) = require_test_agent() else {
        return;
    };
    let fixture = Fixture::start(&agent).await;
    fixture.planner.push(streamed(&spec_reply("Greeting"), 100));
    let (mut editor, thread) = Editor::with_thread(fixture.spawn_acp(), &fixture.repo.path()).await;
    let _turn = editor.prompt(&thread, "Write a greeting");
    editor
        .wait_for(&thread, "planning to stream", |updates| {
            agent_text(updates).contains("# Requirements: Greeting")
        })
        .await;

    // The editor goes away mid-planning: `spectask acp` ends, the server carries on.
    let status = editor.close().await;
    assert!(status.success(), "{status}");
    let tasks = fixture.get("/spec-tasks").await;
    let id = tasks["spec_tasks"][0]["id"].as_str().unwrap().to_owned();
    let url = fixture.url.clone();
    support::wait_for("the task to reach spec_review", || {
        let (url, id) = (url.clone(), id.clone());
        async move {
            let task = support::get_json(
                &reqwest::Client::new(),
                format!("{url}/api/v1/spec-tasks/{id}"),
            )
            .await;
            (task["status"] == "spec_review").then_some(())
        }
    })
    .await;
    let revisions = fixture.get(&format!("/spec-tasks/{id}/revisions")).await;
    assert_eq!(
        revisions["revisions"].as_array().map(Vec::len),
        Some(1),
        "{revisions}"
    );
    let specs = fixture.get(&format!("/spec-tasks/{id}/specs")).await;
    assert!(
        specs["requirements_spec"]
            .as_str()
            .is_some_and(|s| s.contains("# Requirements: Greeting")),
        "{specs}"
    );
    fixture.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_in_the_editor_cancels_the_running_work_sessions() {
    let Some(agent) = require_test_agent() else {
        return;
    };
    let fixture = Fixture::start(&agent).await;
    fixture.planner.push(streamed(&spec_reply("Greeting"), 5));
    let (mut editor, thread) = Editor::with_thread(fixture.spawn_acp(), &fixture.repo.path()).await;
    let turn = editor.prompt(&thread, "Write a greeting");
    answer(editor.question().await, "approve");
    // Part one waits for its permission: the editor's stop button now.
    let question = editor.question().await;
    assert_eq!(
        question.request.tool_call.fields.title.as_deref(),
        Some("Write part-one.txt")
    );
    editor
        .cx
        .send_notification(CancelNotification::new(thread.clone()))
        .unwrap();
    assert_eq!(turn.await.unwrap().unwrap(), StopReason::Cancelled);
    assert!(
        agent_text(&editor.updates(&thread)).contains("Cancelled the task's running work sessions")
    );
    let tasks = fixture.get("/spec-tasks").await;
    let id = tasks["spec_tasks"][0]["id"].as_str().unwrap().to_owned();
    let sessions = fixture
        .get(&format!("/spec-tasks/{id}/work-sessions"))
        .await;
    for ws in sessions["work_sessions"].as_array().unwrap() {
        assert_eq!(ws["status"], "cancelled", "{ws}");
    }
    drop(question);
    fixture.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_server_acp_embeds_one_on_the_data_directory() {
    let Some(agent) = require_test_agent() else {
        return;
    };
    let planner = FakeOpenAi::start().await;
    planner.push(streamed(&spec_reply("Greeting"), 5));
    let repo = TestRepo::new();
    let cwd = tempfile::tempdir().unwrap();
    support::configure_test_agent(cwd.path(), &agent, &agent_script());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let process = support::command(cwd.path())
        .arg("acp")
        .env("SPECTASK_SERVER", format!("http://127.0.0.1:{port}"))
        .env("SPECTASK_LLM_BASE_URL", planner.base_url())
        .env("SPECTASK_LLM_MODEL", "fake-planner")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Everything on stdout is the protocol (the embedded server logs to stderr), or the client
    // would fail to parse it.
    let (mut editor, thread) = Editor::with_thread(process, &repo.path()).await;
    let turn = editor.prompt(&thread, "Write a greeting");
    let question = editor.question().await;
    assert_eq!(
        question.request.tool_call.fields.title.as_deref(),
        Some("Approve the spec (revision 1)")
    );
    answer(question, "request_changes");
    assert_eq!(turn.await.unwrap().unwrap(), StopReason::EndTurn);

    // The editor closes: the embedded server stops cleanly, and its data directory holds the task.
    let status = editor.close().await;
    assert!(status.success(), "{status}");
    let (mut server, url) = support::start(cwd.path(), &[]).await;
    let tasks =
        support::get_json(&reqwest::Client::new(), format!("{url}/api/v1/spec-tasks")).await;
    assert_eq!(tasks["total"], 1, "{tasks}");
    assert_eq!(tasks["spec_tasks"][0]["status"], "spec_review", "{tasks}");
    let _ = server.start_kill();
    let _ = server.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_an_agent_spawns_appears_as_a_tool_call_of_its_own() {
    let Some(agent) = require_test_agent() else {
        return;
    };
    // Part one spawns a session over spectask's MCP tools, then ends; every other turn answers.
    let spawn = json!({"kind": "call_mcp_tool", "server": "spectask", "tool": "spawn_work_session",
        "arguments": {"name": "Security audit", "description": "Audit what was written."}});
    let script = json!({
        "steps": [{"kind": "message", "text": "Done.\n"}],
        "rules": [{"prompt_contains": "Task 1: Write part one",
                   "steps": [spawn, {"kind": "message", "text": "Spawned an audit.\n"}]}],
    });
    let fixture = Fixture::start_with(&agent, &script).await;
    fixture.planner.push(streamed(&spec_reply("Greeting"), 5));
    let (mut editor, thread) = Editor::with_thread(fixture.spawn_acp(), &fixture.repo.path()).await;
    let turn = editor.prompt(&thread, "Write a greeting");
    answer(editor.question().await, "approve");
    assert_eq!(turn.await.unwrap().unwrap(), StopReason::EndTurn);

    let tasks = fixture.get("/spec-tasks").await;
    let id = tasks["spec_tasks"][0]["id"].as_str().unwrap().to_owned();
    let sessions = fixture
        .get(&format!("/spec-tasks/{id}/work-sessions"))
        .await;
    let sessions = sessions["work_sessions"].as_array().unwrap().clone();
    let spawned = sessions
        .iter()
        .find(|ws| ws["name"] == "Security audit")
        .unwrap_or_else(|| panic!("no spawned session: {sessions:?}"));
    let parent = spawned["spawned_by_session_id"].as_str().unwrap();
    let call_id = format!("work-session:{}", spawned["id"].as_str().unwrap());
    let updates = editor.updates(&thread);
    let call = updates
        .iter()
        .find_map(|u| match u {
            SessionUpdate::ToolCall(call) if call.tool_call_id.0.as_ref() == call_id => Some(call),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no tool call {call_id}: {updates:#?}"));
    assert_eq!(call.title, "Security audit");
    assert_eq!(
        call.raw_input.as_ref().unwrap()["spawned_by"],
        json!(parent),
        "{call:?}"
    );
    assert_eq!(
        tool_call_ids(&updates)
            .iter()
            .filter(|id| id.starts_with("work-session:"))
            .count(),
        3
    );
    fixture.stop().await;
}
