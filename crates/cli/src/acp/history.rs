//! The editor's thread history: `session/list` lists a project's SpecTasks and each of their work
//! sessions; `session/load` replays a task thread (its prompt, the planner's output, the status
//! trail, the plan and its sessions) or a work session's thread (every turn's prompt and stored
//! entries), all from the API.

use std::path::{Path, PathBuf};

use agent_client_protocol::v1::schema::{ListSessionsResponse, SessionId, SessionInfo};
use agent_client_protocol::{Error, ErrorCode};
use serde_json::Value;

use super::api_error;
use super::editor::Editor;
use super::mirror::Mirror;
use super::thread::{Replayer, entries_after};
use crate::client::{CliError, Client};
use crate::task::basics::encode;

/// Tasks per `session/list` page (each with its work sessions).
const LIST_PAGE: i64 = 50;

/// What a thread id names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Task(String),
    WorkSession(String),
}

impl Target {
    pub fn of(id: &str) -> Option<Self> {
        if id.starts_with("spt_") {
            Some(Self::Task(id.to_owned()))
        } else if id.starts_with("stws_") {
            Some(Self::WorkSession(id.to_owned()))
        } else {
            None
        }
    }
}

/// A path as compared with a task's `project_path`.
fn normal(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

pub fn not_found(what: &str) -> Error {
    Error::new(
        ErrorCode::RESOURCE_NOT_FOUND,
        format!("no such thread: {what}"),
    )
}

/// The API's 404 as ACP's "resource not found".
fn missing(id: &str) -> impl Fn(CliError) -> Error + '_ {
    move |err| match err {
        CliError::Refused { status: 404, .. } => not_found(id),
        err => api_error(err),
    }
}

/// `session/list`: a page of tasks (of `cwd`'s project when given), each followed by its work
/// sessions. The cursor is the offset into the server's task list.
pub async fn list(
    client: &Client,
    cwd: Option<&Path>,
    cursor: Option<&str>,
) -> Result<ListSessionsResponse, Error> {
    let offset: i64 = match cursor {
        None => 0,
        Some(cursor) => cursor
            .parse()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| Error::invalid_params().data(format!("bad cursor `{cursor}`")))?,
    };
    let page = client
        .get(&format!("/spec-tasks?limit={LIST_PAGE}&offset={offset}"))
        .await
        .map_err(api_error)?;
    let tasks = page["spec_tasks"].as_array().cloned().unwrap_or_default();
    let wanted = cwd.map(normal);
    let mut sessions = Vec::new();
    for task in &tasks {
        let (Some(id), Some(project)) = (task["id"].as_str(), task["project_path"].as_str()) else {
            continue;
        };
        let project = PathBuf::from(project);
        if wanted
            .as_ref()
            .is_some_and(|want| *want != normal(&project))
        {
            continue;
        }
        let name = task["name"].as_str().unwrap_or(id);
        sessions.push(
            SessionInfo::new(SessionId::new(id), project.clone())
                .title(name.to_owned())
                .updated_at(task["updated_at"].as_str().map(str::to_owned)),
        );
        let work = client
            .get(&format!("/spec-tasks/{}/work-sessions", encode(id)))
            .await
            .map_err(api_error)?;
        for ws in work["work_sessions"].as_array().into_iter().flatten() {
            let Some(ws_id) = ws["id"].as_str() else {
                continue;
            };
            let ws_name = ws["name"]
                .as_str()
                .or(ws["implementation_task_title"].as_str())
                .unwrap_or(ws_id);
            let updated = ["completed_at", "started_at", "created_at"]
                .iter()
                .find_map(|field| ws[*field].as_str())
                .map(str::to_owned);
            sessions.push(
                SessionInfo::new(SessionId::new(ws_id), project.clone())
                    .title(format!("{name} · {ws_name}"))
                    .updated_at(updated),
            );
        }
    }
    let total = page["total"].as_i64().unwrap_or(0);
    let next = offset + tasks.len() as i64;
    Ok(ListSessionsResponse::new(sessions)
        .next_cursor((next < total && !tasks.is_empty()).then(|| next.to_string())))
}

/// What a thread id names, read once: its task, and for a work session its Helix session (the
/// stored conversation).
pub struct Located {
    pub task: Value,
    pub helix: Option<String>,
}

/// Reads what `target` names (the task, and a work session's conversation), checking it exists.
pub async fn locate(client: &Client, target: &Target) -> Result<Located, Error> {
    let (task_id, helix) = match target {
        Target::Task(id) => (id.clone(), None),
        Target::WorkSession(ws) => {
            let detail = client
                .get(&format!("/work-sessions/{}", encode(ws)))
                .await
                .map_err(missing(ws))?;
            let session = &detail["work_session"];
            let helix = session["helix_session_id"]
                .as_str()
                .ok_or_else(|| Error::internal_error().data("the work session has no thread"))?;
            (
                session["spec_task_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                Some(helix.to_owned()),
            )
        }
    };
    let task = client
        .get(&format!("/spec-tasks/{}", encode(&task_id)))
        .await
        .map_err(missing(&task_id))?;
    Ok(Located { task, helix })
}

/// Replays the thread of `task` (as [`locate`] read it).
pub async fn replay_task(client: &Client, editor: &Editor, task: &Value) -> Result<(), Error> {
    let id = task["id"].as_str().unwrap_or_default();
    editor.title(task["name"].as_str().unwrap_or(id))?;
    editor.user_text(task["original_prompt"].as_str().unwrap_or_default())?;
    // The planner's outputs and the status trail, in the order they happened.
    let mut items: Vec<(String, String)> = Vec::new();
    if let Some(sid) = task["spec_session_id"].as_str() {
        let session = client
            .get(&format!("/sessions/{}", encode(sid)))
            .await
            .map_err(api_error)?;
        for interaction in session["interactions"].as_array().into_iter().flatten() {
            let mut text = interaction["response_message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if let Some(error) = interaction["error"].as_str() {
                text.push_str(&format!("\n\n**Planning failed:** {error}"));
            }
            items.push((
                interaction["created_at"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                format!("{text}\n\n"),
            ));
        }
    }
    for event in task_events(client, id).await? {
        if event["kind"] == "spec_task.status_changed" {
            items.push((
                event["created_at"].as_str().unwrap_or_default().to_owned(),
                format!(
                    "_{} → {}_\n\n",
                    event["payload"]["from"].as_str().unwrap_or("?"),
                    event["payload"]["to"].as_str().unwrap_or("?")
                ),
            ));
        }
    }
    // Stable: an interaction and the status change it caused keep their order.
    items.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, text) in &items {
        editor.text(text)?;
    }
    if task["approved_revision"].is_number()
        || task["spec_approved_at"].is_string()
        || !matches!(
            task["status"].as_str(),
            Some("backlog" | "spec_generation" | "spec_revision" | "spec_review" | "spec_failed")
        )
    {
        Mirror::default().refresh(client, editor, id).await?;
    }
    editor.text(&format!(
        "_Now: {}._\n",
        task["status"].as_str().unwrap_or_default()
    ))
}

async fn task_events(client: &Client, id: &str) -> Result<Vec<Value>, Error> {
    let mut after = 0;
    let mut all = Vec::new();
    loop {
        let page = client
            .get(&format!(
                "/spec-tasks/{}/events?after={after}&limit=1000",
                encode(id)
            ))
            .await
            .map_err(api_error)?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        let next = page["next_after"].as_i64().unwrap_or(after);
        all.extend(events);
        if next == after {
            return Ok(all);
        }
        after = next;
    }
}

/// Replays a work session's thread (its Helix session `helix`): each turn's prompt, then what
/// the agent did.
pub async fn replay_work_session(
    client: &Client,
    editor: &Editor,
    helix: &str,
) -> Result<(), Error> {
    let session = client
        .get(&format!("/sessions/{}", encode(helix)))
        .await
        .map_err(api_error)?;
    let mut replayer = Replayer::default();
    for interaction in session["interactions"].as_array().into_iter().flatten() {
        let Some(iid) = interaction["id"].as_str() else {
            continue;
        };
        editor.user_text(interaction["prompt_message"].as_str().unwrap_or_default())?;
        for entry in entries_after(client, helix, iid, None)
            .await
            .map_err(api_error)?
        {
            replayer.send(editor, &entry)?;
        }
        if let Some(error) = interaction["error"].as_str() {
            editor.text(&format!("\n\n**Error:** {error}\n"))?;
        }
    }
    Ok(())
}
