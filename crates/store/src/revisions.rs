//! Spec revisions: every planning output, numbered, with the task's current documents kept equal
//! to the newest one.

use chrono::{DateTime, Utc};
use serde_json::json;
use spectask_domain::{EventKind, InteractionId, NewEvent, SpecRevision, SpecTaskId};

use crate::Store;
use crate::db::{Exec, query, query_as, query_scalar};
use crate::error::{StoreError, StoreResult};
use crate::events::append_event;
use crate::ids::now;

/// The three documents of a planning output.
#[derive(Debug, Clone)]
pub struct NewRevision {
    pub requirements_spec: String,
    pub technical_design: String,
    pub implementation_plan: String,
    pub feedback: Option<String>,
    pub interaction_id: Option<InteractionId>,
}

/// A revision without its documents, for listings.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionSummary {
    pub revision: i32,
    pub feedback: Option<String>,
    pub interaction_id: Option<InteractionId>,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct RevisionSummaryRow {
    revision: i32,
    feedback: Option<String>,
    interaction_id: Option<String>,
    created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct RevisionRow {
    spec_task_id: String,
    revision: i32,
    requirements_spec: String,
    technical_design: String,
    implementation_plan: String,
    feedback: Option<String>,
    interaction_id: Option<String>,
    created_at: DateTime<Utc>,
}

impl TryFrom<RevisionRow> for SpecRevision {
    type Error = StoreError;
    fn try_from(row: RevisionRow) -> StoreResult<Self> {
        const T: &str = "spec_revisions";
        Ok(SpecRevision {
            spec_task_id: SpecTaskId::parse(&row.spec_task_id)
                .map_err(|e| StoreError::corrupt(T, e))?,
            revision: row.revision,
            requirements_spec: row.requirements_spec,
            technical_design: row.technical_design,
            implementation_plan: row.implementation_plan,
            feedback: row.feedback,
            interaction_id: row
                .interaction_id
                .map(|id| InteractionId::parse(&id))
                .transpose()
                .map_err(|e| StoreError::corrupt(T, e))?,
            created_at: row.created_at,
        })
    }
}

/// The newest revision number of `task`, if any, read on `on` (a pool or an open transaction).
pub(crate) async fn latest_revision<'e>(
    on: impl Into<Exec<'e>>,
    task: &SpecTaskId,
) -> StoreResult<Option<i32>> {
    query_scalar("SELECT MAX(revision) FROM spec_revisions WHERE spec_task_id = $1")
        .bind(task.as_str())
        .fetch_one(on)
        .await
}

impl Store {
    /// Records the next revision and makes its documents the task's current ones, atomically.
    pub async fn add_revision(
        &self,
        spec_task_id: &SpecTaskId,
        new: &NewRevision,
        actor: &str,
    ) -> StoreResult<SpecRevision> {
        let now = now();
        let row: RevisionRow = self
            .write(async |tx| {
            // Touching the task first locks its row (PostgreSQL) so concurrent revisions of one
            // task number themselves one after the other.
            let updated = query(
                "UPDATE spec_tasks SET requirements_spec = $1, technical_design = $2, \
                 implementation_plan = $3, updated_at = $4 WHERE id = $5",
            )
            .bind(&new.requirements_spec)
            .bind(&new.technical_design)
            .bind(&new.implementation_plan)
            .bind(now)
            .bind(spec_task_id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Err(StoreError::not_found("spec task", spec_task_id));
            }
            let row: RevisionRow = query_as(
                "INSERT INTO spec_revisions (spec_task_id, revision, requirements_spec, technical_design, \
                 implementation_plan, feedback, interaction_id, created_at) \
                 VALUES ($1, (SELECT COALESCE(MAX(revision), 0) + 1 FROM spec_revisions WHERE spec_task_id = $1), \
                 $2, $3, $4, $5, $6, $7) \
                 RETURNING spec_task_id, revision, requirements_spec, technical_design, implementation_plan, \
                 feedback, interaction_id, created_at",
            )
            .bind(spec_task_id.as_str())
            .bind(&new.requirements_spec)
            .bind(&new.technical_design)
            .bind(&new.implementation_plan)
            .bind(&new.feedback)
            .bind(new.interaction_id.as_ref().map(|id| id.as_str()))
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let event = NewEvent {
                spec_task_id: Some(spec_task_id.clone()),
                kind: EventKind::RevisionCreated,
                entity_id: spec_task_id.to_string(),
                actor: actor.to_owned(),
                payload: json!({ "revision": row.revision }),
            };
            append_event(&mut *tx, &event, now).await?;
            Ok(row)
        })
        .await?;
        row.try_into()
    }

    /// The task's revisions, oldest first, without documents.
    pub async fn list_revisions(
        &self,
        spec_task_id: &SpecTaskId,
    ) -> StoreResult<Vec<RevisionSummary>> {
        let rows: Vec<RevisionSummaryRow> = query_as(
            "SELECT revision, feedback, interaction_id, created_at FROM spec_revisions \
             WHERE spec_task_id = $1 ORDER BY revision",
        )
        .bind(spec_task_id.as_str())
        .fetch_all(self.backend.reader())
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(RevisionSummary {
                    revision: row.revision,
                    feedback: row.feedback,
                    interaction_id: row
                        .interaction_id
                        .map(|id| InteractionId::parse(&id))
                        .transpose()
                        .map_err(|e| StoreError::corrupt("spec_revisions", e))?,
                    created_at: row.created_at,
                })
            })
            .collect()
    }

    /// One revision with its documents.
    pub async fn get_revision(
        &self,
        spec_task_id: &SpecTaskId,
        revision: i32,
    ) -> StoreResult<SpecRevision> {
        let row: Option<RevisionRow> = query_as(
            "SELECT spec_task_id, revision, requirements_spec, technical_design, implementation_plan, \
             feedback, interaction_id, created_at FROM spec_revisions \
             WHERE spec_task_id = $1 AND revision = $2",
        )
        .bind(spec_task_id.as_str())
        .bind(revision)
        .fetch_optional(self.backend.reader())
        .await?;
        row.ok_or_else(|| StoreError::not_found("revision", format!("{spec_task_id}#{revision}")))?
            .try_into()
    }

    /// The newest revision number, if any.
    pub async fn latest_revision_number(
        &self,
        spec_task_id: &SpecTaskId,
    ) -> StoreResult<Option<i32>> {
        latest_revision(self.backend.reader(), spec_task_id).await
    }
}
