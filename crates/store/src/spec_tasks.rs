//! SpecTasks: create, read, list, partial update, archive, delete. Status changes go through
//! [`crate::transition`], never through here.

use chrono::{DateTime, Utc};
use serde_json::json;
use spectask_domain::{
    EventKind, NewEvent, NewSpecTask, Priority, SpecTask, SpecTaskId, SpecTaskStatus, TaskType,
};
use sqlx::types::Json;

use crate::Store;
use crate::backend::Dialect;
use crate::db::{Tx, query, query_as, query_scalar};
use crate::error::{StoreError, StoreResult};
use crate::events::append_event;
use crate::ids::now;
use crate::rows::{SPEC_TASK_COLUMNS, SPEC_TASKS, SpecTaskRow};

/// Filters and page of a listing. Order is always newest first (`created_at desc`, then id).
#[derive(Debug, Clone, Default)]
pub struct SpecTaskFilter {
    pub status: Option<SpecTaskStatus>,
    pub task_type: Option<TaskType>,
    pub priority: Option<Priority>,
    /// Case-insensitive substring of the name or the original prompt.
    pub q: Option<String>,
    /// `Some(false)`: live tasks only; `Some(true)`: archived only; `None`: both.
    pub archived: Option<bool>,
    pub limit: i64,
    pub offset: i64,
}

/// One page of a listing and the number of tasks matching the filter.
#[derive(Debug, Clone)]
pub struct SpecTaskPage {
    pub items: Vec<SpecTask>,
    pub total: i64,
}

/// The user-editable fields; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpecTaskPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub priority: Option<Priority>,
    pub task_type: Option<TaskType>,
}

impl SpecTaskPatch {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

enum Bind {
    Text(String),
    Bool(bool),
}

/// Escapes `%`, `_` and `\` so user text matches literally inside `LIKE … ESCAPE '\'`.
fn like_pattern(q: &str) -> String {
    let mut out = String::with_capacity(q.len() + 2);
    out.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Reads the status of SpecTask `id` inside `tx`, locking its row until commit on PostgreSQL, so
/// decisions about one task (admission, the end of a turn) are made one at a time.
pub(crate) async fn lock_spec_task(tx: &mut Tx, id: &SpecTaskId) -> StoreResult<SpecTaskStatus> {
    let lock = tx.dialect().for_update();
    let status: Option<String> = query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT status FROM spec_tasks WHERE id = $1{lock}"
    )))
    .bind(id.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    Ok(status
        .ok_or_else(|| StoreError::not_found("spec task", id))?
        .parse()?)
}

/// Sets (or with `None` clears) SpecTask `id`'s error inside `tx`, touching `updated_at`.
pub(crate) async fn set_spec_task_error(
    tx: &mut Tx,
    id: &SpecTaskId,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    query("UPDATE spec_tasks SET error = $1, updated_at = $2 WHERE id = $3")
        .bind(error)
        .bind(now)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Inserts task `id` in `backlog` inside `tx` and records `spec_task.created`, its payload the
/// name, the status and the fields of `extra` (an object).
pub(crate) async fn insert_spec_task(
    tx: &mut Tx,
    id: &SpecTaskId,
    new: &NewSpecTask,
    extra: serde_json::Value,
    now: DateTime<Utc>,
) -> StoreResult<SpecTaskRow> {
    let mut payload = json!({ "name": new.name, "status": SpecTaskStatus::Backlog });
    if let (Some(payload), serde_json::Value::Object(extra)) = (payload.as_object_mut(), extra) {
        payload.extend(extra);
    }
    let event = NewEvent {
        spec_task_id: Some(id.clone()),
        kind: EventKind::SpecTaskCreated,
        entity_id: id.to_string(),
        actor: new.created_by.clone(),
        payload,
    };
    let row = query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO spec_tasks (id, name, description, type, priority, status, archived, \
         original_prompt, spec_agent, implementation_agent, spec_revision_count, project_path, \
         workspace_config, created_by, created_at, updated_at, name_derived) \
         VALUES ($1, $2, $3, $4, $5, $6, FALSE, $7, $8, $9, 0, $10, $11, $12, $13, $13, $14) \
         RETURNING {SPEC_TASK_COLUMNS}"
    )))
    .bind(id.as_str())
    .bind(&new.name)
    .bind(&new.description)
    .bind(new.task_type.as_str())
    .bind(new.priority.as_str())
    .bind(SpecTaskStatus::Backlog.as_str())
    .bind(&new.original_prompt)
    .bind(&new.spec_agent)
    .bind(&new.implementation_agent)
    .bind(&new.project_path)
    .bind(new.workspace_config.as_ref().map(Json))
    .bind(&new.created_by)
    .bind(now)
    .bind(new.name_derived)
    .fetch_one(&mut *tx)
    .await?;
    append_event(&mut *tx, &event, now).await?;
    Ok(row)
}

impl Store {
    /// Creates a task in `backlog` and records `spec_task.created`.
    pub async fn create_spec_task(&self, new: &NewSpecTask) -> StoreResult<SpecTask> {
        let id = SpecTaskId::from_ulid(self.ids.next());
        let now = now();
        let row: SpecTaskRow = self
            .write(async |tx| insert_spec_task(tx, &id, new, json!({}), now).await)
            .await?;
        row.try_into()
    }

    /// One task by id.
    pub async fn get_spec_task(&self, id: &SpecTaskId) -> StoreResult<SpecTask> {
        SPEC_TASKS.get(&self.backend, id.as_str()).await
    }

    /// A filtered page of tasks, newest first, and the total matching the filter.
    pub async fn list_spec_tasks(&self, filter: &SpecTaskFilter) -> StoreResult<SpecTaskPage> {
        let mut clauses = Vec::new();
        let mut binds = Vec::new();
        let param = |bind: Bind, binds: &mut Vec<Bind>| {
            binds.push(bind);
            format!("${}", binds.len())
        };
        if let Some(status) = filter.status {
            let p = param(Bind::Text(status.as_str().to_owned()), &mut binds);
            clauses.push(format!("status = {p}"));
        }
        if let Some(task_type) = filter.task_type {
            let p = param(Bind::Text(task_type.as_str().to_owned()), &mut binds);
            clauses.push(format!("type = {p}"));
        }
        if let Some(priority) = filter.priority {
            let p = param(Bind::Text(priority.as_str().to_owned()), &mut binds);
            clauses.push(format!("priority = {p}"));
        }
        if let Some(archived) = filter.archived {
            let p = param(Bind::Bool(archived), &mut binds);
            clauses.push(format!("archived = {p}"));
        }
        let q = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
        let like = q.map(like_pattern);
        let where_sql = |d: Dialect, clauses: &[String]| {
            let mut all = clauses.to_vec();
            if like.is_some() {
                // The search pattern is bound last, after the structured filters.
                let n = binds.len() + 1;
                let op = if d == Dialect::Postgres {
                    "ILIKE"
                } else {
                    "LIKE"
                };
                all.push(format!(
                    "(name {op} ${n} ESCAPE '\\' OR original_prompt {op} ${n} ESCAPE '\\')"
                ));
            }
            if all.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", all.join(" AND "))
            }
        };
        let limit = filter
            .limit
            .clamp(1, spectask_domain::limits::MAX_PAGE_LIMIT);
        let offset = filter.offset.max(0);

        let where_clause = where_sql(self.backend.dialect(), &clauses);
        let n = binds.len() + usize::from(like.is_some());
        // SQLite keeps timestamps as text whose width varies; julianday() orders them by time.
        let order = if self.backend.dialect() == Dialect::Postgres {
            "created_at DESC, id DESC"
        } else {
            "julianday(created_at) DESC, id DESC"
        };
        let list_sql = format!(
            "SELECT {SPEC_TASK_COLUMNS} FROM spec_tasks {where_clause} ORDER BY {order} LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let count_sql = format!("SELECT COUNT(*) FROM spec_tasks {where_clause}");
        let mut list = query_as(sqlx::AssertSqlSafe(list_sql));
        let mut count = query_scalar(sqlx::AssertSqlSafe(count_sql));
        for bind in &binds {
            match bind {
                Bind::Text(s) => {
                    list = list.bind(s.clone());
                    count = count.bind(s.clone());
                }
                Bind::Bool(b) => {
                    list = list.bind(*b);
                    count = count.bind(*b);
                }
            }
        }
        if let Some(like) = &like {
            list = list.bind(like.clone());
            count = count.bind(like.clone());
        }
        // One read transaction, so the page and the total see the same snapshot.
        let mut tx = self.backend.begin_read().await?;
        let rows: Vec<SpecTaskRow> = list.bind(limit).bind(offset).fetch_all(&mut tx).await?;
        let total: i64 = count.fetch_one(&mut tx).await?;
        tx.commit().await?;
        let items = rows
            .into_iter()
            .map(SpecTask::try_from)
            .collect::<StoreResult<_>>()?;
        Ok(SpecTaskPage { items, total })
    }

    /// Applies the given fields. Refused on an archived task.
    pub async fn update_spec_task(
        &self,
        id: &SpecTaskId,
        patch: &SpecTaskPatch,
        actor: &str,
    ) -> StoreResult<SpecTask> {
        let now = now();
        let updated: Option<SpecTaskRow> = self
            .write(async |tx| {
                let lock = tx.dialect().for_update();
                let current: Option<SpecTaskRow> = query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {SPEC_TASK_COLUMNS} FROM spec_tasks WHERE id = $1{lock}"
                )))
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let current = SpecTask::try_from(
                    current.ok_or_else(|| StoreError::not_found("spec task", id))?,
                )?;
                if current.archived {
                    return Err(StoreError::Conflict(format!(
                        "spec task `{id}` is archived; unarchive it before editing"
                    )));
                }
                let mut changes = serde_json::Map::new();
                let name = patch.name.clone().unwrap_or_else(|| current.name.clone());
                let description = patch
                    .description
                    .clone()
                    .unwrap_or_else(|| current.description.clone());
                let priority = patch.priority.unwrap_or(current.priority);
                let task_type = patch.task_type.unwrap_or(current.task_type);
                if name != current.name {
                    changes.insert("name".into(), json!({"from": current.name, "to": name}));
                }
                if description != current.description {
                    changes.insert("description".into(), json!({"changed": true}));
                }
                if priority != current.priority {
                    changes.insert(
                        "priority".into(),
                        json!({"from": current.priority, "to": priority}),
                    );
                }
                if task_type != current.task_type {
                    changes.insert(
                        "type".into(),
                        json!({"from": current.task_type, "to": task_type}),
                    );
                }
                if changes.is_empty() {
                    // Nothing to change: the transaction ends having written nothing.
                    return Ok(None);
                }
                let row: SpecTaskRow = query_as(sqlx::AssertSqlSafe(format!(
                    "UPDATE spec_tasks SET name = $1, description = $2, priority = $3, type = $4, \
                     updated_at = $5, name_derived = $7 WHERE id = $6 AND archived = FALSE \
                     RETURNING {SPEC_TASK_COLUMNS}"
                )))
                .bind(&name)
                .bind(&description)
                .bind(priority.as_str())
                .bind(task_type.as_str())
                .bind(now)
                .bind(id.as_str())
                .bind(current.name_derived && patch.name.is_none())
                .fetch_one(&mut *tx)
                .await?;
                let event = NewEvent {
                    spec_task_id: Some(id.clone()),
                    kind: EventKind::SpecTaskUpdated,
                    entity_id: id.to_string(),
                    actor: actor.to_owned(),
                    payload: json!({ "changes": changes }),
                };
                append_event(&mut *tx, &event, now).await?;
                Ok(Some(row))
            })
            .await?;
        match updated {
            None => self.get_spec_task(id).await,
            Some(row) => row.try_into(),
        }
    }

    /// Archives (`true`) or unarchives (`false`) a task; a no-op request is a conflict, so of
    /// two concurrent archive calls exactly one succeeds.
    pub async fn set_archived(
        &self,
        id: &SpecTaskId,
        archived: bool,
        actor: &str,
    ) -> StoreResult<SpecTask> {
        let now = now();
        let kind = if archived {
            EventKind::SpecTaskArchived
        } else {
            EventKind::SpecTaskUnarchived
        };
        let event = NewEvent {
            spec_task_id: Some(id.clone()),
            kind,
            entity_id: id.to_string(),
            actor: actor.to_owned(),
            payload: json!({ "archived": archived }),
        };
        let changed: Option<SpecTaskRow> = self
            .write(async |tx| {
                let row: Option<SpecTaskRow> = query_as(sqlx::AssertSqlSafe(format!(
                    "UPDATE spec_tasks SET archived = $1, updated_at = $2 \
                 WHERE id = $3 AND archived = $4 RETURNING {SPEC_TASK_COLUMNS}"
                )))
                .bind(archived)
                .bind(now)
                .bind(id.as_str())
                .bind(!archived)
                .fetch_optional(&mut *tx)
                .await?;
                if row.is_some() {
                    append_event(&mut *tx, &event, now).await?;
                }
                Ok(row)
            })
            .await?;
        match changed {
            Some(row) => row.try_into(),
            None => {
                // Tell a missing task from one already in the requested state.
                self.get_spec_task(id).await?;
                let state = if archived {
                    "already archived"
                } else {
                    "not archived"
                };
                Err(StoreError::Conflict(format!("spec task `{id}` is {state}")))
            }
        }
    }

    /// Of the agent instances `instance_ids`, those whose task has ended: deleted, archived, done,
    /// or failed (`spec_failed`, `implementation_failed`). Their agent processes have nothing
    /// left to do; a retried task starts its instance again on the next dispatch.
    pub async fn ended_instances(&self, instance_ids: &[String]) -> StoreResult<Vec<String>> {
        // One read per chunk of ids rather than one per instance: the worker asks every tick.
        const CHUNK: usize = 500;
        let mut live: std::collections::HashSet<String> = std::collections::HashSet::new();
        for chunk in instance_ids.chunks(CHUNK) {
            let sql = format!(
                "SELECT zed_instance_id, status, archived FROM spec_tasks WHERE zed_instance_id IN {}",
                crate::db::value_rows(1, chunk.len(), 0)
            );
            let mut statement = query_as::<(String, String, bool)>(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                statement = statement.bind(id.as_str());
            }
            for (instance_id, status, archived) in
                statement.fetch_all(self.backend.reader()).await?
            {
                let ended = archived
                    || matches!(
                        status.parse::<SpecTaskStatus>(),
                        Ok(SpecTaskStatus::Done
                            | SpecTaskStatus::SpecFailed
                            | SpecTaskStatus::ImplementationFailed)
                    );
                if !ended {
                    live.insert(instance_id);
                }
            }
            // A review session's reviewer runs in an instance of its own: live while the
            // session is active and its task is.
            let sql = format!(
                "SELECT w.instance_id FROM spec_task_work_sessions w JOIN spec_tasks s ON s.id = w.spec_task_id \
                 WHERE w.status = 'active' AND s.archived = FALSE AND s.status NOT IN ('done', 'spec_failed', 'implementation_failed') \
                 AND w.instance_id IN {}",
                crate::db::value_rows(1, chunk.len(), 0)
            );
            let mut statement = query_scalar::<String>(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                statement = statement.bind(id.as_str());
            }
            live.extend(statement.fetch_all(self.backend.reader()).await?);
        }
        Ok(instance_ids
            .iter()
            .filter(|id| !live.contains(id.as_str()))
            .cloned()
            .collect())
    }

    /// Deletes a task and, by cascade, its sessions, interactions, work sessions, threads,
    /// implementation tasks and revisions. Its events stay, followed by `spec_task.deleted`.
    pub async fn delete_spec_task(&self, id: &SpecTaskId, actor: &str) -> StoreResult<()> {
        let now = now();
        let event = NewEvent {
            spec_task_id: Some(id.clone()),
            kind: EventKind::SpecTaskDeleted,
            entity_id: id.to_string(),
            actor: actor.to_owned(),
            payload: json!({}),
        };
        self.write(async |tx| {
            let deleted = query("DELETE FROM spec_tasks WHERE id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted == 0 {
                return Err(StoreError::not_found("spec task", id));
            }
            append_event(&mut *tx, &event, now).await?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("a%b_c\\d"), "%a\\%b\\_c\\\\d%");
    }
}
