//! A human's decisions on the implementation: cancel or retry a work session, or request changes
//! after review (reopening the chosen sessions with a follow-up turn).

use serde_json::json;
use spectask_domain::{
    ImplementationTaskEvent, SessionId, SpecTask, SpecTaskEvent, SpecTaskId, SpecTaskStatus,
    SpecTaskWorkSession, TurnEvent, TurnKind, WorkSessionEvent, WorkSessionId, ZedThreadEvent,
};

use super::{
    assigned_tasks_event, dependants_event, finish_if_all_closed, lock_task_of_work_session,
    work_session_parts_event,
};
use crate::Store;
use crate::db::{query, query_as, query_scalar};
use crate::error::{StoreError, StoreResult};
use crate::ids::now;
use crate::spec_tasks::set_spec_task_error;
use crate::transition::apply_event;
use crate::turns::{TurnTarget, queue_turn};

impl Store {
    /// Gives up a work session on a human's request: its queued and running turns are cancelled
    /// (a worker running one loses its claim and stops the agent), and the task finishes if
    /// nothing else is open.
    pub async fn cancel_work_session(
        &self,
        ws: &WorkSessionId,
        actor: &str,
    ) -> StoreResult<SpecTaskWorkSession> {
        let now = now();
        self.write(async |tx| {
            let (task, status) = lock_task_of_work_session(&mut *tx, ws.as_str()).await?;
            apply_event(&mut *tx, ws.as_str(), WorkSessionEvent::Cancel, actor, now).await?;
            let live: Vec<String> = query_scalar(
                "SELECT id FROM turns WHERE work_session_id = $1 AND status IN ('queued', 'running')",
            )
            .bind(ws.as_str())
            .fetch_all(&mut *tx)
            .await?;
            for turn in &live {
                apply_event(&mut *tx, turn.as_str(), TurnEvent::Cancel, actor, now).await?;
            }
            finish_if_all_closed(&mut *tx, &task, status, actor, now).await?;
            Ok(())
        })
        .await?;
        self.get_work_session(ws).await
    }

    /// Tries a failed work session again: it and its tasks go back to waiting, its dependants are
    /// unblocked, and once no work session of the task is failed the task is queued for
    /// implementation again (keeping its instance, sessions and threads).
    pub async fn retry_work_session(
        &self,
        ws: &WorkSessionId,
        dependants: &[WorkSessionId],
        actor: &str,
    ) -> StoreResult<SpecTaskWorkSession> {
        let now = now();
        self.write(async |tx| {
            let (task, status) = lock_task_of_work_session(&mut *tx, ws.as_str()).await?;
            apply_event(&mut *tx, ws.as_str(), WorkSessionEvent::Retry, actor, now).await?;
            // A human retry overrides the agent's earlier decision to give up.
            query(
                "UPDATE spec_task_work_sessions SET error = NULL, agent_gave_up = NULL WHERE id = $1",
            )
            .bind(ws.as_str())
            .execute(&mut *tx)
            .await?;
            assigned_tasks_event(
                &mut *tx,
                ws.as_str(),
                ImplementationTaskEvent::Retry,
                actor,
                now,
            )
            .await?;
            dependants_event(
                &mut *tx,
                dependants,
                WorkSessionEvent::Unblock,
                ImplementationTaskEvent::Unblock,
                actor,
                now,
            )
            .await?;
            let failed: i64 = query_scalar(
                "SELECT COUNT(*) FROM spec_task_work_sessions WHERE spec_task_id = $1 AND status = 'failed'",
            )
            .bind(task.as_str())
            .fetch_one(&mut *tx)
            .await?;
            if failed == 0 && status == SpecTaskStatus::ImplementationFailed {
                apply_event(
                    &mut *tx,
                    task.as_str(),
                    SpecTaskEvent::RetryImplementation,
                    actor,
                    now,
                )
                .await?;
                // The transition just stamped `updated_at = now`; stamping it again changes nothing.
                set_spec_task_error(&mut *tx, &task, None, now).await?;
            }
            Ok(())
        })
        .await?;
        self.get_work_session(ws).await
    }

    /// A reviewer asked for changes: `implementation_review → implementation`, and each given work
    /// session is reopened with a follow-up turn carrying `prompt`.
    pub async fn request_implementation_changes(
        &self,
        id: &SpecTaskId,
        sessions: &[WorkSessionId],
        prompt: &str,
        actor: &str,
    ) -> StoreResult<SpecTask> {
        let now = now();
        self.write(async |tx| {
            apply_event(
                &mut *tx,
                id.as_str(),
                SpecTaskEvent::RequestImplementationChanges,
                actor,
                now,
            )
            .await?;
            for ws in sessions {
                let row: Option<(String, String)> = query_as(
                    "SELECT spec_task_id, helix_session_id FROM spec_task_work_sessions WHERE id = $1",
                )
                .bind(ws.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let Some((_, session)) = row.filter(|(owner, _)| owner == id.as_str()) else {
                    return Err(StoreError::not_found("work session", ws));
                };
                apply_event(&mut *tx, ws.as_str(), WorkSessionEvent::Reopen, actor, now).await?;
                work_session_parts_event(
                    &mut *tx,
                    ws.as_str(),
                    ImplementationTaskEvent::Reopen,
                    ZedThreadEvent::Reopen,
                    actor,
                    now,
                )
                .await?;
                let session = SessionId::parse(&session)
                    .map_err(|e| StoreError::corrupt("spec_task_work_sessions", e))?;
                let target = TurnTarget {
                    task: id,
                    session: &session,
                    work_session: Some(ws),
                    kind: TurnKind::FollowUp,
                    payload: json!({ "review_changes": true }),
                };
                queue_turn(&mut *tx, &self.ids, target, prompt, actor, now).await?;
            }
            Ok(())
        })
        .await?;
        self.get_spec_task(id).await
    }
}
