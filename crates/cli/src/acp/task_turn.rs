//! A prompt turn in a task thread. The task's status says what a prompt means:
//!
//! - no task yet: the prompt creates it, and planning streams in;
//! - `spec_review`: `approve` approves the revision on screen, anything else is the change
//!   request the planner answers with a new revision;
//! - `implementation_review`: `approve` approves the work, anything else requests changes;
//! - planning or implementing: the turn follows the task.
//!
//! Following runs on the task's event stream until the task needs a person: at `spec_review`
//! the editor is asked (a permission request "Approve the spec (revision N)"), at
//! `implementation_review`, `done` or a failure the turn ends with a summary ([`super::review`]).

use agent_client_protocol::v1::schema::StopReason;
use agent_client_protocol::{Error, ErrorCode};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::editor::Editor;
use super::mirror::Mirror;
use super::review::decide;
use super::{Shared, api_error};
use crate::client::{CliError, Client};
use crate::task::basics::encode;
use crate::task::events::{EventStream, Next};

const PLANNING: [&str; 2] = ["spec_generation", "spec_revision"];
const IMPLEMENTING: [&str; 3] = ["spec_approved", "implementation_queued", "implementation"];

/// Where following stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    SpecReview,
    ImplementationReview,
    Done,
    Failed(String),
    Cancelled,
}

/// The turn: `task` is the thread's task, `None` before its first prompt (set once created).
pub async fn prompt(
    shared: &Shared,
    editor: &Editor,
    cwd: &std::path::Path,
    task: &mut Option<String>,
    text: &str,
    cancel: watch::Receiver<bool>,
) -> Result<StopReason, Error> {
    let client = &shared.client;
    // Where the planner's output stands: a thread streams only what is written after it (the
    // rest is in the thread already, or was replayed by `session/load`).
    let mut planning = (None, 0);
    let id = match task.clone() {
        None => {
            let created = create(shared, cwd, text).await?;
            let id = created["id"].as_str().unwrap_or_default().to_owned();
            *task = Some(id.clone());
            let name = created["name"].as_str().unwrap_or_default();
            editor.title(name)?;
            editor.text(&format!("Created SpecTask `{id}` · {name}\n\n"))?;
            id
        }
        Some(id) => {
            let current = client
                .get(&format!("/spec-tasks/{}", encode(&id)))
                .await
                .map_err(api_error)?;
            planning = planner_cursor(client, &current).await?;
            decide(client, editor, &id, &current, text).await?;
            id
        }
    };
    let mut turn = Turn {
        client,
        editor,
        id,
        cancel,
        status: String::new(),
        planning: planning.0,
        planned: planning.1,
        mirror: Mirror::default(),
    };
    turn.run().await
}

/// The planner's latest interaction and the length of its response so far.
async fn planner_cursor(client: &Client, task: &Value) -> Result<(Option<String>, usize), Error> {
    let Some(sid) = task["spec_session_id"].as_str() else {
        return Ok((None, 0));
    };
    let session = client
        .get(&format!("/sessions/{}", encode(sid)))
        .await
        .map_err(api_error)?;
    Ok(session["interactions"]
        .as_array()
        .and_then(|all| all.last())
        .map_or((None, 0), |last| {
            (
                last["id"].as_str().map(str::to_owned),
                last["response_message"].as_str().map_or(0, str::len),
            )
        }))
}

async fn create(shared: &Shared, cwd: &std::path::Path, text: &str) -> Result<Value, Error> {
    let mut body = json!({"prompt": text, "project_path": cwd});
    if let Some(planner) = &shared.planner {
        body["spec_agent"] = json!(planner);
    }
    if let Some(agent) = &shared.agent {
        body["implementation_agent"] = json!(agent);
    }
    shared
        .client
        .post("/spec-tasks/from-prompt", &body)
        .await
        .map_err(api_error)
}

pub(super) struct Turn<'a> {
    pub(super) client: &'a Client,
    pub(super) editor: &'a Editor,
    pub(super) id: String,
    pub(super) cancel: watch::Receiver<bool>,
    pub(super) status: String,
    /// The planner interaction being streamed.
    pub(super) planning: Option<String>,
    /// Bytes of its response already sent.
    pub(super) planned: usize,
    pub(super) mirror: Mirror,
}

impl Turn<'_> {
    async fn run(&mut self) -> Result<StopReason, Error> {
        loop {
            let stop = self.follow().await?;
            match stop {
                Stop::SpecReview => {
                    if let Some(reason) = self.spec_gate().await? {
                        return Ok(reason);
                    }
                }
                Stop::ImplementationReview => {
                    self.review_summary().await?;
                    return Ok(StopReason::EndTurn);
                }
                Stop::Done => {
                    self.editor.text("The task is done.\n")?;
                    return Ok(StopReason::EndTurn);
                }
                Stop::Failed(why) => {
                    self.editor
                        .text(&format!("\n**The task failed.** {why}\n"))?;
                    return Ok(StopReason::EndTurn);
                }
                Stop::Cancelled => {
                    self.cancel_work().await?;
                    return Ok(StopReason::Cancelled);
                }
            }
        }
    }

    /// Follows the task until it needs a person or the turn is cancelled.
    async fn follow(&mut self) -> Result<Stop, Error> {
        let mut stream = EventStream::connect(self.client, &self.id)
            .await
            .map_err(api_error)?;
        self.status.clear();
        if let Some(stop) = self.sync().await? {
            return Ok(stop);
        }
        loop {
            let next = tokio::select! {
                next = stream.next() => next.map_err(api_error)?,
                _ = self.cancel.wait_for(|cancelled| *cancelled) => return Ok(Stop::Cancelled),
            };
            let stop = match next {
                Next::Event(event) => self.on_event(&event).await?,
                Next::Lost(reason) => {
                    tracing::warn!(%reason, "event stream lost; reconnecting");
                    None
                }
                Next::Resumed => self.sync().await?,
            };
            if let Some(stop) = stop {
                return Ok(stop);
            }
        }
    }

    /// Reads the task and everything a missed event could have changed.
    async fn sync(&mut self) -> Result<Option<Stop>, Error> {
        let task = self.task().await?;
        if let Some(stop) = self.apply(&task).await? {
            return Ok(Some(stop));
        }
        if PLANNING.contains(&self.status.as_str()) {
            self.stream_planning(&task).await?;
        }
        if IMPLEMENTING.contains(&self.status.as_str()) {
            self.mirror
                .refresh(self.client, self.editor, &self.id)
                .await?;
        }
        self.mirror
            .forward_permissions(self.client, self.editor, &self.id)
            .await?;
        Ok(None)
    }

    pub(super) async fn task(&self) -> Result<Value, Error> {
        self.client
            .get(&format!("/spec-tasks/{}", encode(&self.id)))
            .await
            .map_err(api_error)
    }

    async fn on_event(&mut self, event: &Value) -> Result<Option<Stop>, Error> {
        let kind = event["kind"].as_str().unwrap_or_default();
        match kind {
            k if k.starts_with("spec_task.") => {
                let task = self.task().await?;
                return self.apply(&task).await;
            }
            "interaction.created" | "interaction.updated" => {
                let session = event["payload"]["session_id"].as_str().unwrap_or_default();
                if PLANNING.contains(&self.status.as_str()) {
                    let task = self.task().await?;
                    if task["spec_session_id"].as_str() == Some(session) {
                        self.stream_planning(&task).await?;
                        return Ok(None);
                    }
                }
                self.mirror
                    .on_interaction(self.client, self.editor, session)
                    .await?;
            }
            "permission.requested" => {
                self.mirror
                    .forward_permissions(self.client, self.editor, &self.id)
                    .await?;
            }
            k if (k.starts_with("work_session.") || k.starts_with("implementation_task."))
                && IMPLEMENTING.contains(&self.status.as_str()) =>
            {
                self.mirror
                    .refresh(self.client, self.editor, &self.id)
                    .await?;
            }
            _ => {}
        }
        Ok(None)
    }

    /// Takes a status change: says it, and stops where a person is needed.
    async fn apply(&mut self, task: &Value) -> Result<Option<Stop>, Error> {
        let status = task["status"].as_str().unwrap_or_default().to_owned();
        if status == self.status {
            return Ok(None);
        }
        let before = std::mem::replace(&mut self.status, status.clone());
        // The planner's last words, and the sessions' final states, before the stop.
        if PLANNING.contains(&before.as_str()) || PLANNING.contains(&status.as_str()) {
            self.stream_planning(task).await?;
        }
        if IMPLEMENTING.contains(&status.as_str()) || status == "implementation_review" {
            self.mirror
                .refresh(self.client, self.editor, &self.id)
                .await?;
        }
        if (!before.is_empty() || PLANNING.contains(&status.as_str()))
            && let Some(line) = status_line(&status)
        {
            self.editor.text(&format!("\n\n_{line}_\n\n"))?;
        }
        Ok(match status.as_str() {
            "spec_review" => Some(Stop::SpecReview),
            "implementation_review" => Some(Stop::ImplementationReview),
            "done" => Some(Stop::Done),
            "spec_failed" | "implementation_failed" => Some(Stop::Failed(
                task["error"].as_str().unwrap_or_default().to_owned(),
            )),
            _ => None,
        })
    }

    /// Sends what the planner wrote since the last call.
    async fn stream_planning(&mut self, task: &Value) -> Result<(), Error> {
        let Some(sid) = task["spec_session_id"].as_str() else {
            return Ok(());
        };
        let session = self
            .client
            .get(&format!("/sessions/{}", encode(sid)))
            .await
            .map_err(api_error)?;
        let Some(last) = session["interactions"].as_array().and_then(|a| a.last()) else {
            return Ok(());
        };
        let interaction = last["id"].as_str().map(str::to_owned);
        let text = last["response_message"].as_str().unwrap_or_default();
        if interaction != self.planning {
            self.planning = interaction;
            self.planned = 0;
        }
        // A retried attempt starts its response over.
        if text.len() < self.planned {
            self.editor.text("\n\n_(the planner started over)_\n\n")?;
            self.planned = 0;
        }
        if let Some(new) = text.get(self.planned..) {
            self.editor.text(new)?;
            self.planned = text.len();
        }
        Ok(())
    }

    /// `session/cancel` during the turn: the task's running work sessions are cancelled.
    async fn cancel_work(&mut self) -> Result<(), Error> {
        if !IMPLEMENTING.contains(&self.status.as_str()) {
            self.editor.text(
                "\n_Stopped following. Planning goes on on the server; prompt again to follow it._\n",
            )?;
            return Ok(());
        }
        let sessions = self
            .client
            .get(&format!("/spec-tasks/{}/work-sessions", encode(&self.id)))
            .await
            .map_err(api_error)?;
        for ws in sessions["work_sessions"].as_array().into_iter().flatten() {
            let (Some(ws_id), Some(status)) = (ws["id"].as_str(), ws["status"].as_str()) else {
                continue;
            };
            if matches!(status, "pending" | "active" | "blocked") {
                let cancelled = self
                    .client
                    .post(
                        &format!("/work-sessions/{}/cancel", encode(ws_id)),
                        &json!({}),
                    )
                    .await;
                // One that ended meanwhile cannot be cancelled: not an error.
                if let Err(err) = cancelled
                    && !matches!(err, CliError::Refused { status: 409, .. })
                {
                    return Err(api_error(err));
                }
            }
        }
        self.editor
            .text("\n_Cancelled the task's running work sessions._\n")
    }
}

fn status_line(status: &str) -> Option<&'static str> {
    Some(match status {
        "spec_generation" => "Planning: the planner is writing the spec…",
        "spec_revision" => "Revising the spec…",
        "spec_approved" | "implementation_queued" => "Implementation is starting.",
        "implementation" => "Implementing.",
        "implementation_review" => "Implementation is ready for review.",
        _ => return None,
    })
}

/// A prompt sent while another turn of the same thread runs.
pub fn busy() -> Error {
    Error::new(
        ErrorCode::INVALID_REQUEST,
        "a turn is already running in this thread",
    )
}
