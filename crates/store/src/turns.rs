//! Durable turns and their claims.
//!
//! A worker claims the oldest queued turn with one statement that also stamps its owner, a fresh
//! claim token and a lease expiry (skipping turns of a work session that waits for another one:
//! overlap policy `serialize`) (PostgreSQL skips rows other replicas are claiming; SQLite has a
//! single writer). Every later write of that worker (output, heartbeat, completion) names the
//! token and checks that the turn is still running under it, so a worker whose lease expired
//! cannot write into a turn another worker re-ran.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use spectask_domain::{
    EventKind, InteractionId, NewEvent, SessionId, SpecTaskId, Turn, TurnEvent, TurnId, TurnKind,
    TurnStatus, WorkSessionId,
};
use sqlx::types::Json;

use crate::Store;
use crate::backend::Dialect;
use crate::db::{Tx, query, query_as, query_scalar};
use crate::error::{StoreError, StoreResult};
use crate::events::append_event;
use crate::ids::{IdGenerator, now};
use crate::instance_leases::{InstanceLeasing, claimable, take_lease};
use crate::rows::Table;
use crate::sessions::{finish_interaction, insert_interaction};
use crate::transition::apply_event;

pub(crate) const TURN_COLUMNS: &str = "id, spec_task_id, session_id, interaction_id, work_session_id, kind, \
    status, attempts, payload, error, created_at, started_at, completed_at";

pub(crate) const TURNS: Table<TurnRow> = Table::new("turns", TURN_COLUMNS, "turn", "id");

#[derive(sqlx::FromRow)]
pub(crate) struct TurnRow {
    id: String,
    spec_task_id: String,
    session_id: String,
    interaction_id: String,
    work_session_id: Option<String>,
    kind: String,
    status: String,
    attempts: i32,
    payload: Json<serde_json::Value>,
    error: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
}

impl TryFrom<TurnRow> for Turn {
    type Error = StoreError;
    fn try_from(row: TurnRow) -> StoreResult<Self> {
        const T: &str = "turns";
        let corrupt = |e: spectask_domain::IdError| StoreError::corrupt(T, e);
        Ok(Turn {
            id: TurnId::parse(&row.id).map_err(corrupt)?,
            spec_task_id: SpecTaskId::parse(&row.spec_task_id).map_err(corrupt)?,
            session_id: SessionId::parse(&row.session_id).map_err(corrupt)?,
            interaction_id: InteractionId::parse(&row.interaction_id).map_err(corrupt)?,
            work_session_id: row
                .work_session_id
                .map(|id| spectask_domain::WorkSessionId::parse(&id))
                .transpose()
                .map_err(corrupt)?,
            kind: row.kind.parse()?,
            status: row.status.parse()?,
            attempts: row.attempts,
            payload: row.payload.0,
            error: row.error,
            created_at: row.created_at,
            started_at: row.started_at,
            completed_at: row.completed_at,
        })
    }
}

/// A worker's hold on a running turn.
#[derive(Debug, Clone)]
pub struct TurnClaim {
    pub turn: Turn,
    pub owner: String,
    pub token: String,
}

/// Where a turn runs and what it is: its task, its session, its work session (implementation
/// turns), its kind and its payload.
pub(crate) struct TurnTarget<'a> {
    pub(crate) task: &'a SpecTaskId,
    pub(crate) session: &'a SessionId,
    pub(crate) work_session: Option<&'a WorkSessionId>,
    pub(crate) kind: TurnKind,
    pub(crate) payload: serde_json::Value,
}

/// Queues a turn answering `prompt` inside the open transaction `tx`: the prompt becomes the
/// session's next interaction, and the turn is queued for it. Returns the turn id.
pub(crate) async fn queue_turn(
    tx: &mut Tx,
    ids: &IdGenerator,
    target: TurnTarget<'_>,
    prompt: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> StoreResult<TurnId> {
    let TurnTarget {
        task,
        session,
        work_session,
        kind,
        payload,
    } = target;
    let interaction = insert_interaction(tx, ids, task, session, prompt, actor, now)
        .await?
        .id;
    let work_session = work_session.map(WorkSessionId::as_str);
    let id = TurnId::from_ulid(ids.next());
    query(
        "INSERT INTO turns (id, spec_task_id, session_id, interaction_id, work_session_id, kind, status, attempts, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0, $7, $8)",
    )
    .bind(id.as_str())
    .bind(task.as_str())
    .bind(session.as_str())
    .bind(interaction.as_str())
    .bind(work_session)
    .bind(kind.as_str())
    .bind(Json(&payload))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let event = NewEvent {
        spec_task_id: Some(task.clone()),
        kind: EventKind::TurnQueued,
        entity_id: id.to_string(),
        actor: actor.to_owned(),
        payload: json!({ "kind": kind, "session_id": session, "interaction_id": interaction, "work_session_id": work_session }),
    };
    append_event(tx, &event, now).await?;
    Ok(id)
}

/// Checks inside the open transaction `tx` that `claim` still holds its turn (and on PostgreSQL
/// locks the row until commit); `ClaimLost` if not.
pub(crate) async fn verify_claim(tx: &mut Tx, claim: &TurnClaim) -> StoreResult<()> {
    let lock = tx.dialect().for_update();
    let held: Option<String> = query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM turns WHERE id = $1 AND owner = $2 AND claim_token = $3 AND status = 'running'{lock}"
    )))
    .bind(claim.turn.id.as_str())
    .bind(&claim.owner)
    .bind(&claim.token)
    .fetch_optional(&mut *tx)
    .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(StoreError::ClaimLost(claim.turn.id.to_string())),
    }
}

/// Ends the claimed turn as completed inside `tx`: checks the claim, keeps the reply on the
/// interaction, and applies the turn's `Complete`.
pub(crate) async fn complete_claimed_turn(
    tx: &mut Tx,
    claim: &TurnClaim,
    response: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    verify_claim(tx, claim).await?;
    finish_interaction(tx, claim, response, "complete", None, now).await?;
    apply_event(
        tx,
        claim.turn.id.as_str(),
        TurnEvent::Complete,
        &claim.owner,
        now,
    )
    .await?;
    Ok(())
}

/// Ends the claimed turn as failed inside `tx`: checks the claim, keeps the reply written so far
/// and the reason on the interaction and the turn, and applies the turn's `Fail`.
pub(crate) async fn fail_claimed_turn(
    tx: &mut Tx,
    claim: &TurnClaim,
    response: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    verify_claim(tx, claim).await?;
    finish_interaction(tx, claim, response, "error", Some(reason), now).await?;
    query("UPDATE turns SET error = $1 WHERE id = $2")
        .bind(reason)
        .bind(claim.turn.id.as_str())
        .execute(&mut *tx)
        .await?;
    apply_event(
        tx,
        claim.turn.id.as_str(),
        TurnEvent::Fail,
        &claim.owner,
        now,
    )
    .await?;
    Ok(())
}

impl Store {
    /// Claims the oldest queued turn of one of `kinds` for `owner` under a lease of `lease`.
    /// With `leasing`, only a turn of a task whose instance `owner` holds, or of one nobody holds
    /// while `owner` has room for another instance, and the task's instance lease is taken or
    /// renewed in the same transaction (see [`crate::instance_leases`]).
    pub async fn claim_next_turn(
        &self,
        kinds: &[TurnKind],
        owner: &str,
        lease: Duration,
        leasing: Option<InstanceLeasing>,
    ) -> StoreResult<Option<TurnClaim>> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let now = now();
        let expires =
            now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60));
        let token = ulid::Ulid::new().to_string();
        let claimed: Result<Option<TurnRow>, StoreError> = self.write(async |tx| {
            let kind_params: Vec<String> =
                (0..kinds.len()).map(|i| format!("${}", i + 6)).collect();
            let skip = if self.backend.dialect() == Dialect::Postgres {
                " FOR UPDATE SKIP LOCKED"
            } else {
                ""
            };
            let order = if self.backend.dialect() == Dialect::Postgres {
                "created_at, id"
            } else {
                "julianday(created_at), id"
            };
            let leased = match leasing {
                Some(_) => claimable(
                    self.backend.dialect(),
                    "$1",
                    "$4",
                    &format!("${}", kinds.len() + 6),
                ),
                None => String::new(),
            };
            let sql = format!(
                "UPDATE turns SET status = 'running', owner = $1, claim_token = $2, lease_expires_at = $3, \
                 attempts = attempts + 1, started_at = COALESCE(started_at, $4) \
                 WHERE id = (SELECT id FROM turns q WHERE status = $5 AND kind IN ({}) \
                   AND NOT EXISTS (SELECT 1 FROM turns r WHERE r.session_id = q.session_id AND r.status = 'running') \
                   AND NOT EXISTS (SELECT 1 FROM turns e WHERE e.session_id = q.session_id AND e.status = 'queued' AND e.id < q.id) \
                   AND NOT EXISTS (SELECT 1 FROM spec_task_work_sessions w \
                     JOIN spec_task_work_sessions o ON o.id = w.waiting_for \
                     WHERE w.id = q.work_session_id AND o.status NOT IN ('completed', 'failed', 'cancelled')){leased} \
                   ORDER BY {order} LIMIT 1{skip}) \
                 AND status = 'queued' RETURNING {TURN_COLUMNS}",
                kind_params.join(", ")
            );
            let mut query = query_as::<TurnRow>(sqlx::AssertSqlSafe(sql))
                .bind(owner)
                .bind(&token)
                .bind(expires)
                .bind(now)
                .bind(TurnStatus::Queued.as_str());
            for kind in kinds {
                query = query.bind(kind.as_str());
            }
            if let Some(leasing) = leasing {
                query = query.bind(i64::try_from(leasing.max_active).unwrap_or(i64::MAX));
            }
            let row = query.fetch_optional(&mut *tx).await?;
            if let (Some(row), Some(leasing)) = (&row, leasing) {
                take_lease(tx, &row.spec_task_id, owner, leasing.lease, now).await?;
            }
            if let Some(row) = &row {
                let event = NewEvent {
                    spec_task_id: Some(
                        SpecTaskId::parse(&row.spec_task_id)
                            .map_err(|e| StoreError::corrupt("turns", e))?,
                    ),
                    kind: EventKind::TurnStatusChanged,
                    entity_id: row.id.clone(),
                    actor: owner.to_owned(),
                    payload: json!({ "event": TurnEvent::Claim.as_str(), "from": "queued", "to": "running", "attempt": row.attempts }),
                };
                append_event(&mut *tx, &event, now).await?;
            }
            Ok(row)
        })
        .await;
        let claimed = match claimed {
            // Another replica took the task's instance between the read and the lease: nothing
            // was claimed (the transaction rolled back); the next tick tries again.
            Err(StoreError::Conflict(reason)) if leasing.is_some() => {
                tracing::debug!(%reason, "claim lost to another replica's instance lease");
                None
            }
            other => other?,
        };
        claimed
            .map(|row| {
                Ok(TurnClaim {
                    turn: row.try_into()?,
                    owner: owner.to_owned(),
                    token: token.clone(),
                })
            })
            .transpose()
    }

    /// Extends the claim's lease; `ClaimLost` when the turn is no longer this worker's.
    pub async fn heartbeat_turn(&self, claim: &TurnClaim, lease: Duration) -> StoreResult<()> {
        let expires =
            now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60));
        let updated = self
            .write(async |tx| {
                Ok(query(
                    "UPDATE turns SET lease_expires_at = $1 WHERE id = $2 AND owner = $3 AND claim_token = $4 AND status = 'running'",
                )
                .bind(expires)
                .bind(claim.turn.id.as_str())
                .bind(&claim.owner)
                .bind(&claim.token)
                .execute(&mut *tx)
                .await?
                .rows_affected())
            })
            .await?;
        if updated == 1 {
            Ok(())
        } else {
            Err(StoreError::ClaimLost(claim.turn.id.to_string()))
        }
    }

    /// Puts running turns whose lease has expired back in the queue (their worker died or lost
    /// the database). Returns how many.
    pub async fn requeue_expired_turns(&self) -> StoreResult<usize> {
        let now = now();
        let cmp = if self.backend.dialect() == Dialect::Postgres {
            "lease_expires_at < $1"
        } else {
            "julianday(lease_expires_at) < julianday($1)"
        };
        let expired: Vec<String> = query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM turns WHERE status = 'running' AND {cmp}"
        )))
        .bind(now)
        .fetch_all(self.backend.reader())
        .await?;
        let mut requeued = 0;
        for id in expired {
            let outcome = self
                .write(async |tx| {
                    // Re-check under the lock: a heartbeat may have extended it meanwhile.
                    let cmp = if tx.dialect() == Dialect::Postgres {
                        "lease_expires_at < $2 FOR UPDATE"
                    } else {
                        "julianday(lease_expires_at) < julianday($2)"
                    };
                    let still: Option<String> = query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT id FROM turns WHERE id = $1 AND status = 'running' AND {cmp}"
                    )))
                    .bind(&id)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if still.is_none() {
                        return Ok(false);
                    }
                    apply_event(&mut *tx, &id, TurnEvent::Requeue, "lease-reaper", now).await?;
                    Ok(true)
                })
                .await;
            match outcome {
                Ok(false) | Err(StoreError::Transition(_)) => {}
                Ok(true) => {
                    tracing::warn!(turn_id = %id, "turn lease expired; requeued");
                    requeued += 1;
                }
                Err(err) => return Err(err),
            }
        }
        Ok(requeued)
    }

    /// Requeues the running turns claimed by `dead_owner`, a process known to be dead (the
    /// previous process on this data directory: the data-directory lock proves it ended), at once
    /// instead of after their leases expire. Only that exact owner: a live sibling with the same
    /// replica name keeps its turns. `actor` (the starting process) is recorded on the events.
    pub async fn requeue_turns_of_dead_owner(
        &self,
        dead_owner: &str,
        actor: &str,
    ) -> StoreResult<usize> {
        let now = now();
        let current_owner = actor;
        let orphans: Vec<(String, String)> =
            query_as("SELECT id, owner FROM turns WHERE status = 'running' AND owner = $1")
                .bind(dead_owner)
                .fetch_all(self.backend.reader())
                .await?;
        let mut requeued = 0;
        for (id, owner) in orphans {
            let outcome = self
                .write(async |tx| {
                    let lock = tx.dialect().for_update();
                    let still: Option<String> = query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT id FROM turns WHERE id = $1 AND status = 'running' AND owner = $2{lock}"
                    )))
                    .bind(&id)
                    .bind(&owner)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if still.is_none() {
                        return Ok(false);
                    }
                    apply_event(&mut *tx, &id, TurnEvent::Requeue, current_owner, now).await?;
                    Ok(true)
                })
                .await;
            match outcome {
                Ok(false) | Err(StoreError::Transition(_)) => {}
                Ok(true) => requeued += 1,
                Err(err) => return Err(err),
            }
        }
        Ok(requeued)
    }

    /// Gives a claimed turn back to the queue at once (a graceful shutdown).
    pub async fn release_turn(&self, claim: &TurnClaim) -> StoreResult<()> {
        let now = now();
        self.write(async |tx| {
            verify_claim(&mut *tx, claim).await?;
            apply_event(
                &mut *tx,
                claim.turn.id.as_str(),
                TurnEvent::Requeue,
                &claim.owner,
                now,
            )
            .await?;
            Ok(())
        })
        .await
    }

    pub async fn get_turn(&self, id: &TurnId) -> StoreResult<Turn> {
        TURNS.get(&self.backend, id.as_str()).await
    }

    /// The task's turns, oldest first.
    pub async fn list_turns(&self, spec_task_id: &SpecTaskId) -> StoreResult<Vec<Turn>> {
        TURNS.of_task(&self.backend, spec_task_id).await
    }
}
