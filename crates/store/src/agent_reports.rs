//! What an agent declares about its own work session over MCP, each one transaction with its
//! event: progress on one of its implementation tasks (a guarded transition), a completion
//! summary, or giving up. Only an active work session whose agent has not given up may report.

use serde_json::json;
use spectask_domain::{
    EventKind, ImplementationTaskEvent, ImplementationTaskId, ImplementationTaskStatus, NewEvent,
    SpecTaskId, SpecTaskImplementationTask, SpecTaskWorkSession, WorkSessionId, WorkSessionStatus,
};

use crate::Store;
use crate::backend::{Dialect, on_backend};
use crate::error::{StoreError, StoreResult};
use crate::events::append_event;
use crate::ids::now;
use crate::transition::{IMPLEMENTATION_TASKS, event_in_tx};

/// Reads (and on PostgreSQL locks) work session `$ws` inside `$tx` and refuses unless it is
/// active and its agent has not given up. Evaluates to the session's task id.
macro_rules! reporting_session_in_tx {
    ($tx:expr, $d:expr, $ws:expr) => {{
        let lock = if $d == Dialect::Postgres { " FOR UPDATE" } else { "" };
        let row: Option<(String, String, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT spec_task_id, status, agent_gave_up FROM spec_task_work_sessions WHERE id = $1{lock}"
        )))
        .bind($ws.as_str())
        .fetch_optional(&mut *$tx)
        .await?;
        let (task, status, gave_up) = row.ok_or_else(|| StoreError::not_found("work session", $ws))?;
        if gave_up.is_some() {
            return Err(StoreError::Conflict(format!(
                "work session `{}` has already given up; it fails when this turn ends",
                $ws
            )));
        }
        if status != WorkSessionStatus::Active.as_str() {
            return Err(StoreError::Conflict(format!(
                "work session `{}` is `{status}`; only an active work session can report",
                $ws
            )));
        }
        SpecTaskId::parse(&task).map_err(|e| StoreError::corrupt("spec_task_work_sessions", e))?
    }};
}

impl Store {
    /// An agent reports `status` (`in_progress` or `completed`) for the implementation task
    /// `task_key` of its own work session `ws`, with a note kept in the event. Reporting the
    /// status the task already has changes nothing but is recorded.
    pub async fn report_task_progress(
        &self,
        ws: &WorkSessionId,
        task_key: &str,
        status: ImplementationTaskStatus,
        note: &str,
        actor: &str,
    ) -> StoreResult<SpecTaskImplementationTask> {
        let now = now();
        let id = on_backend!(&*self.backend, |w, r, d| {
            let mut tx = w.begin().await?;
            let task = reporting_session_in_tx!(tx, d, ws);
            let row: Option<(String, String, Option<String>)> = sqlx::query_as(
                "SELECT id, status, assigned_work_session_id FROM spec_task_implementation_tasks \
                 WHERE spec_task_id = $1 AND task_key = $2",
            )
            .bind(task.as_str())
            .bind(task_key)
            .fetch_optional(&mut *tx)
            .await?;
            let mine = row.and_then(|(id, current, assigned)| {
                (assigned.as_deref() == Some(ws.as_str())).then_some((id, current))
            });
            let Some((id, current)) = mine else {
                return Err(StoreError::Conflict(format!(
                    "task `{task_key}` is not one of this work session's tasks"
                )));
            };
            let current: ImplementationTaskStatus = current.parse()?;
            let event = match (status, current) {
                (target, current) if target == current => None,
                (ImplementationTaskStatus::InProgress, ImplementationTaskStatus::Completed) => {
                    Some(ImplementationTaskEvent::Reopen)
                }
                (ImplementationTaskStatus::InProgress, _) => Some(ImplementationTaskEvent::Start),
                (ImplementationTaskStatus::Completed, _) => Some(ImplementationTaskEvent::Complete),
                (other, _) => {
                    return Err(StoreError::Conflict(format!(
                        "an agent reports `in_progress` or `completed`, not `{other}`"
                    )));
                }
            };
            if let Some(event) = event {
                event_in_tx!(
                    tx,
                    d,
                    &IMPLEMENTATION_TASKS,
                    ImplementationTaskStatus,
                    id.as_str(),
                    event,
                    actor,
                    now
                );
            }
            let reported = NewEvent {
                spec_task_id: Some(task.clone()),
                kind: EventKind::AgentProgressReported,
                entity_id: id.clone(),
                actor: actor.to_owned(),
                payload: json!({ "work_session_id": ws, "task_key": task_key, "status": status, "note": note }),
            };
            append_event!(tx, d, &reported, now);
            tx.commit().await?;
            ImplementationTaskId::parse(&id)
                .map_err(|e| StoreError::corrupt("spec_task_implementation_tasks", e))?
        });
        self.announce_latest().await?;
        self.get_implementation_task(&id).await
    }

    /// The agent of `ws` declares its work done with `summary`; the session completes when the
    /// turn ends with `end_turn`, as any turn does.
    pub async fn declare_work_completed(
        &self,
        ws: &WorkSessionId,
        summary: &str,
        actor: &str,
    ) -> StoreResult<SpecTaskWorkSession> {
        self.declare(
            ws,
            "agent_summary",
            EventKind::AgentCompletionDeclared,
            "summary",
            summary,
            actor,
        )
        .await
    }

    /// The agent of `ws` gives up with `reason`: when its turn ends, however it ends, the session
    /// fails for good (no retry) and its dependants are blocked.
    pub async fn declare_work_failed(
        &self,
        ws: &WorkSessionId,
        reason: &str,
        actor: &str,
    ) -> StoreResult<SpecTaskWorkSession> {
        self.declare(
            ws,
            "agent_gave_up",
            EventKind::AgentGaveUp,
            "reason",
            reason,
            actor,
        )
        .await
    }

    async fn declare(
        &self,
        ws: &WorkSessionId,
        column: &'static str,
        kind: EventKind,
        field: &'static str,
        text: &str,
        actor: &str,
    ) -> StoreResult<SpecTaskWorkSession> {
        let now = now();
        on_backend!(&*self.backend, |w, r, d| {
            let mut tx = w.begin().await?;
            let task = reporting_session_in_tx!(tx, d, ws);
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE spec_task_work_sessions SET {column} = $1 WHERE id = $2"
            )))
            .bind(text)
            .bind(ws.as_str())
            .execute(&mut *tx)
            .await?;
            let declared = NewEvent {
                spec_task_id: Some(task),
                kind,
                entity_id: ws.to_string(),
                actor: actor.to_owned(),
                payload: json!({ field: text }),
            };
            append_event!(tx, d, &declared, now);
            tx.commit().await?;
        });
        self.announce_latest().await?;
        self.get_work_session(ws).await
    }
}
