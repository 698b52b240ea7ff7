//! `spectask acp` driven by an ACP client of ours (the `agent-client-protocol` crate's client
//! side), against the real `spectask serve` with a loopback planner and our scripted ACP test
//! agent under the `ask` policy: the whole flow from an editor's first prompt to the approved
//! work, the thread history (`session/list`, `session/load`), a follow-up in a loaded work
//! session, and bad input on the wire.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_client_protocol::schema::ProtocolVersion;
use agent_client_protocol::v1::ConnectionTo;
use agent_client_protocol::v1::schema::{
    CancelNotification, ContentBlock, InitializeRequest, InitializeResponse, ListSessionsRequest,
    ListSessionsResponse, LoadSessionRequest, NewSessionRequest, PlanEntryStatus, PromptRequest,
    RequestPermissionOutcome, RequestPermissionRequest, RequestPermissionResponse,
    SelectedPermissionOutcome, SessionNotification, SessionUpdate, StopReason, TextContent,
};
use agent_client_protocol::{Agent, ByteStreams, Client};
use serde_json::{Value, json};
use spectask_testkit::{FakeOpenAi, FakeReply, TestRepo, require_test_agent};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

use crate::support;

pub fn spec_reply(title: &str) -> String {
    format!(
        "# Requirements: {title}\n\n## Requirement 1\n\n**User Story:** As a user, I want a \
         greeting.\n\n### Acceptance Criteria\n\n\
         1. WHEN the greeting is written THE SYSTEM SHALL say hello.\n\n\
         # Design: {title}\n\n## Overview\n\nOne file, then its wiring.\n\n\
         # Implementation Plan: {title}\n\n\
         - [ ] 1. Write part one\n  - _Requirements: 1.1_\n\
         - [ ] 2. Wire the parts together\n  - Depends on: 1\n  - _Requirements: 1.1_\n"
    )
}

/// The reply streamed line by line.
pub fn streamed(text: &str, delay_ms: u64) -> FakeReply {
    FakeReply::Stream {
        chunks: text.split_inclusive('\n').map(str::to_owned).collect(),
        delay: Duration::from_millis(delay_ms),
    }
}

/// Part one asks a person (reject first, allow second), then writes; the wiring task answers;
/// a follow-up "Also add a test" is answered in its own words.
pub fn agent_script() -> Value {
    json!({
        "steps": [{"kind": "message", "text": "Wired the parts together.\n"}],
        "rules": [
            {"prompt_contains": "Also add a test", "steps": [
                {"kind": "message", "text": "Added a test for the greeting.\n"}]},
            {"prompt_contains": "Task 1: Write part one", "steps": [
                {"kind": "plan", "entries": [
                    {"content": "Ask to write", "status": "completed"},
                    {"content": "Write part one", "status": "in_progress"}]},
                {"kind": "request_permission", "title": "Write part-one.txt", "options": [
                    {"id": "reject", "name": "Refuse", "kind": "reject_once"},
                    {"id": "allow", "name": "Allow once", "kind": "allow_once"}]},
                {"kind": "message", "text": "Wrote part one.\n"},
            ]},
        ],
    })
}

/// A server with the loopback planner and the test agent, and a project checkout.
pub struct Fixture {
    pub cwd: tempfile::TempDir,
    pub repo: TestRepo,
    pub planner: FakeOpenAi,
    pub server: tokio::process::Child,
    pub url: String,
}

impl Fixture {
    pub async fn start(agent: &Path) -> Self {
        let planner = FakeOpenAi::start().await;
        let repo = TestRepo::new();
        let cwd = tempfile::tempdir().unwrap();
        support::configure_test_agent(cwd.path(), agent, &agent_script());
        let base = planner.base_url();
        let (server, url) = support::start(
            cwd.path(),
            &["--llm-base-url", &base, "--llm-model", "fake-planner"],
        )
        .await;
        Self {
            cwd,
            repo,
            planner,
            server,
            url,
        }
    }

    /// `spectask acp` against this server, its stdin and stdout piped.
    pub fn spawn_acp(&self) -> tokio::process::Child {
        support::command(self.cwd.path())
            .args(["acp", "--server", &self.url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn spectask acp")
    }

    pub async fn get(&self, path: &str) -> Value {
        support::get_json(
            &reqwest::Client::new(),
            format!("{}/api/v1{path}", self.url),
        )
        .await
    }

    pub async fn stop(mut self) {
        let _ = self.server.start_kill();
        let _ = self.server.wait().await;
    }
}

/// A permission question the editor received, answered by the test.
struct Question {
    request: RequestPermissionRequest,
    answer: oneshot::Sender<RequestPermissionResponse>,
}

/// What the editor side saw, per thread.
#[derive(Default)]
struct Seen {
    updates: HashMap<String, Vec<SessionUpdate>>,
}

/// Our editor: an ACP client connected to `spectask acp`.
struct Editor {
    cx: ConnectionTo<Agent>,
    seen: Arc<Mutex<Seen>>,
    questions: mpsc::UnboundedReceiver<Question>,
    updates: mpsc::UnboundedReceiver<()>,
    driver: tokio::task::JoinHandle<()>,
    process: Option<tokio::process::Child>,
}

impl Drop for Editor {
    /// The editor goes away: its end of the pipes closes.
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Editor {
    async fn connect(mut process: tokio::process::Child) -> Self {
        let stdin = process.stdin.take().unwrap();
        let stdout = process.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (question_tx, questions) = mpsc::unbounded_channel();
        let (update_tx, updates) = mpsc::unbounded_channel();
        let (cx_tx, cx_rx) = oneshot::channel();
        let seen2 = seen.clone();
        let builder = Client
            .v1()
            .name("spectask-test-editor")
            .on_receive_notification(
                async move |n: SessionNotification, _cx| {
                    seen2
                        .lock()
                        .unwrap()
                        .updates
                        .entry(n.session_id.0.to_string())
                        .or_default()
                        .push(n.update);
                    let _ = update_tx.send(());
                    Ok(())
                },
                agent_client_protocol::on_receive_notification!(),
            )
            .on_receive_request(
                async move |request: RequestPermissionRequest, responder, _cx| {
                    let (answer, answered) = oneshot::channel();
                    let _ = question_tx.send(Question { request, answer });
                    tokio::spawn(async move {
                        if let Ok(response) = answered.await {
                            let _ = responder.respond(response);
                        }
                    });
                    Ok(())
                },
                agent_client_protocol::on_receive_request!(),
            );
        let driver = tokio::spawn(async move {
            let transport = ByteStreams::new(stdin.compat_write(), stdout.compat());
            let _ = builder
                .connect_with(transport, async move |cx: ConnectionTo<Agent>| {
                    let _ = cx_tx.send(cx.clone());
                    cx.incoming_closed().await;
                    Ok(())
                })
                .await;
        });
        let cx = cx_rx.await.unwrap();
        Self {
            cx,
            seen,
            questions,
            updates,
            driver,
            process: Some(process),
        }
    }

    /// The editor goes away (its ends of the pipes close); how `spectask acp` then exits.
    async fn close(mut self) -> std::process::ExitStatus {
        let mut process = self.process.take().unwrap();
        drop(self);
        tokio::time::timeout(Duration::from_secs(60), process.wait())
            .await
            .expect("spectask acp did not exit when the editor went away")
            .unwrap()
    }

    /// Connected, initialized, with a new thread in `project`.
    async fn with_thread(process: tokio::process::Child, project: &Path) -> (Self, String) {
        let editor = Self::connect(process).await;
        editor.initialize().await;
        let thread = editor.new_session(project).await;
        (editor, thread)
    }

    async fn initialize(&self) -> InitializeResponse {
        self.cx
            .send_request(InitializeRequest::new(ProtocolVersion::V1))
            .block_task()
            .await
            .unwrap()
    }

    async fn new_session(&self, cwd: &Path) -> String {
        let response = self
            .cx
            .send_request(NewSessionRequest::new(cwd))
            .block_task()
            .await
            .unwrap();
        response.session_id.0.to_string()
    }

    /// Sends a prompt; the turn runs in the background (the test answers its questions).
    fn prompt(
        &self,
        session: &str,
        text: &str,
    ) -> tokio::task::JoinHandle<Result<StopReason, agent_client_protocol::Error>> {
        let request = PromptRequest::new(
            session.to_owned(),
            vec![ContentBlock::Text(TextContent::new(text))],
        );
        let cx = self.cx.clone();
        tokio::spawn(async move {
            cx.send_request(request)
                .block_task()
                .await
                .map(|response| response.stop_reason)
        })
    }

    /// The next permission question (waits for it).
    async fn question(&mut self) -> Question {
        tokio::time::timeout(Duration::from_secs(180), self.questions.recv())
            .await
            .expect("no permission question within 3 minutes")
            .expect("the connection closed")
    }

    fn updates(&self, session: &str) -> Vec<SessionUpdate> {
        self.seen
            .lock()
            .unwrap()
            .updates
            .get(session)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `pred` holds for the thread's updates.
    async fn wait_for(
        &mut self,
        session: &str,
        what: &str,
        pred: impl Fn(&[SessionUpdate]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        while !pred(&self.updates(session)) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if tokio::time::timeout(left, self.updates.recv())
                .await
                .is_err()
            {
                panic!("waiting for {what}: {:#?}", self.updates(session));
            }
        }
    }
}

fn answer(question: Question, option: &str) {
    let _ = question.answer.send(RequestPermissionResponse::new(
        RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new(option.to_owned())),
    ));
}

/// The thread's agent text so far.
fn agent_text(updates: &[SessionUpdate]) -> String {
    updates
        .iter()
        .filter_map(|u| match u {
            SessionUpdate::AgentMessageChunk(chunk) => match &chunk.content {
                ContentBlock::Text(text) => Some(text.text.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn user_text(updates: &[SessionUpdate]) -> String {
    updates
        .iter()
        .filter_map(|u| match u {
            SessionUpdate::UserMessageChunk(chunk) => match &chunk.content {
                ContentBlock::Text(text) => Some(text.text.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Each plan update's entry statuses, in arrival order.
fn plans(updates: &[SessionUpdate]) -> Vec<Vec<PlanEntryStatus>> {
    updates
        .iter()
        .filter_map(|u| match u {
            SessionUpdate::Plan(plan) => {
                Some(plan.entries.iter().map(|e| e.status.clone()).collect())
            }
            _ => None,
        })
        .collect()
}

fn rank(status: &PlanEntryStatus) -> u8 {
    match status {
        PlanEntryStatus::Pending => 0,
        PlanEntryStatus::InProgress => 1,
        _ => 2,
    }
}

fn tool_call_ids(updates: &[SessionUpdate]) -> Vec<String> {
    updates
        .iter()
        .filter_map(|u| match u {
            SessionUpdate::ToolCall(call) => Some(call.tool_call_id.0.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_plans_reviews_approves_and_follows_the_threads_over_acp() {
    let Some(agent) = require_test_agent() else {
        return;
    };
    let fixture = Fixture::start(&agent).await;
    fixture.planner.push(streamed(&spec_reply("Greeting"), 20));
    fixture
        .planner
        .push(streamed(&spec_reply("Signed greeting"), 20));
    let mut editor = Editor::connect(fixture.spawn_acp()).await;

    let init = editor.initialize().await;
    assert!(init.agent_capabilities.load_session);
    assert!(init.agent_capabilities.session_capabilities.list.is_some());

    // The first prompt creates the task; planning streams in; the editor is asked to approve.
    let project = fixture.repo.path().to_path_buf();
    let thread = editor.new_session(&project).await;
    let turn = editor.prompt(&thread, "Write a greeting");
    let question = editor.question().await;
    assert_eq!(
        question.request.tool_call.fields.title.as_deref(),
        Some("Approve the spec (revision 1)")
    );
    let updates = editor.updates(&thread);
    let text = agent_text(&updates);
    assert!(text.contains("# Requirements: Greeting"), "{text}");
    assert!(text.contains("# Implementation Plan: Greeting"), "{text}");
    let links: Vec<String> = updates
        .iter()
        .filter_map(|u| match u {
            SessionUpdate::AgentMessageChunk(chunk) => match &chunk.content {
                ContentBlock::ResourceLink(link) => Some(link.uri.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(links.len(), 3, "{links:?}");
    let tasks = fixture.get("/spec-tasks").await;
    let id = tasks["spec_tasks"][0]["id"].as_str().unwrap().to_owned();
    for (link, file) in links
        .iter()
        .zip(["requirements.md", "design.md", "tasks.md"])
    {
        assert!(
            link.ends_with(&format!(".spectask/specs/{id}/{file}")),
            "{link}"
        );
        let path = PathBuf::from(link.trim_start_matches("file://"));
        assert!(path.is_file(), "{link} is not a file");
    }

    // Request changes: the turn ends asking what should change; the next prompt says it.
    answer(question, "request_changes");
    assert_eq!(turn.await.unwrap().unwrap(), StopReason::EndTurn);
    assert!(agent_text(&editor.updates(&thread)).contains("What should change in revision 1?"));
    let turn = editor.prompt(&thread, "Sign the parts");
    let question = editor.question().await;
    assert_eq!(
        question.request.tool_call.fields.title.as_deref(),
        Some("Approve the spec (revision 2)")
    );
    assert!(agent_text(&editor.updates(&thread)).contains("# Requirements: Signed greeting"));
    let revisions = fixture.get(&format!("/spec-tasks/{id}/revisions")).await;
    let second = revisions["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["revision"] == 2)
        .unwrap_or_else(|| panic!("no revision 2: {revisions}"));
    assert!(
        second["feedback"]
            .as_str()
            .is_some_and(|f| f.contains("Sign the parts")),
        "{second}"
    );

    // Approve: the plan and the work sessions stream in; the agent's question is forwarded.
    answer(question, "approve");
    let question = editor.question().await;
    assert_eq!(
        question.request.tool_call.fields.title.as_deref(),
        Some("Write part-one.txt")
    );
    let options: Vec<String> = question
        .request
        .options
        .iter()
        .map(|o| o.option_id.0.to_string())
        .collect();
    assert_eq!(options, ["reject", "allow"]);

    // While part one waits for that answer, its thread is loaded as a thread of its own and told
    // something more: the message is queued after the running turn, and its turn streams back.
    let sessions = fixture
        .get(&format!("/spec-tasks/{id}/work-sessions"))
        .await;
    let part_one = sessions["work_sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ws| {
            ws["implementation_task_title"]
                .as_str()
                .is_some_and(|t| t.contains("part one"))
        })
        .unwrap()
        .clone();
    let ws = part_one["id"].as_str().unwrap().to_owned();
    editor
        .cx
        .send_request(LoadSessionRequest::new(ws.clone(), project.clone()))
        .block_task()
        .await
        .unwrap();
    assert!(user_text(&editor.updates(&ws)).contains("Task 1: Write part one"));
    let follow_up = editor.prompt(&ws, "Also add a test");
    answer(question, "allow");
    assert_eq!(follow_up.await.unwrap().unwrap(), StopReason::EndTurn);
    assert!(agent_text(&editor.updates(&ws)).contains("Added a test for the greeting."));
    let helix = part_one["helix_session_id"].as_str().unwrap();
    let thread_session = fixture.get(&format!("/sessions/{helix}")).await;
    let last = thread_session["interactions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        last["prompt_message"]
            .as_str()
            .is_some_and(|p| p.contains("Also add a test")),
        "{last}"
    );
    assert!(
        last["response_message"]
            .as_str()
            .unwrap()
            .contains("Added a test")
    );

    // The task's turn ends at the review.
    assert_eq!(turn.await.unwrap().unwrap(), StopReason::EndTurn);
    let updates = editor.updates(&thread);
    let text = agent_text(&updates);
    assert!(text.contains("Ready for review"), "{text}");
    assert!(text.contains("Say `approve`"), "{text}");

    // The plan arrived in order: no entry ever went back, and the last has every entry done.
    let plans = plans(&updates);
    assert!(plans.len() >= 2, "{plans:?}");
    for pair in plans.windows(2) {
        for (before, after) in pair[0].iter().zip(&pair[1]) {
            assert!(rank(before) <= rank(after), "{plans:?}");
        }
    }
    let last = plans.last().unwrap();
    assert_eq!(last.len(), 2);
    assert!(
        last.iter().all(|s| *s == PlanEntryStatus::Completed),
        "{plans:?}"
    );

    // Each work session is a tool call of its own, with its thread's output.
    let sessions = fixture
        .get(&format!("/spec-tasks/{id}/work-sessions"))
        .await;
    let ws_ids: Vec<String> = sessions["work_sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ws| ws["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ws_ids.len(), 2);
    let calls = tool_call_ids(&updates);
    for ws in &ws_ids {
        assert!(calls.contains(&format!("work-session:{ws}")), "{calls:?}");
    }
    let outputs: String = updates
        .iter()
        .filter_map(|u| match u {
            SessionUpdate::ToolCallUpdate(update) => update.fields.content.as_ref(),
            _ => None,
        })
        .flatten()
        .map(|c| format!("{c:?}"))
        .collect();
    assert!(outputs.contains("Wrote part one."), "{outputs}");
    let requests = fixture
        .get(&format!("/spec-tasks/{id}/permission-requests"))
        .await;
    assert_eq!(requests["permission_requests"][0]["choice"], "allow");

    // The history: the project's tasks and each of their sessions.
    let listed: ListSessionsResponse = editor
        .cx
        .send_request(ListSessionsRequest::new().cwd(project.clone()))
        .block_task()
        .await
        .unwrap();
    let listed_ids: Vec<String> = listed
        .sessions
        .iter()
        .map(|s| s.session_id.0.to_string())
        .collect();
    assert!(listed_ids.contains(&id), "{listed_ids:?}");
    for ws in &ws_ids {
        assert!(listed_ids.contains(ws), "{listed_ids:?}");
    }
    let elsewhere: ListSessionsResponse = editor
        .cx
        .send_request(ListSessionsRequest::new().cwd(fixture.cwd.path().to_path_buf()))
        .block_task()
        .await
        .unwrap();
    assert!(elsewhere.sessions.is_empty());

    // Loading the task replays its prompt, the planning, the statuses and the plan.
    editor
        .cx
        .send_request(LoadSessionRequest::new(id.clone(), project.clone()))
        .block_task()
        .await
        .unwrap();
    let replay = editor.updates(&id);
    assert!(user_text(&replay).contains("Write a greeting"));
    let text = agent_text(&replay);
    assert!(text.contains("# Requirements: Greeting"), "{text}");
    assert!(text.contains("# Requirements: Signed greeting"), "{text}");
    assert!(text.contains("spec_review → spec_revision"), "{text}");
    let replayed_plans = self::plans(&replay);
    assert!(
        replayed_plans
            .last()
            .is_some_and(|p| p.iter().all(|s| *s == PlanEntryStatus::Completed)),
        "{replayed_plans:?}"
    );

    // Loading part one's thread again replays all of it: both turns, their text and tools.
    editor
        .cx
        .send_request(LoadSessionRequest::new(ws.clone(), project.clone()))
        .block_task()
        .await
        .unwrap();
    let replay = editor.updates(&ws);
    let text = agent_text(&replay);
    assert!(text.matches("Wrote part one.").count() >= 1, "{text}");
    assert!(
        text.matches("Added a test for the greeting.").count() >= 2,
        "{text}"
    );
    assert!(!tool_call_ids(&replay).is_empty());
    // A completed session takes no more messages: the editor is told why.
    let refused = editor
        .cx
        .send_request(PromptRequest::new(
            ws.clone(),
            vec![ContentBlock::Text(TextContent::new("One more thing"))],
        ))
        .block_task()
        .await
        .unwrap_err();
    assert!(refused.message.contains("completed"), "{refused:?}");

    // The task thread again: `approve` finishes the task.
    let done = editor.prompt(&id, "approve");
    assert_eq!(done.await.unwrap().unwrap(), StopReason::EndTurn);
    assert!(agent_text(&editor.updates(&id)).contains("The task is done."));
    let task = fixture.get(&format!("/spec-tasks/{id}")).await;
    assert_eq!(task["status"], "done");

    drop(editor);
    fixture.stop().await;
}

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
