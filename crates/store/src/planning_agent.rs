//! Planning over ACP: what binds a planning session to its agent, each one transaction under the
//! running turn's claim. The task's instance (`zed_instance_id`) is set once, by planning or by
//! implementation, whichever comes first, so both phases share one agent process; the planning
//! session records the ACP session that hosts it, so every later turn resumes that one.

use serde_json::json;
use spectask_domain::{EventKind, NewEvent, SpecTask};

use crate::Store;
use crate::db::{query, query_scalar};
use crate::error::{StoreError, StoreResult};
use crate::events::append_event;
use crate::ids::now;
use crate::planning::fail_planning;
use crate::turns::{TurnClaim, verify_claim};

impl Store {
    /// The instance of the claimed turn's task: `candidate` becomes it if the task has none yet
    /// (a guarded set, recorded as `spec_task.updated`); otherwise the existing one is kept.
    pub async fn bind_planning_instance(
        &self,
        claim: &TurnClaim,
        candidate: &str,
    ) -> StoreResult<String> {
        let now = now();
        let id = &claim.turn.spec_task_id;
        let instance: Option<String> = self
            .write(async |tx| {
                verify_claim(&mut *tx, claim).await?;
                let set = query(
                    "UPDATE spec_tasks SET zed_instance_id = $1, updated_at = $2 WHERE id = $3 AND zed_instance_id IS NULL",
                )
                .bind(candidate)
                .bind(now)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if set == 1 {
                    let updated = NewEvent {
                        spec_task_id: Some(id.clone()),
                        kind: EventKind::SpecTaskUpdated,
                        entity_id: id.to_string(),
                        actor: claim.owner.clone(),
                        payload: json!({ "zed_instance_id": candidate, "reason": "planning over ACP" }),
                    };
                    append_event(&mut *tx, &updated, now).await?;
                }
                query_scalar("SELECT zed_instance_id FROM spec_tasks WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_one(&mut *tx)
                    .await
            })
            .await?;
        instance.ok_or_else(|| StoreError::Conflict(format!("spec task `{id}` has no instance")))
    }

    /// Records the ACP session the agent opened for the claimed turn's planning session. Set
    /// once: a session that already has one is a conflict (it must be resumed, never replaced).
    pub async fn record_planning_thread(
        &self,
        claim: &TurnClaim,
        agent_thread_id: &str,
    ) -> StoreResult<()> {
        let now = now();
        let session = &claim.turn.session_id;
        self.write(async |tx| {
            verify_claim(&mut *tx, claim).await?;
            let set = query(
                "UPDATE sessions SET agent_thread_id = $1, updated_at = $2 WHERE id = $3 AND agent_thread_id IS NULL",
            )
            .bind(agent_thread_id)
            .bind(now)
            .bind(session.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if set != 1 {
                return Err(StoreError::Conflict(format!(
                    "planning session `{session}` is already bound to an agent session"
                )));
            }
            let bound = NewEvent {
                spec_task_id: Some(claim.turn.spec_task_id.clone()),
                kind: EventKind::SessionAgentThreadBound,
                entity_id: session.to_string(),
                actor: claim.owner.clone(),
                payload: json!({ "agent_thread_id": agent_thread_id, "turn_id": claim.turn.id }),
            };
            append_event(&mut *tx, &bound, now).await?;
            Ok(())
        })
        .await
    }

    /// The planning session's ACP session cannot be resumed (the agent lost it or cannot load
    /// sessions): planning fails with `reason`, and the session forgets that ACP session in the
    /// same transaction (recorded as `session.agent_thread_bound` with a null id), so a retry,
    /// which a human starts after reading the reason, opens a new one instead of failing again.
    pub async fn fail_planning_forgetting_thread(
        &self,
        claim: &TurnClaim,
        reason: &str,
    ) -> StoreResult<SpecTask> {
        let now = now();
        let session = &claim.turn.session_id;
        self.write(async |tx| {
            fail_planning(&mut *tx, claim, "", reason, now).await?;
            query("UPDATE sessions SET agent_thread_id = NULL, updated_at = $1 WHERE id = $2")
                .bind(now)
                .bind(session.as_str())
                .execute(&mut *tx)
                .await?;
            let forgotten = NewEvent {
                spec_task_id: Some(claim.turn.spec_task_id.clone()),
                kind: EventKind::SessionAgentThreadBound,
                entity_id: session.to_string(),
                actor: claim.owner.clone(),
                payload: json!({ "agent_thread_id": null, "reason": reason }),
            };
            append_event(&mut *tx, &forgotten, now).await?;
            Ok(())
        })
        .await?;
        self.get_spec_task(&claim.turn.spec_task_id).await
    }
}
