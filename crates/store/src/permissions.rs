//! Permission requests: recorded when an agent asks under the `ask` policy (from a work session's
//! thread or the planning session's), answered by a human (or expired) with a guarded update from
//! `pending`, so an answer and an expiry cannot both win.

use chrono::{DateTime, Utc};
use serde_json::json;
use spectask_domain::{
    EventKind, NewEvent, PermissionOption, PermissionRequest, PermissionRequestId,
    PermissionRequestStatus, SessionId, SpecTaskId, WorkSessionId,
};
use sqlx::types::Json;

use crate::Store;
use crate::db::query_as;
use crate::error::{StoreError, StoreResult};
use crate::events::append_event;
use crate::ids::now;
use crate::rows::Table;

/// A request to record.
#[derive(Debug, Clone)]
pub struct NewPermissionRequest {
    /// The thread that asked; its work session (or planning session) is looked up from it.
    pub zed_thread_id: String,
    pub tool_call_id: String,
    pub title: String,
    pub options: Vec<PermissionOption>,
    pub tool_kind: Option<String>,
    pub command: Option<String>,
    pub raw_input: Option<serde_json::Value>,
    pub locations: Vec<String>,
    /// How long a human has to answer.
    pub timeout: std::time::Duration,
}

const COLUMNS: &str = "id, spec_task_id, session_id, work_session_id, zed_thread_id, tool_call_id, title, \
    tool_kind, command, raw_input, locations, options, status, choice, answered_by, created_at, answered_at, \
    expires_at";

const PERMISSION_REQUESTS: Table<Row> =
    Table::new("permission_requests", COLUMNS, "permission request", "id");

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    spec_task_id: String,
    session_id: String,
    work_session_id: Option<String>,
    zed_thread_id: String,
    tool_call_id: String,
    title: String,
    tool_kind: Option<String>,
    command: Option<String>,
    raw_input: Option<Json<serde_json::Value>>,
    locations: Json<Vec<String>>,
    options: Json<Vec<PermissionOption>>,
    status: String,
    choice: Option<String>,
    answered_by: Option<String>,
    created_at: DateTime<Utc>,
    answered_at: Option<DateTime<Utc>>,
    expires_at: DateTime<Utc>,
}

impl TryFrom<Row> for PermissionRequest {
    type Error = StoreError;
    fn try_from(row: Row) -> StoreResult<Self> {
        const T: &str = "permission_requests";
        let corrupt = |e: spectask_domain::IdError| StoreError::corrupt(T, e);
        Ok(PermissionRequest {
            id: PermissionRequestId::parse(&row.id).map_err(corrupt)?,
            spec_task_id: SpecTaskId::parse(&row.spec_task_id).map_err(corrupt)?,
            session_id: SessionId::parse(&row.session_id).map_err(corrupt)?,
            work_session_id: row
                .work_session_id
                .as_deref()
                .map(WorkSessionId::parse)
                .transpose()
                .map_err(corrupt)?,
            zed_thread_id: row.zed_thread_id,
            tool_call_id: row.tool_call_id,
            title: row.title,
            tool_kind: row.tool_kind,
            command: row.command,
            raw_input: row.raw_input.map(|raw| raw.0),
            locations: row.locations.0,
            options: row.options.0,
            status: row.status.parse()?,
            choice: row.choice,
            answered_by: row.answered_by,
            created_at: row.created_at,
            answered_at: row.answered_at,
            expires_at: row.expires_at,
        })
    }
}

impl Store {
    /// Records a pending request from the thread `zed_thread_id`, which must be a work session's
    /// thread or the ACP session of a planning session.
    pub async fn create_permission_request(
        &self,
        new: &NewPermissionRequest,
    ) -> StoreResult<PermissionRequest> {
        let id = PermissionRequestId::from_ulid(self.ids.next());
        let now = now();
        let expires =
            now + chrono::Duration::from_std(new.timeout).unwrap_or(chrono::Duration::minutes(10));
        // The owner is looked up before the write transaction: a deferred SQLite transaction
        // that reads and then writes fails at once (SQLITE_BUSY) if another connection wrote in
        // between, instead of waiting its turn. Threads never change owner, so nothing is lost.
        let (task, ws, session) = {
            let work: Option<(String, String, String)> = query_as(
                "SELECT t.spec_task_id, t.work_session_id, w.helix_session_id FROM spec_task_zed_threads t \
                 JOIN spec_task_work_sessions w ON w.id = t.work_session_id \
                 WHERE t.zed_thread_id = $1 ORDER BY t.id DESC LIMIT 1",
            )
            .bind(&new.zed_thread_id)
            .fetch_optional(self.backend.reader())
            .await?;
            match work {
                Some((task, ws, session)) => (task, Some(ws), session),
                None => {
                    // A planning thread: the ACP session recorded on the planning session.
                    let planning: Option<(String, String)> = query_as(
                        "SELECT spec_task_id, id FROM sessions WHERE agent_thread_id = $1 ORDER BY id DESC LIMIT 1",
                    )
                    .bind(&new.zed_thread_id)
                    .fetch_optional(self.backend.reader())
                    .await?;
                    let (task, session) = planning
                        .ok_or_else(|| StoreError::not_found("zed thread", &new.zed_thread_id))?;
                    (task, None, session)
                }
            }
        };
        let row: Row = self.write(async |tx| {
            let row = query_as(sqlx::AssertSqlSafe(format!(
                "INSERT INTO permission_requests (id, spec_task_id, session_id, work_session_id, zed_thread_id, \
                 tool_call_id, title, tool_kind, command, raw_input, locations, options, status, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending', $13, $14) \
                 RETURNING {COLUMNS}"
            )))
            .bind(id.as_str())
            .bind(&task)
            .bind(&session)
            .bind(&ws)
            .bind(&new.zed_thread_id)
            .bind(&new.tool_call_id)
            .bind(&new.title)
            .bind(&new.tool_kind)
            .bind(&new.command)
            .bind(new.raw_input.as_ref().map(Json))
            .bind(Json(&new.locations))
            .bind(Json(&new.options))
            .bind(now)
            .bind(expires)
            .fetch_one(&mut *tx)
            .await?;
            let event = NewEvent {
                spec_task_id: Some(
                    SpecTaskId::parse(&task)
                        .map_err(|e| StoreError::corrupt("spec_task_zed_threads", e))?,
                ),
                kind: EventKind::PermissionRequested,
                entity_id: id.to_string(),
                actor: "agent".to_owned(),
                payload: json!({ "session_id": session, "work_session_id": ws, "title": new.title, "options": new.options }),
            };
            append_event(&mut *tx, &event, now).await?;
            Ok(row)
        })
        .await?;
        row.try_into()
    }

    pub async fn get_permission_request(
        &self,
        id: &PermissionRequestId,
    ) -> StoreResult<PermissionRequest> {
        PERMISSION_REQUESTS.get(&self.backend, id.as_str()).await
    }

    /// A work session's permission requests, oldest first.
    pub async fn list_permission_requests(
        &self,
        ws: &WorkSessionId,
    ) -> StoreResult<Vec<PermissionRequest>> {
        PERMISSION_REQUESTS
            .list(&self.backend, "work_session_id", ws.as_str())
            .await
    }

    /// Every permission request of a task (planning and work sessions), oldest first.
    pub async fn list_task_permission_requests(
        &self,
        task: &SpecTaskId,
    ) -> StoreResult<Vec<PermissionRequest>> {
        PERMISSION_REQUESTS.of_task(&self.backend, task).await
    }

    /// The permission requests of every task in `status`, oldest first, at most `limit`: what the
    /// web UI's badge shows wherever the user is (`pending` ones are few: each holds an agent).
    pub async fn list_permission_requests_by_status(
        &self,
        status: PermissionRequestStatus,
        limit: i64,
    ) -> StoreResult<Vec<PermissionRequest>> {
        let rows: Vec<Row> = query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM permission_requests WHERE status = $1 ORDER BY id LIMIT $2"
        )))
        .bind(status.as_str())
        .bind(limit)
        .fetch_all(self.backend.reader())
        .await?;
        rows.into_iter().map(PermissionRequest::try_from).collect()
    }

    /// Settles a pending request: answered with `choice` by `actor`, or (`choice` `None`) timed
    /// out. Refused with a conflict when it is no longer pending.
    pub async fn settle_permission_request(
        &self,
        id: &PermissionRequestId,
        choice: Option<&str>,
        actor: &str,
    ) -> StoreResult<PermissionRequest> {
        let now = now();
        let (status, kind) = match choice {
            Some(_) => (
                PermissionRequestStatus::Answered,
                EventKind::PermissionAnswered,
            ),
            None => (
                PermissionRequestStatus::TimedOut,
                EventKind::PermissionTimedOut,
            ),
        };
        let settled: Option<Row> = self.write(async |tx| {
            let row: Option<Row> = query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE permission_requests SET status = $1, choice = $2, answered_by = $3, answered_at = $4 \
                 WHERE id = $5 AND status = 'pending' RETURNING {COLUMNS}"
            )))
            .bind(status.as_str())
            .bind(choice)
            .bind(choice.map(|_| actor))
            .bind(now)
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = &row {
                let event = NewEvent {
                    spec_task_id: Some(
                        SpecTaskId::parse(&row.spec_task_id)
                            .map_err(|e| StoreError::corrupt("permission_requests", e))?,
                    ),
                    kind,
                    entity_id: id.to_string(),
                    actor: actor.to_owned(),
                    payload: json!({ "choice": choice }),
                };
                append_event(&mut *tx, &event, now).await?;
            }
            Ok(row)
        })
        .await?;
        match settled {
            Some(row) => row.try_into(),
            None => {
                let current = self.get_permission_request(id).await?;
                Err(StoreError::Conflict(format!(
                    "permission request `{id}` is already {}",
                    current.status
                )))
            }
        }
    }
}
