//! What an agent declares about its own work session over MCP, each one transaction with its
//! event: progress on one of its implementation tasks (a guarded transition), a completion
//! summary, or giving up. Only an active work session whose agent has not given up may report.
//!
//! Repeats change nothing: a turn interrupted by a crash is re-run, and its agent may call the
//! same tools again. Within one turn (all its attempts: events after the turn's `turn.queued`),
//! a second report of the same task and status, or a second completion, writes nothing and answers
//! with the current state; giving up again answers as the first time did. What the earlier
//! attempts did is read back for the re-run prompt ([`Store::earlier_tool_calls`]).

use serde_json::json;
use spectask_domain::prompts::EarlierToolCalls;
use spectask_domain::{
    EventKind, ImplementationTaskEvent, ImplementationTaskId, ImplementationTaskStatus, NewEvent,
    SpecTaskId, SpecTaskImplementationTask, SpecTaskWorkSession, TurnId, WorkSessionId,
    WorkSessionStatus,
};
use sqlx::types::Json;

use crate::Store;
use crate::db::{Tx, query, query_as, query_scalar};
use crate::error::{StoreError, StoreResult};
use crate::events::append_event;
use crate::ids::now;
use crate::transition::apply_event;

/// Reads (and on PostgreSQL locks) work session `ws` inside `tx` and refuses unless it is active
/// and its agent has not given up. Returns the session's task id.
async fn reporting_session(tx: &mut Tx, ws: &WorkSessionId) -> StoreResult<SpecTaskId> {
    let lock = tx.dialect().for_update();
    let row: Option<(String, String, Option<String>)> = query_as(sqlx::AssertSqlSafe(format!(
        "SELECT spec_task_id, status, agent_gave_up FROM spec_task_work_sessions WHERE id = $1{lock}"
    )))
    .bind(ws.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let (task, status, gave_up) = row.ok_or_else(|| StoreError::not_found("work session", ws))?;
    if gave_up.is_some() {
        return Err(StoreError::Conflict(format!(
            "work session `{ws}` has already given up; it fails when this turn ends"
        )));
    }
    if status != WorkSessionStatus::Active.as_str() {
        return Err(StoreError::Conflict(format!(
            "work session `{ws}` is `{status}`; only an active work session can report"
        )));
    }
    SpecTaskId::parse(&task).map_err(|e| StoreError::corrupt("spec_task_work_sessions", e))
}

/// The id of the `turn.queued` event of work session `ws`'s latest turn, inside `tx`: events
/// after it belong to that turn's attempts (0 when the session has no turn).
async fn turn_floor(tx: &mut Tx, ws: &WorkSessionId) -> StoreResult<i64> {
    let floor: Option<i64> = query_scalar(
        "SELECT e.id FROM events e WHERE e.kind = $1 AND e.entity_id = \
         (SELECT t.id FROM turns t WHERE t.work_session_id = $2 ORDER BY t.id DESC LIMIT 1)",
    )
    .bind(EventKind::TurnQueued.as_str())
    .bind(ws.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    Ok(floor.unwrap_or(0))
}

/// The payloads of `kind` events about `entity` after event `floor`, inside `tx`, oldest first.
async fn payloads_since(
    tx: &mut Tx,
    floor: i64,
    kind: EventKind,
    entity: &str,
) -> StoreResult<Vec<serde_json::Value>> {
    let rows: Vec<(Json<serde_json::Value>,)> = query_as(
        "SELECT payload FROM events WHERE id > $1 AND kind = $2 AND entity_id = $3 ORDER BY id",
    )
    .bind(floor)
    .bind(kind.as_str())
    .bind(entity)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows.into_iter().map(|(payload,)| payload.0).collect())
}

impl Store {
    /// An agent reports `status` (`in_progress` or `completed`) for the implementation task
    /// `task_key` of its own work session `ws`, with a note kept in the event. Reporting the
    /// status the task already has changes nothing but is recorded, unless it repeats a report of
    /// the same turn: then nothing is written at all.
    pub async fn report_task_progress(
        &self,
        ws: &WorkSessionId,
        task_key: &str,
        status: ImplementationTaskStatus,
        note: &str,
        actor: &str,
    ) -> StoreResult<SpecTaskImplementationTask> {
        let now = now();
        let id = self
            .write(async |tx| {
            let task = reporting_session(&mut *tx, ws).await?;
            let row: Option<(String, String, Option<String>)> = query_as(
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
            let floor = turn_floor(&mut *tx, ws).await?;
            let repeat = payloads_since(&mut *tx, floor, EventKind::AgentProgressReported, &id)
                .await?
                .iter()
                .any(|p| p["work_session_id"] == ws.as_str() && p["status"] == status.as_str());
            let parsed = ImplementationTaskId::parse(&id)
                .map_err(|e| StoreError::corrupt("spec_task_implementation_tasks", e))?;
            if repeat {
                // A repeat within the turn: nothing is written.
                return Ok(parsed);
            }
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
                apply_event(&mut *tx, id.as_str(), event, actor, now).await?;
            }
            let reported = NewEvent {
                spec_task_id: Some(task.clone()),
                kind: EventKind::AgentProgressReported,
                entity_id: id.clone(),
                actor: actor.to_owned(),
                payload: json!({ "work_session_id": ws, "task_key": task_key, "status": status, "note": note }),
            };
            append_event(&mut *tx, &reported, now).await?;
            Ok(parsed)
        })
        .await?;
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
        self.write(async |tx| {
            if kind == EventKind::AgentGaveUp {
                // Giving up is final: a repeat answers as the first call did.
                let gave_up: Option<Option<String>> =
                    query_scalar("SELECT agent_gave_up FROM spec_task_work_sessions WHERE id = $1")
                        .bind(ws.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                if matches!(gave_up, Some(Some(_))) {
                    return Ok(());
                }
            }
            let task = reporting_session(&mut *tx, ws).await?;
            let floor = turn_floor(&mut *tx, ws).await?;
            if !payloads_since(&mut *tx, floor, kind, ws.as_str())
                .await?
                .is_empty()
            {
                // A repeat within the turn: nothing is written.
                return Ok(());
            }
            query(sqlx::AssertSqlSafe(format!(
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
            append_event(&mut *tx, &declared, now).await?;
            Ok(())
        })
        .await?;
        self.get_work_session(ws).await
    }

    /// What the agent of work session `ws` did through its tools during the attempts of `turn`
    /// so far (events after the turn's `turn.queued`): sessions spawned, progress reported,
    /// completion declared, giving up.
    pub async fn earlier_tool_calls(
        &self,
        turn: &TurnId,
        ws: &WorkSessionId,
    ) -> StoreResult<EarlierToolCalls> {
        let kinds = [
            EventKind::WorkSessionCreated,
            EventKind::AgentProgressReported,
            EventKind::AgentCompletionDeclared,
            EventKind::AgentGaveUp,
        ];
        let rows: Vec<(String, String, Json<serde_json::Value>)> = query_as(
            "SELECT kind, entity_id, payload FROM events \
             WHERE spec_task_id = (SELECT spec_task_id FROM turns WHERE id = $1) \
             AND id > COALESCE((SELECT id FROM events WHERE kind = $2 AND entity_id = $1), 0) \
             AND kind IN ($3, $4, $5, $6) ORDER BY id",
        )
        .bind(turn.as_str())
        .bind(EventKind::TurnQueued.as_str())
        .bind(kinds[0].as_str())
        .bind(kinds[1].as_str())
        .bind(kinds[2].as_str())
        .bind(kinds[3].as_str())
        .fetch_all(self.backend.reader())
        .await?;
        let mut earlier = EarlierToolCalls::default();
        let text = |payload: &serde_json::Value, field: &str| {
            payload[field].as_str().unwrap_or_default().to_owned()
        };
        for (kind, entity, Json(payload)) in rows {
            let kind: EventKind = kind.parse()?;
            match kind {
                EventKind::WorkSessionCreated
                    if payload["spawned"] == true
                        && payload["parent_work_session_id"] == ws.as_str() =>
                {
                    earlier.spawned.push((entity, text(&payload, "name")));
                }
                EventKind::AgentProgressReported if payload["work_session_id"] == ws.as_str() => {
                    earlier
                        .reported
                        .push((text(&payload, "task_key"), text(&payload, "status")));
                }
                EventKind::AgentCompletionDeclared if entity == ws.as_str() => {
                    earlier.completion = Some(text(&payload, "summary"));
                }
                EventKind::AgentGaveUp if entity == ws.as_str() => {
                    earlier.gave_up = Some(text(&payload, "reason"));
                }
                _ => {}
            }
        }
        Ok(earlier)
    }
}
