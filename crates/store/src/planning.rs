//! The planning workflow's multi-row steps, each one transaction: start planning, request changes,
//! approve, and the three ends of a planning turn (success, correction, failure). Every step moves
//! the task through its transition table and records its events in the same commit.

use chrono::{DateTime, Utc};
use serde_json::json;
use spectask_domain::{
    EventKind, NewEvent, SessionId, SessionRole, SpecComment, SpecRevision, SpecTask,
    SpecTaskEvent, SpecTaskId, TurnEvent, TurnId, TurnKind,
};

use crate::Store;
use crate::comments::{COMMENT_COLUMNS, CommentRow};
use crate::db::{Tx, query, query_as, query_scalar};
use crate::error::{StoreError, StoreResult};
use crate::events::append_event;
use crate::ids::now;
use crate::implementation_tasks::{NewImplementationTask, insert_implementation_task};
use crate::rows::{SPEC_TASK_COLUMNS, SpecTaskRow};
use crate::sessions::{finish_interaction, insert_interaction};
use crate::transition::apply_event;
use crate::turns::{TurnClaim, enqueue_turn, fail_claimed_turn, verify_claim};

/// The documents a successful planning turn produced.
#[derive(Debug, Clone)]
pub struct PlanningOutput {
    /// The requirements title, used as the task's name while its name is derived.
    pub title: Option<String>,
    pub requirements_spec: String,
    pub technical_design: String,
    pub implementation_plan: String,
}

fn parse_session(raw: Option<String>) -> StoreResult<Option<SessionId>> {
    raw.map(|s| SessionId::parse(&s))
        .transpose()
        .map_err(|e| StoreError::corrupt("spec_tasks", e))
}

/// Fails the claimed planning turn inside `tx`: the interaction keeps `response` and the reason,
/// the turn fails, and the task goes to `spec_failed` with the reason in its `error`; returns the
/// last event id.
pub(crate) async fn fail_planning(
    tx: &mut Tx,
    claim: &TurnClaim,
    response: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    let id = &claim.turn.spec_task_id;
    fail_claimed_turn(tx, claim, response, reason, now).await?;
    apply_event(
        tx,
        id.as_str(),
        SpecTaskEvent::PlanningFailed,
        &claim.owner,
        now,
    )
    .await?;
    query("UPDATE spec_tasks SET error = $1, updated_at = $2 WHERE id = $3")
        .bind(reason)
        .bind(now)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
    let failed = NewEvent {
        spec_task_id: Some(id.clone()),
        kind: EventKind::PlanningFailed,
        entity_id: id.to_string(),
        actor: claim.owner.clone(),
        payload: json!({ "reason": reason, "turn_id": claim.turn.id }),
    };
    append_event(tx, &failed, now).await
}

impl Store {
    /// Moves the task into `spec_generation` (`event` is `StartPlanning` from `backlog` or
    /// `RetryPlanning` from `spec_failed`), binds its one planning session (created on first use
    /// with a guarded set of `spec_session_id`), records the prompt and queues the turn.
    pub async fn start_planning(
        &self,
        id: &SpecTaskId,
        event: SpecTaskEvent,
        prompt: &str,
        actor: &str,
    ) -> StoreResult<SpecTask> {
        let now = now();
        self.write(async |tx| {
            apply_event(&mut *tx, id.as_str(), event, actor, now).await?;
            let (existing, name): (Option<String>, String) =
                query_as("SELECT spec_session_id, name FROM spec_tasks WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
            let session = match parse_session(existing)? {
                Some(session) => session,
                None => {
                    let session = SessionId::from_ulid(self.ids.next());
                    query(
                        "INSERT INTO sessions (id, spec_task_id, role, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
                    )
                    .bind(session.as_str())
                    .bind(id.as_str())
                    .bind(SessionRole::Planning.as_str())
                    .bind(format!("Planning: {name}"))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let bound = query("UPDATE spec_tasks SET spec_session_id = $1 WHERE id = $2 AND spec_session_id IS NULL")
                        .bind(session.as_str())
                        .bind(id.as_str())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if bound != 1 {
                        return Err(StoreError::Conflict(format!(
                            "spec task `{id}` got a planning session concurrently"
                        )));
                    }
                    let created = NewEvent {
                        spec_task_id: Some(id.clone()),
                        kind: EventKind::SessionCreated,
                        entity_id: session.to_string(),
                        actor: actor.to_owned(),
                        payload: json!({ "role": SessionRole::Planning }),
                    };
                    append_event(&mut *tx, &created, now).await?;
                    session
                }
            };
            query("UPDATE spec_tasks SET error = NULL, updated_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            let interaction = insert_interaction(
                &mut *tx,
                &self.ids,
                id,
                session.as_str(),
                prompt,
                actor,
                now,
            )
            .await?;
            enqueue_turn(
                &mut *tx,
                &self.ids,
                id,
                &session,
                &interaction,
                None,
                TurnKind::Planning,
                json!({}),
                actor,
                now,
            )
            .await?;
            Ok(())
        }).await?;
        self.get_spec_task(id).await
    }

    /// A reviewer asked for changes: `spec_review → spec_revision`, the revision count goes up, and
    /// a revision turn is queued in the same planning session with a prompt built from the open
    /// comments and the general comment by `build_prompt(comments, revision)`.
    pub async fn request_spec_changes(
        &self,
        id: &SpecTaskId,
        general: Option<&str>,
        actor: &str,
        build_prompt: impl FnOnce(&[SpecComment], i32) -> String,
    ) -> StoreResult<SpecTask> {
        let now = now();
        self.write(async |tx| {
            apply_event(
                &mut *tx,
                id.as_str(),
                SpecTaskEvent::RequestSpecChanges,
                actor,
                now,
            )
            .await?;
            let session: Option<String> =
                query_scalar("SELECT spec_session_id FROM spec_tasks WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
            let session = parse_session(session)?.ok_or_else(|| {
                StoreError::Conflict(format!("spec task `{id}` has no planning session"))
            })?;
            let revision: Option<i32> =
                query_scalar("SELECT MAX(revision) FROM spec_revisions WHERE spec_task_id = $1")
                    .bind(id.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
            let revision = revision.unwrap_or(0);
            let rows: Vec<CommentRow> = query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COMMENT_COLUMNS} FROM spec_comments WHERE spec_task_id = $1 AND resolved = FALSE ORDER BY id"
            )))
            .bind(id.as_str())
            .fetch_all(&mut *tx)
            .await?;
            let comments = rows
                .into_iter()
                .map(SpecComment::try_from)
                .collect::<StoreResult<Vec<_>>>()?;
            let prompt = build_prompt(&comments, revision);
            query("UPDATE spec_tasks SET spec_revision_count = spec_revision_count + 1, updated_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            let interaction = insert_interaction(
                &mut *tx,
                &self.ids,
                id,
                session.as_str(),
                prompt.as_str(),
                actor,
                now,
            )
            .await?;
            let payload = json!({
                "comment_ids": comments.iter().map(|c| c.id.to_string()).collect::<Vec<_>>(),
                "general": general,
                "revision": revision,
            });
            enqueue_turn(
                &mut *tx,
                &self.ids,
                id,
                &session,
                &interaction,
                None,
                TurnKind::Revision,
                payload,
                actor,
                now,
            )
            .await?;
            Ok(())
        }).await?;
        self.get_spec_task(id).await
    }

    /// Approves the specs: `spec_review → spec_approved`, stamps the approver, the time and the
    /// approved revision, and records the plan's implementation tasks, all in one transaction.
    /// `expected_revision` is the revision the caller parsed the plan from; if another revision
    /// appeared meanwhile the approval is refused.
    pub async fn approve_specs(
        &self,
        id: &SpecTaskId,
        expected_revision: i32,
        approved_by: &str,
        tasks: &[NewImplementationTask],
        actor: &str,
    ) -> StoreResult<SpecTask> {
        let now = now();
        let task_ids: Vec<_> = tasks
            .iter()
            .map(|_| spectask_domain::ImplementationTaskId::from_ulid(self.ids.next()))
            .collect();
        let (row, last_event) = {
            let mut tx = self.backend.begin_write().await?;
            apply_event(
                &mut tx,
                id.as_str(),
                SpecTaskEvent::ApproveSpecs,
                actor,
                now,
            )
            .await?;
            let latest: Option<i32> =
                query_scalar("SELECT MAX(revision) FROM spec_revisions WHERE spec_task_id = $1")
                    .bind(id.as_str())
                    .fetch_one(&mut tx)
                    .await?;
            if latest != Some(expected_revision) {
                return Err(StoreError::Conflict(format!(
                    "revision {expected_revision} is no longer the newest; review the newest revision before approving"
                )));
            }
            let row: SpecTaskRow = query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE spec_tasks SET spec_approved_by = $1, spec_approved_at = $2, spec_approved_revision = $3, \
                 updated_at = $2 WHERE id = $4 RETURNING {SPEC_TASK_COLUMNS}"
            )))
            .bind(approved_by)
            .bind(now)
            .bind(expected_revision)
            .bind(id.as_str())
            .fetch_one(&mut tx)
            .await?;
            for (task_id, task) in task_ids.iter().zip(tasks) {
                insert_implementation_task(&mut tx, id, task_id, task, now).await?;
            }
            let approved = NewEvent {
                spec_task_id: Some(id.clone()),
                kind: EventKind::SpecsApproved,
                entity_id: id.to_string(),
                actor: actor.to_owned(),
                payload: json!({ "approved_by": approved_by, "revision": expected_revision, "implementation_tasks": tasks.len() }),
            };
            let last = append_event(&mut tx, &approved, now).await?;
            tx.commit().await?;
            (row, last)
        };
        self.announce(last_event);
        row.try_into()
    }

    /// The planning turn produced valid documents: they become the next revision and the task's
    /// current specs, the comments the turn answered are resolved, and the task goes to review.
    pub async fn complete_planning_turn(
        &self,
        claim: &TurnClaim,
        output: &PlanningOutput,
        response: &str,
    ) -> StoreResult<SpecRevision> {
        let now = now();
        let id = &claim.turn.spec_task_id;
        let feedback = claim
            .turn
            .payload
            .get("general")
            .and_then(|g| g.as_str())
            .map(str::to_owned);
        let comment_ids: Vec<String> = claim
            .turn
            .payload
            .get("comment_ids")
            .and_then(|c| c.as_array())
            .map(|ids| {
                ids.iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let (revision, last_event) = {
            let mut tx = self.backend.begin_write().await?;
            verify_claim(&mut tx, claim).await?;
            finish_interaction(&mut tx, claim, response, "complete", None, now).await?;
            apply_event(
                &mut tx,
                claim.turn.id.as_str(),
                TurnEvent::Complete,
                &claim.owner,
                now,
            )
            .await?;
            apply_event(
                &mut tx,
                id.as_str(),
                SpecTaskEvent::SpecsGenerated,
                &claim.owner,
                now,
            )
            .await?;
            let revision: i32 = query_scalar(
                "INSERT INTO spec_revisions (spec_task_id, revision, requirements_spec, technical_design, \
                 implementation_plan, feedback, interaction_id, created_at) \
                 VALUES ($1, (SELECT COALESCE(MAX(revision), 0) + 1 FROM spec_revisions WHERE spec_task_id = $1), \
                 $2, $3, $4, $5, $6, $7) RETURNING revision",
            )
            .bind(id.as_str())
            .bind(&output.requirements_spec)
            .bind(&output.technical_design)
            .bind(&output.implementation_plan)
            .bind(&feedback)
            .bind(claim.turn.interaction_id.as_str())
            .bind(now)
            .fetch_one(&mut tx)
            .await?;
            query(
                "UPDATE spec_tasks SET requirements_spec = $1, technical_design = $2, implementation_plan = $3, \
                 name = CASE WHEN name_derived AND $4 <> '' THEN $4 ELSE name END, error = NULL, updated_at = $5 WHERE id = $6",
            )
            .bind(&output.requirements_spec)
            .bind(&output.technical_design)
            .bind(&output.implementation_plan)
            .bind(output.title.as_deref().map(|t| t.chars().take(spectask_domain::limits::MAX_NAME_CHARS).collect::<String>()).unwrap_or_default())
            .bind(now)
            .bind(id.as_str())
            .execute(&mut tx)
            .await?;
            let created = NewEvent {
                spec_task_id: Some(id.clone()),
                kind: EventKind::RevisionCreated,
                entity_id: id.to_string(),
                actor: claim.owner.clone(),
                payload: json!({ "revision": revision, "turn_id": claim.turn.id }),
            };
            let mut last = append_event(&mut tx, &created, now).await?;
            if !comment_ids.is_empty() {
                for comment in &comment_ids {
                    query(
                        "UPDATE spec_comments SET resolved = TRUE, resolved_in_revision = $1, resolved_at = $2 \
                         WHERE id = $3 AND spec_task_id = $4 AND resolved = FALSE",
                    )
                    .bind(revision)
                    .bind(now)
                    .bind(comment)
                    .bind(id.as_str())
                    .execute(&mut tx)
                    .await?;
                }
                let resolved = NewEvent {
                    spec_task_id: Some(id.clone()),
                    kind: EventKind::CommentsResolved,
                    entity_id: id.to_string(),
                    actor: claim.owner.clone(),
                    payload: json!({ "comment_ids": comment_ids, "revision": revision }),
                };
                last = append_event(&mut tx, &resolved, now).await?;
            }
            tx.commit().await?;
            (revision, last)
        };
        self.announce(last_event);
        self.get_revision(id, revision).await
    }

    /// The reply broke the output contract: keep it, ask again in the same session with
    /// `prompt` (one corrective turn), and end this turn.
    pub async fn request_planning_correction(
        &self,
        claim: &TurnClaim,
        response: &str,
        prompt: &str,
    ) -> StoreResult<TurnId> {
        let now = now();
        let id = &claim.turn.spec_task_id;
        let session = &claim.turn.session_id;
        let turn = {
            let mut tx = self.backend.begin_write().await?;
            verify_claim(&mut tx, claim).await?;
            finish_interaction(&mut tx, claim, response, "complete", None, now).await?;
            apply_event(
                &mut tx,
                claim.turn.id.as_str(),
                TurnEvent::Complete,
                &claim.owner,
                now,
            )
            .await?;
            let interaction = insert_interaction(
                &mut tx,
                &self.ids,
                id,
                session.as_str(),
                prompt,
                &claim.owner,
                now,
            )
            .await?;
            // The correction answers the same review as the turn it corrects.
            let turn = enqueue_turn(
                &mut tx,
                &self.ids,
                id,
                session,
                &interaction,
                None,
                TurnKind::Correction,
                claim.turn.payload.clone(),
                &claim.owner,
                now,
            )
            .await?;
            tx.commit().await?;
            turn
        };
        self.announce_latest().await?;
        Ok(turn)
    }

    /// Planning failed for good: the interaction keeps what was written and the reason, the turn
    /// fails, and the task goes to `spec_failed` with the reason in its `error`.
    pub async fn fail_planning_turn(
        &self,
        claim: &TurnClaim,
        response: &str,
        reason: &str,
    ) -> StoreResult<SpecTask> {
        let now = now();
        let last_event = {
            let mut tx = self.backend.begin_write().await?;
            let last = fail_planning(&mut tx, claim, response, reason, now).await?;
            tx.commit().await?;
            last
        };
        self.announce(last_event);
        self.get_spec_task(&claim.turn.spec_task_id).await
    }

    /// Records an event that belongs to no state change (e.g. a workspace file could not be
    /// written).
    pub async fn record_event(&self, event: &NewEvent) -> StoreResult<i64> {
        let now = now();
        let id = {
            let mut tx = self.backend.begin_write().await?;
            let id = append_event(&mut tx, event, now).await?;
            tx.commit().await?;
            id
        };
        self.announce(id);
        Ok(id)
    }
}
