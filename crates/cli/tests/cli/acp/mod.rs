//! `spectask acp` driven by an ACP client of ours (the `agent-client-protocol` crate's client
//! side), against the real `spectask serve` with a loopback planner and our scripted ACP test
//! agent under the `ask` policy. This module is the harness (the server fixture, our editor, what
//! it saw); `flow.rs` is the whole flow from an editor's first prompt to the approved work, the
//! thread history and a follow-up; `edges.rs` is bad input on the wire, a vanishing editor,
//! cancel and the embedded server.

mod edges;
mod flow;

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
        Self::start_with(agent, &agent_script()).await
    }

    /// The same, the test agent running `script`.
    pub async fn start_with(agent: &Path, script: &Value) -> Self {
        let planner = FakeOpenAi::start().await;
        let repo = TestRepo::new();
        let cwd = tempfile::tempdir().unwrap();
        support::configure_test_agent(cwd.path(), agent, script);
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
pub(super) struct Question {
    request: RequestPermissionRequest,
    answer: oneshot::Sender<RequestPermissionResponse>,
}

/// What the editor side saw, per thread.
#[derive(Default)]
pub(super) struct Seen {
    updates: HashMap<String, Vec<SessionUpdate>>,
}

/// Our editor: an ACP client connected to `spectask acp`.
pub(super) struct Editor {
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
    pub(super) async fn connect(mut process: tokio::process::Child) -> Self {
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
    pub(super) async fn close(mut self) -> std::process::ExitStatus {
        let mut process = self.process.take().unwrap();
        drop(self);
        tokio::time::timeout(Duration::from_secs(60), process.wait())
            .await
            .expect("spectask acp did not exit when the editor went away")
            .unwrap()
    }

    /// Connected, initialized, with a new thread in `project`.
    pub(super) async fn with_thread(
        process: tokio::process::Child,
        project: &Path,
    ) -> (Self, String) {
        let editor = Self::connect(process).await;
        editor.initialize().await;
        let thread = editor.new_session(project).await;
        (editor, thread)
    }

    pub(super) async fn initialize(&self) -> InitializeResponse {
        self.cx
            .send_request(InitializeRequest::new(ProtocolVersion::V1))
            .block_task()
            .await
            .unwrap()
    }

    pub(super) async fn new_session(&self, cwd: &Path) -> String {
        let response = self
            .cx
            .send_request(NewSessionRequest::new(cwd))
            .block_task()
            .await
            .unwrap();
        response.session_id.0.to_string()
    }

    /// Sends a prompt; the turn runs in the background (the test answers its questions).
    pub(super) fn prompt(
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
    pub(super) async fn question(&mut self) -> Question {
        tokio::time::timeout(Duration::from_secs(180), self.questions.recv())
            .await
            .expect("no permission question within 3 minutes")
            .expect("the connection closed")
    }

    pub(super) fn updates(&self, session: &str) -> Vec<SessionUpdate> {
        self.seen
            .lock()
            .unwrap()
            .updates
            .get(session)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `pred` holds for the thread's updates.
    pub(super) async fn wait_for(
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

pub(super) fn answer(question: Question, option: &str) {
    let _ = question.answer.send(RequestPermissionResponse::new(
        RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new(option.to_owned())),
    ));
}

/// The thread's agent text so far.
pub(super) fn agent_text(updates: &[SessionUpdate]) -> String {
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

pub(super) fn user_text(updates: &[SessionUpdate]) -> String {
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
pub(super) fn plans(updates: &[SessionUpdate]) -> Vec<Vec<PlanEntryStatus>> {
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

pub(super) fn rank(status: &PlanEntryStatus) -> u8 {
    match status {
        PlanEntryStatus::Pending => 0,
        PlanEntryStatus::InProgress => 1,
        _ => 2,
    }
}

pub(super) fn tool_call_ids(updates: &[SessionUpdate]) -> Vec<String> {
    updates
        .iter()
        .filter_map(|u| match u {
            SessionUpdate::ToolCall(call) => Some(call.tool_call_id.0.to_string()),
            _ => None,
        })
        .collect()
}
