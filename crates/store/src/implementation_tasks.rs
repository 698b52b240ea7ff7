//! Implementation tasks: the approved plan's tasks, written all at once and tracked one by one.

use chrono::{DateTime, Utc};
use serde_json::json;
use spectask_domain::{
    EventKind, ImplementationTaskId, NewEvent, SpecTaskId, SpecTaskImplementationTask,
};
use sqlx::types::Json;

use crate::Store;
use crate::db::{Tx, query_as};
use crate::error::StoreResult;
use crate::events::append_event;
use crate::ids::now;
use crate::rows::{IMPLEMENTATION_TASK_COLUMNS, IMPLEMENTATION_TASKS, ImplementationTaskRow};

/// One task of a plan to record.
#[derive(Debug, Clone)]
pub struct NewImplementationTask {
    pub key: String,
    pub title: String,
    pub description: Option<String>,
    pub acceptance_criteria: Option<String>,
    pub estimated_effort: Option<String>,
    pub priority: i32,
    pub index: i32,
    pub phase: Option<String>,
    pub parent_key: Option<String>,
    pub requirement_refs: Vec<String>,
    /// Check commands (`_Verify:` lines).
    pub checks: Vec<String>,
    pub dependencies: Vec<String>,
}

/// Inserts one pending implementation task inside `tx`; returns its row.
pub(crate) async fn insert_implementation_task(
    tx: &mut Tx,
    spec_task: &SpecTaskId,
    id: &ImplementationTaskId,
    task: &NewImplementationTask,
    now: DateTime<Utc>,
) -> StoreResult<ImplementationTaskRow> {
    query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO spec_task_implementation_tasks (id, spec_task_id, task_key, title, description, \
         acceptance_criteria, estimated_effort, priority, task_index, phase, parent_key, \
         requirement_refs, dependencies, status, created_at, checks) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'pending', $14, $15) \
         RETURNING {IMPLEMENTATION_TASK_COLUMNS}"
    )))
    .bind(id.as_str())
    .bind(spec_task.as_str())
    .bind(&task.key)
    .bind(&task.title)
    .bind(&task.description)
    .bind(&task.acceptance_criteria)
    .bind(&task.estimated_effort)
    .bind(task.priority)
    .bind(task.index)
    .bind(&task.phase)
    .bind(&task.parent_key)
    .bind(Json(&task.requirement_refs))
    .bind(Json(&task.dependencies))
    .bind(now)
    .bind(Json(&task.checks))
    .fetch_one(&mut *tx)
    .await
}

impl Store {
    /// Records a plan's tasks in one transaction: all of them or none.
    pub async fn insert_implementation_tasks(
        &self,
        spec_task_id: &SpecTaskId,
        tasks: &[NewImplementationTask],
        actor: &str,
    ) -> StoreResult<Vec<SpecTaskImplementationTask>> {
        let now = now();
        let ids: Vec<_> = tasks
            .iter()
            .map(|_| ImplementationTaskId::from_ulid(self.ids.next()))
            .collect();
        let rows: Vec<ImplementationTaskRow> = self
            .write(async |tx| {
                let mut rows = Vec::with_capacity(tasks.len());
                for (id, task) in ids.iter().zip(tasks) {
                    rows.push(insert_implementation_task(&mut *tx, spec_task_id, id, task, now).await?);
                    let event = NewEvent {
                        spec_task_id: Some(spec_task_id.clone()),
                        kind: EventKind::ImplementationTaskCreated,
                        entity_id: id.to_string(),
                        actor: actor.to_owned(),
                        payload: json!({ "key": task.key, "title": task.title, "index": task.index }),
                    };
                    append_event(&mut *tx, &event, now).await?;
                }
                Ok(rows)
            })
            .await?;
        rows.into_iter()
            .map(SpecTaskImplementationTask::try_from)
            .collect()
    }

    pub async fn get_implementation_task(
        &self,
        id: &ImplementationTaskId,
    ) -> StoreResult<SpecTaskImplementationTask> {
        IMPLEMENTATION_TASKS.get(&self.backend, id.as_str()).await
    }

    /// The task's implementation tasks in plan order.
    pub async fn list_implementation_tasks(
        &self,
        spec_task_id: &SpecTaskId,
    ) -> StoreResult<Vec<SpecTaskImplementationTask>> {
        IMPLEMENTATION_TASKS
            .of_task(&self.backend, spec_task_id)
            .await
    }
}
