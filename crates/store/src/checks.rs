//! Check runs (issue 18): what each check command did after a work session's turn, recorded with
//! a `check.completed` event each, under the turn's claim (a worker that lost the turn records
//! nothing). The session's *round* counts its turns whose checks ran, so the engine can bound the
//! follow-ups a failing check earns.

use chrono::{DateTime, Utc};
use serde_json::json;
use spectask_domain::{
    CheckRun, CheckRunId, CheckStatus, EventKind, NewEvent, SpecTaskId, TurnId, TurnKind,
    WorkSessionId,
};

use crate::Store;
use crate::db::{query_as, query_scalar, value_rows};
use crate::error::{StoreError, StoreResult};
use crate::events::append_events;
use crate::ids::now;
use crate::turns::{TurnClaim, TurnTarget, complete_claimed_turn, queue_turn, verify_claim};

const CHECK_RUN_COLUMNS: &str = "id, spec_task_id, work_session_id, turn_id, task_key, command, \
    status, exit_code, output_tail, output_bytes, duration_ms, sandboxed, round, created_at";

/// One check's run, to record.
#[derive(Debug, Clone)]
pub struct NewCheckRun {
    pub task_key: Option<String>,
    pub command: String,
    pub status: CheckStatus,
    pub exit_code: Option<i32>,
    pub output_tail: String,
    pub output_bytes: i64,
    pub duration_ms: i64,
    pub sandboxed: bool,
}

#[derive(sqlx::FromRow)]
struct CheckRunRow {
    id: String,
    spec_task_id: String,
    work_session_id: String,
    turn_id: String,
    task_key: Option<String>,
    command: String,
    status: String,
    exit_code: Option<i32>,
    output_tail: String,
    output_bytes: i64,
    duration_ms: i64,
    sandboxed: bool,
    round: i32,
    created_at: DateTime<Utc>,
}

impl TryFrom<CheckRunRow> for CheckRun {
    type Error = StoreError;
    fn try_from(row: CheckRunRow) -> StoreResult<Self> {
        const T: &str = "check_runs";
        let corrupt = |e: &dyn std::fmt::Display| StoreError::corrupt(T, e.to_string());
        Ok(CheckRun {
            id: CheckRunId::parse(&row.id).map_err(|e| corrupt(&e))?,
            spec_task_id: SpecTaskId::parse(&row.spec_task_id).map_err(|e| corrupt(&e))?,
            work_session_id: WorkSessionId::parse(&row.work_session_id).map_err(|e| corrupt(&e))?,
            turn_id: TurnId::parse(&row.turn_id).map_err(|e| corrupt(&e))?,
            task_key: row.task_key,
            command: row.command,
            status: row.status.parse().map_err(|e| corrupt(&e))?,
            exit_code: row.exit_code,
            output_tail: row.output_tail,
            output_bytes: row.output_bytes,
            duration_ms: row.duration_ms,
            sandboxed: row.sandboxed,
            round: row.round,
            created_at: row.created_at,
        })
    }
}

impl Store {
    /// Records the runs of the checks that followed the claimed turn, as the work session's next
    /// round, with one `check.completed` event each. `ClaimLost` (and nothing recorded) when the
    /// turn is no longer this worker's.
    pub async fn record_check_runs(
        &self,
        claim: &TurnClaim,
        runs: &[NewCheckRun],
    ) -> StoreResult<Vec<CheckRun>> {
        let ws = claim.turn.work_session_id.as_ref().ok_or_else(|| {
            StoreError::Conflict(format!(
                "turn `{}` belongs to no work session",
                claim.turn.id
            ))
        })?;
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let now = now();
        let ids: Vec<CheckRunId> = runs
            .iter()
            .map(|_| CheckRunId::from_ulid(self.ids.next()))
            .collect();
        let rows: Vec<CheckRunRow> = self
            .write(async |tx| {
                verify_claim(&mut *tx, claim).await?;
                let round: i32 = query_scalar(
                    "SELECT COALESCE(MAX(round), 0) + 1 FROM check_runs WHERE work_session_id = $1",
                )
                .bind(ws.as_str())
                .fetch_one(&mut *tx)
                .await?;
                const WIDTH: usize = 14;
                let sql = format!(
                    "INSERT INTO check_runs ({CHECK_RUN_COLUMNS}) VALUES {} RETURNING {CHECK_RUN_COLUMNS}",
                    value_rows(runs.len(), WIDTH, 0)
                );
                let mut insert = query_as::<CheckRunRow>(sqlx::AssertSqlSafe(sql));
                for (id, run) in ids.iter().zip(runs) {
                    insert = insert
                        .bind(id.as_str())
                        .bind(claim.turn.spec_task_id.as_str())
                        .bind(ws.as_str())
                        .bind(claim.turn.id.as_str())
                        .bind(&run.task_key)
                        .bind(&run.command)
                        .bind(run.status.as_str())
                        .bind(run.exit_code)
                        .bind(&run.output_tail)
                        .bind(run.output_bytes)
                        .bind(run.duration_ms)
                        .bind(run.sandboxed)
                        .bind(round)
                        .bind(now);
                }
                let mut rows = insert.fetch_all(&mut *tx).await?;
                // RETURNING's order is not promised: the runs' own order is the ids' order.
                rows.sort_by(|a, b| a.id.cmp(&b.id));
                let events: Vec<NewEvent> = rows
                    .iter()
                    .map(|row| NewEvent {
                        spec_task_id: Some(claim.turn.spec_task_id.clone()),
                        kind: EventKind::CheckCompleted,
                        entity_id: row.id.clone(),
                        actor: claim.owner.clone(),
                        payload: json!({
                            "work_session_id": row.work_session_id,
                            "turn_id": row.turn_id,
                            "task_key": row.task_key,
                            "command": row.command,
                            "status": row.status,
                            "exit_code": row.exit_code,
                            "duration_ms": row.duration_ms,
                            "round": row.round,
                            "sandboxed": row.sandboxed,
                        }),
                    })
                    .collect();
                append_events(&mut *tx, &events, now).await?;
                Ok(rows)
            })
            .await?;
        rows.into_iter().map(CheckRun::try_from).collect()
    }

    /// Every check run of a task, oldest first.
    pub async fn check_runs_of_task(&self, task: &SpecTaskId) -> StoreResult<Vec<CheckRun>> {
        let rows: Vec<CheckRunRow> = query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CHECK_RUN_COLUMNS} FROM check_runs WHERE spec_task_id = $1 ORDER BY id"
        )))
        .bind(task.as_str())
        .fetch_all(self.backend.reader())
        .await?;
        rows.into_iter().map(CheckRun::try_from).collect()
    }

    /// The claimed turn ended but its checks failed: the turn completes (its reply kept), and a
    /// follow-up turn with `prompt` (the failures) is queued on the same thread; the work session
    /// stays in progress. Returns the follow-up's id.
    pub async fn follow_up_failed_checks(
        &self,
        claim: &TurnClaim,
        response: &str,
        prompt: &str,
    ) -> StoreResult<TurnId> {
        let ws = claim.turn.work_session_id.as_ref().ok_or_else(|| {
            StoreError::Conflict(format!(
                "turn `{}` belongs to no work session",
                claim.turn.id
            ))
        })?;
        let now = now();
        self.write(async |tx| {
            complete_claimed_turn(&mut *tx, claim, response, now).await?;
            let target = TurnTarget {
                task: &claim.turn.spec_task_id,
                session: &claim.turn.session_id,
                work_session: Some(ws),
                kind: TurnKind::FollowUp,
                payload: json!({ "checks_of": claim.turn.id }),
            };
            queue_turn(&mut *tx, &self.ids, target, prompt, &claim.owner, now).await
        })
        .await
    }
}
