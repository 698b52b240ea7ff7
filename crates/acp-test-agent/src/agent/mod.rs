//! The agent side of the connection: configuration from the environment, the live sessions, and
//! one handler per ACP method (`initialize`, `session/new`, `session/load`, `session/prompt`,
//! `session/cancel`). Turns run in spawned tasks (`turn`), because a handler holds the SDK's
//! dispatch loop and a turn waits for client replies (permission, fs) and for `session/cancel`.

mod mcp;
mod state;
mod stdout;
mod turn;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use agent_client_protocol::schema::ProtocolVersion;
use agent_client_protocol::v1::ConnectionTo;
use agent_client_protocol::v1::schema::{
    AgentCapabilities, AuthMethod, AuthMethodAgent, AuthenticateRequest, AuthenticateResponse,
    CancelNotification, ContentBlock, ContentChunk, Implementation, InitializeRequest,
    InitializeResponse, LoadSessionRequest, LoadSessionResponse, McpCapabilities, McpServer,
    NewSessionRequest, NewSessionResponse, PromptRequest, SessionId, SessionNotification,
    SessionUpdate, TextContent,
};
use agent_client_protocol::{Agent, ByteStreams, Client, Error, ErrorCode};
use spectask_acp_test_agent::env;
use spectask_acp_test_agent::script::{RequestRecord, Script};
use tokio::sync::watch;

use state::{Role, SessionFile, StateDir};

/// The exit code of a `crash_on_start` exit.
const CRASH_ON_START_EXIT_CODE: i32 = 42;

/// Everything the agent takes from its environment, read once at start.
#[derive(Debug, Clone)]
pub struct Config {
    script_json: Option<String>,
    script_file: Option<PathBuf>,
    state_dir: PathBuf,
    log: Option<PathBuf>,
}

impl Config {
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        Self {
            script_json: var(env::SCRIPT).and_then(|v| v.into_string().ok()),
            script_file: var(env::SCRIPT_FILE).map(PathBuf::from),
            // The shared default is safe: session ids are unique and rule counts live per session.
            state_dir: var(env::STATE).map_or_else(
                || std::env::temp_dir().join("spectask-acp-test-agent"),
                PathBuf::from,
            ),
            log: var(env::LOG).map(PathBuf::from),
        }
    }

    /// The current script. The file is re-read every time so a test can change behaviour between
    /// turns; a missing script means "no steps" (the turn just ends).
    fn script(&self) -> Result<Script, Error> {
        let text = if let Some(path) = &self.script_file {
            std::fs::read_to_string(path)
                .map_err(|err| internal(format!("reading script file {}: {err}", path.display())))?
        } else if let Some(json) = &self.script_json {
            json.clone()
        } else {
            return Ok(Script::default());
        };
        serde_json::from_str(&text).map_err(|err| internal(format!("invalid script: {err}")))
    }
}

fn internal(message: String) -> Error {
    tracing::error!("{message}");
    Error::internal_error().data(message)
}

/// A session this process knows.
#[derive(Debug)]
struct LiveSession {
    cwd: PathBuf,
    mcp_servers: Vec<McpServer>,
    /// The running turn's cancel flag (`None` between turns).
    cancel: Option<Arc<watch::Sender<bool>>>,
}

#[derive(Debug)]
struct Shared {
    config: Config,
    state: StateDir,
    sessions: Mutex<HashMap<String, LiveSession>>,
    next_id: AtomicU64,
}

impl Shared {
    fn log(&self, method: &str, session_id: Option<&SessionId>, prompt: Option<String>) {
        self.log_with_servers(method, session_id, prompt, &[], None);
    }

    /// Logs a request; `session/new` and `session/load` name their MCP servers and cwd.
    fn log_with_servers(
        &self,
        method: &str,
        session_id: Option<&SessionId>,
        prompt: Option<String>,
        servers: &[McpServer],
        cwd: Option<&std::path::Path>,
    ) {
        let Some(log) = &self.config.log else { return };
        let record = RequestRecord {
            method: method.to_owned(),
            session_id: session_id.map(|id| id.0.to_string()),
            prompt,
            ts_ms: state::now_ms(),
            pid: std::process::id(),
            mcp_servers: servers.iter().map(mcp::describe).collect(),
            cwd: cwd.map(std::path::Path::to_path_buf),
        };
        if let Err(err) = state::append_record(log, &record) {
            tracing::error!("request log: {err:#}");
        }
    }

    fn fresh_session_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("tsa-{}-{:x}-{n}", std::process::id(), state::now_ms())
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, LiveSession>> {
        // A poisoned lock only means another handler panicked; the map itself is still usable.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn chunk(
    session_id: &SessionId,
    update: fn(ContentChunk) -> SessionUpdate,
    text: &str,
) -> SessionNotification {
    SessionNotification::new(
        session_id.clone(),
        update(ContentChunk::new(ContentBlock::Text(TextContent::new(
            text,
        )))),
    )
}

/// The text blocks of a prompt, joined with newlines.
fn prompt_text(prompt: &[ContentBlock]) -> String {
    prompt
        .iter()
        .filter_map(|block| match block {
            ContentBlock::Text(text) => Some(text.text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Serves ACP on stdin/stdout until the client goes away.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let shared = Arc::new(Shared {
        state: StateDir::new(config.state_dir.clone()),
        config,
        sessions: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
    });
    let (s1, s2, s3, s4, s5, s6) = (
        shared.clone(),
        shared.clone(),
        shared.clone(),
        shared.clone(),
        shared.clone(),
        shared,
    );
    Agent
        .v1()
        .name("spectask-acp-test-agent")
        .on_receive_request(
            async move |request: InitializeRequest, responder, _connection| {
                s1.log("initialize", None, None);
                let script = s1.config.script()?;
                if let Some(times) = script.crash_on_start {
                    let starts = s1
                        .state
                        .count_start()
                        .map_err(|err| internal(format!("counting starts: {err:#}")))?;
                    if starts <= times {
                        tracing::warn!(starts, times, "crashing at start as scripted");
                        std::process::exit(CRASH_ON_START_EXIT_CODE);
                    }
                }
                let auth_methods = script
                    .auth
                    .as_ref()
                    .map(|auth| {
                        auth.methods
                            .iter()
                            .map(|id| {
                                AuthMethod::Agent(AuthMethodAgent::new(id.clone(), id.clone()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                responder
                    .respond(
                        InitializeResponse::new(ProtocolVersion::V1)
                            .auth_methods(auth_methods)
                            .agent_capabilities(
                                AgentCapabilities::new()
                                    .load_session(script.advertises_load_session())
                                    .mcp_capabilities(McpCapabilities::new().http(true)),
                            )
                            .agent_info(Implementation::new(
                                "spectask-acp-test-agent",
                                env!("CARGO_PKG_VERSION"),
                            )),
                    )
                    .inspect(|()| {
                        tracing::info!(client_version = ?request.protocol_version, "initialized");
                    })
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: NewSessionRequest, responder, _connection| {
                let session_id = s2.fresh_session_id();
                s2.log_with_servers(
                    "session/new",
                    Some(&SessionId::new(session_id.as_str())),
                    None,
                    &request.mcp_servers,
                    Some(&request.cwd),
                );
                let file = SessionFile {
                    session_id: session_id.clone(),
                    cwd: request.cwd.clone(),
                    ..SessionFile::default()
                };
                s2.state
                    .save(&file)
                    .map_err(|err| internal(format!("saving session: {err:#}")))?;
                s2.sessions().insert(
                    session_id.clone(),
                    LiveSession {
                        cwd: request.cwd,
                        mcp_servers: request.mcp_servers,
                        cancel: None,
                    },
                );
                tracing::info!(%session_id, "session created");
                responder.respond(NewSessionResponse::new(SessionId::new(session_id)))
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: LoadSessionRequest,
                        responder,
                        connection: ConnectionTo<Client>| {
                s3.log_with_servers(
                    "session/load",
                    Some(&request.session_id),
                    None,
                    &request.mcp_servers,
                    Some(&request.cwd),
                );
                let id = request.session_id.0.to_string();
                let file = match s3.state.load(&id) {
                    Ok(Some(file)) => file,
                    Ok(None) => {
                        return responder.respond_with_error(
                            Error::new(ErrorCode::RESOURCE_NOT_FOUND, "unknown session").data(id),
                        );
                    }
                    Err(err) => {
                        return responder
                            .respond_with_error(Error::invalid_params().data(format!("{err:#}")));
                    }
                };
                // ACP: the whole history is replayed as updates before the load response.
                for message in &file.history {
                    let update = match message.role {
                        Role::User => SessionUpdate::UserMessageChunk,
                        Role::Agent => SessionUpdate::AgentMessageChunk,
                    };
                    connection.send_notification(chunk(
                        &request.session_id,
                        update,
                        &message.text,
                    ))?;
                }
                s3.sessions().insert(
                    id.clone(),
                    LiveSession {
                        cwd: request.cwd,
                        mcp_servers: request.mcp_servers,
                        cancel: None,
                    },
                );
                tracing::info!(session_id = %id, messages = file.history.len(), "session loaded");
                responder.respond(LoadSessionResponse::new())
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: PromptRequest, responder, connection: ConnectionTo<Client>| {
                let text = prompt_text(&request.prompt);
                s4.log(
                    "session/prompt",
                    Some(&request.session_id),
                    Some(text.clone()),
                );
                let id = request.session_id.0.to_string();
                let (cancel_tx, cancel_rx) = watch::channel(false);
                let cancel_tx = Arc::new(cancel_tx);
                let (cwd, mcp_servers) = {
                    let mut sessions = s4.sessions();
                    let Some(session) = sessions.get_mut(&id) else {
                        return responder.respond_with_error(
                            Error::new(ErrorCode::RESOURCE_NOT_FOUND, "unknown session").data(id),
                        );
                    };
                    session.cancel = Some(cancel_tx.clone());
                    (session.cwd.clone(), session.mcp_servers.clone())
                };
                let script = match s4.config.script() {
                    Ok(script) => script,
                    Err(err) => return responder.respond_with_error(err),
                };
                // `$/cancel_request` on the prompt means the same as `session/cancel`.
                let request_cancel = responder.cancellation();
                let shared = s4.clone();
                connection.clone().spawn(async move {
                    let turn = turn::Turn {
                        connection,
                        session_id: request.session_id,
                        cwd,
                        mcp_servers,
                        cancel: cancel_rx,
                        state: shared.state.clone(),
                        next_tool_id: 0,
                        agent_text: String::new(),
                    };
                    let flag = cancel_tx.clone();
                    let watcher = async move {
                        request_cancel.cancelled().await;
                        flag.send_replace(true);
                        std::future::pending::<()>().await;
                    };
                    let result = tokio::select! {
                        result = turn.run(&script, text) => result,
                        () = watcher => Err(Error::internal_error()),
                    };
                    if let Some(session) = shared.sessions().get_mut(&id) {
                        session.cancel = None;
                    }
                    responder.respond_with_result(result)
                })
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: AuthenticateRequest, responder, _connection| {
                s6.log("authenticate", None, None);
                let script = s6.config.script()?;
                let method = request.method_id.to_string();
                let Some(auth) = script.auth.filter(|auth| auth.methods.contains(&method)) else {
                    return responder.respond_with_error(
                        Error::invalid_params().data(format!("unknown auth method `{method}`")),
                    );
                };
                if let Some(var) = auth.require_env
                    && std::env::var_os(&var).is_none_or(|value| value.is_empty())
                {
                    return responder.respond_with_error(Error::new(
                        ErrorCode::AUTH_REQUIRED,
                        format!("`{var}` is not set"),
                    ));
                }
                tracing::info!(%method, "authenticated");
                responder.respond(AuthenticateResponse::new())
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_notification(
            async move |notification: CancelNotification, _connection| {
                s5.log("session/cancel", Some(&notification.session_id), None);
                let id = notification.session_id.0.to_string();
                if let Some(cancel) = s5.sessions().get(&id).and_then(|s| s.cancel.clone()) {
                    cancel.send_replace(true);
                }
                Ok(())
            },
            agent_client_protocol::on_receive_notification!(),
        )
        .connect_to(ByteStreams::new(
            stdout::QueuedStdout::start()?,
            blocking::Unblock::new(std::io::stdin()),
        ))
        .await
        .map_err(|err| anyhow::anyhow!("ACP connection failed: {err}"))
}
