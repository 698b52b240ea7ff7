//! The implementation workflow's multi-row steps, each one transaction: start implementation
//! (instance id, work sessions, assignments), dispatch a work session under the parallelism limit,
//! record its thread, end an implementation turn (complete, retry, fail with blocked dependants),
//! cancel, retry, spawn, follow-up messages and review changes.

use chrono::{DateTime, Utc};
use serde_json::json;
use spectask_domain::{
    ImplementationTaskEvent, ImplementationTaskId, ImplementationTaskStatus, NewEvent, SessionId,
    SessionRole, SpecTask, SpecTaskEvent, SpecTaskId, SpecTaskStatus, SpecTaskWorkSession,
    SpecTaskZedThread, SpecTaskZedThreadId, TurnEvent, TurnId, TurnKind, WorkSessionEvent,
    WorkSessionId, WorkSessionPhase, WorkSessionStatus, ZedThreadEvent,
};

use crate::Store;
use crate::db::{Tx, query, query_as, query_scalar};
use crate::error::{StoreError, StoreResult};
use crate::events::append_event;
use crate::ids::now;
use crate::rows::{WORK_SESSION_COLUMNS, WorkSessionRow, ZED_THREAD_COLUMNS, ZedThreadRow};
use crate::sessions::{finish_interaction, insert_interaction};
use crate::spec_tasks::lock_spec_task;
use crate::transition::{apply_event, try_apply_event};
use crate::turns::{TurnClaim, enqueue_turn, fail_claimed_turn, verify_claim};

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

fn claimed_work_session(claim: &TurnClaim) -> StoreResult<&WorkSessionId> {
    claim.turn.work_session_id.as_ref().ok_or_else(|| {
        StoreError::Conflict(format!(
            "turn `{}` belongs to no work session",
            claim.turn.id
        ))
    })
}

impl Store {
    /// `implementation_queued → implementation`: stores the instance id (once; a retried task
    /// keeps its instance) and, if the task has none yet, creates one work session per planned
    /// top-level task, each with its own implementation session, and assigns the plan's tasks.
    /// Calling it again (or on a task already in `implementation`) creates nothing.
    pub async fn start_implementation(
        &self,
        id: &SpecTaskId,
        instance_id: &str,
        plans: &[WorkSessionPlan],
        actor: &str,
    ) -> StoreResult<Vec<SpecTaskWorkSession>> {
        let now = now();
        {
            let mut tx = self.backend.begin_write().await?;
            let status = lock_spec_task(&mut tx, id).await?;
            match status {
                SpecTaskStatus::ImplementationQueued => {
                    apply_event(
                        &mut tx,
                        id.as_str(),
                        SpecTaskEvent::StartImplementation,
                        actor,
                        now,
                    )
                    .await?;
                }
                SpecTaskStatus::Implementation => {}
                other => return Err(SpecTaskEvent::StartImplementation.refused(other).into()),
            }
            query("UPDATE spec_tasks SET zed_instance_id = $1, updated_at = $2 WHERE id = $3 AND zed_instance_id IS NULL")
                .bind(instance_id)
                .bind(now)
                .bind(id.as_str())
                .execute(&mut tx)
                .await?;
            let existing: i64 = query_scalar(
                "SELECT COUNT(*) FROM spec_task_work_sessions WHERE spec_task_id = $1 AND phase = 'implementation' AND parent_work_session_id IS NULL",
            )
            .bind(id.as_str())
            .fetch_one(&mut tx)
            .await?;
            if existing == 0 {
                for plan in plans {
                    let session = SessionId::from_ulid(self.ids.next());
                    query("INSERT INTO sessions (id, spec_task_id, role, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)")
                        .bind(session.as_str())
                        .bind(id.as_str())
                        .bind(SessionRole::Implementation.as_str())
                        .bind(&plan.name)
                        .bind(now)
                        .execute(&mut tx)
                        .await?;
                    let ws = WorkSessionId::from_ulid(self.ids.next());
                    query(
                        "INSERT INTO spec_task_work_sessions (id, spec_task_id, helix_session_id, name, description, phase, status, \
                         implementation_task_title, implementation_task_description, implementation_task_index, created_at) \
                         VALUES ($1, $2, $3, $4, $5, 'implementation', 'pending', $6, $7, $8, $9)",
                    )
                    .bind(ws.as_str())
                    .bind(id.as_str())
                    .bind(session.as_str())
                    .bind(&plan.name)
                    .bind(&plan.description)
                    .bind(&plan.task_title)
                    .bind(&plan.task_description)
                    .bind(plan.task_index)
                    .bind(now)
                    .execute(&mut tx)
                    .await?;
                    let created = NewEvent {
                        spec_task_id: Some(id.clone()),
                        kind: spectask_domain::EventKind::WorkSessionCreated,
                        entity_id: ws.to_string(),
                        actor: actor.to_owned(),
                        payload: json!({ "name": plan.name, "helix_session_id": session, "implementation_task_index": plan.task_index }),
                    };
                    append_event(&mut tx, &created, now).await?;
                    for task in &plan.implementation_task_ids {
                        apply_event(
                            &mut tx,
                            task.as_str(),
                            ImplementationTaskEvent::Assign,
                            actor,
                            now,
                        )
                        .await?;
                        query("UPDATE spec_task_implementation_tasks SET assigned_work_session_id = $1 WHERE id = $2")
                            .bind(ws.as_str())
                            .bind(task.as_str())
                            .execute(&mut tx)
                            .await?;
                    }
                }
            }
            tx.commit().await?;
        };
        self.announce_latest().await?;
        self.list_work_sessions(id).await
    }

    /// Activates a pending work session and queues its first turn, unless its instance already
    /// runs `max_parallel` threads. The check and the activation happen under the task's lock,
    /// so concurrent dispatchers cannot exceed the limit.
    pub async fn dispatch_work_session(
        &self,
        ws: &WorkSessionId,
        prompt: &str,
        max_parallel: i64,
        actor: &str,
    ) -> StoreResult<DispatchOutcome> {
        let now = now();
        let outcome = {
            let mut tx = self.backend.begin_write().await?;
            let (task, status) = lock_task_of_work_session(&mut tx, ws.as_str()).await?;
            if !matches!(
                status,
                SpecTaskStatus::Implementation | SpecTaskStatus::ImplementationFailed
            ) {
                return Ok(DispatchOutcome::NotDispatchable(format!(
                    "the task is in `{status}`"
                )));
            }
            let (ws_status, session): (String, String) = query_as(
                "SELECT status, helix_session_id FROM spec_task_work_sessions WHERE id = $1",
            )
            .bind(ws.as_str())
            .fetch_one(&mut tx)
            .await?;
            if ws_status != WorkSessionStatus::Pending.as_str() {
                return Ok(DispatchOutcome::NotDispatchable(format!(
                    "the work session is `{ws_status}`"
                )));
            }
            let running: i64 = query_scalar(
                "SELECT COUNT(*) FROM spec_task_work_sessions WHERE spec_task_id = $1 AND phase = 'implementation' AND status = 'active'",
            )
            .bind(task.as_str())
            .fetch_one(&mut tx)
            .await?;
            if running >= max_parallel {
                return Ok(DispatchOutcome::AtCapacity { running });
            }
            apply_event(&mut tx, ws.as_str(), WorkSessionEvent::Activate, actor, now).await?;
            assigned_tasks_event(
                &mut tx,
                ws.as_str(),
                ImplementationTaskEvent::Start,
                actor,
                now,
            )
            .await?;
            thread_event(&mut tx, ws.as_str(), ZedThreadEvent::Reopen, actor, now).await?;
            let interaction = insert_interaction(
                &mut tx,
                &self.ids,
                &task,
                session.as_str(),
                prompt,
                actor,
                now,
            )
            .await?;
            let session_id = SessionId::parse(&session)
                .map_err(|e| StoreError::corrupt("spec_task_work_sessions", e))?;
            let turn = enqueue_turn(
                &mut tx,
                &self.ids,
                &task,
                &session_id,
                &interaction,
                Some(ws.as_str()),
                TurnKind::Implementation,
                json!({}),
                actor,
                now,
            )
            .await?;
            tx.commit().await?;
            DispatchOutcome::Dispatched(turn)
        };
        if let DispatchOutcome::Dispatched(_) = &outcome {
            self.announce_latest().await?;
        }
        Ok(outcome)
    }

    /// Records the runtime's thread for a work session and marks it active. The seed's unique
    /// constraints refuse a second thread for the session.
    pub async fn record_thread(
        &self,
        ws: &WorkSessionId,
        zed_thread_id: &str,
        actor: &str,
    ) -> StoreResult<SpecTaskZedThread> {
        let now = now();
        let id = SpecTaskZedThreadId::from_ulid(self.ids.next());
        {
            let mut tx = self.backend.begin_write().await?;
            let task: Option<String> =
                query_scalar("SELECT spec_task_id FROM spec_task_work_sessions WHERE id = $1")
                    .bind(ws.as_str())
                    .fetch_optional(&mut tx)
                    .await?;
            let task = task.ok_or_else(|| StoreError::not_found("work session", ws))?;
            query(
                "INSERT INTO spec_task_zed_threads (id, work_session_id, spec_task_id, zed_thread_id, status, created_at) \
                 VALUES ($1, $2, $3, $4, 'pending', $5)",
            )
            .bind(id.as_str())
            .bind(ws.as_str())
            .bind(&task)
            .bind(zed_thread_id)
            .bind(now)
            .execute(&mut tx)
            .await?;
            let created = NewEvent {
                spec_task_id: Some(
                    SpecTaskId::parse(&task)
                        .map_err(|e| StoreError::corrupt("spec_task_work_sessions", e))?,
                ),
                kind: spectask_domain::EventKind::ZedThreadCreated,
                entity_id: id.to_string(),
                actor: actor.to_owned(),
                payload: json!({ "work_session_id": ws, "zed_thread_id": zed_thread_id }),
            };
            append_event(&mut tx, &created, now).await?;
            apply_event(&mut tx, id.as_str(), ZedThreadEvent::Start, actor, now).await?;
            tx.commit().await?;
        };
        self.announce_latest().await?;
        self.get_zed_thread(&id).await
    }

    /// The thread of a work session, if it has one.
    pub async fn thread_of_work_session(
        &self,
        ws: &WorkSessionId,
    ) -> StoreResult<Option<SpecTaskZedThread>> {
        let row: Option<ZedThreadRow> = {
            query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ZED_THREAD_COLUMNS} FROM spec_task_zed_threads WHERE work_session_id = $1"
            )))
            .bind(ws.as_str())
            .fetch_optional(self.backend.reader())
            .await?
        };
        row.map(SpecTaskZedThread::try_from).transpose()
    }

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
        let finished = {
            let mut tx = self.backend.begin_write().await?;
            verify_claim(&mut tx, claim).await?;
            let status = lock_spec_task(&mut tx, &task).await?;
            finish_interaction(&mut tx, claim, response, "complete", None, now).await?;
            apply_event(
                &mut tx,
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
            .fetch_one(&mut tx)
            .await?;
            if queued == 0
                && try_apply_event(&mut tx, ws.as_str(), WorkSessionEvent::Complete, actor, now)
                    .await?
            {
                query("UPDATE spec_task_work_sessions SET error = NULL WHERE id = $1")
                    .bind(ws.as_str())
                    .execute(&mut tx)
                    .await?;
                assigned_tasks_event(
                    &mut tx,
                    ws.as_str(),
                    ImplementationTaskEvent::Complete,
                    actor,
                    now,
                )
                .await?;
                thread_event(&mut tx, ws.as_str(), ZedThreadEvent::Complete, actor, now).await?;
            }
            let open: i64 = query_scalar(
                "SELECT COUNT(*) FROM spec_task_work_sessions WHERE spec_task_id = $1 AND phase = 'implementation' \
                 AND status NOT IN ('completed', 'cancelled')",
            )
            .bind(task.as_str())
            .fetch_one(&mut tx)
            .await?;
            let finished = open == 0 && status == SpecTaskStatus::Implementation;
            if finished {
                apply_event(
                    &mut tx,
                    task.as_str(),
                    SpecTaskEvent::ImplementationFinished,
                    actor,
                    now,
                )
                .await?;
            }
            tx.commit().await?;
            finished
        };
        self.announce_latest().await?;
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
        let turn = {
            let mut tx = self.backend.begin_write().await?;
            fail_claimed_turn(&mut tx, claim, response, reason, now).await?;
            query("UPDATE spec_task_work_sessions SET error = $1 WHERE id = $2")
                .bind(reason)
                .bind(ws.as_str())
                .execute(&mut tx)
                .await?;
            let interaction = insert_interaction(
                &mut tx,
                &self.ids,
                &task,
                claim.turn.session_id.as_str(),
                prompt,
                &claim.owner,
                now,
            )
            .await?;
            let turn = enqueue_turn(
                &mut tx,
                &self.ids,
                &task,
                &claim.turn.session_id,
                &interaction,
                Some(ws.as_str()),
                TurnKind::FollowUp,
                json!({ "retry_of": claim.turn.id }),
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
        {
            let mut tx = self.backend.begin_write().await?;
            fail_claimed_turn(&mut tx, claim, response, reason, now).await?;
            try_apply_event(&mut tx, ws.as_str(), WorkSessionEvent::Fail, actor, now).await?;
            query("UPDATE spec_task_work_sessions SET error = $1 WHERE id = $2")
                .bind(reason)
                .bind(ws.as_str())
                .execute(&mut tx)
                .await?;
            assigned_tasks_event(
                &mut tx,
                ws.as_str(),
                ImplementationTaskEvent::Fail,
                actor,
                now,
            )
            .await?;
            thread_event(&mut tx, ws.as_str(), ZedThreadEvent::Fail, actor, now).await?;
            for dependant in dependants {
                if try_apply_event(
                    &mut tx,
                    dependant.as_str(),
                    WorkSessionEvent::Block,
                    actor,
                    now,
                )
                .await?
                {
                    assigned_tasks_event(
                        &mut tx,
                        dependant.as_str(),
                        ImplementationTaskEvent::Block,
                        actor,
                        now,
                    )
                    .await?;
                }
            }
            if try_apply_event(
                &mut tx,
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
                append_event(&mut tx, &failed, now).await?;
            }
            query("UPDATE spec_tasks SET error = $1, updated_at = $2 WHERE id = $3")
                .bind(reason)
                .bind(now)
                .bind(task.as_str())
                .execute(&mut tx)
                .await?;
            tx.commit().await?;
        };
        self.announce_latest().await?;
        self.get_spec_task(task).await
    }

    /// Gives up a work session on a human's request: its queued and running turns are cancelled
    /// (a worker running one loses its claim and stops the agent), and the task finishes if
    /// nothing else is open.
    pub async fn cancel_work_session(
        &self,
        ws: &WorkSessionId,
        actor: &str,
    ) -> StoreResult<SpecTaskWorkSession> {
        let now = now();
        {
            let mut tx = self.backend.begin_write().await?;
            let (task, status) = lock_task_of_work_session(&mut tx, ws.as_str()).await?;
            apply_event(&mut tx, ws.as_str(), WorkSessionEvent::Cancel, actor, now).await?;
            let live: Vec<String> = query_scalar("SELECT id FROM turns WHERE work_session_id = $1 AND status IN ('queued', 'running')")
                .bind(ws.as_str())
                .fetch_all(&mut tx)
                .await?;
            for turn in &live {
                apply_event(&mut tx, turn.as_str(), TurnEvent::Cancel, actor, now).await?;
            }
            let open: i64 = query_scalar(
                "SELECT COUNT(*) FROM spec_task_work_sessions WHERE spec_task_id = $1 AND phase = 'implementation' AND status NOT IN ('completed', 'cancelled')",
            )
            .bind(task.as_str())
            .fetch_one(&mut tx)
            .await?;
            if open == 0 && status == SpecTaskStatus::Implementation {
                apply_event(
                    &mut tx,
                    task.as_str(),
                    SpecTaskEvent::ImplementationFinished,
                    actor,
                    now,
                )
                .await?;
            }
            tx.commit().await?;
        };
        self.announce_latest().await?;
        self.get_work_session(ws).await
    }

    /// Tries a failed work session again: it and its tasks go back to waiting, its dependants are
    /// unblocked, and once no work session of the task is failed the task is queued for
    /// implementation again (keeping its instance, sessions and threads).
    pub async fn retry_work_session(
        &self,
        ws: &WorkSessionId,
        dependants: &[WorkSessionId],
        actor: &str,
    ) -> StoreResult<SpecTaskWorkSession> {
        let now = now();
        {
            let mut tx = self.backend.begin_write().await?;
            let (task, status) = lock_task_of_work_session(&mut tx, ws.as_str()).await?;
            apply_event(&mut tx, ws.as_str(), WorkSessionEvent::Retry, actor, now).await?;
            // A human retry overrides the agent's earlier decision to give up.
            query("UPDATE spec_task_work_sessions SET error = NULL, agent_gave_up = NULL WHERE id = $1")
                .bind(ws.as_str())
                .execute(&mut tx)
                .await?;
            assigned_tasks_event(
                &mut tx,
                ws.as_str(),
                ImplementationTaskEvent::Retry,
                actor,
                now,
            )
            .await?;
            for dependant in dependants {
                if try_apply_event(
                    &mut tx,
                    dependant.as_str(),
                    WorkSessionEvent::Unblock,
                    actor,
                    now,
                )
                .await?
                {
                    assigned_tasks_event(
                        &mut tx,
                        dependant.as_str(),
                        ImplementationTaskEvent::Unblock,
                        actor,
                        now,
                    )
                    .await?;
                }
            }
            let failed: i64 = query_scalar("SELECT COUNT(*) FROM spec_task_work_sessions WHERE spec_task_id = $1 AND status = 'failed'")
                .bind(task.as_str())
                .fetch_one(&mut tx)
                .await?;
            if failed == 0 && status == SpecTaskStatus::ImplementationFailed {
                apply_event(
                    &mut tx,
                    task.as_str(),
                    SpecTaskEvent::RetryImplementation,
                    actor,
                    now,
                )
                .await?;
                query("UPDATE spec_tasks SET error = NULL WHERE id = $1")
                    .bind(task.as_str())
                    .execute(&mut tx)
                    .await?;
            }
            tx.commit().await?;
        };
        self.announce_latest().await?;
        self.get_work_session(ws).await
    }

    /// A new work session spawned from an active implementation session (by a human or by the
    /// agent working in it); the orchestrator dispatches it as soon as a thread slot is free.
    ///
    /// Spawns a work session named `name` from the active implementation session `parent`.
    ///
    /// Idempotent per parent and name: when `parent` already spawned a session of that name, that
    /// session is returned with `created: false` and nothing changes (a unique index backs the
    /// check, which runs under the task's row lock). `caps`, when given (agents' spawns), bounds
    /// the task's spawned sessions and the spawn depth; a refusal is a `Conflict` naming the cap.
    pub async fn spawn_work_session(
        &self,
        parent: &WorkSessionId,
        name: &str,
        description: &str,
        actor: &str,
        caps: Option<SpawnCaps>,
    ) -> StoreResult<Spawned> {
        let now = now();
        let id = WorkSessionId::from_ulid(self.ids.next());
        let outcome: StoreResult<WorkSessionId> = {
            async {
                let mut tx = self.backend.begin_write().await?;
                let (task, _) = lock_task_of_work_session(&mut tx, parent.as_str()).await?;
                let existing: Option<String> = query_scalar(
                    "SELECT id FROM spec_task_work_sessions WHERE spawned_by_session_id = $1 AND name = $2",
                )
                .bind(parent.as_str())
                .bind(name)
                .fetch_optional(&mut tx)
                .await?;
                if let Some(existing) = existing {
                    return WorkSessionId::parse(&existing)
                        .map_err(|e| StoreError::corrupt("spec_task_work_sessions", e));
                }
                let (status, phase): (String, String) = query_as(
                    "SELECT status, phase FROM spec_task_work_sessions WHERE id = $1",
                )
                .bind(parent.as_str())
                .fetch_one(&mut tx)
                .await?;
                if status != WorkSessionStatus::Active.as_str()
                    || phase != WorkSessionPhase::Implementation.as_str()
                {
                    return Err(StoreError::Conflict(format!(
                        "only an active implementation work session can spawn; `{parent}` is {phase} and `{status}`"
                    )));
                }
                if let Some(caps) = caps {
                    let spawned: i64 = query_scalar(
                        "SELECT COUNT(*) FROM spec_task_work_sessions                          WHERE spec_task_id = $1 AND spawned_by_session_id IS NOT NULL",
                    )
                    .bind(task.as_str())
                    .fetch_one(&mut tx)
                    .await?;
                    if spawned >= i64::from(caps.max_per_task) {
                        return Err(StoreError::Conflict(format!(
                            "spawn cap reached: this SpecTask already has {spawned} spawned work sessions \
                             (max_spawned_sessions = {}); no more can be spawned",
                            caps.max_per_task
                        )));
                    }
                    // The parent's depth: how many spawns lie between it and a plan session.
                    let mut depth: u32 = 0;
                    let mut cursor = parent.to_string();
                    loop {
                        let up: Option<Option<String>> = query_scalar(
                            "SELECT spawned_by_session_id FROM spec_task_work_sessions WHERE id = $1",
                        )
                        .bind(&cursor)
                        .fetch_optional(&mut tx)
                        .await?;
                        match up.flatten() {
                            Some(next) if depth <= caps.max_depth => {
                                depth += 1;
                                cursor = next;
                            }
                            _ => break,
                        }
                    }
                    if depth >= caps.max_depth {
                        return Err(StoreError::Conflict(format!(
                            "spawn depth cap reached: this work session is {depth} spawn(s) away from the \
                             plan's sessions (max_spawn_depth = {}); it cannot spawn",
                            caps.max_depth
                        )));
                    }
                }
                let session = SessionId::from_ulid(self.ids.next());
                query("INSERT INTO sessions (id, spec_task_id, role, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)")
                    .bind(session.as_str())
                    .bind(task.as_str())
                    .bind(SessionRole::Implementation.as_str())
                    .bind(name)
                    .bind(now)
                    .execute(&mut tx)
                    .await?;
                query(
                    "INSERT INTO spec_task_work_sessions (id, spec_task_id, helix_session_id, name, description, phase, status, \
                     parent_work_session_id, spawned_by_session_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, 'implementation', 'pending', $6, $6, $7)",
                )
                .bind(id.as_str())
                .bind(task.as_str())
                .bind(session.as_str())
                .bind(name)
                .bind(description)
                .bind(parent.as_str())
                .bind(now)
                .execute(&mut tx)
                .await?;
                let created = NewEvent {
                    spec_task_id: Some(task.clone()),
                    kind: spectask_domain::EventKind::WorkSessionCreated,
                    entity_id: id.to_string(),
                    actor: actor.to_owned(),
                    payload: json!({ "name": name, "helix_session_id": session, "parent_work_session_id": parent, "spawned": true }),
                };
                append_event(&mut tx, &created, now).await?;
                tx.commit().await?;
                Ok(id.clone())
            }
            .await
        };
        let spawned_id = match outcome {
            Ok(spawned_id) => spawned_id,
            // The unique index caught a spawn that raced past the check: it is a repeat.
            Err(StoreError::Duplicate(_)) => {
                self.spawned_work_session_named(parent, name)
                    .await?
                    .ok_or_else(|| StoreError::not_found("spawned work session", name))?
            }
            Err(err) => return Err(err),
        };
        let created = spawned_id == id;
        if created {
            self.announce_latest().await?;
        }
        Ok(Spawned {
            work_session: self.get_work_session(&spawned_id).await?,
            created,
        })
    }

    /// The session `parent` spawned under `name`, if any.
    async fn spawned_work_session_named(
        &self,
        parent: &WorkSessionId,
        name: &str,
    ) -> StoreResult<Option<WorkSessionId>> {
        let found: Option<String> = {
            query_scalar(
                "SELECT id FROM spec_task_work_sessions WHERE spawned_by_session_id = $1 AND name = $2",
            )
            .bind(parent.as_str())
            .bind(name)
            .fetch_optional(self.backend.writer())
            .await?
        };
        found
            .map(|id| {
                WorkSessionId::parse(&id)
                    .map_err(|e| StoreError::corrupt("spec_task_work_sessions", e))
            })
            .transpose()
    }

    /// Queues a follow-up prompt (a human message) on an active work session's thread.
    pub async fn queue_follow_up(
        &self,
        ws: &WorkSessionId,
        prompt: &str,
        actor: &str,
    ) -> StoreResult<TurnId> {
        let now = now();
        let turn = {
            let mut tx = self.backend.begin_write().await?;
            let (task, _) = lock_task_of_work_session(&mut tx, ws.as_str()).await?;
            let (status, session): (String, String) = query_as(
                "SELECT status, helix_session_id FROM spec_task_work_sessions WHERE id = $1",
            )
            .bind(ws.as_str())
            .fetch_one(&mut tx)
            .await?;
            if status != WorkSessionStatus::Active.as_str() {
                return Err(StoreError::Conflict(format!(
                    "messages go to active work sessions; `{ws}` is `{status}`"
                )));
            }
            let session = SessionId::parse(&session)
                .map_err(|e| StoreError::corrupt("spec_task_work_sessions", e))?;
            let interaction = insert_interaction(
                &mut tx,
                &self.ids,
                &task,
                session.as_str(),
                prompt,
                actor,
                now,
            )
            .await?;
            let turn = enqueue_turn(
                &mut tx,
                &self.ids,
                &task,
                &session,
                &interaction,
                Some(ws.as_str()),
                TurnKind::FollowUp,
                json!({ "message": true }),
                actor,
                now,
            )
            .await?;
            tx.commit().await?;
            turn
        };
        self.announce_latest().await?;
        Ok(turn)
    }

    /// A reviewer asked for changes: `implementation_review → implementation`, and each given work
    /// session is reopened with a follow-up turn carrying `prompt`.
    pub async fn request_implementation_changes(
        &self,
        id: &SpecTaskId,
        sessions: &[WorkSessionId],
        prompt: &str,
        actor: &str,
    ) -> StoreResult<SpecTask> {
        let now = now();
        {
            let mut tx = self.backend.begin_write().await?;
            apply_event(
                &mut tx,
                id.as_str(),
                SpecTaskEvent::RequestImplementationChanges,
                actor,
                now,
            )
            .await?;
            for ws in sessions {
                let row: Option<(String, String)> = query_as("SELECT spec_task_id, helix_session_id FROM spec_task_work_sessions WHERE id = $1")
                    .bind(ws.as_str())
                    .fetch_optional(&mut tx)
                    .await?;
                let Some((owner, session)) = row else {
                    return Err(StoreError::not_found("work session", ws));
                };
                if owner != id.as_str() {
                    return Err(StoreError::not_found("work session", ws));
                }
                apply_event(&mut tx, ws.as_str(), WorkSessionEvent::Reopen, actor, now).await?;
                assigned_tasks_event(
                    &mut tx,
                    ws.as_str(),
                    ImplementationTaskEvent::Reopen,
                    actor,
                    now,
                )
                .await?;
                thread_event(&mut tx, ws.as_str(), ZedThreadEvent::Reopen, actor, now).await?;
                let session = SessionId::parse(&session)
                    .map_err(|e| StoreError::corrupt("spec_task_work_sessions", e))?;
                let interaction = insert_interaction(
                    &mut tx,
                    &self.ids,
                    &id,
                    session.as_str(),
                    prompt,
                    actor,
                    now,
                )
                .await?;
                enqueue_turn(
                    &mut tx,
                    &self.ids,
                    &id,
                    &session,
                    &interaction,
                    Some(ws.as_str()),
                    TurnKind::FollowUp,
                    json!({ "review_changes": true }),
                    actor,
                    now,
                )
                .await?;
            }
            tx.commit().await?;
        };
        self.announce_latest().await?;
        self.get_spec_task(id).await
    }

    /// Tasks in a status, oldest first (the orchestrator's work lists).
    pub async fn spec_task_ids_in_status(
        &self,
        status: SpecTaskStatus,
    ) -> StoreResult<Vec<SpecTaskId>> {
        let ids: Vec<String> = {
            query_scalar(
                "SELECT id FROM spec_tasks WHERE status = $1 AND archived = FALSE ORDER BY id",
            )
            .bind(status.as_str())
            .fetch_all(self.backend.reader())
            .await?
        };
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
        let rows: Vec<WorkSessionRow> = {
            query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {WORK_SESSION_COLUMNS} FROM spec_task_work_sessions WHERE status = $1 AND phase = 'implementation' ORDER BY id"
            )))
            .bind(status.as_str())
            .fetch_all(self.backend.reader())
            .await?
        };
        rows.into_iter()
            .map(SpecTaskWorkSession::try_from)
            .collect()
    }

    /// The turns of one work session, oldest first.
    pub async fn turns_of_work_session(
        &self,
        ws: &WorkSessionId,
    ) -> StoreResult<Vec<spectask_domain::Turn>> {
        let rows: Vec<crate::turns::TurnRow> = {
            query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM turns WHERE work_session_id = $1 ORDER BY id",
                crate::turns::TURN_COLUMNS
            )))
            .bind(ws.as_str())
            .fetch_all(self.backend.reader())
            .await?
        };
        rows.into_iter()
            .map(spectask_domain::Turn::try_from)
            .collect()
    }
}
