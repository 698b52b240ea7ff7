//! Permission requests: recorded when an agent asks under the `ask` policy, answered by a human
//! (or expired) with a guarded update from `pending`, so an answer and an expiry cannot both win.

use chrono::{DateTime, Utc};
use serde_json::json;
use spectask_domain::{
    EventKind, NewEvent, PermissionOption, PermissionRequest, PermissionRequestId,
    PermissionRequestStatus, SpecTaskId, WorkSessionId,
};
use sqlx::types::Json;

use crate::Store;
use crate::backend::on_backend;
use crate::error::{StoreError, StoreResult};
use crate::events::append_event;
use crate::ids::now;

/// A request to record.
#[derive(Debug, Clone)]
pub struct NewPermissionRequest {
    /// The thread that asked; its work session is looked up from it.
    pub zed_thread_id: String,
    pub tool_call_id: String,
    pub title: String,
    pub options: Vec<PermissionOption>,
    /// How long a human has to answer.
    pub timeout: std::time::Duration,
}

const COLUMNS: &str = "id, spec_task_id, work_session_id, zed_thread_id, tool_call_id, title, options, status, \
    choice, answered_by, created_at, answered_at, expires_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    spec_task_id: String,
    work_session_id: String,
    zed_thread_id: String,
    tool_call_id: String,
    title: String,
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
            work_session_id: WorkSessionId::parse(&row.work_session_id).map_err(corrupt)?,
            zed_thread_id: row.zed_thread_id,
            tool_call_id: row.tool_call_id,
            title: row.title,
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
    /// Records a pending request from the thread `zed_thread_id` (which must belong to a work
    /// session).
    pub async fn create_permission_request(
        &self,
        new: &NewPermissionRequest,
    ) -> StoreResult<PermissionRequest> {
        let id = PermissionRequestId::from_ulid(self.ids.next());
        let now = now();
        let expires =
            now + chrono::Duration::from_std(new.timeout).unwrap_or(chrono::Duration::minutes(10));
        let (row, event_id) = on_backend!(&*self.backend, |w, r, d| {
            let mut tx = w.begin().await?;
            let owner: Option<(String, String)> = sqlx::query_as(
                "SELECT spec_task_id, work_session_id FROM spec_task_zed_threads WHERE zed_thread_id = $1 ORDER BY id DESC LIMIT 1",
            )
            .bind(&new.zed_thread_id)
            .fetch_optional(&mut *tx)
            .await?;
            let (task, ws) =
                owner.ok_or_else(|| StoreError::not_found("zed thread", &new.zed_thread_id))?;
            let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "INSERT INTO permission_requests (id, spec_task_id, work_session_id, zed_thread_id, tool_call_id, title, \
                 options, status, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9) \
                 RETURNING {COLUMNS}"
            )))
            .bind(id.as_str())
            .bind(&task)
            .bind(&ws)
            .bind(&new.zed_thread_id)
            .bind(&new.tool_call_id)
            .bind(&new.title)
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
                payload: json!({ "work_session_id": ws, "title": new.title, "options": new.options }),
            };
            let event_id = append_event!(tx, d, &event, now);
            tx.commit().await?;
            (row, event_id)
        });
        self.announce(event_id);
        row.try_into()
    }

    pub async fn get_permission_request(
        &self,
        id: &PermissionRequestId,
    ) -> StoreResult<PermissionRequest> {
        let row: Option<Row> = on_backend!(&*self.backend, |w, r, d| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM permission_requests WHERE id = $1"
            )))
            .bind(id.as_str())
            .fetch_optional(r)
            .await?
        });
        row.ok_or_else(|| StoreError::not_found("permission request", id))?
            .try_into()
    }

    /// A work session's permission requests, oldest first.
    pub async fn list_permission_requests(
        &self,
        ws: &WorkSessionId,
    ) -> StoreResult<Vec<PermissionRequest>> {
        let rows: Vec<Row> = on_backend!(&*self.backend, |w, r, d| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM permission_requests WHERE work_session_id = $1 ORDER BY id"
            )))
            .bind(ws.as_str())
            .fetch_all(r)
            .await?
        });
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
        let outcome: Option<(Row, i64)> = on_backend!(&*self.backend, |w, r, d| {
            let mut tx = w.begin().await?;
            let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
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
            match row {
                None => None,
                Some(row) => {
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
                    let event_id = append_event!(tx, d, &event, now);
                    tx.commit().await?;
                    Some((row, event_id))
                }
            }
        });
        match outcome {
            Some((row, event_id)) => {
                self.announce(event_id);
                row.try_into()
            }
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
