//! Drives the built `spectask-acp-test-agent` binary as a real ACP client would: the crate's own
//! client side over the child's stdio, the child spawned with an empty environment plus the
//! agent's variables, in its own process group that is killed at the end of each test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_client_protocol::schema::ProtocolVersion;
use agent_client_protocol::v1::ConnectionTo;
use agent_client_protocol::v1::schema::{
    CancelNotification, ContentBlock, ContentChunk, InitializeRequest, LoadSessionRequest,
    McpServer, McpServerHttp, NewSessionRequest, PromptRequest, ReadTextFileRequest,
    ReadTextFileResponse, RequestPermissionOutcome, RequestPermissionRequest,
    RequestPermissionResponse, SelectedPermissionOutcome, SessionId, SessionNotification,
    SessionUpdate, StopReason, TextContent, ToolCallStatus, WriteTextFileRequest,
    WriteTextFileResponse,
};
use agent_client_protocol::{Agent, ByteStreams, Client, Error};
use spectask_acp_test_agent::env;
use spectask_acp_test_agent::script::{RequestRecord, Rule, Script, Step, StopReasonName};
use tokio::sync::oneshot;
use tokio_util::compat::{TokioAsyncReadCompatExt as _, TokioAsyncWriteCompatExt as _};

const BIN: &str = env!("CARGO_BIN_EXE_spectask-acp-test-agent");
const TIMEOUT: Duration = Duration::from_secs(10);

/// How the test client answers `session/request_permission`.
#[derive(Debug, Clone)]
enum PermissionAnswer {
    Select(&'static str),
    Cancelled,
}

/// One running agent process and the client connection to it.
struct TestClient {
    conn: ConnectionTo<Agent>,
    updates: Arc<Mutex<Vec<SessionNotification>>>,
    permission: Arc<Mutex<PermissionAnswer>>,
    child: tokio::process::Child,
    pgid: u32,
    done: Option<oneshot::Sender<()>>,
    driver: tokio::task::JoinHandle<Result<(), Error>>,
}

/// The agent's environment, and nothing inherited.
#[derive(Default, Clone)]
struct AgentEnv {
    script: Option<Script>,
    script_file: Option<PathBuf>,
    state: Option<PathBuf>,
    log: Option<PathBuf>,
}

impl TestClient {
    async fn spawn(agent_env: &AgentEnv) -> Self {
        let mut command = tokio::process::Command::new(BIN);
        command
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(script) = &agent_env.script {
            command.env(env::SCRIPT, serde_json::to_string(script).unwrap());
        }
        if let Some(file) = &agent_env.script_file {
            command.env(env::SCRIPT_FILE, file);
        }
        if let Some(state) = &agent_env.state {
            command.env(env::STATE, state);
        }
        if let Some(log) = &agent_env.log {
            command.env(env::LOG, log);
        }
        let mut child = command.spawn().expect("spawning the test agent");
        let pgid = child.id().expect("child pid");
        let stdin = child.stdin.take().unwrap().compat_write();
        let stdout = child.stdout.take().unwrap().compat();

        let updates = Arc::new(Mutex::new(Vec::new()));
        let permission = Arc::new(Mutex::new(PermissionAnswer::Select("allow")));
        let (conn_tx, conn_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let recorded = updates.clone();
        let answer = permission.clone();
        let builder = Client
            .v1()
            .name("acp-test-agent-tests")
            .on_receive_notification(
                async move |notification: SessionNotification, _cx| {
                    // Runs in the dispatch loop, so updates are recorded in arrival order and
                    // before any response that arrived after them is delivered.
                    recorded.lock().unwrap().push(notification);
                    Ok(())
                },
                agent_client_protocol::on_receive_notification!(),
            )
            .on_receive_request(
                async move |request: WriteTextFileRequest, responder, _cx| {
                    if request.path.to_string_lossy().contains("forbidden") {
                        return responder.respond_with_error(
                            Error::invalid_params().data("outside the workspace"),
                        );
                    }
                    if let Some(parent) = request.path.parent() {
                        std::fs::create_dir_all(parent).unwrap();
                    }
                    std::fs::write(&request.path, &request.content).unwrap();
                    responder.respond(WriteTextFileResponse::new())
                },
                agent_client_protocol::on_receive_request!(),
            )
            .on_receive_request(
                async move |request: ReadTextFileRequest, responder, _cx| {
                    match std::fs::read_to_string(&request.path) {
                        Ok(text) => responder.respond(ReadTextFileResponse::new(text)),
                        Err(err) => responder
                            .respond_with_error(Error::invalid_params().data(err.to_string())),
                    }
                },
                agent_client_protocol::on_receive_request!(),
            )
            .on_receive_request(
                async move |_request: RequestPermissionRequest, responder, _cx| {
                    let outcome = match answer.lock().unwrap().clone() {
                        PermissionAnswer::Select(id) => {
                            RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new(id))
                        }
                        PermissionAnswer::Cancelled => RequestPermissionOutcome::Cancelled,
                    };
                    responder.respond(RequestPermissionResponse::new(outcome))
                },
                agent_client_protocol::on_receive_request!(),
            );
        let driver = tokio::spawn(async move {
            builder
                .connect_with(
                    ByteStreams::new(stdin, stdout),
                    async move |conn: ConnectionTo<Agent>| {
                        let _ = conn_tx.send(conn);
                        let _ = done_rx.await;
                        Ok(())
                    },
                )
                .await
        });
        let conn = conn_rx.await.expect("connection started");
        Self {
            conn,
            updates,
            permission,
            child,
            pgid,
            done: Some(done_tx),
            driver,
        }
    }

    async fn initialize(&self) -> agent_client_protocol::v1::schema::InitializeResponse {
        timeout(
            self.conn
                .send_request(InitializeRequest::new(ProtocolVersion::V1))
                .block_task(),
        )
        .await
        .unwrap()
    }

    async fn new_session(&self, cwd: &Path) -> SessionId {
        timeout(
            self.conn
                .send_request(NewSessionRequest::new(cwd))
                .block_task(),
        )
        .await
        .unwrap()
        .session_id
    }

    async fn prompt(&self, session: &SessionId, text: &str) -> Result<StopReason, Error> {
        timeout(self.prompt_request(session, text).block_task())
            .await
            .map(|response| response.stop_reason)
    }

    fn prompt_request(
        &self,
        session: &SessionId,
        text: &str,
    ) -> agent_client_protocol::v1::SentRequest<agent_client_protocol::v1::schema::PromptResponse>
    {
        self.conn.send_request(PromptRequest::new(
            session.clone(),
            vec![ContentBlock::Text(TextContent::new(text))],
        ))
    }

    /// Takes the updates received so far.
    fn take_updates(&self) -> Vec<SessionUpdate> {
        std::mem::take(&mut *self.updates.lock().unwrap())
            .into_iter()
            .map(|notification| notification.update)
            .collect()
    }

    fn answer_permission(&self, answer: PermissionAnswer) {
        *self.permission.lock().unwrap() = answer;
    }

    /// Ends the connection and kills the agent's whole process group.
    async fn shutdown(mut self) -> Option<i32> {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
        let _ = tokio::time::timeout(TIMEOUT, &mut self.driver).await;
        kill_group(self.pgid);
        let status = timeout(self.child.wait()).await.unwrap();
        status.code()
    }
}

fn kill_group(pgid: u32) {
    // The workspace forbids unsafe code, so no libc::kill; the `kill` utility does the same.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

async fn timeout<T>(future: impl std::future::IntoFuture<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .expect("timed out")
}

fn text_of(chunk: &ContentChunk) -> &str {
    match &chunk.content {
        ContentBlock::Text(text) => &text.text,
        other => panic!("expected text, got {other:?}"),
    }
}

/// The agent message chunks among `updates`.
fn agent_text(updates: &[SessionUpdate]) -> Vec<String> {
    updates
        .iter()
        .filter_map(|update| match update {
            SessionUpdate::AgentMessageChunk(chunk) => Some(text_of(chunk).to_owned()),
            _ => None,
        })
        .collect()
}

fn read_log(path: &Path) -> Vec<RequestRecord> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn initialize_new_session_and_streamed_chunks_arrive_before_the_response() {
    let dir = tempfile::tempdir().unwrap();
    let agent_env = AgentEnv {
        script: Some(Script::steps(vec![
            Step::Thought {
                text: "thinking".to_owned(),
            },
            Step::Plan {
                entries: vec![serde_json::from_str(r#"{"content": "do it"}"#).unwrap()],
            },
            Step::Chunks {
                count: 5,
                delay_ms: 5,
            },
        ])),
        state: Some(dir.path().join("state")),
        ..AgentEnv::default()
    };
    let client = TestClient::spawn(&agent_env).await;
    let init = client.initialize().await;
    assert_eq!(init.protocol_version, ProtocolVersion::V1);
    assert!(init.agent_capabilities.load_session);
    let session = client.new_session(dir.path()).await;
    assert!(!session.0.is_empty());

    assert_eq!(
        client.prompt(&session, "go").await.unwrap(),
        StopReason::EndTurn
    );
    let updates = client.take_updates();
    assert!(matches!(updates[0], SessionUpdate::AgentThoughtChunk(_)));
    assert!(matches!(&updates[1], SessionUpdate::Plan(plan) if plan.entries.len() == 1));
    let expected: Vec<String> = (1..=5).map(|i| format!("chunk {i}/5\n")).collect();
    assert_eq!(agent_text(&updates), expected);
    assert_eq!(updates.len(), 7);

    // A second session gets a different id.
    assert_ne!(client.new_session(dir.path()).await, session);
    client.shutdown().await;
}

#[tokio::test]
async fn write_and_read_files_through_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().join("ws");
    std::fs::create_dir_all(&workspace).unwrap();
    let agent_env = AgentEnv {
        script: Some(Script::steps(vec![
            Step::WriteFile {
                path: "src/out.txt".to_owned(),
                content: "first line\nsecond line\n".to_owned(),
            },
            Step::WriteFile {
                path: "forbidden.txt".to_owned(),
                content: "nope".to_owned(),
            },
            Step::ReadFile {
                path: "src/out.txt".to_owned(),
            },
        ])),
        state: Some(dir.path().join("state")),
        ..AgentEnv::default()
    };
    let client = TestClient::spawn(&agent_env).await;
    client.initialize().await;
    let session = client.new_session(&workspace).await;
    assert_eq!(
        client.prompt(&session, "write").await.unwrap(),
        StopReason::EndTurn
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("src/out.txt")).unwrap(),
        "first line\nsecond line\n"
    );
    assert!(!workspace.join("forbidden.txt").exists());

    let updates = client.take_updates();
    let statuses: Vec<(String, Option<ToolCallStatus>)> = updates
        .iter()
        .filter_map(|update| match update {
            SessionUpdate::ToolCall(call) => {
                Some((call.tool_call_id.0.to_string(), Some(call.status)))
            }
            SessionUpdate::ToolCallUpdate(update) => {
                Some((update.tool_call_id.0.to_string(), update.fields.status))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("tool-1".to_owned(), Some(ToolCallStatus::InProgress)),
            ("tool-1".to_owned(), Some(ToolCallStatus::Completed)),
            ("tool-2".to_owned(), Some(ToolCallStatus::InProgress)),
            ("tool-2".to_owned(), Some(ToolCallStatus::Failed)),
            ("tool-3".to_owned(), Some(ToolCallStatus::InProgress)),
            ("tool-3".to_owned(), Some(ToolCallStatus::Completed)),
        ]
    );
    let SessionUpdate::ToolCall(write) = &updates[0] else {
        panic!("expected a tool call")
    };
    assert_eq!(
        write.locations[0].path,
        workspace.join("src/out.txt"),
        "the path is made absolute against the session cwd"
    );
    assert_eq!(agent_text(&updates), vec!["first line\n".to_owned()]);
    client.shutdown().await;
}

#[tokio::test]
async fn permission_allowed_runs_on_and_rejected_ends_the_turn() {
    let dir = tempfile::tempdir().unwrap();
    let agent_env = AgentEnv {
        script: Some(Script::steps(vec![
            Step::RequestPermission {
                title: "Run rm".to_owned(),
                options: None,
            },
            Step::Chunks {
                count: 1,
                delay_ms: 0,
            },
        ])),
        state: Some(dir.path().join("state")),
        ..AgentEnv::default()
    };
    let client = TestClient::spawn(&agent_env).await;
    client.initialize().await;
    let session = client.new_session(dir.path()).await;

    client.answer_permission(PermissionAnswer::Select("allow"));
    assert_eq!(
        client.prompt(&session, "one").await.unwrap(),
        StopReason::EndTurn
    );
    assert_eq!(
        agent_text(&client.take_updates()),
        vec!["chunk 1/1\n".to_owned()]
    );

    client.answer_permission(PermissionAnswer::Select("reject"));
    assert_eq!(
        client.prompt(&session, "two").await.unwrap(),
        StopReason::EndTurn
    );
    assert_eq!(
        agent_text(&client.take_updates()),
        vec!["permission refused: Run rm\n".to_owned()]
    );

    client.answer_permission(PermissionAnswer::Cancelled);
    assert_eq!(
        client.prompt(&session, "three").await.unwrap(),
        StopReason::EndTurn
    );
    assert_eq!(
        agent_text(&client.take_updates()),
        vec!["permission refused: Run rm\n".to_owned()]
    );
    client.shutdown().await;
}

#[tokio::test]
async fn run_command_asks_then_runs_in_the_session_cwd_and_reports_its_exit() {
    let dir = tempfile::tempdir().unwrap();
    let agent_env = AgentEnv {
        script: Some(Script::steps(vec![Step::RunCommand {
            command: "echo made > made.txt && cat made.txt && exit 3".to_owned(),
            ask_permission: true,
            background: false,
        }])),
        state: Some(dir.path().join("state")),
        ..AgentEnv::default()
    };
    let client = TestClient::spawn(&agent_env).await;
    client.initialize().await;
    let session = client.new_session(dir.path()).await;

    client.answer_permission(PermissionAnswer::Select("reject"));
    assert_eq!(
        client.prompt(&session, "one").await.unwrap(),
        StopReason::EndTurn
    );
    assert!(!dir.path().join("made.txt").exists());
    let updates = client.take_updates();
    assert_eq!(
        agent_text(&updates),
        vec!["permission refused: echo made > made.txt && cat made.txt && exit 3\n".to_owned()]
    );
    let execute_calls = updates
        .iter()
        .filter(|update| {
            matches!(update, SessionUpdate::ToolCall(call)
            if call.kind == agent_client_protocol::v1::schema::ToolKind::Execute
                && call.raw_input == Some(serde_json::json!({
                    "command": "echo made > made.txt && cat made.txt && exit 3"
                })))
        })
        .count();
    assert_eq!(execute_calls, 1);

    client.answer_permission(PermissionAnswer::Select("allow"));
    assert_eq!(
        client.prompt(&session, "two").await.unwrap(),
        StopReason::EndTurn
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("made.txt")).unwrap(),
        "made\n"
    );
    assert_eq!(
        agent_text(&client.take_updates()),
        vec!["exit 3\nmade\n".to_owned()]
    );
    client.shutdown().await;
}

#[tokio::test]
async fn run_command_in_the_background_leaves_the_command_running() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("done");
    let agent_env = AgentEnv {
        script: Some(Script::steps(vec![Step::RunCommand {
            // Finishes only after the turn has ended, which a foreground command cannot.
            command: "while [ ! -e go ]; do sleep 0.05; done; touch done".to_owned(),
            ask_permission: false,
            background: true,
        }])),
        state: Some(dir.path().join("state")),
        ..AgentEnv::default()
    };
    let client = TestClient::spawn(&agent_env).await;
    client.initialize().await;
    let session = client.new_session(dir.path()).await;
    assert_eq!(
        client.prompt(&session, "go").await.unwrap(),
        StopReason::EndTurn
    );
    let text = agent_text(&client.take_updates());
    assert!(text[0].starts_with("started pid "), "{text:?}");
    std::fs::write(dir.path().join("go"), "").unwrap();
    timeout(async {
        while !marker.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    client.shutdown().await;
}

#[tokio::test]
async fn hang_is_ended_promptly_by_session_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let agent_env = AgentEnv {
        script: Some(Script::steps(vec![
            Step::Chunks {
                count: 1,
                delay_ms: 0,
            },
            Step::Hang,
        ])),
        state: Some(dir.path().join("state")),
        ..AgentEnv::default()
    };
    let client = TestClient::spawn(&agent_env).await;
    client.initialize().await;
    let session = client.new_session(dir.path()).await;
    let prompt = tokio::spawn(client.prompt_request(&session, "hang").block_task());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !prompt.is_finished(),
        "a hanging turn must not end by itself"
    );
    let cancelled_at = std::time::Instant::now();
    client
        .conn
        .send_notification(CancelNotification::new(session.clone()))
        .unwrap();
    let response = timeout(prompt).await.unwrap().unwrap();
    assert_eq!(response.stop_reason, StopReason::Cancelled);
    assert!(cancelled_at.elapsed() < Duration::from_secs(1));
    assert_eq!(
        agent_text(&client.take_updates()),
        vec!["chunk 1/1\n".to_owned()]
    );

    client.shutdown().await;
}

#[tokio::test]
async fn a_flood_of_ten_thousand_updates_arrives_complete_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let agent_env = AgentEnv {
        script: Some(Script::steps(vec![Step::Flood { updates: 10_000 }])),
        state: Some(dir.path().join("state")),
        ..AgentEnv::default()
    };
    let client = TestClient::spawn(&agent_env).await;
    client.initialize().await;
    let session = client.new_session(dir.path()).await;
    assert_eq!(
        client.prompt(&session, "flood").await.unwrap(),
        StopReason::EndTurn
    );
    let texts = agent_text(&client.take_updates());
    assert_eq!(texts.len(), 10_000);
    for (i, text) in texts.iter().enumerate() {
        assert_eq!(*text, format!("{}\n", i + 1));
    }
    client.shutdown().await;
}

/// Stamped chunks carry their send time (microseconds since the epoch) and follow their
/// schedule rather than as fast as possible.
#[tokio::test]
async fn stamped_chunks_carry_their_send_time_on_a_schedule() {
    let micros_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
    };
    let dir = tempfile::tempdir().unwrap();
    let agent_env = AgentEnv {
        script: Some(Script::steps(vec![Step::Stamped {
            count: 5,
            interval_ms: 40,
        }])),
        state: Some(dir.path().join("state")),
        ..AgentEnv::default()
    };
    let client = TestClient::spawn(&agent_env).await;
    client.initialize().await;
    let session = client.new_session(dir.path()).await;
    let before = micros_now();
    assert_eq!(
        client.prompt(&session, "stamp").await.unwrap(),
        StopReason::EndTurn
    );
    let after = micros_now();
    let stamps: Vec<u128> = agent_text(&client.take_updates())
        .iter()
        .map(|text| {
            text.strip_prefix('@')
                .and_then(|t| t.strip_suffix('\n'))
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(stamps.len(), 5);
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
    assert!(before <= stamps[0] && stamps[4] <= after, "{stamps:?}");
    // Four intervals elapse between the first and the last; one is slack for the timer's
    // millisecond granularity and the wall clock read after each wake-up.
    assert!(stamps[4] - stamps[0] >= 3 * 40_000, "{stamps:?}");
    client.shutdown().await;
}

#[tokio::test]
async fn script_file_is_reread_every_prompt_and_rules_pick_steps() {
    let dir = tempfile::tempdir().unwrap();
    let script_file = dir.path().join("script.json");
    let write_script = |script: &Script| {
        std::fs::write(&script_file, serde_json::to_string(script).unwrap()).unwrap();
    };
    write_script(&Script {
        load_session: Some(false),
        steps: vec![Step::Chunks {
            count: 1,
            delay_ms: 0,
        }],
        rules: vec![Rule {
            prompt_contains: "refuse".to_owned(),
            steps: vec![Step::Stop {
                reason: StopReasonName::Refusal,
            }],
            times: Some(1),
        }],
        ..Script::default()
    });
    let agent_env = AgentEnv {
        script_file: Some(script_file.clone()),
        state: Some(dir.path().join("state")),
        ..AgentEnv::default()
    };
    let client = TestClient::spawn(&agent_env).await;
    assert!(!client.initialize().await.agent_capabilities.load_session);
    let session = client.new_session(dir.path()).await;
    assert_eq!(
        client.prompt(&session, "please refuse").await.unwrap(),
        StopReason::Refusal
    );
    // `times: 1` is used up: the default steps run.
    assert_eq!(
        client.prompt(&session, "please refuse").await.unwrap(),
        StopReason::EndTurn
    );
    assert_eq!(
        agent_text(&client.take_updates()),
        vec!["chunk 1/1\n".to_owned()]
    );

    write_script(&Script::steps(vec![Step::Stop {
        reason: StopReasonName::MaxTokens,
    }]));
    assert_eq!(
        client.prompt(&session, "anything").await.unwrap(),
        StopReason::MaxTokens
    );

    // An unknown MCP server fails the tool call, not the turn.
    write_script(&Script::steps(vec![
        Step::CallMcpTool {
            server: "spectask".to_owned(),
            tool: "get_spec".to_owned(),
            arguments: serde_json::Map::new(),
        },
        Step::Chunks {
            count: 1,
            delay_ms: 0,
        },
    ]));
    assert_eq!(
        client.prompt(&session, "mcp").await.unwrap(),
        StopReason::EndTurn
    );
    let updates = client.take_updates();
    assert!(updates.iter().any(|update| matches!(
        update,
        SessionUpdate::ToolCallUpdate(u) if u.fields.status == Some(ToolCallStatus::Failed)
    )));
    assert_eq!(agent_text(&updates), vec!["chunk 1/1\n".to_owned()]);

    // A broken script is an error on the prompt, not a crash.
    std::fs::write(&script_file, "{not json").unwrap();
    assert!(client.prompt(&session, "x").await.is_err());
    client.shutdown().await;
}

#[tokio::test]
async fn crash_mid_turn_then_a_restarted_agent_loads_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let log = dir.path().join("requests.jsonl");
    let agent_env = AgentEnv {
        script: Some(Script {
            steps: vec![Step::Chunks {
                count: 2,
                delay_ms: 0,
            }],
            rules: vec![Rule {
                prompt_contains: "crash".to_owned(),
                steps: vec![
                    Step::Chunks {
                        count: 1,
                        delay_ms: 0,
                    },
                    Step::Crash { exit_code: 3 },
                ],
                times: Some(1),
            }],
            ..Script::default()
        }),
        state: Some(state.clone()),
        log: Some(log.clone()),
        ..AgentEnv::default()
    };

    let first = TestClient::spawn(&agent_env).await;
    first.initialize().await;
    let session = first.new_session(dir.path()).await;
    assert_eq!(
        first.prompt(&session, "hello").await.unwrap(),
        StopReason::EndTurn
    );
    first.take_updates();
    assert!(
        first.prompt(&session, "now crash").await.is_err(),
        "a crash mid-turn ends the prompt with an error"
    );
    assert_eq!(
        agent_text(&first.take_updates()),
        vec!["chunk 1/1\n".to_owned()],
        "what was sent before the crash was flushed"
    );
    assert_eq!(first.shutdown().await, Some(3));

    let second = TestClient::spawn(&agent_env).await;
    assert!(second.initialize().await.agent_capabilities.load_session);
    timeout(
        second
            .conn
            .send_request(LoadSessionRequest::new(session.clone(), dir.path()))
            .block_task(),
    )
    .await
    .unwrap();
    let replay: Vec<(&str, String)> = second
        .take_updates()
        .iter()
        .map(|update| match update {
            SessionUpdate::UserMessageChunk(chunk) => ("user", text_of(chunk).to_owned()),
            SessionUpdate::AgentMessageChunk(chunk) => ("agent", text_of(chunk).to_owned()),
            other => panic!("unexpected replay update {other:?}"),
        })
        .collect();
    assert_eq!(
        replay,
        vec![
            ("user", "hello".to_owned()),
            ("agent", "chunk 1/2\nchunk 2/2\n".to_owned()),
            ("user", "now crash".to_owned()),
        ]
    );
    // The crash rule was used once, before the restart: the same prompt now runs the defaults.
    assert_eq!(
        second.prompt(&session, "now crash").await.unwrap(),
        StopReason::EndTurn
    );
    assert_eq!(
        agent_text(&second.take_updates()),
        vec!["chunk 1/2\n".to_owned(), "chunk 2/2\n".to_owned()]
    );

    // An id this agent never issued is not found.
    let unknown = timeout(
        second
            .conn
            .send_request(LoadSessionRequest::new(
                SessionId::new("tsa-unknown"),
                dir.path(),
            ))
            .block_task(),
    )
    .await;
    assert_eq!(unknown.unwrap_err().code.value(), -32002);
    second.shutdown().await;

    let records = read_log(&log);
    let seen: Vec<(&str, Option<&str>)> = records
        .iter()
        .map(|r| (r.method.as_str(), r.prompt.as_deref()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("initialize", None),
            ("session/new", None),
            ("session/prompt", Some("hello")),
            ("session/prompt", Some("now crash")),
            ("initialize", None),
            ("session/load", None),
            ("session/prompt", Some("now crash")),
            ("session/load", None),
        ]
    );
    assert_ne!(records[0].pid, records[4].pid, "two agent processes");
    assert_eq!(
        records[2].session_id.as_deref(),
        Some(&*session.0),
        "the log names the session"
    );
}

/// A minimal MCP server over streamable HTTP with JSON responses: `initialize`, notifications,
/// and one `tools/call` that echoes its name, arguments and the bearer token. Returns its URL.
async fn spawn_mcp_server() -> String {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;

    async fn post(
        headers: HeaderMap,
        axum::Json(message): axum::Json<serde_json::Value>,
    ) -> axum::response::Response {
        let Some(id) = message.get("id").cloned() else {
            return StatusCode::ACCEPTED.into_response();
        };
        let result = match message["method"].as_str() {
            Some("initialize") => serde_json::json!({
                "protocolVersion": message["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "test-mcp", "version": "0.0.0"}
            }),
            Some("tools/call") => {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                serde_json::json!({
                    "content": [{"type": "text", "text": format!(
                        "{} {} {auth}",
                        message["params"]["name"].as_str().unwrap_or(""),
                        message["params"]["arguments"]
                    )}],
                    "isError": false
                })
            }
            _ => serde_json::json!({}),
        };
        (
            [("mcp-session-id", "test-session")],
            axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result})),
        )
            .into_response()
    }

    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(post)
            .get(|| async { StatusCode::METHOD_NOT_ALLOWED })
            .delete(|| async { StatusCode::OK }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/mcp")
}

#[tokio::test]
async fn call_mcp_tool_reaches_the_session_mcp_server() {
    let dir = tempfile::tempdir().unwrap();
    let url = spawn_mcp_server().await;
    let agent_env = AgentEnv {
        script: Some(Script::steps(vec![Step::CallMcpTool {
            server: "spectask".to_owned(),
            tool: "report_progress".to_owned(),
            arguments: serde_json::from_str(r#"{"task_key": "1.1"}"#).unwrap(),
        }])),
        state: Some(dir.path().join("state")),
        ..AgentEnv::default()
    };
    let client = TestClient::spawn(&agent_env).await;
    client.initialize().await;
    let session =
        timeout(
            client
                .conn
                .send_request(NewSessionRequest::new(dir.path()).mcp_servers(vec![
                    McpServer::Http(McpServerHttp::new("spectask", url).headers(vec![
                        agent_client_protocol::v1::schema::HttpHeader::new(
                            "Authorization",
                            "Bearer secret-token",
                        ),
                    ])),
                ]))
                .block_task(),
        )
        .await
        .unwrap()
        .session_id;
    assert_eq!(
        client.prompt(&session, "mcp").await.unwrap(),
        StopReason::EndTurn
    );
    let updates = client.take_updates();
    assert_eq!(
        agent_text(&updates),
        vec![r#"report_progress {"task_key":"1.1"} Bearer secret-token"#.to_owned() + "\n"]
    );
    assert!(updates.iter().any(|update| matches!(
        update,
        SessionUpdate::ToolCallUpdate(u) if u.fields.status == Some(ToolCallStatus::Completed)
    )));
    client.shutdown().await;
}
