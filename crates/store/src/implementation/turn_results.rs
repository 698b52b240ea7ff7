//! The ends of an implementation turn: completed, failed but retried on the same thread, or
//! failed for good (its dependants blocked).

use serde_json::json;
use spectask_domain::{
    ImplementationTaskEvent, ImplementationTaskStatus, NewEvent, SpecTask, SpecTaskEvent,
    SpecTaskStatus, TurnEvent, TurnId, TurnKind, WorkSessionEvent, WorkSessionId, ZedThreadEvent,
};

use super::{ImplementationProgress, assigned_tasks_event, claimed_work_session, thread_event};
use crate::Store;
use crate::db::{query, query_scalar};
use crate::error::StoreResult;
use crate::events::append_event;
use crate::ids::now;
use crate::sessions::{finish_interaction, insert_interaction};
use crate::spec_tasks::lock_spec_task;
use crate::transition::{apply_event, try_apply_event};
use crate::turns::{TurnClaim, enqueue_turn, fail_claimed_turn, verify_claim};

impl Store {
    /// The claimed implementation turn ended with `end_turn`: the work session, its tasks and its
    /// thread complete; when no implementation work session is left open the task goes to
    /// `implementation_review`.
    pub async fn complete_implementation_turn(
        &self,
        claim: &TurnClaim,
        response: &str,
    ) -> StoreResult<ImplementationProgress> {
        let now = now();
        let ws = claimed_work_session(claim)?;
        let task = &claim.turn.spec_task_id;
        let actor = &claim.owner;
        let finished = self.write(async |tx| {
            verify_claim(&mut *tx, claim).await?;
            let status = lock_spec_task(&mut *tx, task).await?;
            finish_interaction(&mut *tx, claim, response, "complete", None, now).await?;
            apply_event(
                &mut *tx,
                claim.turn.id.as_str(),
                TurnEvent::Complete,
                actor,
                now,
            )
            .await?;
            // Queued follow-ups still have work for this session: it stays active.
            let queued: i64 = query_scalar(
                "SELECT COUNT(*) FROM turns WHERE work_session_id = $1 AND status = 'queued'",
            )
            .bind(ws.as_str())
            .fetch_one(&mut *tx)
            .await?;
            if queued == 0
                && try_apply_event(&mut *tx, ws.as_str(), WorkSessionEvent::Complete, actor, now)
                    .await?
            {
                query("UPDATE spec_task_work_sessions SET error = NULL WHERE id = $1")
                    .bind(ws.as_str())
                    .execute(&mut *tx)
                    .await?;
                assigned_tasks_event(
                    &mut *tx,
                    ws.as_str(),
                    ImplementationTaskEvent::Complete,
                    actor,
                    now,
                )
                .await?;
                thread_event(&mut *tx, ws.as_str(), ZedThreadEvent::Complete, actor, now).await?;
            }
            let open: i64 = query_scalar(
                "SELECT COUNT(*) FROM spec_task_work_sessions WHERE spec_task_id = $1 AND phase = 'implementation' \
                 AND status NOT IN ('completed', 'cancelled')",
            )
            .bind(task.as_str())
            .fetch_one(&mut *tx)
            .await?;
            let finished = open == 0 && status == SpecTaskStatus::Implementation;
            if finished {
                apply_event(
                    &mut *tx,
                    task.as_str(),
                    SpecTaskEvent::ImplementationFinished,
                    actor,
                    now,
                )
                .await?;
            }
            Ok(finished)
        }).await?;
        let completed_keys = self
            .list_implementation_tasks(task)
            .await?
            .into_iter()
            .filter(|t| t.status == ImplementationTaskStatus::Completed)
            .map(|t| t.key)
            .collect();
        Ok(ImplementationProgress {
            completed_keys,
            finished,
        })
    }

    /// The claimed implementation turn failed and may be retried: it fails, and a follow-up turn
    /// with `prompt` (a note about the failure) is queued on the same thread.
    pub async fn retry_implementation_turn(
        &self,
        claim: &TurnClaim,
        response: &str,
        reason: &str,
        prompt: &str,
    ) -> StoreResult<TurnId> {
        let now = now();
        let ws = claimed_work_session(claim)?;
        let task = &claim.turn.spec_task_id;
        let turn = self
            .write(async |tx| {
                fail_claimed_turn(&mut *tx, claim, response, reason, now).await?;
                query("UPDATE spec_task_work_sessions SET error = $1 WHERE id = $2")
                    .bind(reason)
                    .bind(ws.as_str())
                    .execute(&mut *tx)
                    .await?;
                let interaction = insert_interaction(
                    &mut *tx,
                    &self.ids,
                    task,
                    claim.turn.session_id.as_str(),
                    prompt,
                    &claim.owner,
                    now,
                )
                .await?;
                let turn = enqueue_turn(
                    &mut *tx,
                    &self.ids,
                    task,
                    &claim.turn.session_id,
                    &interaction,
                    Some(ws.as_str()),
                    TurnKind::FollowUp,
                    json!({ "retry_of": claim.turn.id }),
                    &claim.owner,
                    now,
                )
                .await?;
                Ok(turn)
            })
            .await?;
        Ok(turn)
    }

    /// The claimed implementation turn failed for good: the work session, its tasks and its
    /// thread fail; `dependants` (work sessions waiting for it) are blocked; the task goes to
    /// `implementation_failed` with the reason. Independent work sessions go on.
    pub async fn fail_work_session(
        &self,
        claim: &TurnClaim,
        response: &str,
        reason: &str,
        dependants: &[WorkSessionId],
    ) -> StoreResult<SpecTask> {
        let now = now();
        let ws = claimed_work_session(claim)?;
        let task = &claim.turn.spec_task_id;
        let actor = &claim.owner;
        self.write(async |tx| {
            fail_claimed_turn(&mut *tx, claim, response, reason, now).await?;
            try_apply_event(&mut *tx, ws.as_str(), WorkSessionEvent::Fail, actor, now).await?;
            query("UPDATE spec_task_work_sessions SET error = $1 WHERE id = $2")
                .bind(reason)
                .bind(ws.as_str())
                .execute(&mut *tx)
                .await?;
            assigned_tasks_event(
                &mut *tx,
                ws.as_str(),
                ImplementationTaskEvent::Fail,
                actor,
                now,
            )
            .await?;
            thread_event(&mut *tx, ws.as_str(), ZedThreadEvent::Fail, actor, now).await?;
            for dependant in dependants {
                if try_apply_event(
                    &mut *tx,
                    dependant.as_str(),
                    WorkSessionEvent::Block,
                    actor,
                    now,
                )
                .await?
                {
                    assigned_tasks_event(
                        &mut *tx,
                        dependant.as_str(),
                        ImplementationTaskEvent::Block,
                        actor,
                        now,
                    )
                    .await?;
                }
            }
            if try_apply_event(
                &mut *tx,
                task.as_str(),
                SpecTaskEvent::ImplementationFailed,
                actor,
                now,
            )
            .await?
            {
                let failed = NewEvent {
                    spec_task_id: Some(task.clone()),
                    kind: spectask_domain::EventKind::ImplementationFailed,
                    entity_id: ws.to_string(),
                    actor: actor.to_owned(),
                    payload: json!({ "reason": reason, "work_session_id": ws, "phase": "implementation" }),
                };
                append_event(&mut *tx, &failed, now).await?;
            }
            query("UPDATE spec_tasks SET error = $1, updated_at = $2 WHERE id = $3")
                .bind(reason)
                .bind(now)
                .bind(task.as_str())
                .execute(&mut *tx)
                .await?;
            Ok(())
        }).await?;
        self.get_spec_task(task).await
    }
}
