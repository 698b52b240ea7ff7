//! Shared set-up for the agent tests: a client that spawns the built agent with only its own
//! variables, in a process group of its own, and speaks ACP to it over stdio.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_client_protocol::schema::ProtocolVersion;
use agent_client_protocol::v1::ConnectionTo;
use agent_client_protocol::v1::schema::{
    ContentBlock, ContentChunk, InitializeRequest, NewSessionRequest, PromptRequest,
    ReadTextFileRequest, ReadTextFileResponse, RequestPermissionOutcome, RequestPermissionRequest,
    RequestPermissionResponse, SelectedPermissionOutcome, SessionId, SessionNotification,
    SessionUpdate, StopReason, TextContent, WriteTextFileRequest, WriteTextFileResponse,
};
use agent_client_protocol::{Agent, ByteStreams, Client, Error};
use spectask_acp_test_agent::env;
use spectask_acp_test_agent::script::{RequestRecord, Script, Step};
use tokio::sync::oneshot;
use tokio_util::compat::{TokioAsyncReadCompatExt as _, TokioAsyncWriteCompatExt as _};

const BIN: &str = env!("CARGO_BIN_EXE_spectask-acp-test-agent");
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// How the test client answers `session/request_permission`.
#[derive(Debug, Clone)]
pub enum PermissionAnswer {
    Select(&'static str),
    Cancelled,
}

/// One running agent process and the client connection to it.
pub struct TestClient {
    pub conn: ConnectionTo<Agent>,
    updates: Arc<Mutex<Vec<SessionNotification>>>,
    permission: Arc<Mutex<PermissionAnswer>>,
    child: tokio::process::Child,
    pgid: u32,
    done: Option<oneshot::Sender<()>>,
    driver: tokio::task::JoinHandle<Result<(), Error>>,
}

/// An initialized agent running `steps`, with one session whose cwd is a fresh temporary
/// directory (which also holds the agent's state).
pub struct Started {
    pub dir: tempfile::TempDir,
    pub client: TestClient,
    pub session: SessionId,
}

impl Started {
    pub async fn new(steps: Vec<Step>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let agent_env = AgentEnv {
            script: Some(Script::steps(steps)),
            state: Some(dir.path().join("state")),
            ..AgentEnv::default()
        };
        let client = TestClient::spawn(&agent_env).await;
        client.initialize().await;
        let session = client.new_session(dir.path()).await;
        Self {
            dir,
            client,
            session,
        }
    }
}

/// The agent's environment, and nothing inherited.
#[derive(Default, Clone)]
pub struct AgentEnv {
    pub script: Option<Script>,
    pub script_file: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub log: Option<PathBuf>,
}

impl TestClient {
    pub async fn spawn(agent_env: &AgentEnv) -> Self {
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

    pub async fn initialize(&self) -> agent_client_protocol::v1::schema::InitializeResponse {
        timeout(
            self.conn
                .send_request(InitializeRequest::new(ProtocolVersion::V1))
                .block_task(),
        )
        .await
        .unwrap()
    }

    pub async fn new_session(&self, cwd: &Path) -> SessionId {
        timeout(
            self.conn
                .send_request(NewSessionRequest::new(cwd))
                .block_task(),
        )
        .await
        .unwrap()
        .session_id
    }

    pub async fn prompt(&self, session: &SessionId, text: &str) -> Result<StopReason, Error> {
        timeout(self.prompt_request(session, text).block_task())
            .await
            .map(|response| response.stop_reason)
    }

    pub fn prompt_request(
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
    pub fn take_updates(&self) -> Vec<SessionUpdate> {
        std::mem::take(&mut *self.updates.lock().unwrap())
            .into_iter()
            .map(|notification| notification.update)
            .collect()
    }

    pub fn answer_permission(&self, answer: PermissionAnswer) {
        *self.permission.lock().unwrap() = answer;
    }

    /// Ends the connection and kills the agent's whole process group.
    pub async fn shutdown(mut self) -> Option<i32> {
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

pub async fn timeout<T>(future: impl std::future::IntoFuture<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .expect("timed out")
}

pub fn text_of(chunk: &ContentChunk) -> &str {
    match &chunk.content {
        ContentBlock::Text(text) => &text.text,
        other => panic!("expected text, got {other:?}"),
    }
}

/// The agent message chunks among `updates`.
pub fn agent_text(updates: &[SessionUpdate]) -> Vec<String> {
    updates
        .iter()
        .filter_map(|update| match update {
            SessionUpdate::AgentMessageChunk(chunk) => Some(text_of(chunk).to_owned()),
            _ => None,
        })
        .collect()
}

pub fn read_log(path: &Path) -> Vec<RequestRecord> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}
