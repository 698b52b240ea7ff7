//! Helix sessions and their interactions.

use chrono::{DateTime, Utc};
use serde_json::json;
use spectask_domain::{
    EventKind, Interaction, InteractionId, InteractionState, NewEvent, Session, SessionId,
    SessionRole, SpecTaskId,
};

use crate::Store;
use crate::db::{Tx, query, query_as, query_scalar};
use crate::error::{StoreError, StoreResult};
use crate::events::append_event;
use crate::ids::{IdGenerator, now};
use crate::rows::{INTERACTION_COLUMNS, INTERACTION_READ_COLUMNS, InteractionRow};
use crate::turns::TurnClaim;

/// Appends an interaction (a prompt, response pending) at the end of `session` inside `tx`, with
/// its `interaction.created` event.
pub(crate) async fn insert_interaction(
    tx: &mut Tx,
    ids: &IdGenerator,
    task: &SpecTaskId,
    session: &SessionId,
    prompt: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> StoreResult<Interaction> {
    let id = InteractionId::from_ulid(ids.next());
    let row: InteractionRow = query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO interactions (id, session_id, seq, prompt_message, response_message, state, \
         created_at, updated_at) \
         VALUES ($1, $2, (SELECT COALESCE(MAX(seq) + 1, 0) FROM interactions WHERE session_id = $2), \
         $3, '', $4, $5, $5) RETURNING {INTERACTION_COLUMNS}"
    )))
    .bind(id.as_str())
    .bind(session.as_str())
    .bind(prompt)
    .bind(InteractionState::Waiting.as_str())
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    query("UPDATE sessions SET updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(session.as_str())
        .execute(&mut *tx)
        .await?;
    let event = NewEvent {
        spec_task_id: Some(task.clone()),
        kind: EventKind::InteractionCreated,
        entity_id: id.to_string(),
        actor: actor.to_owned(),
        payload: json!({ "session_id": session }),
    };
    append_event(tx, &event, now).await?;
    row.try_into()
}

/// Inserts a session of `role` named `name` for `task` inside `tx` (its caller records the
/// event it belongs to); returns its id.
pub(crate) async fn insert_session(
    tx: &mut Tx,
    ids: &IdGenerator,
    task: &SpecTaskId,
    role: SessionRole,
    name: &str,
    now: DateTime<Utc>,
) -> StoreResult<SessionId> {
    let id = SessionId::from_ulid(ids.next());
    query(
        "INSERT INTO sessions (id, spec_task_id, role, name, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(id.as_str())
    .bind(task.as_str())
    .bind(role.as_str())
    .bind(name)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(id)
}

/// Ends the claimed turn's interaction with its final text, state and error inside `tx` (the
/// whole reply, which replaces the pieces it was streamed in).
pub(crate) async fn finish_interaction(
    tx: &mut Tx,
    claim: &TurnClaim,
    response: &str,
    state: &str,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    query(
        "UPDATE interactions SET response_message = $1, state = $2, error = $3, updated_at = $4, completed_at = $4 WHERE id = $5",
    )
    .bind(response)
    .bind(state)
    .bind(error)
    .bind(now)
    .bind(claim.turn.interaction_id.as_str())
    .execute(&mut *tx)
    .await?;
    clear_reply_pieces(tx, claim.turn.interaction_id.as_str()).await
}

/// Deletes the streamed pieces of interaction `interaction`'s reply inside `tx`.
pub(crate) async fn clear_reply_pieces(tx: &mut Tx, interaction: &str) -> StoreResult<()> {
    query("DELETE FROM interaction_reply_pieces WHERE interaction_id = $1")
        .bind(interaction)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

const SESSION_COLUMNS: &str =
    "id, spec_task_id, role, name, agent_thread_id, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    spec_task_id: String,
    role: String,
    name: String,
    agent_thread_id: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

/// A session without its interactions (a listing), or with them once they are read.
impl TryFrom<SessionRow> for Session {
    type Error = StoreError;
    fn try_from(row: SessionRow) -> StoreResult<Self> {
        const T: &str = "sessions";
        Ok(Session {
            id: SessionId::parse(&row.id).map_err(|e| StoreError::corrupt(T, e))?,
            spec_task_id: SpecTaskId::parse(&row.spec_task_id)
                .map_err(|e| StoreError::corrupt(T, e))?,
            role: row.role.parse()?,
            name: row.name,
            created_at: row.created_at,
            updated_at: row.updated_at,
            agent_thread_id: row.agent_thread_id,
            interactions: Vec::new(),
        })
    }
}

impl Store {
    /// Creates a session for a task.
    pub async fn create_session(
        &self,
        spec_task_id: &SpecTaskId,
        role: SessionRole,
        name: &str,
        actor: &str,
    ) -> StoreResult<Session> {
        let now = now();
        let id = self
            .write(async |tx| {
                let exists: Option<String> =
                    query_scalar("SELECT id FROM spec_tasks WHERE id = $1")
                        .bind(spec_task_id.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                if exists.is_none() {
                    return Err(StoreError::not_found("spec task", spec_task_id));
                }
                let id = insert_session(&mut *tx, &self.ids, spec_task_id, role, name, now).await?;
                let event = NewEvent {
                    spec_task_id: Some(spec_task_id.clone()),
                    kind: EventKind::SessionCreated,
                    entity_id: id.to_string(),
                    actor: actor.to_owned(),
                    payload: json!({ "role": role, "name": name }),
                };
                append_event(&mut *tx, &event, now).await?;
                Ok(id)
            })
            .await?;
        Ok(Session {
            id,
            spec_task_id: spec_task_id.clone(),
            role,
            name: name.to_owned(),
            created_at: now,
            updated_at: now,
            agent_thread_id: None,
            interactions: Vec::new(),
        })
    }

    /// Appends an interaction (a prompt, response pending) at the end of a session.
    pub async fn append_interaction(
        &self,
        session_id: &SessionId,
        prompt: &str,
        actor: &str,
    ) -> StoreResult<Interaction> {
        let now = now();
        self.write(async |tx| {
            let task: Option<String> =
                query_scalar("SELECT spec_task_id FROM sessions WHERE id = $1")
                    .bind(session_id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            let task = task.ok_or_else(|| StoreError::not_found("session", session_id))?;
            let task = SpecTaskId::parse(&task).map_err(|e| StoreError::corrupt("sessions", e))?;
            insert_interaction(&mut *tx, &self.ids, &task, session_id, prompt, actor, now).await
        })
        .await
    }

    /// The task's sessions, oldest first, without their interactions.
    pub async fn list_sessions(&self, spec_task_id: &SpecTaskId) -> StoreResult<Vec<Session>> {
        let rows: Vec<SessionRow> = query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE spec_task_id = $1 ORDER BY id"
        )))
        .bind(spec_task_id.as_str())
        .fetch_all(self.backend.reader())
        .await?;
        rows.into_iter().map(Session::try_from).collect()
    }

    /// A session with its interactions in order.
    pub async fn get_session(&self, id: &SessionId) -> StoreResult<Session> {
        let mut tx = self.backend.begin_read().await?;
        let session: Option<SessionRow> = query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"
        )))
        .bind(id.as_str())
        .fetch_optional(&mut tx)
        .await?;
        let interactions: Vec<InteractionRow> = query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {INTERACTION_READ_COLUMNS} FROM interactions WHERE session_id = $1 ORDER BY seq"
        )))
        .bind(id.as_str())
        .fetch_all(&mut tx)
        .await?;
        tx.commit().await?;
        let mut session =
            Session::try_from(session.ok_or_else(|| StoreError::not_found("session", id))?)?;
        session.interactions = interactions
            .into_iter()
            .map(Interaction::try_from)
            .collect::<StoreResult<_>>()?;
        Ok(session)
    }
}
