//! Starting implementation: the instance id, one work session per planned top-level task, and
//! the plan's tasks assigned to them, in one transaction.

use serde_json::json;
use spectask_domain::{
    ImplementationTaskEvent, NewEvent, SessionRole, SpecTaskEvent, SpecTaskId, SpecTaskStatus,
    SpecTaskWorkSession, WorkSessionId,
};

use super::WorkSessionPlan;
use crate::Store;
use crate::db::{query, query_scalar};
use crate::error::StoreResult;
use crate::events::append_event;
use crate::ids::now;
use crate::sessions::insert_session;
use crate::spec_tasks::lock_spec_task;
use crate::transition::apply_event;

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
        self.write(async |tx| {
            let status = lock_spec_task(&mut *tx, id).await?;
            match status {
                SpecTaskStatus::ImplementationQueued => {
                    apply_event(
                        &mut *tx,
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
                .execute(&mut *tx)
                .await?;
            let existing: i64 = query_scalar(
                "SELECT COUNT(*) FROM spec_task_work_sessions WHERE spec_task_id = $1 AND phase = 'implementation' AND parent_work_session_id IS NULL",
            )
            .bind(id.as_str())
            .fetch_one(&mut *tx)
            .await?;
            if existing == 0 {
                for plan in plans {
                    let session = insert_session(
                        &mut *tx,
                        &self.ids,
                        id,
                        SessionRole::Implementation,
                        &plan.name,
                        now,
                    )
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
                    .execute(&mut *tx)
                    .await?;
                    let created = NewEvent {
                        spec_task_id: Some(id.clone()),
                        kind: spectask_domain::EventKind::WorkSessionCreated,
                        entity_id: ws.to_string(),
                        actor: actor.to_owned(),
                        payload: json!({ "name": plan.name, "helix_session_id": session, "implementation_task_index": plan.task_index }),
                    };
                    append_event(&mut *tx, &created, now).await?;
                    for task in &plan.implementation_task_ids {
                        apply_event(
                            &mut *tx,
                            task.as_str(),
                            ImplementationTaskEvent::Assign,
                            actor,
                            now,
                        )
                        .await?;
                        query("UPDATE spec_task_implementation_tasks SET assigned_work_session_id = $1 WHERE id = $2")
                            .bind(ws.as_str())
                            .bind(task.as_str())
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            Ok(())
        }).await?;
        self.list_work_sessions(id).await
    }
}
