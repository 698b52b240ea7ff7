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
//! `implementation_review`, `done` or a failure the turn ends with a summary.

use agent_client_protocol::v1::schema::{
    PermissionOption, PermissionOptionKind, StopReason, ToolCallStatus, ToolCallUpdate,
    ToolCallUpdateFields, ToolKind,
};
use agent_client_protocol::{Error, ErrorCode};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::editor::Editor;
use super::mirror::Mirror;
use super::{Shared, api_error};
use crate::client::{CliError, Client};
use crate::task::basics::encode;
use crate::task::events::{EventStream, Next};

const PLANNING: [&str; 2] = ["spec_generation", "spec_revision"];
const IMPLEMENTING: [&str; 3] = ["spec_approved", "implementation_queued", "implementation"];
const APPROVE: &str = "approve";
const REQUEST_CHANGES: &str = "request_changes";
/// How much of the task's diff the review summary quotes.
const DIFF_BYTES: usize = 48 * 1024;

/// Where following stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    SpecReview,
    ImplementationReview,
    Done,
    Failed(String),
    Cancelled,
}

/// Whether the prompt is an approval.
fn is_approval(text: &str) -> bool {
    let word = text
        .trim()
        .trim_end_matches(['.', '!'])
        .to_ascii_lowercase();
    matches!(word.as_str(), "approve" | "approved" | "lgtm" | "yes")
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

/// What a prompt does to an existing task before the turn follows it.
async fn decide(
    client: &Client,
    editor: &Editor,
    id: &str,
    task: &Value,
    text: &str,
) -> Result<(), Error> {
    let path = |action: &str| format!("/spec-tasks/{}/{action}", encode(id));
    match task["status"].as_str().unwrap_or_default() {
        "spec_review" => {
            let revision = latest_revision(client, id).await?;
            if is_approval(text) {
                approve_spec(client, editor, id, revision).await?;
            } else {
                client
                    .post(
                        &path("approve-specs"),
                        &json!({"approved": false, "revision": revision, "comments": text}),
                    )
                    .await
                    .map_err(api_error)?;
                editor.text(&format!(
                    "Changes requested on revision {revision}; the planner is writing revision {}.\n\n",
                    revision + 1
                ))?;
            }
        }
        "implementation_review" => {
            if is_approval(text) {
                client
                    .post(&path("approve-implementation"), &json!({}))
                    .await
                    .map_err(api_error)?;
                editor.text("Approved: the task is done.\n")?;
            } else {
                client
                    .post(&path("request-changes"), &json!({"comment": text}))
                    .await
                    .map_err(api_error)?;
                editor.text("Changes requested; the agents are back at work.\n\n")?;
            }
        }
        "backlog" | "spec_failed" => {
            client
                .post(&path("start-planning"), &json!({}))
                .await
                .map_err(api_error)?;
            editor.text("Planning (again).\n\n")?;
        }
        _ => {}
    }
    Ok(())
}

async fn latest_revision(client: &Client, id: &str) -> Result<i64, Error> {
    let specs = client
        .get(&format!("/spec-tasks/{}/specs", encode(id)))
        .await
        .map_err(api_error)?;
    specs["revision"]
        .as_i64()
        .ok_or_else(|| Error::internal_error().data("the task has no spec revision yet"))
}

/// Approves `revision`; `false` when a newer one exists (said in the thread).
async fn approve_spec(
    client: &Client,
    editor: &Editor,
    id: &str,
    revision: i64,
) -> Result<bool, Error> {
    let approved = client
        .post(
            &format!("/spec-tasks/{}/approve-specs", encode(id)),
            &json!({"approved": true, "revision": revision}),
        )
        .await;
    match approved {
        Ok(_) => {
            editor.text(&format!(
                "Approved revision {revision}: implementation starts.\n\n"
            ))?;
            Ok(true)
        }
        Err(CliError::Refused { code, body, .. }) if code == "stale_revision" => {
            editor.text(&format!(
                "Revision {revision} is no longer the latest (revision {} is): not approved.\n\n",
                body["error"]["latest_revision"]
            ))?;
            Ok(false)
        }
        Err(err) => Err(api_error(err)),
    }
}

struct Turn<'a> {
    client: &'a Client,
    editor: &'a Editor,
    id: String,
    cancel: watch::Receiver<bool>,
    status: String,
    /// The planner interaction being streamed.
    planning: Option<String>,
    /// Bytes of its response already sent.
    planned: usize,
    mirror: Mirror,
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

    async fn task(&self) -> Result<Value, Error> {
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

    /// The spec is ready: links to its documents, then the question. `Some` ends the turn.
    async fn spec_gate(&mut self) -> Result<Option<StopReason>, Error> {
        let task = self.task().await?;
        let revision = latest_revision(self.client, &self.id).await?;
        let dir = std::path::Path::new(task["project_path"].as_str().unwrap_or_default())
            .join(".spectask")
            .join("specs")
            .join(&self.id);
        self.editor.text(&format!(
            "\n\nRevision {revision} of the spec is ready:\n\n"
        ))?;
        for file in ["requirements.md", "design.md", "tasks.md"] {
            let path = dir.join(file);
            self.editor
                .link(file, &format!("file://{}", path.display()))?;
            self.editor.text("\n")?;
        }
        let call = format!("approve-spec:{}:{revision}", self.id);
        let question = ToolCallUpdate::new(
            call.clone(),
            ToolCallUpdateFields::new()
                .title(format!("Approve the spec (revision {revision})"))
                .kind(ToolKind::Think)
                .status(ToolCallStatus::Pending)
                .raw_input(json!({"spec_task_id": self.id, "revision": revision})),
        );
        let options = vec![
            PermissionOption::new(APPROVE, "Approve", PermissionOptionKind::AllowOnce),
            PermissionOption::new(
                REQUEST_CHANGES,
                "Request changes",
                PermissionOptionKind::RejectOnce,
            ),
        ];
        let answer = tokio::select! {
            answer = self.editor.ask(question, options) => answer?,
            _ = self.cancel.wait_for(|cancelled| *cancelled) => None,
        };
        let close = |status| {
            self.editor.tool_update(ToolCallUpdate::new(
                call.clone(),
                ToolCallUpdateFields::new().status(status),
            ))
        };
        match answer.as_deref() {
            Some(APPROVE) => {
                close(ToolCallStatus::Completed)?;
                approve_spec(self.client, self.editor, &self.id, revision).await?;
                Ok(None)
            }
            Some(_) => {
                close(ToolCallStatus::Failed)?;
                self.editor.text(&format!(
                    "What should change in revision {revision}? Your next message goes to the \
                     planner as the change request (or say `approve`).\n"
                ))?;
                Ok(Some(StopReason::EndTurn))
            }
            None => {
                close(ToolCallStatus::Failed)?;
                Ok(Some(StopReason::Cancelled))
            }
        }
    }

    /// At `implementation_review`: what each session did, and the diff or the touched files.
    async fn review_summary(&mut self) -> Result<(), Error> {
        let sessions = self
            .client
            .get(&format!("/spec-tasks/{}/work-sessions", encode(&self.id)))
            .await
            .map_err(api_error)?;
        let mut text = String::from("\n\n## Ready for review\n\n");
        for ws in sessions["work_sessions"].as_array().into_iter().flatten() {
            let name = ws["name"]
                .as_str()
                .or(ws["implementation_task_title"].as_str())
                .unwrap_or_default();
            let summary = ws["agent_summary"].as_str().unwrap_or("");
            text.push_str(&format!(
                "- **{name}** ({}){}{summary}\n",
                ws["status"].as_str().unwrap_or_default(),
                if summary.is_empty() { "" } else { ": " }
            ));
        }
        let diff = self
            .client
            .get(&format!("/spec-tasks/{}/diff?limit=200", encode(&self.id)))
            .await;
        match diff {
            Ok(diff) => text.push_str(&diff_markdown(&diff)),
            Err(CliError::Refused { message, .. }) => {
                let files = self.mirror.touched_files();
                text.push_str(&format!("\nNo diff ({message}). "));
                if files.is_empty() {
                    text.push_str("The agents named no files.\n");
                } else {
                    text.push_str("The files the agents touched:\n\n");
                    for file in files {
                        text.push_str(&format!("- `{file}`\n"));
                    }
                }
            }
            Err(err) => return Err(api_error(err)),
        }
        text.push_str(
            "\nSay `approve` to accept the work, or say what should change and the agents go \
             back to it.\n",
        );
        self.editor.text(&text)
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

/// The task's diff as Markdown: a file table, then the patches up to [`DIFF_BYTES`].
fn diff_markdown(diff: &Value) -> String {
    let mut text = format!(
        "\n**{} files changed**, +{} −{} on `{}`\n\n",
        diff["total_files"],
        diff["additions"],
        diff["deletions"],
        diff["branch_name"].as_str().unwrap_or_default()
    );
    let files = diff["files"].as_array().cloned().unwrap_or_default();
    for file in &files {
        text.push_str(&format!(
            "- `{}` ({}, +{} −{})\n",
            file["path"].as_str().unwrap_or_default(),
            file["status"].as_str().unwrap_or_default(),
            file["additions"],
            file["deletions"]
        ));
    }
    let mut patches = String::new();
    for file in &files {
        if let Some(patch) = file["patch"].as_str() {
            if patches.len() + patch.len() > DIFF_BYTES {
                patches.push_str("… (the rest: `spectask task diff` or the web UI)\n");
                break;
            }
            patches.push_str(patch);
            if !patch.ends_with('\n') {
                patches.push('\n');
            }
        }
    }
    if !patches.is_empty() {
        text.push_str(&format!("\n```diff\n{patches}```\n"));
    }
    text
}

/// A prompt sent while another turn of the same thread runs.
pub fn busy() -> Error {
    Error::new(
        ErrorCode::INVALID_REQUEST,
        "a turn is already running in this thread",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_words_approve_and_anything_else_is_a_change_request() {
        for yes in ["approve", " Approve.", "APPROVED", "lgtm", "yes!"] {
            assert!(is_approval(yes), "{yes}");
        }
        for no in ["approve but rename it", "no", "", "Sign the parts"] {
            assert!(!is_approval(no), "{no}");
        }
    }

    #[test]
    fn the_review_quotes_the_diff_up_to_its_bound() {
        let diff = json!({
            "total_files": 2, "additions": 3, "deletions": 1, "branch_name": "spectask/x",
            "files": [
                {"path": "a.txt", "status": "added", "additions": 2, "deletions": 0,
                 "patch": "+one\n+two"},
                {"path": "b.txt", "status": "modified", "additions": 1, "deletions": 1,
                 "patch": "x".repeat(DIFF_BYTES)}
            ]
        });
        let text = diff_markdown(&diff);
        assert!(text.contains("**2 files changed**, +3 −1 on `spectask/x`"));
        assert!(text.contains("- `b.txt` (modified, +1 −1)"));
        assert!(text.contains("```diff\n+one\n+two\n… (the rest"));
    }
}
