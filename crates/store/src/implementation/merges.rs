//! The ends of a turn whose work could not be merged into the task branch: a bounded follow-up
//! turn that resolves the conflict in the session's worktree, or the session blocked with the
//! conflicting files for a human; and the human's "resolved, go on".

use serde_json::json;
use spectask_domain::{EventKind, NewEvent, TurnId, TurnKind, WorkSessionEvent, WorkSessionId};

use super::{claimed_work_session, lock_task_of_work_session, set_work_session_error};
use crate::Store;
use crate::db::{Tx, query, query_as};
use crate::error::StoreResult;
use crate::events::append_event;
use crate::ids::now;
use crate::transition::apply_event;
use crate::turns::{TurnClaim, TurnTarget, complete_claimed_turn, queue_turn};

async fn conflict_event(
    tx: &mut Tx,
    claim: &TurnClaim,
    ws: &WorkSessionId,
    files: &[String],
    blocked: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> StoreResult<i32> {
    let (attempts,): (i32,) = query_as(
        "UPDATE spec_task_work_sessions SET conflict_files = $1, \
         merge_attempts = merge_attempts + $2 WHERE id = $3 RETURNING merge_attempts",
    )
    // A TEXT column on both backends (see `rows.rs`).
    .bind(serde_json::Value::from(files.to_vec()).to_string())
    .bind(if blocked { 0 } else { 1 })
    .bind(ws.as_str())
    .fetch_one(&mut *tx)
    .await?;
    let event = NewEvent {
        spec_task_id: Some(claim.turn.spec_task_id.clone()),
        kind: EventKind::MergeConflict,
        entity_id: ws.to_string(),
        actor: claim.owner.clone(),
        payload: json!({ "files": files, "attempt": attempts, "blocked": blocked }),
    };
    append_event(&mut *tx, &event, now).await?;
    Ok(attempts)
}

impl Store {
    /// The claimed turn ended but its work conflicts with the task branch: the turn completes,
    /// the conflict is recorded (one more attempt used), and a follow-up turn carrying `prompt`
    /// (how to resolve it) is queued on the same thread. The session stays active.
    pub async fn queue_merge_conflict_turn(
        &self,
        claim: &TurnClaim,
        response: &str,
        files: &[String],
        prompt: &str,
    ) -> StoreResult<TurnId> {
        let now = now();
        let ws = claimed_work_session(claim)?;
        self.write(async |tx| {
            complete_claimed_turn(&mut *tx, claim, response, now).await?;
            conflict_event(&mut *tx, claim, ws, files, false, now).await?;
            let target = TurnTarget {
                task: &claim.turn.spec_task_id,
                session: &claim.turn.session_id,
                work_session: Some(ws),
                kind: TurnKind::FollowUp,
                payload: json!({ "merge_conflict": files }),
            };
            queue_turn(&mut *tx, &self.ids, target, prompt, &claim.owner, now).await
        })
        .await
    }

    /// The claimed turn ended and the conflict is still not resolved after the allowed
    /// follow-ups: the session is blocked with `reason` and the files, for a human to resolve
    /// in its worktree (then [`Store::resolve_merge_block`]). Its dependants keep waiting.
    pub async fn block_on_merge_conflict(
        &self,
        claim: &TurnClaim,
        response: &str,
        files: &[String],
        reason: &str,
    ) -> StoreResult<()> {
        let now = now();
        let ws = claimed_work_session(claim)?;
        self.write(async |tx| {
            complete_claimed_turn(&mut *tx, claim, response, now).await?;
            apply_event(
                &mut *tx,
                ws.as_str(),
                WorkSessionEvent::MergeBlock,
                &claim.owner,
                now,
            )
            .await?;
            set_work_session_error(&mut *tx, ws.as_str(), Some(reason)).await?;
            conflict_event(&mut *tx, claim, ws, files, true, now).await?;
            Ok(())
        })
        .await
    }

    /// A human resolved a blocked merge in the session's worktree: the session is active again
    /// with a fresh conflict budget, and a follow-up turn carrying `prompt` is queued; when it
    /// ends, spectask commits and merges as after any turn.
    pub async fn resolve_merge_block(
        &self,
        ws: &WorkSessionId,
        prompt: &str,
        actor: &str,
    ) -> StoreResult<TurnId> {
        let now = now();
        self.write(async |tx| {
            let (task, _) = lock_task_of_work_session(&mut *tx, ws.as_str()).await?;
            apply_event(&mut *tx, ws.as_str(), WorkSessionEvent::Resolve, actor, now).await?;
            let session: String = crate::db::query_scalar(
                "SELECT helix_session_id FROM spec_task_work_sessions WHERE id = $1",
            )
            .bind(ws.as_str())
            .fetch_one(&mut *tx)
            .await?;
            let session = spectask_domain::SessionId::parse(&session)
                .map_err(|e| crate::StoreError::corrupt("spec_task_work_sessions", e))?;
            query(
                "UPDATE spec_task_work_sessions SET error = NULL, merge_attempts = 0, \
                 conflict_files = NULL WHERE id = $1",
            )
            .bind(ws.as_str())
            .execute(&mut *tx)
            .await?;
            let target = TurnTarget {
                task: &task,
                session: &session,
                work_session: Some(ws),
                kind: TurnKind::FollowUp,
                payload: json!({ "merge_resolved": true }),
            };
            queue_turn(&mut *tx, &self.ids, target, prompt, actor, now).await
        })
        .await
    }
}
