//! Imported specs: a task created directly in `spec_review` with revision 1 from documents
//! written elsewhere (a Kiro or spec-kit folder), in one transaction: the task row (in `backlog`,
//! then moved by the table's `import_specs` event), the revision, the task's current documents,
//! the layout and source, and their events.

use serde_json::json;
use spectask_domain::{
    EventKind, NewEvent, NewSpecTask, SpecLayout, SpecRevision, SpecTask, SpecTaskEvent, SpecTaskId,
};

use crate::Store;
use crate::db::{query, query_scalar};
use crate::error::StoreResult;
use crate::events::append_event;
use crate::ids::now;
use crate::spec_tasks::insert_spec_task;
use crate::transition::apply_event;

/// Three documents as another tool wrote them, already checked by the caller
/// (`spectask_domain::check_imported_specs`), and where they came from.
#[derive(Debug, Clone)]
pub struct ImportedSpecs {
    pub format: SpecLayout,
    /// A path or a label, as the importer gave it.
    pub source: String,
    pub requirements_spec: String,
    pub technical_design: String,
    pub implementation_plan: String,
}

impl Store {
    /// Creates task `new` with `specs` as its revision 1, in `spec_review`: one transaction
    /// records `spec_task.created` (with the layout and source), the `import_specs` status change
    /// and `revision.created`.
    pub async fn import_spec_task(
        &self,
        new: &NewSpecTask,
        specs: &ImportedSpecs,
    ) -> StoreResult<(SpecTask, SpecRevision)> {
        let id = SpecTaskId::from_ulid(self.ids.next());
        let now = now();
        let imported = json!({ "format": specs.format, "source": specs.source });
        let revision = self
            .write(async |tx| {
                insert_spec_task(&mut *tx, &id, new, json!({ "imported": imported }), now).await?;
                apply_event(
                    &mut *tx,
                    id.as_str(),
                    SpecTaskEvent::ImportSpecs,
                    &new.created_by,
                    now,
                )
                .await?;
                let revision: i32 = query_scalar(
                    "INSERT INTO spec_revisions (spec_task_id, revision, requirements_spec, technical_design, \
                     implementation_plan, feedback, interaction_id, created_at) \
                     VALUES ($1, 1, $2, $3, $4, NULL, NULL, $5) RETURNING revision",
                )
                .bind(id.as_str())
                .bind(&specs.requirements_spec)
                .bind(&specs.technical_design)
                .bind(&specs.implementation_plan)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                query(
                    "UPDATE spec_tasks SET requirements_spec = $1, technical_design = $2, \
                     implementation_plan = $3, import_format = $4, import_source = $5, updated_at = $6 \
                     WHERE id = $7",
                )
                .bind(&specs.requirements_spec)
                .bind(&specs.technical_design)
                .bind(&specs.implementation_plan)
                .bind(specs.format.as_str())
                .bind(&specs.source)
                .bind(now)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
                let created = NewEvent {
                    spec_task_id: Some(id.clone()),
                    kind: EventKind::RevisionCreated,
                    entity_id: id.to_string(),
                    actor: new.created_by.clone(),
                    payload: json!({ "revision": revision, "imported": imported }),
                };
                append_event(&mut *tx, &created, now).await?;
                Ok(revision)
            })
            .await?;
        Ok((
            self.get_spec_task(&id).await?,
            self.get_revision(&id, revision).await?,
        ))
    }
}
