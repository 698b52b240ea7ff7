//! The planning workflow's multi-row steps, each one transaction: start planning, request changes,
//! approve, and the three ends of a planning turn (success, correction, failure). Every step moves
//! the task through its transition table and records its events in the same commit.

use chrono::{DateTime, Utc};
use serde_json::json;
use spectask_domain::{
    EventKind, NewEvent, SessionId, SessionRole, SpecComment, SpecRevision, SpecTask,
    SpecTaskEvent, SpecTaskId, TurnId, TurnKind,
};

use crate::Store;
use crate::comments::{COMMENT_COLUMNS, CommentRow};
use crate::db::{Tx, query, query_as, query_scalar};
use crate::error::{StoreError, StoreResult};
use crate::events::append_event;
use crate::ids::now;
use crate::implementation_tasks::{NewImplementationTask, insert_implementation_task};
use crate::revisions::latest_revision;
use crate::rows::{SPEC_TASK_COLUMNS, SpecTaskRow};
use crate::sessions::insert_session;
use crate::spec_tasks::set_spec_task_error;
use crate::transition::apply_event;
use crate::turns::{TurnClaim, TurnTarget, complete_claimed_turn, fail_claimed_turn, queue_turn};

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
    set_spec_task_error(tx, id, Some(reason), now).await?;
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
                None => create_planning_session(&mut *tx, self, id, &name, actor, now).await?,
            };
            set_spec_task_error(&mut *tx, id, None, now).await?;
            let target = TurnTarget {
                task: id,
                session: &session,
                work_session: None,
                kind: TurnKind::Planning,
                payload: json!({}),
            };
            queue_turn(&mut *tx, &self.ids, target, prompt, actor, now).await?;
            Ok(())
        })
        .await?;
        self.get_spec_task(id).await
    }

    /// A reviewer asked for changes: `spec_review → spec_revision`, the revision count goes up, and
    /// a revision turn is queued in the same planning session with a prompt built from the open
    /// comments and the general comment by `build_prompt(comments, revision)`. With
    /// `expected_revision` (the revision the reviewer read), the request is refused with
    /// [`StoreError::StaleRevision`] unless it is still the latest, checked after the status
    /// change in the same transaction.
    pub async fn request_spec_changes(
        &self,
        id: &SpecTaskId,
        expected_revision: Option<i32>,
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
            if let Some(expected) = expected_revision {
                check_latest_revision(&mut *tx, id, expected).await?;
            }
            let revision = latest_revision(&mut *tx, id).await?.unwrap_or(0);
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
            query(
                "UPDATE spec_tasks SET spec_revision_count = spec_revision_count + 1, updated_at = $1 WHERE id = $2",
            )
            .bind(now)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
            let target = TurnTarget {
                task: id,
                session: &session,
                work_session: None,
                kind: TurnKind::Revision,
                payload: json!({
                    "comment_ids": comments.iter().map(|c| c.id.to_string()).collect::<Vec<_>>(),
                    "general": general,
                    "revision": revision,
                }),
            };
            queue_turn(&mut *tx, &self.ids, target, &prompt, actor, now).await?;
            Ok(())
        })
        .await?;
        self.get_spec_task(id).await
    }

    /// Approves the specs: `spec_review → spec_approved`, stamps the approver, the time and the
    /// approved revision, and records the plan's implementation tasks, all in one transaction.
    /// `expected_revision` is the revision the caller parsed the plan from; unless it is still the
    /// latest (checked after the status change, in the same transaction, so no revision can
    /// appear in between) the approval is refused with [`StoreError::StaleRevision`].
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
        let row: SpecTaskRow = self.write(async |tx| {
            apply_event(
                &mut *tx,
                id.as_str(),
                SpecTaskEvent::ApproveSpecs,
                actor,
                now,
            )
            .await?;
            check_latest_revision(&mut *tx, id, expected_revision).await?;
            let row = query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE spec_tasks SET spec_approved_by = $1, spec_approved_at = $2, spec_approved_revision = $3, \
                 updated_at = $2 WHERE id = $4 RETURNING {SPEC_TASK_COLUMNS}"
            )))
            .bind(approved_by)
            .bind(now)
            .bind(expected_revision)
            .bind(id.as_str())
            .fetch_one(&mut *tx)
            .await?;
            for (task_id, task) in task_ids.iter().zip(tasks) {
                insert_implementation_task(&mut *tx, id, task_id, task, now).await?;
            }
            let approved = NewEvent {
                spec_task_id: Some(id.clone()),
                kind: EventKind::SpecsApproved,
                entity_id: id.to_string(),
                actor: actor.to_owned(),
                payload: json!({ "approved_by": approved_by, "revision": expected_revision, "implementation_tasks": tasks.len() }),
            };
            append_event(&mut *tx, &approved, now).await?;
            Ok(row)
        })
        .await?;
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
        let revision = self.write(async |tx| {
            complete_claimed_turn(&mut *tx, claim, response, now).await?;
            apply_event(
                &mut *tx,
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
            .fetch_one(&mut *tx)
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
            .execute(&mut *tx)
            .await?;
            let created = NewEvent {
                spec_task_id: Some(id.clone()),
                kind: EventKind::RevisionCreated,
                entity_id: id.to_string(),
                actor: claim.owner.clone(),
                payload: json!({ "revision": revision, "turn_id": claim.turn.id }),
            };
            append_event(&mut *tx, &created, now).await?;
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
                    .execute(&mut *tx)
                    .await?;
                }
                let resolved = NewEvent {
                    spec_task_id: Some(id.clone()),
                    kind: EventKind::CommentsResolved,
                    entity_id: id.to_string(),
                    actor: claim.owner.clone(),
                    payload: json!({ "comment_ids": comment_ids, "revision": revision }),
                };
                append_event(&mut *tx, &resolved, now).await?;
            }
            Ok(revision)
        })
        .await?;
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
        self.write(async |tx| {
            complete_claimed_turn(&mut *tx, claim, response, now).await?;
            // The correction answers the same review as the turn it corrects.
            let target = TurnTarget {
                task: &claim.turn.spec_task_id,
                session: &claim.turn.session_id,
                work_session: None,
                kind: TurnKind::Correction,
                payload: claim.turn.payload.clone(),
            };
            queue_turn(&mut *tx, &self.ids, target, prompt, &claim.owner, now).await
        })
        .await
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
        self.write(async |tx| fail_planning(tx, claim, response, reason, now).await)
            .await?;
        self.get_spec_task(&claim.turn.spec_task_id).await
    }

    /// Records an event that belongs to no state change (e.g. a workspace file could not be
    /// written).
    pub async fn record_event(&self, event: &NewEvent) -> StoreResult<i64> {
        let now = now();
        self.write(async |tx| append_event(tx, event, now).await)
            .await
    }
}

/// Refuses with [`StoreError::StaleRevision`] unless `expected` is task `id`'s latest revision.
/// Called after the task's status change in the same transaction: revisions are only made by a
/// planning turn leaving `spec_generation`/`spec_revision`, a status change that conflicts with
/// the caller's, so the answer holds until the commit.
async fn check_latest_revision(tx: &mut Tx, id: &SpecTaskId, expected: i32) -> StoreResult<()> {
    match latest_revision(&mut *tx, id).await? {
        Some(latest) if latest == expected => Ok(()),
        Some(latest) => Err(StoreError::StaleRevision { expected, latest }),
        None => Err(StoreError::Conflict(format!(
            "spec task `{id}` has no revision yet"
        ))),
    }
}

/// Creates the planning session of task `id` (named after the task) inside `tx` and binds it
/// with a guarded set of `spec_session_id`: a concurrent binding is a conflict.
async fn create_planning_session(
    tx: &mut Tx,
    store: &Store,
    id: &SpecTaskId,
    name: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> StoreResult<SessionId> {
    let session = insert_session(
        &mut *tx,
        &store.ids,
        id,
        SessionRole::Planning,
        &format!("Planning: {name}"),
        now,
    )
    .await?;
    let bound = query(
        "UPDATE spec_tasks SET spec_session_id = $1 WHERE id = $2 AND spec_session_id IS NULL",
    )
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
    append_event(tx, &created, now).await?;
    Ok(session)
}
