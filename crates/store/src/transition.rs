//! Status changes for every state machine, applied as a compare-and-set against the domain's
//! transition table:
//!
//! ```sql
//! UPDATE <table> SET status = <target>, … WHERE id = ? AND status = <read> AND status IN (<allowed>)
//! ```
//!
//! The row is read (and on PostgreSQL locked) first so the error can name the current status; the
//! guarded `UPDATE` still decides, so a forbidden transition or a lost race can never overwrite a
//! status. The status event is appended in the same transaction.

use chrono::{DateTime, Utc};
use serde_json::json;
use spectask_domain::{
    EventKind, ImplementationTaskEvent, ImplementationTaskId, ImplementationTaskStatus, NewEvent,
    SpecTask, SpecTaskEvent, SpecTaskId, SpecTaskImplementationTask, SpecTaskStatus,
    SpecTaskWorkSession, SpecTaskZedThread, SpecTaskZedThreadId, TurnEvent, TurnStatus,
    WorkSessionEvent, WorkSessionId, WorkSessionStatus, ZedThreadEvent, ZedThreadStatus,
};

use crate::Store;
use crate::db::{Tx, query, query_as};
use crate::error::{StoreError, StoreResult};
use crate::events::append_event;
use crate::ids::now;

/// How one table takes part in transitions.
pub(crate) struct Machine {
    pub(crate) table: &'static str,
    pub(crate) entity: &'static str,
    /// The column holding the owning SpecTask's id (for the event).
    pub(crate) task_column: &'static str,
    /// Extra assignments; `$1` is the time, `$2` the target status.
    pub(crate) extra_set: &'static str,
    pub(crate) event_kind: EventKind,
    /// Run in the same transaction when the row reaches one of these statuses: `$1` is the time,
    /// `$2` the row's id.
    pub(crate) on_final: Option<(&'static [&'static str], &'static [&'static str])>,
}

pub(crate) const SPEC_TASKS: Machine = Machine {
    table: "spec_tasks",
    entity: "spec task",
    task_column: "id",
    extra_set: "updated_at = $1, \
        started_at = CASE WHEN $2 = 'implementation' THEN COALESCE(started_at, $1) ELSE started_at END, \
        completed_at = CASE WHEN $2 = 'done' THEN $1 ELSE completed_at END",
    event_kind: EventKind::SpecTaskStatusChanged,
    on_final: None,
};

pub(crate) const WORK_SESSIONS: Machine = Machine {
    table: "spec_task_work_sessions",
    entity: "work session",
    task_column: "spec_task_id",
    extra_set: "started_at = CASE WHEN $2 = 'active' THEN COALESCE(started_at, $1) ELSE started_at END, \
        completed_at = CASE WHEN $2 IN ('completed', 'failed', 'cancelled') THEN $1 \
                            WHEN $2 IN ('active', 'pending') THEN NULL ELSE completed_at END",
    event_kind: EventKind::WorkSessionStatusChanged,
    // A work session that ends takes its agent's MCP tokens with it (`agent_tokens.rs`): a retry
    // or reopening later mints fresh ones and never revives these. Sessions waiting for it
    // (overlap policy `serialize`) wait no longer, and it waits for nothing any more.
    on_final: Some((
        &["completed", "failed", "cancelled"],
        &[
            "UPDATE agent_tokens SET revoked_at = $1 WHERE work_session_id = $2 AND revoked_at IS NULL",
            "UPDATE spec_task_work_sessions SET waiting_for = NULL \
             WHERE (waiting_for = $2 OR id = $2) AND waiting_for IS NOT NULL AND $1 IS NOT NULL",
        ],
    )),
};

pub(crate) const ZED_THREADS: Machine = Machine {
    table: "spec_task_zed_threads",
    entity: "zed thread",
    task_column: "spec_task_id",
    extra_set: "last_activity_at = $1",
    event_kind: EventKind::ZedThreadStatusChanged,
    on_final: None,
};

pub(crate) const TURNS: Machine = Machine {
    table: "turns",
    entity: "turn",
    task_column: "spec_task_id",
    extra_set: "started_at = CASE WHEN $2 = 'running' THEN COALESCE(started_at, $1) ELSE started_at END, \
        completed_at = CASE WHEN $2 IN ('completed', 'failed', 'cancelled') THEN $1 ELSE NULL END, \
        owner = CASE WHEN $2 = 'running' THEN owner ELSE NULL END, \
        claim_token = CASE WHEN $2 = 'running' THEN claim_token ELSE NULL END, \
        lease_expires_at = CASE WHEN $2 = 'running' THEN lease_expires_at ELSE NULL END",
    event_kind: EventKind::TurnStatusChanged,
    on_final: None,
};

pub(crate) const IMPLEMENTATION_TASKS: Machine = Machine {
    table: "spec_task_implementation_tasks",
    entity: "implementation task",
    task_column: "spec_task_id",
    extra_set: "completed_at = CASE WHEN $2 = 'completed' THEN $1 \
                                WHEN $2 = 'in_progress' THEN NULL ELSE completed_at END",
    event_kind: EventKind::ImplementationTaskStatusChanged,
    on_final: None,
};

/// An event of one of the domain's state machines, as the store applies it.
pub(crate) trait MachineEvent: Copy {
    /// The table the event's entity lives in.
    const MACHINE: &'static Machine;
    fn name(self) -> &'static str;
    fn allowed_from_names(self) -> Vec<&'static str>;
    fn target_name(self) -> &'static str;
    /// The transition error for this event refused in status `current` (as stored).
    fn refusal(self, current: &str) -> StoreError;
}

// A macro because the domain's event enums share these inherent methods (generated by its
// `transition_table!`) but no trait a generic impl could use.
macro_rules! machine_event {
    ($($event:ty => $status:ty, $machine:expr;)+) => {$(
        impl MachineEvent for $event {
            const MACHINE: &'static Machine = &$machine;
            fn name(self) -> &'static str {
                self.as_str()
            }
            fn allowed_from_names(self) -> Vec<&'static str> {
                self.allowed_from().iter().map(|s| s.as_str()).collect()
            }
            fn target_name(self) -> &'static str {
                self.target().as_str()
            }
            fn refusal(self, current: &str) -> StoreError {
                match current.parse::<$status>() {
                    Ok(current) => self.refused(current).into(),
                    Err(err) => err.into(),
                }
            }
        }
    )+};
}

machine_event! {
    SpecTaskEvent => SpecTaskStatus, SPEC_TASKS;
    WorkSessionEvent => WorkSessionStatus, WORK_SESSIONS;
    ZedThreadEvent => ZedThreadStatus, ZED_THREADS;
    TurnEvent => TurnStatus, TURNS;
    ImplementationTaskEvent => ImplementationTaskStatus, IMPLEMENTATION_TASKS;
}

/// What the compare-and-set found.
pub(crate) enum Outcome {
    Applied {
        from: String,
        event_id: i64,
    },
    /// The current status is not one the event is allowed from.
    Refused {
        current: String,
    },
}

/// Applies `event` to row `id` inside the open transaction `tx`: reads (and on PostgreSQL locks)
/// the row, answers [`Outcome::Refused`] if the current status is not one the event is allowed
/// from, else runs the guarded `UPDATE` and appends the status event. A missing row is
/// `NotFound`; a lost race is a `Conflict`.
pub(crate) async fn compare_and_set_status<E: MachineEvent>(
    tx: &mut Tx,
    id: &str,
    event: E,
    actor: &str,
    now: DateTime<Utc>,
) -> StoreResult<Outcome> {
    let machine = E::MACHINE;
    let allowed_from = event.allowed_from_names();
    let target = event.target_name();
    let lock = tx.dialect().for_update();
    let current: Option<(String, String)> = query_as(sqlx::AssertSqlSafe(format!(
        "SELECT status, {} FROM {} WHERE id = $1{lock}",
        machine.task_column, machine.table
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((current, spec_task_id)) = current else {
        return Err(StoreError::not_found(machine.entity, id));
    };
    if !allowed_from.contains(&current.as_str()) {
        return Ok(Outcome::Refused { current });
    }
    let allowed_params: Vec<String> = (0..allowed_from.len())
        .map(|i| format!("${}", i + 5))
        .collect();
    let sql = format!(
        "UPDATE {} SET status = $2, {} WHERE id = $3 AND status = $4 AND status IN ({})",
        machine.table,
        machine.extra_set,
        allowed_params.join(", ")
    );
    let mut update = query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(target)
        .bind(id)
        .bind(current.clone());
    for status in allowed_from {
        update = update.bind(status);
    }
    let updated = update.execute(&mut *tx).await?.rows_affected();
    if updated != 1 {
        return Err(StoreError::Conflict(format!(
            "{} `{id}` changed concurrently; retry",
            machine.entity
        )));
    }
    if let Some((finals, statements)) = machine.on_final
        && finals.contains(&target)
    {
        for sql in statements {
            query(*sql).bind(now).bind(id).execute(&mut *tx).await?;
        }
    }
    let event = NewEvent {
        spec_task_id: Some(
            SpecTaskId::parse(&spec_task_id).map_err(|e| StoreError::corrupt(machine.table, e))?,
        ),
        kind: machine.event_kind,
        entity_id: id.to_owned(),
        actor: actor.to_owned(),
        payload: json!({ "event": event.name(), "from": current, "to": target }),
    };
    let event_id = append_event(tx, &event, now).await?;
    Ok(Outcome::Applied {
        from: current,
        event_id,
    })
}

/// Applies `event` to row `id` inside `tx`; the transition error when its table refuses it.
/// Returns the event id.
pub(crate) async fn apply_event<E: MachineEvent>(
    tx: &mut Tx,
    id: &str,
    event: E,
    actor: &str,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    match compare_and_set_status(tx, id, event, actor, now).await? {
        Outcome::Applied { event_id, .. } => Ok(event_id),
        Outcome::Refused { current } => Err(event.refusal(&current)),
    }
}

/// Like [`apply_event`] but a refusal is not an error: returns whether the change was made (for
/// bulk changes such as "complete every task of this session that is still open").
pub(crate) async fn try_apply_event<E: MachineEvent>(
    tx: &mut Tx,
    id: &str,
    event: E,
    actor: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let outcome = compare_and_set_status(tx, id, event, actor, now).await?;
    Ok(matches!(outcome, Outcome::Applied { .. }))
}

impl Store {
    /// Applies `event` to row `id` in its own transaction if its table allows it from the
    /// current status.
    async fn transition<E: MachineEvent>(
        &self,
        id: &str,
        event: E,
        actor: &str,
    ) -> StoreResult<()> {
        let now = now();
        let from = self
            .write(
                async |tx| match compare_and_set_status(tx, id, event, actor, now).await? {
                    Outcome::Applied { from, .. } => Ok(from),
                    Outcome::Refused { current } => Err(event.refusal(&current)),
                },
            )
            .await?;
        tracing::debug!(entity = E::MACHINE.entity, id, event = event.name(), from = %from, to = event.target_name(), "status changed");
        Ok(())
    }

    /// Applies `event` to a SpecTask if its table allows it from the current status.
    pub async fn transition_spec_task(
        &self,
        id: &SpecTaskId,
        event: SpecTaskEvent,
        actor: &str,
    ) -> StoreResult<SpecTask> {
        self.transition(id.as_str(), event, actor).await?;
        self.get_spec_task(id).await
    }

    /// Applies `event` to a work session if its table allows it from the current status.
    pub async fn transition_work_session(
        &self,
        id: &WorkSessionId,
        event: WorkSessionEvent,
        actor: &str,
    ) -> StoreResult<SpecTaskWorkSession> {
        self.transition(id.as_str(), event, actor).await?;
        self.get_work_session(id).await
    }

    /// Applies `event` to a Zed thread if its table allows it from the current status.
    pub async fn transition_zed_thread(
        &self,
        id: &SpecTaskZedThreadId,
        event: ZedThreadEvent,
        actor: &str,
    ) -> StoreResult<SpecTaskZedThread> {
        self.transition(id.as_str(), event, actor).await?;
        self.get_zed_thread(id).await
    }

    /// Applies `event` to an implementation task if its table allows it from the current status.
    pub async fn transition_implementation_task(
        &self,
        id: &ImplementationTaskId,
        event: ImplementationTaskEvent,
        actor: &str,
    ) -> StoreResult<SpecTaskImplementationTask> {
        self.transition(id.as_str(), event, actor).await?;
        self.get_implementation_task(id).await
    }
}
