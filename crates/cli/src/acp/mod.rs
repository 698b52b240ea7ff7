//! `spectask acp`: spectask as an ACP **agent** on stdin/stdout, so an editor that hosts
//! external agents (Zed's agent panel, JetBrains, Neovim, Emacs) drives SpecTasks. It is a thin
//! client of a spectask server (`--server`, or one embedded on the data directory as `run` does):
//! every action is an API call, every update is read back from the API and its event stream.
//!
//! Threads: `session/new` opens a thread whose first prompt creates a SpecTask in its `cwd`; a
//! thread loaded by id is a task (`spt_…`, [`task_turn`]) or one of its work sessions
//! (`stws_…`, [`work_turn`]); `session/list` lists both ([`history`]). The editor's connection
//! holds no state the server needs: a dropped editor leaves the work running.

mod editor;
mod history;
mod mirror;
mod review;
mod task_turn;
mod thread;
mod work_turn;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use agent_client_protocol::schema::ProtocolVersion;
use agent_client_protocol::v1::ConnectionTo;
use agent_client_protocol::v1::schema::{
    AgentCapabilities, CancelNotification, ContentBlock, Implementation, InitializeRequest,
    InitializeResponse, ListSessionsRequest, LoadSessionRequest, LoadSessionResponse,
    NewSessionRequest, NewSessionResponse, PromptCapabilities, PromptRequest, PromptResponse,
    SessionCapabilities, SessionId, SessionListCapabilities,
};
use agent_client_protocol::{Agent, Client as EditorSide, Error, ErrorCode, Stdio};
use tokio::sync::watch;

use crate::cli::AcpArgs;
use crate::client::{CliError, CliResult, Client};
use editor::Editor;
use history::Target;

/// What one editor thread is.
#[derive(Debug, Clone)]
enum Thread {
    /// A task thread; `None` until its first prompt creates the task.
    Task(Option<String>),
    Work {
        task: String,
        ws: String,
        helix: String,
    },
}

#[derive(Debug)]
struct ThreadState {
    cwd: PathBuf,
    thread: Thread,
    /// The running turn's cancel flag.
    cancel: Option<Arc<watch::Sender<bool>>>,
}

/// What the handlers share: the API client and the open threads.
pub struct Shared {
    client: Client,
    planner: Option<String>,
    agent: Option<String>,
    threads: Mutex<HashMap<String, ThreadState>>,
}

impl Shared {
    fn threads(&self) -> MutexGuard<'_, HashMap<String, ThreadState>> {
        // A poisoned lock only means a handler panicked; the map is still consistent.
        self.threads.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A refusal or failure of the API as an ACP error the editor shows.
pub fn api_error(err: CliError) -> Error {
    let message = err.to_string();
    let code = match &err {
        CliError::Refused { status: 404, .. } => ErrorCode::RESOURCE_NOT_FOUND,
        CliError::Refused { status, .. } if *status < 500 => ErrorCode::INVALID_REQUEST,
        _ => ErrorCode::INTERNAL_ERROR,
    };
    Error::new(code, message)
}

/// The prompt's text: its text blocks, and resource links as Markdown links.
fn prompt_text(prompt: &[ContentBlock]) -> String {
    prompt
        .iter()
        .filter_map(|block| match block {
            ContentBlock::Text(text) => Some(text.text.clone()),
            ContentBlock::ResourceLink(link) => Some(format!("[{}]({})", link.name, link.uri)),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A fresh id for a thread that has no task yet (its prompt creates one).
fn fresh_thread_id() -> String {
    let mut bytes = [0u8; 8];
    // The id only has to be unique within this process's threads; the clock backs it up.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos as u64).to_le_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("new_{hex}")
}

pub async fn run(args: AcpArgs) -> CliResult<()> {
    let (client, embedded) = crate::run::connect(&args.client).await?;
    tracing::info!(server = client.base(), "serving ACP on stdio");
    let shared = Arc::new(Shared {
        client,
        planner: args.planner,
        agent: args.agent,
        threads: Mutex::new(HashMap::new()),
    });
    let result = serve(shared).await;
    if let Some(embedded) = embedded {
        embedded.stop().await;
    }
    result.map_err(|err| CliError::Other(anyhow::anyhow!("the ACP connection failed: {err}")))
}

/// Serves ACP on stdin/stdout until the editor closes it.
async fn serve(shared: Arc<Shared>) -> Result<(), Error> {
    let (s_new, s_load, s_list, s_prompt, s_cancel) = (
        shared.clone(),
        shared.clone(),
        shared.clone(),
        shared.clone(),
        shared,
    );
    Agent
        .v1()
        .name("spectask")
        .on_receive_request(
            async move |request: InitializeRequest, responder, _cx| {
                tracing::info!(client = ?request.client_info, "editor connected");
                responder.respond(
                    InitializeResponse::new(ProtocolVersion::V1)
                        .agent_capabilities(
                            AgentCapabilities::new()
                                .load_session(true)
                                .prompt_capabilities(PromptCapabilities::new())
                                .session_capabilities(
                                    SessionCapabilities::new().list(SessionListCapabilities::new()),
                                ),
                        )
                        .agent_info(Implementation::new("spectask", env!("CARGO_PKG_VERSION"))),
                )
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: NewSessionRequest, responder, _cx| {
                if !request.cwd.is_absolute() {
                    return responder.respond_with_error(
                        Error::invalid_params().data("cwd must be an absolute path"),
                    );
                }
                let id = fresh_thread_id();
                s_new.threads().insert(
                    id.clone(),
                    ThreadState {
                        cwd: request.cwd,
                        thread: Thread::Task(None),
                        cancel: None,
                    },
                );
                responder.respond(NewSessionResponse::new(SessionId::new(id)))
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: LoadSessionRequest, responder, cx: ConnectionTo<EditorSide>| {
                let shared = s_load.clone();
                cx.clone().spawn(async move {
                    let result = load(&shared, cx, &request).await;
                    responder.respond_with_result(result)
                })
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: ListSessionsRequest, responder, cx: ConnectionTo<EditorSide>| {
                let shared = s_list.clone();
                cx.spawn(async move {
                    let result = history::list(
                        &shared.client,
                        request.cwd.as_deref(),
                        request.cursor.as_deref(),
                    )
                    .await;
                    responder.respond_with_result(result)
                })
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_request(
            async move |request: PromptRequest, responder, cx: ConnectionTo<EditorSide>| {
                let id = request.session_id.0.to_string();
                let text = prompt_text(&request.prompt);
                if text.trim().is_empty() {
                    return responder
                        .respond_with_error(Error::invalid_params().data("the prompt is empty"));
                }
                let (cancel_tx, cancel_rx) = watch::channel(false);
                let cancel_tx = Arc::new(cancel_tx);
                let (cwd, thread) = {
                    let mut threads = s_prompt.threads();
                    let Some(state) = threads.get_mut(&id) else {
                        return responder.respond_with_error(history::not_found(&id));
                    };
                    if state.cancel.is_some() {
                        return responder.respond_with_error(task_turn::busy());
                    }
                    state.cancel = Some(cancel_tx.clone());
                    (state.cwd.clone(), state.thread.clone())
                };
                // `$/cancel_request` on the prompt means the same as `session/cancel`.
                let request_cancel = responder.cancellation();
                let shared = s_prompt.clone();
                cx.clone().spawn(async move {
                    let editor = Editor::new(cx, request.session_id.clone());
                    let flag = cancel_tx.clone();
                    let watcher = async move {
                        request_cancel.cancelled().await;
                        flag.send_replace(true);
                        std::future::pending::<()>().await;
                    };
                    let turn = prompt(&shared, &editor, &id, cwd, thread, &text, cancel_rx);
                    let result = tokio::select! {
                        result = turn => result,
                        () = watcher => Ok(agent_client_protocol::v1::schema::StopReason::Cancelled),
                    };
                    if let Some(state) = shared.threads().get_mut(&id) {
                        state.cancel = None;
                    }
                    if let Err(err) = &result {
                        tracing::warn!(thread = %id, %err, "prompt turn failed");
                    }
                    responder.respond_with_result(result.map(PromptResponse::new))
                })
            },
            agent_client_protocol::on_receive_request!(),
        )
        .on_receive_notification(
            async move |notification: CancelNotification, _cx| {
                let id = notification.session_id.0.to_string();
                let cancel = s_cancel
                    .threads()
                    .get(&id)
                    .and_then(|state| state.cancel.clone());
                if let Some(cancel) = cancel {
                    cancel.send_replace(true);
                }
                Ok(())
            },
            agent_client_protocol::on_receive_notification!(),
        )
        .connect_to(Stdio::new())
        .await
}

/// One prompt turn of thread `id`.
async fn prompt(
    shared: &Shared,
    editor: &Editor,
    id: &str,
    cwd: PathBuf,
    thread: Thread,
    text: &str,
    cancel: watch::Receiver<bool>,
) -> Result<agent_client_protocol::v1::schema::StopReason, Error> {
    match thread {
        Thread::Task(mut task) => {
            let result = task_turn::prompt(shared, editor, &cwd, &mut task, text, cancel).await;
            // The task, once created, belongs to the thread even when the turn failed after.
            if let Some(state) = shared.threads().get_mut(id) {
                state.thread = Thread::Task(task);
            }
            result
        }
        Thread::Work { task, ws, helix } => {
            work_turn::WorkThread {
                client: &shared.client,
                editor,
                task_id: &task,
                ws_id: &ws,
                helix: &helix,
            }
            .prompt(text, cancel)
            .await
        }
    }
}

/// `session/load`: replays the thread, then keeps it open for prompts.
async fn load(
    shared: &Shared,
    cx: ConnectionTo<EditorSide>,
    request: &LoadSessionRequest,
) -> Result<LoadSessionResponse, Error> {
    let id = request.session_id.0.to_string();
    let target = Target::of(&id).ok_or_else(|| history::not_found(&id))?;
    let located = history::locate(&shared.client, &target).await?;
    let task_id = located.task["id"].as_str().unwrap_or_default().to_owned();
    let editor = Editor::new(cx, request.session_id.clone());
    let thread = match (&target, located.helix) {
        (Target::WorkSession(ws), Some(helix)) => {
            history::replay_work_session(&shared.client, &editor, &helix).await?;
            Thread::Work {
                task: task_id,
                ws: ws.clone(),
                helix,
            }
        }
        _ => {
            history::replay_task(&shared.client, &editor, &located.task).await?;
            Thread::Task(Some(task_id))
        }
    };
    let cwd = if request.cwd.is_absolute() {
        request.cwd.clone()
    } else {
        PathBuf::from(located.task["project_path"].as_str().unwrap_or_default())
    };
    // Loading a thread that is open already keeps its running turn (and its cancel flag).
    shared
        .threads()
        .entry(id)
        .and_modify(|state| {
            state.cwd.clone_from(&cwd);
            state.thread = thread.clone();
        })
        .or_insert(ThreadState {
            cwd,
            thread,
            cancel: None,
        });
    Ok(LoadSessionResponse::new())
}
