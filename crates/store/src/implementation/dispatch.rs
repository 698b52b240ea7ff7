//! Putting work sessions to work: dispatch under the parallelism limit, record the runtime's
//! thread, spawn a session from an active one, and queue a human's follow-up message.

use serde_json::json;
use spectask_domain::{
    ImplementationTaskEvent, NewEvent, SessionId, SessionRole, SpecTaskId, SpecTaskStatus,
    SpecTaskZedThread, TurnId, TurnKind, WorkSessionEvent, WorkSessionId, WorkSessionPhase,
    WorkSessionStatus, ZedThreadEvent,
};

use super::{
    DispatchOutcome, SpawnCaps, Spawned, lock_task_of_work_session, work_session_parts_event,
};
use crate::Store;
use crate::db::{Exec, Tx, query, query_as, query_scalar};
use crate::error::{StoreError, StoreResult};
use crate::events::append_event;
use crate::ids::now;
use crate::rows::{ZED_THREAD_COLUMNS, ZedThreadRow};
use crate::sessions::insert_session;
use crate::transition::apply_event;
use crate::turns::{TurnTarget, queue_turn};
use crate::work_sessions::{NewZedThread, insert_zed_thread};

impl Store {
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
        self.write(async |tx| {
            let (task, status) = lock_task_of_work_session(&mut *tx, ws.as_str()).await?;
            if !matches!(
                status,
                SpecTaskStatus::Implementation | SpecTaskStatus::ImplementationFailed
            ) {
                return Ok(DispatchOutcome::NotDispatchable(format!(
                    "the task is in `{status}`"
                )));
            }
            let (ws_status, session) = work_session_status_and_session(&mut *tx, ws).await?;
            if ws_status != WorkSessionStatus::Pending.as_str() {
                return Ok(DispatchOutcome::NotDispatchable(format!(
                    "the work session is `{ws_status}`"
                )));
            }
            let running: i64 = query_scalar(
                "SELECT COUNT(*) FROM spec_task_work_sessions WHERE spec_task_id = $1 AND phase = 'implementation' AND status = 'active'",
            )
            .bind(task.as_str())
            .fetch_one(&mut *tx)
            .await?;
            if running >= max_parallel {
                return Ok(DispatchOutcome::AtCapacity { running });
            }
            apply_event(&mut *tx, ws.as_str(), WorkSessionEvent::Activate, actor, now).await?;
            work_session_parts_event(
                &mut *tx,
                ws.as_str(),
                ImplementationTaskEvent::Start,
                ZedThreadEvent::Reopen,
                actor,
                now,
            )
            .await?;
            let target = TurnTarget {
                task: &task,
                session: &session,
                work_session: Some(ws),
                kind: TurnKind::Implementation,
                payload: json!({}),
            };
            let turn = queue_turn(&mut *tx, &self.ids, target, prompt, actor, now).await?;
            Ok(DispatchOutcome::Dispatched(turn))
        })
        .await
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
        let new = NewZedThread {
            work_session_id: ws.clone(),
            zed_thread_id: zed_thread_id.to_owned(),
            thread_config: None,
        };
        let id = self
            .write(async |tx| {
                let thread = insert_zed_thread(&mut *tx, &self.ids, &new, actor, now).await?;
                let id = thread.id;
                apply_event(&mut *tx, id.as_str(), ZedThreadEvent::Start, actor, now).await?;
                Ok(id)
            })
            .await?;
        self.get_zed_thread(&id).await
    }

    /// The thread of a work session, if it has one.
    pub async fn thread_of_work_session(
        &self,
        ws: &WorkSessionId,
    ) -> StoreResult<Option<SpecTaskZedThread>> {
        let row: Option<ZedThreadRow> = query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ZED_THREAD_COLUMNS} FROM spec_task_zed_threads WHERE work_session_id = $1"
        )))
        .bind(ws.as_str())
        .fetch_optional(self.backend.reader())
        .await?;
        row.map(SpecTaskZedThread::try_from).transpose()
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
        let outcome = self
            .write(async |tx| {
                let (task, _) = lock_task_of_work_session(&mut *tx, parent.as_str()).await?;
                if let Some(existing) =
                    spawned_work_session_named(&mut *tx, parent, name).await?
                {
                    return Ok(existing);
                }
                let (status, phase): (String, String) = query_as(
                    "SELECT status, phase FROM spec_task_work_sessions WHERE id = $1",
                )
                .bind(parent.as_str())
                .fetch_one(&mut *tx)
                .await?;
                if status != WorkSessionStatus::Active.as_str()
                    || phase != WorkSessionPhase::Implementation.as_str()
                {
                    return Err(StoreError::Conflict(format!(
                        "only an active implementation work session can spawn; `{parent}` is {phase} and `{status}`"
                    )));
                }
                if let Some(caps) = caps {
                    check_spawn_caps(&mut *tx, &task, parent, caps).await?;
                }
                let session = insert_session(
                    &mut *tx,
                    &self.ids,
                    &task,
                    SessionRole::Implementation,
                    name,
                    now,
                )
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
                .execute(&mut *tx)
                .await?;
                let created = NewEvent {
                    spec_task_id: Some(task.clone()),
                    kind: spectask_domain::EventKind::WorkSessionCreated,
                    entity_id: id.to_string(),
                    actor: actor.to_owned(),
                    payload: json!({ "name": name, "helix_session_id": session, "parent_work_session_id": parent, "spawned": true }),
                };
                append_event(&mut *tx, &created, now).await?;
                Ok(id.clone())
            })
            .await;
        let spawned_id = match outcome {
            Ok(spawned_id) => spawned_id,
            // The unique index caught a spawn that raced past the check: it is a repeat.
            Err(StoreError::Duplicate(_)) => {
                spawned_work_session_named(self.backend.reader(), parent, name)
                    .await?
                    .ok_or_else(|| StoreError::not_found("spawned work session", name))?
            }
            Err(err) => return Err(err),
        };
        Ok(Spawned {
            created: spawned_id == id,
            work_session: self.get_work_session(&spawned_id).await?,
        })
    }

    /// Queues a follow-up prompt (a human message) on an active work session's thread.
    pub async fn queue_follow_up(
        &self,
        ws: &WorkSessionId,
        prompt: &str,
        actor: &str,
    ) -> StoreResult<TurnId> {
        let now = now();
        self.write(async |tx| {
            let (task, _) = lock_task_of_work_session(&mut *tx, ws.as_str()).await?;
            let (status, session) = work_session_status_and_session(&mut *tx, ws).await?;
            if status != WorkSessionStatus::Active.as_str() {
                return Err(StoreError::Conflict(format!(
                    "messages go to active work sessions; `{ws}` is `{status}`"
                )));
            }
            let target = TurnTarget {
                task: &task,
                session: &session,
                work_session: Some(ws),
                kind: TurnKind::FollowUp,
                payload: json!({ "message": true }),
            };
            queue_turn(&mut *tx, &self.ids, target, prompt, actor, now).await
        })
        .await
    }
}

/// The status and the session of work session `ws`, inside `tx`.
async fn work_session_status_and_session(
    tx: &mut Tx,
    ws: &WorkSessionId,
) -> StoreResult<(String, SessionId)> {
    let (status, session): (String, String) =
        query_as("SELECT status, helix_session_id FROM spec_task_work_sessions WHERE id = $1")
            .bind(ws.as_str())
            .fetch_one(&mut *tx)
            .await?;
    let session = SessionId::parse(&session)
        .map_err(|e| StoreError::corrupt("spec_task_work_sessions", e))?;
    Ok((status, session))
}

/// The session `parent` spawned under `name`, if any.
async fn spawned_work_session_named<'e>(
    on: impl Into<Exec<'e>>,
    parent: &WorkSessionId,
    name: &str,
) -> StoreResult<Option<WorkSessionId>> {
    let found: Option<String> = query_scalar(
        "SELECT id FROM spec_task_work_sessions WHERE spawned_by_session_id = $1 AND name = $2",
    )
    .bind(parent.as_str())
    .bind(name)
    .fetch_optional(on)
    .await?;
    found
        .map(|id| {
            WorkSessionId::parse(&id).map_err(|e| StoreError::corrupt("spec_task_work_sessions", e))
        })
        .transpose()
}

/// Refuses, inside `tx`, a spawn from `parent` that `caps` do not allow: too many spawned
/// sessions for `task`, or `parent` too many spawns away from the plan's sessions.
async fn check_spawn_caps(
    tx: &mut Tx,
    task: &SpecTaskId,
    parent: &WorkSessionId,
    caps: SpawnCaps,
) -> StoreResult<()> {
    let spawned: i64 = query_scalar(
        "SELECT COUNT(*) FROM spec_task_work_sessions WHERE spec_task_id = $1 AND spawned_by_session_id IS NOT NULL",
    )
    .bind(task.as_str())
    .fetch_one(&mut *tx)
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
        let up: Option<Option<String>> =
            query_scalar("SELECT spawned_by_session_id FROM spec_task_work_sessions WHERE id = $1")
                .bind(&cursor)
                .fetch_optional(&mut *tx)
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
    Ok(())
}
