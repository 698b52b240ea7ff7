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

use serde_json::json;
use spectask_domain::{
    EventKind, ImplementationTaskEvent, ImplementationTaskId, ImplementationTaskStatus, NewEvent,
    SpecTask, SpecTaskEvent, SpecTaskId, SpecTaskImplementationTask, SpecTaskStatus,
    SpecTaskWorkSession, SpecTaskZedThread, SpecTaskZedThreadId, WorkSessionEvent, WorkSessionId,
    WorkSessionStatus, ZedThreadEvent, ZedThreadStatus,
};

use crate::Store;
use crate::backend::{Dialect, on_backend};
use crate::error::{StoreError, StoreResult};
use crate::events::append_event;
use crate::ids::now;

/// How one table takes part in transitions.
struct Machine {
    table: &'static str,
    entity: &'static str,
    /// The column holding the owning SpecTask's id (for the event).
    task_column: &'static str,
    /// Extra assignments; `$1` is the time, `$2` the target status.
    extra_set: &'static str,
    event_kind: EventKind,
}

const SPEC_TASKS: Machine = Machine {
    table: "spec_tasks",
    entity: "spec task",
    task_column: "id",
    extra_set: "updated_at = $1, \
        started_at = CASE WHEN $2 = 'implementation' THEN COALESCE(started_at, $1) ELSE started_at END, \
        completed_at = CASE WHEN $2 = 'done' THEN $1 ELSE completed_at END",
    event_kind: EventKind::SpecTaskStatusChanged,
};

const WORK_SESSIONS: Machine = Machine {
    table: "spec_task_work_sessions",
    entity: "work session",
    task_column: "spec_task_id",
    extra_set: "started_at = CASE WHEN $2 = 'active' THEN COALESCE(started_at, $1) ELSE started_at END, \
        completed_at = CASE WHEN $2 IN ('completed', 'failed', 'cancelled') THEN $1 \
                            WHEN $2 IN ('active', 'pending') THEN NULL ELSE completed_at END",
    event_kind: EventKind::WorkSessionStatusChanged,
};

const ZED_THREADS: Machine = Machine {
    table: "spec_task_zed_threads",
    entity: "zed thread",
    task_column: "spec_task_id",
    extra_set: "last_activity_at = $1",
    event_kind: EventKind::ZedThreadStatusChanged,
};

const IMPLEMENTATION_TASKS: Machine = Machine {
    table: "spec_task_implementation_tasks",
    entity: "implementation task",
    task_column: "spec_task_id",
    extra_set: "completed_at = CASE WHEN $2 = 'completed' THEN $1 \
                                WHEN $2 = 'in_progress' THEN NULL ELSE completed_at END",
    event_kind: EventKind::ImplementationTaskStatusChanged,
};

/// What the compare-and-set found.
enum Outcome {
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
            let mut tx = w.begin().await?;
            let lock = if d == Dialect::Postgres {
                " FOR UPDATE"
            } else {
                ""
            };
            let current: Option<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
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
            let mut update = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(target)
                .bind(id)
                .bind(&current);
            for status in allowed_from {
                update = update.bind(*status);
            }
            let updated = update.execute(&mut *tx).await?.rows_affected();
            if updated != 1 {
                return Err(StoreError::Conflict(format!(
                    "{} `{id}` changed concurrently; retry",
                    machine.entity
                )));
            }
            let event = NewEvent {
                spec_task_id: Some(
                    SpecTaskId::parse(&spec_task_id)
                        .map_err(|e| StoreError::corrupt(machine.table, e))?,
                ),
                kind: machine.event_kind,
                entity_id: id.to_owned(),
                actor: actor.to_owned(),
                payload: json!({ "event": event_name, "from": current, "to": target }),
            };
            let event_id = append_event!(tx, d, &event, now);
            tx.commit().await?;
            Outcome::Applied {
                from: current,
                event_id,
            }
        });
        if let Outcome::Applied { from, event_id } = &outcome {
            tracing::debug!(entity = machine.entity, id, event = event_name, from = %from, to = target, "status changed");
            self.announce(*event_id);
        }
        Ok(outcome)
    }

    /// Applies `event` to a SpecTask if its table allows it from the current status.
    pub async fn transition_spec_task(
        &self,
        id: &SpecTaskId,
        event: SpecTaskEvent,
        actor: &str,
    ) -> StoreResult<SpecTask> {
        let allowed: Vec<_> = event.allowed_from().iter().map(|s| s.as_str()).collect();
        let outcome = self
            .compare_and_set_status(
                &SPEC_TASKS,
                id.as_str(),
                event.as_str(),
                &allowed,
                event.target().as_str(),
                actor,
            )
            .await?;
        if let Outcome::Refused { current } = outcome {
            let current: SpecTaskStatus = current.parse()?;
            return Err(event.refused(current).into());
        }
        self.get_spec_task(id).await
    }

    /// Applies `event` to a work session if its table allows it from the current status.
    pub async fn transition_work_session(
        &self,
        id: &WorkSessionId,
        event: WorkSessionEvent,
        actor: &str,
    ) -> StoreResult<SpecTaskWorkSession> {
        let allowed: Vec<_> = event.allowed_from().iter().map(|s| s.as_str()).collect();
        let outcome = self
            .compare_and_set_status(
                &WORK_SESSIONS,
                id.as_str(),
                event.as_str(),
                &allowed,
                event.target().as_str(),
                actor,
            )
            .await?;
        if let Outcome::Refused { current } = outcome {
            let current: WorkSessionStatus = current.parse()?;
            return Err(event.refused(current).into());
        }
        self.get_work_session(id).await
    }

    /// Applies `event` to a Zed thread if its table allows it from the current status.
    pub async fn transition_zed_thread(
        &self,
        id: &SpecTaskZedThreadId,
        event: ZedThreadEvent,
        actor: &str,
    ) -> StoreResult<SpecTaskZedThread> {
        let allowed: Vec<_> = event.allowed_from().iter().map(|s| s.as_str()).collect();
        let outcome = self
            .compare_and_set_status(
                &ZED_THREADS,
                id.as_str(),
                event.as_str(),
                &allowed,
                event.target().as_str(),
                actor,
            )
            .await?;
        if let Outcome::Refused { current } = outcome {
            let current: ZedThreadStatus = current.parse()?;
            return Err(event.refused(current).into());
        }
        self.get_zed_thread(id).await
    }

    /// Applies `event` to an implementation task if its table allows it from the current status.
    pub async fn transition_implementation_task(
        &self,
        id: &ImplementationTaskId,
        event: ImplementationTaskEvent,
        actor: &str,
    ) -> StoreResult<SpecTaskImplementationTask> {
        let allowed: Vec<_> = event.allowed_from().iter().map(|s| s.as_str()).collect();
        let outcome = self
            .compare_and_set_status(
                &IMPLEMENTATION_TASKS,
                id.as_str(),
                event.as_str(),
                &allowed,
                event.target().as_str(),
                actor,
            )
            .await?;
        if let Outcome::Refused { current } = outcome {
            let current: ImplementationTaskStatus = current.parse()?;
            return Err(event.refused(current).into());
        }
        self.get_implementation_task(id).await
    }
}
