//! The ends of an implementation turn: completed, failed but retried on the same thread, or
//! failed for good (its dependants blocked).

use serde_json::json;
use spectask_domain::{
    ImplementationTaskEvent, ImplementationTaskStatus, NewEvent, SpecTask, SpecTaskEvent, TurnId,
    TurnKind, WorkSessionEvent, WorkSessionId, ZedThreadEvent,
};

use super::{
    ImplementationProgress, claimed_work_session, dependants_event, finish_if_all_closed,
    set_work_session_error, work_session_parts_event,
};
use crate::Store;
use crate::db::query_scalar;
use crate::error::StoreResult;
use crate::events::append_event;
use crate::ids::now;
use crate::spec_tasks::{lock_spec_task, set_spec_task_error};
use crate::transition::try_apply_event;
use crate::turns::{TurnClaim, TurnTarget, complete_claimed_turn, fail_claimed_turn, queue_turn};
use crate::workspaces::{SessionMerge, record_merge};

impl Store {
    /// The claimed implementation turn ended with `end_turn`: the work session, its tasks and its
    /// thread complete; when no implementation work session is left open the task goes to
    /// `implementation_review`. In worktree isolation `merge` is the session branch's merge into
    /// the task branch, recorded in the same transaction (its commits, the new tips).
    pub async fn complete_implementation_turn(
        &self,
        claim: &TurnClaim,
        response: &str,
        merge: Option<&SessionMerge>,
    ) -> StoreResult<ImplementationProgress> {
        let now = now();
        let ws = claimed_work_session(claim)?;
        let task = &claim.turn.spec_task_id;
        let actor = &claim.owner;
        let finished = self
            .write(async |tx| {
                complete_claimed_turn(&mut *tx, claim, response, now).await?;
                let status = lock_spec_task(&mut *tx, task).await?;
                if let Some(merge) = merge {
                    record_merge(&mut *tx, ws, task, merge, actor, now).await?;
                }
                // Queued follow-ups still have work for this session: it stays active.
                let queued: i64 = query_scalar(
                    "SELECT COUNT(*) FROM turns WHERE work_session_id = $1 AND status = 'queued'",
                )
                .bind(ws.as_str())
                .fetch_one(&mut *tx)
                .await?;
                if queued == 0
                    && try_apply_event(
                        &mut *tx,
                        ws.as_str(),
                        WorkSessionEvent::Complete,
                        actor,
                        now,
                    )
                    .await?
                {
                    set_work_session_error(&mut *tx, ws.as_str(), None).await?;
                    work_session_parts_event(
                        &mut *tx,
                        ws.as_str(),
                        ImplementationTaskEvent::Complete,
                        ZedThreadEvent::Complete,
                        actor,
                        now,
                    )
                    .await?;
                }
                finish_if_all_closed(&mut *tx, task, status, actor, now).await
            })
            .await?;
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
        self.write(async |tx| {
            fail_claimed_turn(&mut *tx, claim, response, reason, now).await?;
            set_work_session_error(&mut *tx, ws.as_str(), Some(reason)).await?;
            let target = TurnTarget {
                task: &claim.turn.spec_task_id,
                session: &claim.turn.session_id,
                work_session: Some(ws),
                kind: TurnKind::FollowUp,
                payload: json!({ "retry_of": claim.turn.id }),
            };
            queue_turn(&mut *tx, &self.ids, target, prompt, &claim.owner, now).await
        })
        .await
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
            set_work_session_error(&mut *tx, ws.as_str(), Some(reason)).await?;
            work_session_parts_event(
                &mut *tx,
                ws.as_str(),
                ImplementationTaskEvent::Fail,
                ZedThreadEvent::Fail,
                actor,
                now,
            )
            .await?;
            dependants_event(
                &mut *tx,
                dependants,
                WorkSessionEvent::Block,
                ImplementationTaskEvent::Block,
                actor,
                now,
            )
            .await?;
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
            set_spec_task_error(&mut *tx, task, Some(reason), now).await?;
            Ok(())
        })
        .await?;
        self.get_spec_task(task).await
    }
}
