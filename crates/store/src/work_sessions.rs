//! Work sessions and their Zed threads. The seed's unique constraints (one work session per Helix
//! session, one thread per work session, thread ids unique within a task) are enforced by the
//! database and surface as [`StoreError::Duplicate`].

use chrono::{DateTime, Utc};
use serde_json::json;
use spectask_domain::{
    EventKind, NewEvent, SessionId, SpecTaskId, SpecTaskWorkSession, SpecTaskZedThread,
    SpecTaskZedThreadId, WorkSessionId, WorkSessionPhase, WorkSessionStatus, ZedThreadStatus,
};
use sqlx::types::Json;

use crate::Store;
use crate::db::{Tx, query_as, query_scalar};
use crate::error::{StoreError, StoreResult};
use crate::events::append_event;
use crate::ids::{IdGenerator, now};
use crate::rows::{
    WORK_SESSION_COLUMNS, WORK_SESSIONS, WorkSessionRow, ZED_THREAD_COLUMNS, ZED_THREADS,
    ZedThreadRow,
};

/// A work session to create (status `pending`).
#[derive(Debug, Clone)]
pub struct NewWorkSession {
    pub spec_task_id: SpecTaskId,
    pub helix_session_id: SessionId,
    pub name: Option<String>,
    pub description: Option<String>,
    pub phase: WorkSessionPhase,
    pub implementation_task_title: Option<String>,
    pub implementation_task_description: Option<String>,
    pub implementation_task_index: Option<i32>,
    pub parent_work_session_id: Option<WorkSessionId>,
    pub spawned_by_session_id: Option<WorkSessionId>,
    pub agent_config: Option<serde_json::Value>,
    pub environment_config: Option<serde_json::Value>,
}

/// A thread mapping to create (status `pending`).
#[derive(Debug, Clone)]
pub struct NewZedThread {
    pub work_session_id: WorkSessionId,
    pub zed_thread_id: String,
    pub thread_config: Option<serde_json::Value>,
}

/// Inserts a `pending` thread for `new.work_session_id` inside `tx`, with its
/// `zed_thread.created` event.
pub(crate) async fn insert_zed_thread(
    tx: &mut Tx,
    ids: &IdGenerator,
    new: &NewZedThread,
    actor: &str,
    now: DateTime<Utc>,
) -> StoreResult<SpecTaskZedThread> {
    let id = SpecTaskZedThreadId::from_ulid(ids.next());
    let task: Option<String> =
        query_scalar("SELECT spec_task_id FROM spec_task_work_sessions WHERE id = $1")
            .bind(new.work_session_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    let task = task.ok_or_else(|| StoreError::not_found("work session", &new.work_session_id))?;
    let row: ZedThreadRow = query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO spec_task_zed_threads (id, work_session_id, spec_task_id, zed_thread_id, \
         thread_config, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         RETURNING {ZED_THREAD_COLUMNS}"
    )))
    .bind(id.as_str())
    .bind(new.work_session_id.as_str())
    .bind(&task)
    .bind(&new.zed_thread_id)
    .bind(new.thread_config.as_ref().map(Json))
    .bind(ZedThreadStatus::Pending.as_str())
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let event = NewEvent {
        spec_task_id: Some(
            SpecTaskId::parse(&task)
                .map_err(|e| StoreError::corrupt("spec_task_work_sessions", e))?,
        ),
        kind: EventKind::ZedThreadCreated,
        entity_id: id.to_string(),
        actor: actor.to_owned(),
        payload: json!({ "work_session_id": new.work_session_id, "zed_thread_id": new.zed_thread_id }),
    };
    append_event(tx, &event, now).await?;
    row.try_into()
}

impl Store {
    /// Creates a work session bound to its Helix session.
    pub async fn create_work_session(
        &self,
        new: &NewWorkSession,
        actor: &str,
    ) -> StoreResult<SpecTaskWorkSession> {
        let id = WorkSessionId::from_ulid(self.ids.next());
        let now = now();
        let event = NewEvent {
            spec_task_id: Some(new.spec_task_id.clone()),
            kind: EventKind::WorkSessionCreated,
            entity_id: id.to_string(),
            actor: actor.to_owned(),
            payload: json!({ "name": new.name, "phase": new.phase, "helix_session_id": new.helix_session_id }),
        };
        let row: WorkSessionRow = self
            .write(async |tx| {
                let row = query_as(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO spec_task_work_sessions (id, spec_task_id, helix_session_id, name, description, \
                     phase, status, implementation_task_title, implementation_task_description, \
                     implementation_task_index, parent_work_session_id, spawned_by_session_id, agent_config, \
                     environment_config, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                     RETURNING {WORK_SESSION_COLUMNS}"
                )))
                .bind(id.as_str())
                .bind(new.spec_task_id.as_str())
                .bind(new.helix_session_id.as_str())
                .bind(&new.name)
                .bind(&new.description)
                .bind(new.phase.as_str())
                .bind(WorkSessionStatus::Pending.as_str())
                .bind(&new.implementation_task_title)
                .bind(&new.implementation_task_description)
                .bind(new.implementation_task_index)
                .bind(new.parent_work_session_id.as_ref().map(|id| id.as_str()))
                .bind(new.spawned_by_session_id.as_ref().map(|id| id.as_str()))
                .bind(new.agent_config.as_ref().map(Json))
                .bind(new.environment_config.as_ref().map(Json))
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                append_event(&mut *tx, &event, now).await?;
                Ok(row)
            })
            .await?;
        row.try_into()
    }

    pub async fn get_work_session(&self, id: &WorkSessionId) -> StoreResult<SpecTaskWorkSession> {
        let session: SpecTaskWorkSession = WORK_SESSIONS.get(&self.backend, id.as_str()).await?;
        let mut one = [session];
        let task = one[0].spec_task_id.clone();
        self.hydrate_work_sessions(&task, &mut one).await?;
        let [session] = one;
        Ok(session)
    }

    /// The task's work sessions in creation order.
    pub async fn list_work_sessions(
        &self,
        spec_task_id: &SpecTaskId,
    ) -> StoreResult<Vec<SpecTaskWorkSession>> {
        let mut sessions: Vec<SpecTaskWorkSession> =
            WORK_SESSIONS.of_task(&self.backend, spec_task_id).await?;
        self.hydrate_work_sessions(spec_task_id, &mut sessions)
            .await?;
        Ok(sessions)
    }

    /// Maps a work session to its thread in the task's instance.
    pub async fn create_zed_thread(
        &self,
        new: &NewZedThread,
        actor: &str,
    ) -> StoreResult<SpecTaskZedThread> {
        let now = now();
        self.write(async |tx| insert_zed_thread(tx, &self.ids, new, actor, now).await)
            .await
    }

    pub async fn get_zed_thread(&self, id: &SpecTaskZedThreadId) -> StoreResult<SpecTaskZedThread> {
        ZED_THREADS.get(&self.backend, id.as_str()).await
    }

    /// The task's threads in creation order.
    pub async fn list_zed_threads(
        &self,
        spec_task_id: &SpecTaskId,
    ) -> StoreResult<Vec<SpecTaskZedThread>> {
        ZED_THREADS.of_task(&self.backend, spec_task_id).await
    }
}
