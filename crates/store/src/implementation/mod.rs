//! The implementation workflow's multi-row steps, each one transaction, by step: [`start`]
//! (instance id, work sessions, assignments), [`dispatch`] (under the parallelism limit, threads,
//! spawns, follow-up messages), [`turn_results`] (complete, retry, fail with blocked dependants)
//! and [`review`] (cancel, retry, request changes). This module holds their shared types and
//! in-transaction helpers, and the orchestrator's work-list reads.

mod dispatch;
mod merges;
mod review;
mod start;
mod turn_results;

use chrono::{DateTime, Utc};
use spectask_domain::{
    ImplementationTaskEvent, ImplementationTaskId, SpecTaskEvent, SpecTaskId, SpecTaskStatus,
    SpecTaskWorkSession, TurnId, WorkSessionEvent, WorkSessionId, WorkSessionStatus,
    ZedThreadEvent,
};

use crate::Store;
use crate::db::{Tx, query, query_as, query_scalar};
use crate::error::{StoreError, StoreResult};
use crate::rows::{WORK_SESSION_COLUMNS, WorkSessionRow};
use crate::spec_tasks::lock_spec_task;
use crate::transition::{apply_event, try_apply_event};
use crate::turns::TurnClaim;

/// One work session to create for a top-level task of the plan.
#[derive(Debug, Clone)]
pub struct WorkSessionPlan {
    pub name: String,
    pub description: String,
    pub task_title: String,
    pub task_description: String,
    pub task_index: i32,
    /// The top-level implementation task and its sub-tasks, all assigned to this session.
    pub implementation_task_ids: Vec<ImplementationTaskId>,
}

/// Bounds on what agents may spawn (a human's spawn through the REST API is not bounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpawnCaps {
    /// Spawned work sessions per SpecTask, counting every spawn (agents' and humans').
    pub max_per_task: u32,
    /// How far from the plan's own sessions a spawn may be: 1 lets the plan's sessions spawn,
    /// 2 lets those spawned sessions spawn once more, and so on.
    pub max_depth: u32,
}

/// A spawn's result: the session, and whether this call created it (false: a repeat).
#[derive(Debug, Clone)]
pub struct Spawned {
    pub work_session: SpecTaskWorkSession,
    pub created: bool,
}

/// What a dispatch attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchOutcome {
    /// The session is active and its first turn is queued.
    Dispatched(TurnId),
    /// The instance already runs `running` threads (the limit).
    AtCapacity { running: i64 },
    /// The session or its task is not in a dispatchable state any more.
    NotDispatchable(String),
}

/// State after an implementation turn completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImplementationProgress {
    /// Keys of every completed implementation task of the SpecTask.
    pub completed_keys: Vec<String>,
    /// Every implementation work session is done: the task went to `implementation_review`.
    pub finished: bool,
}

/// Reads the task id of a work session inside `tx`, locking the task row on PostgreSQL so
/// admission decisions about one task are made one at a time.
pub(crate) async fn lock_task_of_work_session(
    tx: &mut Tx,
    ws: &str,
) -> StoreResult<(SpecTaskId, SpecTaskStatus)> {
    let task: Option<String> =
        query_scalar("SELECT spec_task_id FROM spec_task_work_sessions WHERE id = $1")
            .bind(ws)
            .fetch_optional(&mut *tx)
            .await?;
    let task = task.ok_or_else(|| StoreError::not_found("work session", ws))?;
    let task =
        SpecTaskId::parse(&task).map_err(|e| StoreError::corrupt("spec_task_work_sessions", e))?;
    let status = lock_spec_task(tx, &task).await?;
    Ok((task, status))
}

/// Applies `event` to every implementation task assigned to work session `ws` whose status allows
/// it, inside `tx`.
pub(crate) async fn assigned_tasks_event(
    tx: &mut Tx,
    ws: &str,
    event: ImplementationTaskEvent,
    actor: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let assigned: Vec<String> = query_scalar(
        "SELECT id FROM spec_task_implementation_tasks WHERE assigned_work_session_id = $1 ORDER BY task_index",
    )
    .bind(ws)
    .fetch_all(&mut *tx)
    .await?;
    for task_id in &assigned {
        try_apply_event(tx, task_id.as_str(), event, actor, now).await?;
    }
    Ok(())
}

/// Applies `event` to work session `ws`'s thread, if it has one and its status allows it, inside
/// `tx`.
pub(crate) async fn thread_event(
    tx: &mut Tx,
    ws: &str,
    event: ZedThreadEvent,
    actor: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let thread: Option<String> =
        query_scalar("SELECT id FROM spec_task_zed_threads WHERE work_session_id = $1")
            .bind(ws)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(thread) = thread {
        try_apply_event(tx, thread.as_str(), event, actor, now).await?;
    }
    Ok(())
}

/// Moves work session `ws`'s assigned tasks and its thread along with it, inside `tx`: each
/// takes its event where its status allows it.
pub(crate) async fn work_session_parts_event(
    tx: &mut Tx,
    ws: &str,
    tasks: ImplementationTaskEvent,
    thread: ZedThreadEvent,
    actor: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    assigned_tasks_event(tx, ws, tasks, actor, now).await?;
    thread_event(tx, ws, thread, actor, now).await
}

/// Blocks or unblocks the work sessions waiting for another one, inside `tx`: each of
/// `dependants` whose status allows `event` takes it, and its assigned tasks take `tasks`.
pub(crate) async fn dependants_event(
    tx: &mut Tx,
    dependants: &[WorkSessionId],
    event: WorkSessionEvent,
    tasks: ImplementationTaskEvent,
    actor: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for dependant in dependants {
        if try_apply_event(tx, dependant.as_str(), event, actor, now).await? {
            assigned_tasks_event(tx, dependant.as_str(), tasks, actor, now).await?;
        }
    }
    Ok(())
}

/// Sets (or with `None` clears) work session `ws`'s error inside `tx`.
pub(crate) async fn set_work_session_error(
    tx: &mut Tx,
    ws: &str,
    error: Option<&str>,
) -> StoreResult<()> {
    query("UPDATE spec_task_work_sessions SET error = $1 WHERE id = $2")
        .bind(error)
        .bind(ws)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Finishes the implementation of `task` (in `status`, read under its lock) inside `tx` when
/// no implementation work session is left open: `implementation → implementation_review`.
/// Returns whether it did.
pub(crate) async fn finish_if_all_closed(
    tx: &mut Tx,
    task: &SpecTaskId,
    status: SpecTaskStatus,
    actor: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
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
            tx,
            task.as_str(),
            SpecTaskEvent::ImplementationFinished,
            actor,
            now,
        )
        .await?;
    }
    Ok(finished)
}

pub(super) fn claimed_work_session(claim: &TurnClaim) -> StoreResult<&WorkSessionId> {
    claim.turn.work_session_id.as_ref().ok_or_else(|| {
        StoreError::Conflict(format!(
            "turn `{}` belongs to no work session",
            claim.turn.id
        ))
    })
}

impl Store {
    /// Tasks in a status, oldest first (the orchestrator's work lists).
    pub async fn spec_task_ids_in_status(
        &self,
        status: SpecTaskStatus,
    ) -> StoreResult<Vec<SpecTaskId>> {
        let ids: Vec<String> = query_scalar(
            "SELECT id FROM spec_tasks WHERE status = $1 AND archived = FALSE ORDER BY id",
        )
        .bind(status.as_str())
        .fetch_all(self.backend.reader())
        .await?;
        ids.iter()
            .map(|id| SpecTaskId::parse(id).map_err(|e| StoreError::corrupt("spec_tasks", e)))
            .collect()
    }

    /// Work sessions of every task in `statuses` with a given work-session status (for the
    /// orchestrator's dispatch pass).
    pub async fn work_sessions_in_status(
        &self,
        status: WorkSessionStatus,
    ) -> StoreResult<Vec<SpecTaskWorkSession>> {
        let rows: Vec<WorkSessionRow> = query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {WORK_SESSION_COLUMNS} FROM spec_task_work_sessions WHERE status = $1 AND phase = 'implementation' ORDER BY id"
        )))
        .bind(status.as_str())
        .fetch_all(self.backend.reader())
        .await?;
        rows.into_iter()
            .map(SpecTaskWorkSession::try_from)
            .collect()
    }

    /// The turns of one work session, oldest first.
    pub async fn turns_of_work_session(
        &self,
        ws: &WorkSessionId,
    ) -> StoreResult<Vec<spectask_domain::Turn>> {
        crate::turns::TURNS
            .list(&self.backend, "work_session_id", ws.as_str())
            .await
    }
}
