//! Implementation inside a task thread: the plan's tasks as the ACP plan, each work session as a
//! tool call whose content is that thread's output (spawned sessions appear as they are
//! spawned), and the coding agents' permission requests forwarded to the editor, whose answer
//! goes back through the API.

use std::collections::{BTreeMap, HashMap, HashSet};

use agent_client_protocol::v1::schema::{
    ContentBlock, PermissionOption, PermissionOptionKind, Plan, PlanEntry, PlanEntryPriority,
    PlanEntryStatus, TextContent, ToolCall, ToolCallContent, ToolCallLocation, ToolCallStatus,
    ToolCallUpdate, ToolCallUpdateFields, ToolKind,
};
use serde_json::{Value, json};

use super::api_error;
use super::editor::Editor;
use super::thread::{Digest, entries_after};
use crate::client::Client;
use crate::task::basics::encode;

/// The tool call id of work session `ws` in a task thread.
pub fn session_call_id(ws: &str) -> String {
    format!("work-session:{ws}")
}

struct TurnRead {
    interaction: String,
    seq: Option<i64>,
    done: bool,
}

struct SessionView {
    title: String,
    helix: String,
    status: String,
    /// Per turn (interaction): the last entry read, and whether it ended and was read to its end.
    reads: Vec<TurnRead>,
    digest: Digest,
    shown: String,
}

/// What the editor has been sent of the implementation, to send only changes.
#[derive(Default)]
pub struct Mirror {
    plan: Vec<(String, String)>,
    sessions: BTreeMap<String, SessionView>,
    by_helix: HashMap<String, String>,
    forwarded: HashSet<String>,
    questions: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Mirror {
    fn drop(&mut self) {
        // A question still open when the turn ends is moot: the request stays answerable from
        // the web UI or the CLI.
        for question in &self.questions {
            question.abort();
        }
    }
}

fn plan_status(status: &str) -> PlanEntryStatus {
    match status {
        "completed" => PlanEntryStatus::Completed,
        "assigned" | "in_progress" => PlanEntryStatus::InProgress,
        _ => PlanEntryStatus::Pending,
    }
}

fn session_status(status: &str) -> ToolCallStatus {
    match status {
        "active" => ToolCallStatus::InProgress,
        "completed" => ToolCallStatus::Completed,
        "failed" | "cancelled" => ToolCallStatus::Failed,
        _ => ToolCallStatus::Pending,
    }
}

fn text_content(text: impl Into<String>) -> Vec<ToolCallContent> {
    vec![ToolCallContent::from(ContentBlock::Text(TextContent::new(
        text.into(),
    )))]
}

impl Mirror {
    /// The files the sessions' tool calls named (the review's fallback without git).
    pub fn touched_files(&self) -> Vec<String> {
        let mut files: Vec<String> = self
            .sessions
            .values()
            .flat_map(|s| s.digest.files.iter().cloned())
            .collect();
        files.sort();
        files.dedup();
        files
    }

    /// Re-reads the plan's tasks and the work sessions and sends what changed.
    pub async fn refresh(
        &mut self,
        client: &Client,
        editor: &Editor,
        task_id: &str,
    ) -> Result<(), agent_client_protocol::Error> {
        let id = encode(task_id);
        let tasks = client
            .get(&format!("/spec-tasks/{id}/implementation-tasks"))
            .await
            .map_err(api_error)?;
        self.send_plan(editor, &tasks["implementation_tasks"])?;
        let sessions = client
            .get(&format!("/spec-tasks/{id}/work-sessions"))
            .await
            .map_err(api_error)?;
        for ws in sessions["work_sessions"].as_array().into_iter().flatten() {
            self.apply_session(client, editor, ws).await?;
        }
        Ok(())
    }

    fn send_plan(
        &mut self,
        editor: &Editor,
        tasks: &Value,
    ) -> Result<(), agent_client_protocol::Error> {
        let mut rows: Vec<(i64, String, String)> = tasks
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                let key = t["key"].as_str().unwrap_or_default();
                let title = t["title"].as_str().unwrap_or_default();
                let failed = if t["status"] == "failed" {
                    " (failed)"
                } else {
                    ""
                };
                (
                    t["index"].as_i64().unwrap_or(0),
                    format!("{key}. {title}{failed}"),
                    t["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        rows.sort_by_key(|row| row.0);
        let plan: Vec<(String, String)> = rows.into_iter().map(|(_, c, s)| (c, s)).collect();
        if plan.is_empty() || plan == self.plan {
            return Ok(());
        }
        editor.plan(Plan::new(
            plan.iter()
                .map(|(content, status)| {
                    PlanEntry::new(content, PlanEntryPriority::Medium, plan_status(status))
                })
                .collect(),
        ))?;
        self.plan = plan;
        Ok(())
    }

    async fn apply_session(
        &mut self,
        client: &Client,
        editor: &Editor,
        ws: &Value,
    ) -> Result<(), agent_client_protocol::Error> {
        let Some(ws_id) = ws["id"].as_str() else {
            return Ok(());
        };
        let status = ws["status"].as_str().unwrap_or_default().to_owned();
        let helix = ws["helix_session_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let call_id = session_call_id(ws_id);
        if !self.sessions.contains_key(ws_id) {
            let title = ws["name"]
                .as_str()
                .or(ws["implementation_task_title"].as_str())
                .unwrap_or(ws_id)
                .to_owned();
            let mut input = json!({"work_session_id": ws_id});
            if let Some(parent) = ws["spawned_by_session_id"].as_str() {
                input["spawned_by"] = json!(parent);
            }
            editor.tool_call(
                ToolCall::new(call_id.clone(), title.clone())
                    .kind(ToolKind::Other)
                    .status(session_status(&status))
                    .raw_input(input),
            )?;
            self.by_helix.insert(helix.clone(), ws_id.to_owned());
            self.sessions.insert(
                ws_id.to_owned(),
                SessionView {
                    title,
                    helix: helix.clone(),
                    status: status.clone(),
                    reads: Vec::new(),
                    digest: Digest::default(),
                    shown: String::new(),
                },
            );
            self.read_latest(client, editor, ws_id).await?;
            return Ok(());
        }
        let view = self.sessions.get_mut(ws_id).map(|view| {
            let changed = view.status != status;
            view.status = status.clone();
            changed
        });
        // The thread's output is read before its end is shown, so the finished call has it.
        if view == Some(true) {
            self.read_latest(client, editor, ws_id).await?;
            let mut fields = ToolCallUpdateFields::new().status(session_status(&status));
            if let Some(error) = ws["error"].as_str() {
                fields = fields.content(text_content(format!(
                    "{}\n\n**Failed:** {error}",
                    self.sessions
                        .get(ws_id)
                        .map(|v| v.digest.markdown())
                        .unwrap_or_default()
                )));
            }
            editor.tool_update(ToolCallUpdate::new(call_id, fields))?;
        }
        Ok(())
    }

    /// An `interaction.*` event of Helix session `helix`: that session's new output.
    pub async fn on_interaction(
        &mut self,
        client: &Client,
        editor: &Editor,
        helix: &str,
    ) -> Result<(), agent_client_protocol::Error> {
        if let Some(ws_id) = self.by_helix.get(helix).cloned() {
            self.read_latest(client, editor, &ws_id).await?;
        }
        Ok(())
    }

    /// Reads the session's entries not read yet, turn by turn, and sends the changed digest.
    async fn read_latest(
        &mut self,
        client: &Client,
        editor: &Editor,
        ws_id: &str,
    ) -> Result<(), agent_client_protocol::Error> {
        let Some(view) = self.sessions.get_mut(ws_id) else {
            return Ok(());
        };
        if view.helix.is_empty() {
            return Ok(());
        }
        let session = client
            .get(&format!("/sessions/{}", encode(&view.helix)))
            .await
            .map_err(api_error)?;
        // Every turn not read to its end: a turn's last entries may land after a newer turn
        // (a queued follow-up) was created.
        for interaction in session["interactions"].as_array().into_iter().flatten() {
            let Some(id) = interaction["id"].as_str() else {
                continue;
            };
            view.digest.begin(
                id,
                interaction["prompt_message"].as_str().unwrap_or_default(),
            );
            let index = match view.reads.iter().position(|r| r.interaction == id) {
                Some(index) => index,
                None => {
                    view.reads.push(TurnRead {
                        interaction: id.to_owned(),
                        seq: None,
                        done: false,
                    });
                    view.reads.len() - 1
                }
            };
            let read = &mut view.reads[index];
            if read.done {
                continue;
            }
            // The state was read before the entries: an ended turn's entries are all there.
            let ended = interaction["state"]
                .as_str()
                .is_some_and(|s| s != "waiting");
            let entries = entries_after(client, &view.helix, id, read.seq)
                .await
                .map_err(api_error)?;
            if let Some(seq) = entries.last().and_then(|e| e["seq"].as_i64()) {
                read.seq = Some(seq);
            }
            read.done = ended;
            for entry in &entries {
                view.digest.add(entry);
            }
        }
        let text = view.digest.markdown();
        if text != view.shown && !view.digest.is_empty() {
            editor.tool_update(ToolCallUpdate::new(
                session_call_id(ws_id),
                ToolCallUpdateFields::new().content(text_content(text.clone())),
            ))?;
            view.shown = text;
        }
        Ok(())
    }

    /// Forwards every pending permission request of the task not forwarded yet; each is asked
    /// from a task of its own, so the thread goes on streaming while the question is open.
    pub async fn forward_permissions(
        &mut self,
        client: &Client,
        editor: &Editor,
        task_id: &str,
    ) -> Result<(), agent_client_protocol::Error> {
        let list = client
            .get(&format!(
                "/spec-tasks/{}/permission-requests",
                encode(task_id)
            ))
            .await
            .map_err(api_error)?;
        for request in list["permission_requests"].as_array().into_iter().flatten() {
            let Some(rid) = request["id"].as_str() else {
                continue;
            };
            if request["status"] != "pending" || !self.forwarded.insert(rid.to_owned()) {
                continue;
            }
            let who = match request["work_session_id"].as_str() {
                Some(ws) => self
                    .sessions
                    .get(ws)
                    .map_or_else(|| ws.to_owned(), |view| format!("“{}”", view.title)),
                None => "the planner".to_owned(),
            };
            let question = permission_question(request, &who);
            let options = permission_options(request);
            let editor = editor.clone();
            let client = client.clone();
            let path = format!(
                "/spec-tasks/{}/permission-requests/{}",
                encode(task_id),
                encode(rid)
            );
            let call_id = question.tool_call_id.clone();
            self.questions.push(tokio::spawn(async move {
                let answer = match editor.ask(question, options).await {
                    Ok(Some(option)) => option,
                    Ok(None) => return,
                    Err(err) => {
                        tracing::warn!(%err, "the editor did not answer a permission request");
                        return;
                    }
                };
                let outcome = client.post(&path, &json!({"option_id": answer})).await;
                let (status, note) = match outcome {
                    Ok(_) => (ToolCallStatus::Completed, format!("Answered: {answer}")),
                    Err(err) => (ToolCallStatus::Failed, format!("Not answered: {err}")),
                };
                let _ = editor.tool_update(ToolCallUpdate::new(
                    call_id,
                    ToolCallUpdateFields::new()
                        .status(status)
                        .content(text_content(note)),
                ));
            }));
        }
        Ok(())
    }
}

/// The tool call a forwarded permission request is about.
fn permission_question(request: &Value, who: &str) -> ToolCallUpdate {
    let rid = request["id"].as_str().unwrap_or_default();
    let title = request["title"].as_str().unwrap_or("a tool call");
    let mut detail = format!("Asked by {who}.");
    if let Some(command) = request["command"].as_str() {
        detail.push_str(&format!("\n\n```sh\n{command}\n```"));
    }
    let mut fields = ToolCallUpdateFields::new()
        .title(title.to_owned())
        .status(ToolCallStatus::Pending)
        .kind(
            request["tool_kind"]
                .as_str()
                .and_then(|k| serde_json::from_value::<ToolKind>(json!(k)).ok())
                .unwrap_or(ToolKind::Other),
        )
        .locations(
            request["locations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(ToolCallLocation::new)
                .collect::<Vec<_>>(),
        )
        .content(text_content(detail));
    if !request["raw_input"].is_null() {
        fields = fields.raw_input(request["raw_input"].clone());
    }
    ToolCallUpdate::new(format!("permission:{rid}"), fields)
}

fn permission_options(request: &Value) -> Vec<PermissionOption> {
    request["options"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            PermissionOption::new(
                o["option_id"].as_str().unwrap_or_default().to_owned(),
                o["name"].as_str().unwrap_or_default().to_owned(),
                o["kind"]
                    .as_str()
                    .and_then(|k| serde_json::from_value(json!(k)).ok())
                    .unwrap_or(PermissionOptionKind::AllowOnce),
            )
        })
        .collect()
}
