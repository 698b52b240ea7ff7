//! Review comments on the planning documents.

use chrono::{DateTime, Utc};
use serde_json::json;
use spectask_domain::{
    EventKind, NewEvent, SpecComment, SpecCommentId, SpecDocument, SpecTaskId, SpecTaskStatus,
};

use crate::Store;
use crate::backend::Dialect;
use crate::db::{query_as, query_scalar};
use crate::error::{StoreError, StoreResult};
use crate::events::append_event;
use crate::ids::now;
use crate::revisions::latest_revision;
use crate::rows::Table;

/// A comment to record.
#[derive(Debug, Clone)]
pub struct NewComment {
    pub document: SpecDocument,
    pub quoted_text: Option<String>,
    pub line: Option<i32>,
    pub comment: String,
    pub created_by: String,
}

pub(crate) const COMMENT_COLUMNS: &str = "id, spec_task_id, document, quoted_text, line, comment, \
    revision, resolved, resolved_in_revision, created_by, created_at, resolved_at";

const COMMENTS: Table<CommentRow> = Table::new("spec_comments", COMMENT_COLUMNS, "comment", "id");

#[derive(sqlx::FromRow)]
pub(crate) struct CommentRow {
    id: String,
    spec_task_id: String,
    document: String,
    quoted_text: Option<String>,
    line: Option<i32>,
    comment: String,
    revision: i32,
    resolved: bool,
    resolved_in_revision: Option<i32>,
    created_by: String,
    created_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
}

impl TryFrom<CommentRow> for SpecComment {
    type Error = StoreError;
    fn try_from(row: CommentRow) -> StoreResult<Self> {
        const T: &str = "spec_comments";
        Ok(SpecComment {
            id: SpecCommentId::parse(&row.id).map_err(|e| StoreError::corrupt(T, e))?,
            spec_task_id: SpecTaskId::parse(&row.spec_task_id)
                .map_err(|e| StoreError::corrupt(T, e))?,
            document: row.document.parse()?,
            quoted_text: row.quoted_text,
            line: row.line,
            comment: row.comment,
            revision: row.revision,
            resolved: row.resolved,
            resolved_in_revision: row.resolved_in_revision,
            created_by: row.created_by,
            created_at: row.created_at,
            resolved_at: row.resolved_at,
        })
    }
}

impl Store {
    /// Records a comment on the task's current revision. Only a task under review takes comments:
    /// the documents are stable then, so the anchor stays meaningful.
    pub async fn add_comment(
        &self,
        spec_task_id: &SpecTaskId,
        new: &NewComment,
    ) -> StoreResult<SpecComment> {
        let id = SpecCommentId::from_ulid(self.ids.next());
        let now = now();
        let row: CommentRow = self.write(async |tx| {
            let lock = if tx.dialect() == Dialect::Postgres {
                " FOR SHARE"
            } else {
                ""
            };
            let status: Option<String> = query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT status FROM spec_tasks WHERE id = $1{lock}"
            )))
            .bind(spec_task_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let status: SpecTaskStatus = status
                .ok_or_else(|| StoreError::not_found("spec task", spec_task_id))?
                .parse()?;
            if status != SpecTaskStatus::SpecReview {
                return Err(StoreError::Conflict(format!(
                    "comments are taken while the specs are in review; the task is in `{status}`"
                )));
            }
            let revision = latest_revision(&mut *tx, spec_task_id).await?.ok_or_else(|| {
                StoreError::Conflict("the task has no specs to comment on".into())
            })?;
            let row = query_as(sqlx::AssertSqlSafe(format!(
                "INSERT INTO spec_comments (id, spec_task_id, document, quoted_text, line, comment, revision, \
                 resolved, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE, $8, $9) \
                 RETURNING {COMMENT_COLUMNS}"
            )))
            .bind(id.as_str())
            .bind(spec_task_id.as_str())
            .bind(new.document.as_str())
            .bind(&new.quoted_text)
            .bind(new.line)
            .bind(&new.comment)
            .bind(revision)
            .bind(&new.created_by)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let event = NewEvent {
                spec_task_id: Some(spec_task_id.clone()),
                kind: EventKind::CommentCreated,
                entity_id: id.to_string(),
                actor: new.created_by.clone(),
                payload: json!({ "document": new.document, "revision": revision }),
            };
            append_event(&mut *tx, &event, now).await?;
            Ok(row)
        })
        .await?;
        row.try_into()
    }

    /// The task's comments, oldest first.
    pub async fn list_comments(&self, spec_task_id: &SpecTaskId) -> StoreResult<Vec<SpecComment>> {
        COMMENTS.of_task(&self.backend, spec_task_id).await
    }
}
