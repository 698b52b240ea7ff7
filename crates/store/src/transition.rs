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

use spectask_domain::{
    EventKind, ImplementationTaskEvent, ImplementationTaskId, ImplementationTaskStatus, SpecTask,
    SpecTaskEvent, SpecTaskId, SpecTaskImplementationTask, SpecTaskStatus, SpecTaskWorkSession,
    SpecTaskZedThread, SpecTaskZedThreadId, WorkSessionEvent, WorkSessionId, WorkSessionStatus,
    ZedThreadEvent, ZedThreadStatus,
};

use crate::Store;
use crate::backend::WritePool;
use crate::backend::on_backend;
use crate::error::StoreResult;
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
    pub(crate) on_final: Option<(&'static [&'static str], &'static str)>,
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
    // or reopening later mints fresh ones and never revives these.
    on_final: Some((
        &["completed", "failed", "cancelled"],
        "UPDATE agent_tokens SET revoked_at = $1 WHERE work_session_id = $2 AND revoked_at IS NULL",
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

/// Applies a status change inside the open transaction `$tx`: reads (and on PostgreSQL locks) the
/// row, refuses if the current status is not in `$allowed`, else runs the guarded `UPDATE` and
/// appends the status event. Evaluates to an [`Outcome`]; returns early from the enclosing
/// function on a missing row or a lost race.
macro_rules! cas_status {
    ($tx:expr, $d:expr, $machine:expr, $id:expr, $event_name:expr, $allowed:expr, $target:expr, $actor:expr, $now:expr) => {{
        let machine: &$crate::transition::Machine = $machine;
        let id: &str = $id;
        let allowed_from: &[&'static str] = $allowed;
        let target: &'static str = $target;
        let lock = if $d == $crate::backend::Dialect::Postgres { " FOR UPDATE" } else { "" };
        let current: Option<(String, String)> = ::sqlx::query_as(::sqlx::AssertSqlSafe(format!(
            "SELECT status, {} FROM {} WHERE id = $1{lock}",
            machine.task_column, machine.table
        )))
        .bind(id)
        .fetch_optional(&mut *$tx)
        .await?;
        let Some((current, spec_task_id)) = current else {
            return Err($crate::error::StoreError::not_found(machine.entity, id));
        };
        if !allowed_from.contains(&current.as_str()) {
            $crate::transition::Outcome::Refused { current }
        } else {
            let allowed_params: Vec<String> =
                (0..allowed_from.len()).map(|i| format!("${}", i + 5)).collect();
            let sql = format!(
                "UPDATE {} SET status = $2, {} WHERE id = $3 AND status = $4 AND status IN ({})",
                machine.table,
                machine.extra_set,
                allowed_params.join(", ")
            );
            let mut update = ::sqlx::query(::sqlx::AssertSqlSafe(sql))
                .bind($now)
                .bind(target)
                .bind(id)
                .bind(&current);
            for status in allowed_from {
                update = update.bind(*status);
            }
            let updated = update.execute(&mut *$tx).await?.rows_affected();
            if updated != 1 {
                return Err($crate::error::StoreError::Conflict(format!(
                    "{} `{id}` changed concurrently; retry",
                    machine.entity
                )));
            }
            if let Some((finals, sql)) = machine.on_final
                && finals.contains(&target)
            {
                ::sqlx::query(sql).bind($now).bind(id).execute(&mut *$tx).await?;
            }
            let event = ::spectask_domain::NewEvent {
                spec_task_id: Some(
                    ::spectask_domain::SpecTaskId::parse(&spec_task_id)
                        .map_err(|e| $crate::error::StoreError::corrupt(machine.table, e))?,
                ),
                kind: machine.event_kind,
                entity_id: id.to_owned(),
                actor: $actor.to_owned(),
                payload: ::serde_json::json!({ "event": $event_name, "from": current, "to": target }),
            };
            let event_id = $crate::events::append_event!($tx, $d, &event, $now);
            $crate::transition::Outcome::Applied { from: current, event_id }
        }
    }};
}
pub(crate) use cas_status;

/// Applies `$event` (of any machine) inside `$tx`; returns early from the enclosing function with
/// the transition error when the table refuses it. Evaluates to the event id.
macro_rules! event_in_tx {
    ($tx:expr, $d:expr, $machine:expr, $status:ty, $id:expr, $event:expr, $actor:expr, $now:expr) => {{
        let event = $event;
        let allowed: Vec<&'static str> = event.allowed_from().iter().map(|s| s.as_str()).collect();
        match $crate::transition::cas_status!(
            $tx,
            $d,
            $machine,
            $id,
            event.as_str(),
            &allowed,
            event.target().as_str(),
            $actor,
            $now
        ) {
            $crate::transition::Outcome::Applied { event_id, .. } => event_id,
            $crate::transition::Outcome::Refused { current } => {
                let current: $status = current.parse()?;
                return Err(event.refused(current).into());
            }
        }
    }};
}
pub(crate) use event_in_tx;

/// Like [`event_in_tx!`] but a refusal is not an error: evaluates to whether the change was made
/// (for bulk changes such as "complete every task of this session that is still open").
macro_rules! try_event_in_tx {
    ($tx:expr, $d:expr, $machine:expr, $id:expr, $event:expr, $actor:expr, $now:expr) => {{
        let event = $event;
        let allowed: Vec<&'static str> = event.allowed_from().iter().map(|s| s.as_str()).collect();
        matches!(
            $crate::transition::cas_status!(
                $tx,
                $d,
                $machine,
                $id,
                event.as_str(),
                &allowed,
                event.target().as_str(),
                $actor,
                $now
            ),
            $crate::transition::Outcome::Applied { .. }
        )
    }};
}
pub(crate) use try_event_in_tx;

/// Applies a SpecTask event inside `$tx`, like [`event_in_tx!`].
macro_rules! spec_task_event_in_tx {
    ($tx:expr, $d:expr, $id:expr, $event:expr, $actor:expr, $now:expr) => {
        $crate::transition::event_in_tx!(
            $tx,
            $d,
            &$crate::transition::SPEC_TASKS,
            ::spectask_domain::SpecTaskStatus,
            $id,
            $event,
            $actor,
            $now
        )
    };
}
pub(crate) use spec_task_event_in_tx;

/// Applies a turn event inside `$tx`, like [`event_in_tx!`].
macro_rules! turn_event_in_tx {
    ($tx:expr, $d:expr, $id:expr, $event:expr, $actor:expr, $now:expr) => {
        $crate::transition::event_in_tx!(
            $tx,
            $d,
            &$crate::transition::TURNS,
            ::spectask_domain::TurnStatus,
            $id,
            $event,
            $actor,
            $now
        )
    };
}
pub(crate) use turn_event_in_tx;

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

impl Store {
    async fn compare_and_set_status(
        &self,
        machine: &Machine,
        id: &str,
        event_name: &'static str,
        allowed_from: &[&'static str],
        target: &'static str,
        actor: &str,
    ) -> StoreResult<Outcome> {
        let now = now();
        let outcome = on_backend!(&*self.backend, |w, r, d| {
            let mut tx = w.begin_write().await?;
            let outcome = cas_status!(
                tx,
                d,
                machine,
                id,
                event_name,
                allowed_from,
                target,
                actor,
                now
            );
            if matches!(outcome, Outcome::Applied { .. }) {
                tx.commit().await?;
            }
            outcome
        });
        if let Outcome::Applied { from, event_id } = &outcome {
            tracing::debug!(entity = machine.entity, id, event = event_name, from = %from, to = target, "status changed");
            self.announce(*event_id);
        }
        Ok(outcome)
    }
}

/// Defines `Store::$name`: applies an event of one machine if its table allows it from the
/// current status, then reads the entity back.
macro_rules! typed_transition {
    ($(#[$doc:meta])* $name:ident, $machine:expr, $id:ty, $event:ty, $status:ty, $entity:ty, $get:ident) => {
        impl Store {
            $(#[$doc])*
            pub async fn $name(&self, id: &$id, event: $event, actor: &str) -> StoreResult<$entity> {
                let allowed: Vec<_> = event.allowed_from().iter().map(|s| s.as_str()).collect();
                let outcome = self
                    .compare_and_set_status(&$machine, id.as_str(), event.as_str(), &allowed, event.target().as_str(), actor)
                    .await?;
                if let Outcome::Refused { current } = outcome {
                    let current: $status = current.parse()?;
                    return Err(event.refused(current).into());
                }
                self.$get(id).await
            }
        }
    };
}

typed_transition!(
    /// Applies `event` to a SpecTask if its table allows it from the current status.
    transition_spec_task, SPEC_TASKS, SpecTaskId, SpecTaskEvent, SpecTaskStatus, SpecTask, get_spec_task
);
typed_transition!(
    /// Applies `event` to a work session if its table allows it from the current status.
    transition_work_session, WORK_SESSIONS, WorkSessionId, WorkSessionEvent, WorkSessionStatus,
    SpecTaskWorkSession, get_work_session
);
typed_transition!(
    /// Applies `event` to a Zed thread if its table allows it from the current status.
    transition_zed_thread, ZED_THREADS, SpecTaskZedThreadId, ZedThreadEvent, ZedThreadStatus,
    SpecTaskZedThread, get_zed_thread
);
typed_transition!(
    /// Applies `event` to an implementation task if its table allows it from the current status.
    transition_implementation_task, IMPLEMENTATION_TASKS, ImplementationTaskId, ImplementationTaskEvent,
    ImplementationTaskStatus, SpecTaskImplementationTask, get_implementation_task
);
