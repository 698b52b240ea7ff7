//! The independent review (issue 18): the review work session started when a task with a
//! `review_agent` reaches `implementation_review` (one per round of implementation: again after
//! changes were requested and made; its first turn queued in the same transaction), and the
//! verdicts its reviewer reports over MCP, each an event.

use chrono::{DateTime, Utc};
use serde_json::json;
use spectask_domain::review::{CriterionVerdict, ReviewVerdict};
use spectask_domain::{
    EventKind, NewEvent, SessionRole, SpecTaskId, SpecTaskStatus, TurnKind, VerdictId,
    WorkSessionId, WorkSessionPhase, WorkSessionStatus,
};
use sqlx::types::Json;

use crate::Store;
use crate::backend::Dialect;
use crate::db::{query, query_as};
use crate::error::{StoreError, StoreResult};
use crate::events::append_event;
use crate::ids::now;
use crate::sessions::insert_session;
use crate::spec_tasks::lock_spec_task;
use crate::turns::{TurnTarget, queue_turn};

const VERDICT_COLUMNS: &str =
    "id, spec_task_id, work_session_id, criterion_id, verdict, reason, reviewer, created_at";

#[derive(sqlx::FromRow)]
struct VerdictRow {
    id: String,
    spec_task_id: String,
    work_session_id: String,
    criterion_id: String,
    verdict: String,
    reason: String,
    reviewer: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<VerdictRow> for CriterionVerdict {
    type Error = StoreError;
    fn try_from(row: VerdictRow) -> StoreResult<Self> {
        let corrupt =
            |e: &dyn std::fmt::Display| StoreError::corrupt("criterion_verdicts", e.to_string());
        Ok(CriterionVerdict {
            id: VerdictId::parse(&row.id).map_err(|e| corrupt(&e))?,
            spec_task_id: SpecTaskId::parse(&row.spec_task_id).map_err(|e| corrupt(&e))?,
            work_session_id: WorkSessionId::parse(&row.work_session_id).map_err(|e| corrupt(&e))?,
            criterion_id: row.criterion_id,
            verdict: row.verdict.parse().map_err(|e| corrupt(&e))?,
            reason: row.reason,
            reviewer: row.reviewer,
            created_at: row.created_at,
        })
    }
}

/// A review to start.
#[derive(Debug, Clone, Copy)]
pub struct NewReview<'a> {
    /// The reviewer's agent profile.
    pub agent: &'a str,
    /// The instance its agent runs in (its own, not the task's).
    pub instance_id: &'a str,
    /// The reviewer's first prompt.
    pub prompt: &'a str,
}

/// When a task's latest review session started, if it has one.
type LastReviewed = Option<DateTime<Utc>>;
/// When its implementation sessions last completed.
type LastDone = Option<DateTime<Utc>>;

/// The two columns [`needs_review`] reads, for the task `task` (an SQL expression): its latest
/// review session's start and its implementation sessions' latest completion, with `$2` bound
/// to the review phase and `$3` to the implementation phase.
fn review_times(task: &str) -> String {
    format!(
        "(SELECT MAX(w.created_at) FROM spec_task_work_sessions w WHERE w.spec_task_id = {task} AND w.phase = $2), \
         (SELECT MAX(w.completed_at) FROM spec_task_work_sessions w WHERE w.spec_task_id = {task} AND w.phase = $3)"
    )
}

/// Whether a task last reviewed at `reviewed` (its latest review session's start) whose
/// implementation sessions last completed at `done` needs a (new) review.
fn needs_review(reviewed: LastReviewed, done: LastDone) -> bool {
    match (reviewed, done) {
        (None, _) => true,
        (Some(reviewed), Some(done)) => done > reviewed,
        (Some(_), None) => false,
    }
}

impl Store {
    /// Starts the review of task `task`: a review work session (active, its reviewer's instance
    /// recorded) with its first turn queued. `None`, changing nothing, when the task is not in
    /// `implementation_review` or was reviewed since its work sessions last completed.
    pub async fn start_review(
        &self,
        task: &SpecTaskId,
        review: NewReview<'_>,
        actor: &str,
    ) -> StoreResult<Option<WorkSessionId>> {
        let now = now();
        let id = WorkSessionId::from_ulid(self.ids.next());
        self.write(async |tx| {
            if lock_spec_task(&mut *tx, task).await? != SpecTaskStatus::ImplementationReview {
                return Ok(None);
            }
            let (reviewed, done): (LastReviewed, LastDone) = query_as(sqlx::AssertSqlSafe(
                format!("SELECT {}", review_times("$1")),
            ))
            .bind(task.as_str())
            .bind(WorkSessionPhase::Review.as_str())
            .bind(WorkSessionPhase::Implementation.as_str())
            .fetch_one(&mut *tx)
            .await?;
            if !needs_review(reviewed, done) {
                return Ok(None);
            }
            let name = format!("Review by {}", review.agent);
            let session =
                insert_session(&mut *tx, &self.ids, task, SessionRole::Review, &name, now).await?;
            query(
                "INSERT INTO spec_task_work_sessions (id, spec_task_id, helix_session_id, name, description, phase, \
                 status, agent_config, instance_id, created_at, started_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
            )
            .bind(id.as_str())
            .bind(task.as_str())
            .bind(session.as_str())
            .bind(&name)
            .bind("An independent verdict on every acceptance criterion.")
            .bind(WorkSessionPhase::Review.as_str())
            .bind(WorkSessionStatus::Active.as_str())
            .bind(Json(json!({ "agent": review.agent })))
            .bind(review.instance_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let created = NewEvent {
                spec_task_id: Some(task.clone()),
                kind: EventKind::WorkSessionCreated,
                entity_id: id.to_string(),
                actor: actor.to_owned(),
                payload: json!({ "name": name, "helix_session_id": session, "phase": "review", "reviewer": review.agent }),
            };
            append_event(&mut *tx, &created, now).await?;
            let target = TurnTarget {
                task,
                session: &session,
                work_session: Some(&id),
                kind: TurnKind::Implementation,
                payload: json!({ "review": true }),
            };
            queue_turn(&mut *tx, &self.ids, target, review.prompt, actor, now).await?;
            Ok(Some(id.clone()))
        })
        .await
    }

    /// Records a verdict of review session `ws`'s reviewer on `criterion_id`. `Conflict` unless
    /// `ws` is an active review session.
    pub async fn record_verdict(
        &self,
        ws: &WorkSessionId,
        criterion_id: &str,
        verdict: ReviewVerdict,
        reason: &str,
    ) -> StoreResult<CriterionVerdict> {
        let now = now();
        let id = VerdictId::from_ulid(self.ids.next());
        let row: VerdictRow = self
            .write(async |tx| {
                let found: Option<(String, String, String, Option<Json<serde_json::Value>>)> =
                    query_as(
                        "SELECT spec_task_id, phase, status, agent_config FROM spec_task_work_sessions WHERE id = $1",
                    )
                    .bind(ws.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                let (task, phase, status, config) =
                    found.ok_or_else(|| StoreError::not_found("work session", ws))?;
                if phase != WorkSessionPhase::Review.as_str()
                    || status != WorkSessionStatus::Active.as_str()
                {
                    return Err(StoreError::Conflict(format!(
                        "only an active review session gives verdicts; `{ws}` is {phase} and `{status}`"
                    )));
                }
                let reviewer = config
                    .and_then(|config| config.0.get("agent").and_then(|a| a.as_str()).map(str::to_owned))
                    .unwrap_or_default();
                let row: VerdictRow = query_as(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO criterion_verdicts ({VERDICT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     RETURNING {VERDICT_COLUMNS}"
                )))
                .bind(id.as_str())
                .bind(&task)
                .bind(ws.as_str())
                .bind(criterion_id)
                .bind(verdict.as_str())
                .bind(reason)
                .bind(&reviewer)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                let event = NewEvent {
                    spec_task_id: Some(
                        SpecTaskId::parse(&task)
                            .map_err(|e| StoreError::corrupt("spec_task_work_sessions", e))?,
                    ),
                    kind: EventKind::VerdictReported,
                    entity_id: id.to_string(),
                    actor: reviewer.clone(),
                    payload: json!({ "work_session_id": ws, "criterion_id": criterion_id, "verdict": verdict, "reason": reason }),
                };
                append_event(&mut *tx, &event, now).await?;
                Ok(row)
            })
            .await?;
        row.try_into()
    }

    /// Tasks in `implementation_review` whose implementation has not been reviewed since its
    /// work sessions last completed (never, or changes were requested and made since), oldest
    /// first; the engine starts a review for those whose `workspace_config` names a reviewer.
    pub async fn tasks_awaiting_review(&self) -> StoreResult<Vec<SpecTaskId>> {
        // Only tasks whose configuration names a reviewer: the worker asks every tick.
        let names_reviewer = match self.backend.dialect() {
            Dialect::Postgres => "s.workspace_config ? 'review_agent'",
            Dialect::Sqlite => "json_extract(s.workspace_config, '$.review_agent') IS NOT NULL",
        };
        let rows: Vec<(String, LastReviewed, LastDone)> = query_as(sqlx::AssertSqlSafe(format!(
            "SELECT s.id, {} \
             FROM spec_tasks s WHERE s.status = $1 AND s.archived = FALSE AND {names_reviewer} \
             ORDER BY s.id",
            review_times("s.id")
        )))
        .bind(SpecTaskStatus::ImplementationReview.as_str())
        .bind(WorkSessionPhase::Review.as_str())
        .bind(WorkSessionPhase::Implementation.as_str())
        .fetch_all(self.backend.reader())
        .await?;
        rows.into_iter()
            .filter(|(_, reviewed, done)| needs_review(*reviewed, *done))
            .map(|(id, _, _)| {
                SpecTaskId::parse(&id).map_err(|e| StoreError::corrupt("spec_tasks", e))
            })
            .collect()
    }

    /// Every verdict on task `task`, oldest first.
    pub async fn verdicts_of_task(&self, task: &SpecTaskId) -> StoreResult<Vec<CriterionVerdict>> {
        let rows: Vec<VerdictRow> = query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {VERDICT_COLUMNS} FROM criterion_verdicts WHERE spec_task_id = $1 ORDER BY id"
        )))
        .bind(task.as_str())
        .fetch_all(self.backend.reader())
        .await?;
        rows.into_iter().map(CriterionVerdict::try_from).collect()
    }
}
