//! Row shapes as the databases return them, and their checked conversion into domain types.
//! Anything that does not parse (an unknown status, a malformed id) is reported as a corrupt row
//! rather than passed on.

use chrono::{DateTime, Utc};
use spectask_domain::{
    Interaction, InteractionId, OverlapWait, SessionId, SpecTask, SpecTaskId,
    SpecTaskImplementationTask, SpecTaskWorkSession, SpecTaskZedThread, SpecTaskZedThreadId,
    TurnId, WorkSessionId,
};
use sqlx::types::Json;

use std::marker::PhantomData;

use crate::backend::Backend;
use crate::db::{Record, query_as};
use crate::error::{StoreError, StoreResult};

/// A table whose rows (`R`) convert into domain values: what a read by id, or of the rows
/// belonging to something, needs to know. Reads run on the reader pool.
pub(crate) struct Table<R> {
    name: &'static str,
    columns: &'static str,
    /// What a missing row is called in `NotFound`.
    entity: &'static str,
    /// The order listings return rows in.
    order: &'static str,
    row: PhantomData<fn() -> R>,
}

impl<R: Record> Table<R> {
    pub(crate) const fn new(
        name: &'static str,
        columns: &'static str,
        entity: &'static str,
        order: &'static str,
    ) -> Self {
        Self {
            name,
            columns,
            entity,
            order,
            row: PhantomData,
        }
    }

    /// The row whose id is `id`, as a domain value; `NotFound` when there is none.
    pub(crate) async fn get<T>(&self, backend: &Backend, id: &str) -> StoreResult<T>
    where
        T: TryFrom<R, Error = StoreError>,
    {
        let row: Option<R> = query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM {} WHERE id = $1",
            self.columns, self.name
        )))
        .bind(id)
        .fetch_optional(backend.reader())
        .await?;
        row.ok_or_else(|| StoreError::not_found(self.entity, id))?
            .try_into()
    }

    /// The rows whose `column` is `value`, in the table's order, as domain values.
    pub(crate) async fn list<T>(
        &self,
        backend: &Backend,
        column: &'static str,
        value: &str,
    ) -> StoreResult<Vec<T>>
    where
        T: TryFrom<R, Error = StoreError>,
    {
        let rows: Vec<R> = query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM {} WHERE {column} = $1 ORDER BY {}",
            self.columns, self.name, self.order
        )))
        .bind(value)
        .fetch_all(backend.reader())
        .await?;
        rows.into_iter().map(T::try_from).collect()
    }

    /// The rows of SpecTask `task`, in the table's order, as domain values.
    pub(crate) async fn of_task<T>(
        &self,
        backend: &Backend,
        task: &SpecTaskId,
    ) -> StoreResult<Vec<T>>
    where
        T: TryFrom<R, Error = StoreError>,
    {
        self.list(backend, "spec_task_id", task.as_str()).await
    }
}

fn parse_id<T, E: std::fmt::Display>(
    table: &'static str,
    parse: impl Fn(&str) -> Result<T, E>,
    value: &str,
) -> StoreResult<T> {
    parse(value).map_err(|e| StoreError::corrupt(table, e))
}

fn parse_opt_id<T, E: std::fmt::Display>(
    table: &'static str,
    parse: impl Fn(&str) -> Result<T, E>,
    value: Option<String>,
) -> StoreResult<Option<T>> {
    value.map(|v| parse_id(table, &parse, &v)).transpose()
}

fn parse_enum<T: std::str::FromStr<Err = spectask_domain::ParseEnumError>>(
    table: &'static str,
    value: &str,
) -> StoreResult<T> {
    value.parse().map_err(|e| StoreError::corrupt(table, e))
}

pub(crate) const SPEC_TASK_COLUMNS: &str = "id, name, name_derived, description, type, priority, status, archived, \
    original_prompt, requirements_spec, technical_design, implementation_plan, spec_agent, \
    implementation_agent, spec_session_id, implementation_session_id, spec_approved_by, \
    spec_approved_at, spec_approved_revision, spec_revision_count, error, zed_instance_id, project_path, workspace_config, \
    isolation, branch_name, base_branch, base_commit, head_commit, import_format, import_source, created_by, created_at, updated_at, started_at, completed_at";

pub(crate) const SPEC_TASKS: Table<SpecTaskRow> =
    Table::new("spec_tasks", SPEC_TASK_COLUMNS, "spec task", "id");

#[derive(sqlx::FromRow)]
pub(crate) struct SpecTaskRow {
    id: String,
    name: String,
    name_derived: bool,
    description: String,
    #[sqlx(rename = "type")]
    task_type: String,
    priority: String,
    pub(crate) status: String,
    pub(crate) archived: bool,
    original_prompt: String,
    requirements_spec: Option<String>,
    technical_design: Option<String>,
    implementation_plan: Option<String>,
    spec_agent: Option<String>,
    implementation_agent: Option<String>,
    spec_session_id: Option<String>,
    implementation_session_id: Option<String>,
    spec_approved_by: Option<String>,
    spec_approved_at: Option<DateTime<Utc>>,
    spec_approved_revision: Option<i32>,
    spec_revision_count: i32,
    error: Option<String>,
    zed_instance_id: Option<String>,
    project_path: Option<String>,
    workspace_config: Option<Json<serde_json::Value>>,
    isolation: Option<String>,
    branch_name: Option<String>,
    base_branch: Option<String>,
    base_commit: Option<String>,
    head_commit: Option<String>,
    import_format: Option<String>,
    import_source: Option<String>,
    created_by: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
}

impl TryFrom<SpecTaskRow> for SpecTask {
    type Error = StoreError;
    fn try_from(row: SpecTaskRow) -> StoreResult<Self> {
        const T: &str = "spec_tasks";
        Ok(SpecTask {
            id: parse_id(T, SpecTaskId::parse, &row.id)?,
            name: row.name,
            name_derived: row.name_derived,
            description: row.description,
            task_type: parse_enum(T, &row.task_type)?,
            priority: parse_enum(T, &row.priority)?,
            status: parse_enum(T, &row.status)?,
            archived: row.archived,
            original_prompt: row.original_prompt,
            requirements_spec: row.requirements_spec,
            technical_design: row.technical_design,
            implementation_plan: row.implementation_plan,
            spec_agent: row.spec_agent,
            implementation_agent: row.implementation_agent,
            spec_session_id: parse_opt_id(T, SessionId::parse, row.spec_session_id)?,
            implementation_session_id: parse_opt_id(
                T,
                SessionId::parse,
                row.implementation_session_id,
            )?,
            spec_approved_by: row.spec_approved_by,
            spec_approved_at: row.spec_approved_at,
            spec_approved_revision: row.spec_approved_revision,
            spec_revision_count: row.spec_revision_count,
            error: row.error,
            zed_instance_id: row.zed_instance_id,
            project_path: row.project_path,
            workspace_config: row.workspace_config.map(|j| j.0),
            isolation: row
                .isolation
                .as_deref()
                .map(|v| parse_enum(T, v))
                .transpose()?,
            branch_name: row.branch_name,
            base_branch: row.base_branch,
            base_commit: row.base_commit,
            head_commit: row.head_commit,
            import_format: row
                .import_format
                .as_deref()
                .map(|v| parse_enum(T, v))
                .transpose()?,
            import_source: row.import_source,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
            started_at: row.started_at,
            completed_at: row.completed_at,
        })
    }
}

pub(crate) const INTERACTION_COLUMNS: &str = "id, session_id, seq, prompt_message, response_message, \
    state, error, entry_count, created_at, updated_at, completed_at";

/// [`INTERACTION_COLUMNS`] for reading stored interactions: the reply of one still streaming is
/// its `response_message` followed by its pieces (`interaction_reply_pieces`, see
/// `entries::append_outputs`). `string_agg` with `ORDER BY` is on both databases (SQLite 3.44).
pub(crate) const INTERACTION_READ_COLUMNS: &str = "id, session_id, seq, prompt_message, \
    response_message || COALESCE((SELECT string_agg(p.text, '' ORDER BY p.seq) \
        FROM interaction_reply_pieces p WHERE p.interaction_id = interactions.id), '') \
        AS response_message, \
    state, error, entry_count, created_at, updated_at, completed_at";

#[derive(sqlx::FromRow)]
pub(crate) struct InteractionRow {
    id: String,
    session_id: String,
    seq: i32,
    prompt_message: String,
    response_message: String,
    state: String,
    error: Option<String>,
    entry_count: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
}

impl TryFrom<InteractionRow> for Interaction {
    type Error = StoreError;
    fn try_from(row: InteractionRow) -> StoreResult<Self> {
        const T: &str = "interactions";
        Ok(Interaction {
            id: parse_id(T, InteractionId::parse, &row.id)?,
            session_id: parse_id(T, SessionId::parse, &row.session_id)?,
            seq: row.seq,
            prompt_message: row.prompt_message,
            response_message: row.response_message,
            state: parse_enum(T, &row.state)?,
            error: row.error,
            entry_count: row.entry_count,
            created_at: row.created_at,
            updated_at: row.updated_at,
            completed_at: row.completed_at,
        })
    }
}

pub(crate) const WORK_SESSION_COLUMNS: &str = "id, spec_task_id, helix_session_id, name, description, \
    phase, status, implementation_task_title, implementation_task_description, \
    implementation_task_index, parent_work_session_id, spawned_by_session_id, agent_config, \
    environment_config, created_at, started_at, completed_at, error, agent_summary, agent_gave_up, \
    branch_name, worktree_path, base_commit, head_commit, merge_attempts, conflict_files, \
    waiting_for, overlap_wait_with, overlap_wait_path, overlap_wait_turn, instance_id";

pub(crate) const WORK_SESSIONS: Table<WorkSessionRow> = Table::new(
    "spec_task_work_sessions",
    WORK_SESSION_COLUMNS,
    "work session",
    "id",
);

#[derive(sqlx::FromRow)]
pub(crate) struct WorkSessionRow {
    id: String,
    spec_task_id: String,
    helix_session_id: String,
    name: Option<String>,
    description: Option<String>,
    phase: String,
    status: String,
    implementation_task_title: Option<String>,
    implementation_task_description: Option<String>,
    implementation_task_index: Option<i32>,
    parent_work_session_id: Option<String>,
    spawned_by_session_id: Option<String>,
    agent_config: Option<Json<serde_json::Value>>,
    environment_config: Option<Json<serde_json::Value>>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    error: Option<String>,
    agent_summary: Option<String>,
    agent_gave_up: Option<String>,
    branch_name: Option<String>,
    worktree_path: Option<String>,
    base_commit: Option<String>,
    head_commit: Option<String>,
    merge_attempts: i32,
    /// A JSON array in a TEXT column (on both backends, so not decoded as `Json`, a JSONB).
    conflict_files: Option<String>,
    waiting_for: Option<String>,
    overlap_wait_with: Option<String>,
    overlap_wait_path: Option<String>,
    overlap_wait_turn: Option<String>,
    instance_id: Option<String>,
}

impl TryFrom<WorkSessionRow> for SpecTaskWorkSession {
    type Error = StoreError;
    fn try_from(row: WorkSessionRow) -> StoreResult<Self> {
        const T: &str = "spec_task_work_sessions";
        Ok(SpecTaskWorkSession {
            id: parse_id(T, WorkSessionId::parse, &row.id)?,
            spec_task_id: parse_id(T, SpecTaskId::parse, &row.spec_task_id)?,
            helix_session_id: parse_id(T, SessionId::parse, &row.helix_session_id)?,
            name: row.name,
            description: row.description,
            phase: parse_enum(T, &row.phase)?,
            status: parse_enum(T, &row.status)?,
            implementation_task_title: row.implementation_task_title,
            implementation_task_description: row.implementation_task_description,
            implementation_task_index: row.implementation_task_index,
            parent_work_session_id: parse_opt_id(
                T,
                WorkSessionId::parse,
                row.parent_work_session_id,
            )?,
            spawned_by_session_id: parse_opt_id(
                T,
                WorkSessionId::parse,
                row.spawned_by_session_id,
            )?,
            agent_config: row.agent_config.map(|j| j.0),
            environment_config: row.environment_config.map(|j| j.0),
            created_at: row.created_at,
            started_at: row.started_at,
            completed_at: row.completed_at,
            error: row.error,
            agent_summary: row.agent_summary,
            agent_gave_up: row.agent_gave_up,
            branch_name: row.branch_name,
            worktree_path: row.worktree_path,
            base_commit: row.base_commit,
            head_commit: row.head_commit,
            // Filled by the store's reads that show a work session (`work_sessions.rs`).
            commits: Vec::new(),
            merge_attempts: row.merge_attempts,
            conflict_files: row
                .conflict_files
                .map(|files| serde_json::from_str(&files))
                .transpose()
                .map_err(|err| StoreError::corrupt(T, err))?
                .unwrap_or_default(),
            overlaps: Vec::new(),
            waiting_for: parse_opt_id(T, WorkSessionId::parse, row.waiting_for)?,
            overlap_wait: match (
                row.overlap_wait_with,
                row.overlap_wait_path,
                row.overlap_wait_turn,
            ) {
                (Some(other), Some(path), Some(turn)) => Some(OverlapWait {
                    other_work_session_id: parse_id(T, WorkSessionId::parse, &other)?,
                    path,
                    turn_id: parse_id(T, TurnId::parse, &turn)?,
                }),
                _ => None,
            },
            instance_id: row.instance_id,
        })
    }
}

pub(crate) const ZED_THREAD_COLUMNS: &str = "id, work_session_id, spec_task_id, zed_thread_id, thread_config, status, last_activity_at, created_at";

pub(crate) const ZED_THREADS: Table<ZedThreadRow> = Table::new(
    "spec_task_zed_threads",
    ZED_THREAD_COLUMNS,
    "zed thread",
    "id",
);

#[derive(sqlx::FromRow)]
pub(crate) struct ZedThreadRow {
    id: String,
    work_session_id: String,
    spec_task_id: String,
    zed_thread_id: String,
    thread_config: Option<Json<serde_json::Value>>,
    status: String,
    last_activity_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl TryFrom<ZedThreadRow> for SpecTaskZedThread {
    type Error = StoreError;
    fn try_from(row: ZedThreadRow) -> StoreResult<Self> {
        const T: &str = "spec_task_zed_threads";
        Ok(SpecTaskZedThread {
            id: parse_id(T, SpecTaskZedThreadId::parse, &row.id)?,
            work_session_id: parse_id(T, WorkSessionId::parse, &row.work_session_id)?,
            spec_task_id: parse_id(T, SpecTaskId::parse, &row.spec_task_id)?,
            zed_thread_id: row.zed_thread_id,
            thread_config: row.thread_config.map(|j| j.0),
            status: parse_enum(T, &row.status)?,
            last_activity_at: row.last_activity_at,
            created_at: row.created_at,
        })
    }
}

pub(crate) const IMPLEMENTATION_TASK_COLUMNS: &str = "id, spec_task_id, task_key, title, description, \
    acceptance_criteria, estimated_effort, priority, task_index, phase, parent_key, requirement_refs, checks, \
    dependencies, status, assigned_work_session_id, created_at, completed_at";

pub(crate) const IMPLEMENTATION_TASKS: Table<ImplementationTaskRow> = Table::new(
    "spec_task_implementation_tasks",
    IMPLEMENTATION_TASK_COLUMNS,
    "implementation task",
    "task_index",
);

#[derive(sqlx::FromRow)]
pub(crate) struct ImplementationTaskRow {
    id: String,
    spec_task_id: String,
    task_key: String,
    title: String,
    description: Option<String>,
    acceptance_criteria: Option<String>,
    estimated_effort: Option<String>,
    priority: i32,
    task_index: i32,
    phase: Option<String>,
    parent_key: Option<String>,
    requirement_refs: Json<Vec<String>>,
    checks: Json<Vec<String>>,
    dependencies: Json<Vec<String>>,
    status: String,
    assigned_work_session_id: Option<String>,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
}

impl TryFrom<ImplementationTaskRow> for SpecTaskImplementationTask {
    type Error = StoreError;
    fn try_from(row: ImplementationTaskRow) -> StoreResult<Self> {
        const T: &str = "spec_task_implementation_tasks";
        Ok(SpecTaskImplementationTask {
            id: parse_id(T, spectask_domain::ImplementationTaskId::parse, &row.id)?,
            spec_task_id: parse_id(T, SpecTaskId::parse, &row.spec_task_id)?,
            key: row.task_key,
            title: row.title,
            description: row.description,
            acceptance_criteria: row.acceptance_criteria,
            estimated_effort: row.estimated_effort,
            priority: row.priority,
            index: row.task_index,
            phase: row.phase,
            parent_key: row.parent_key,
            requirement_refs: row.requirement_refs.0,
            checks: row.checks.0,
            dependencies: row.dependencies.0,
            status: parse_enum(T, &row.status)?,
            assigned_work_session_id: parse_opt_id(
                T,
                WorkSessionId::parse,
                row.assigned_work_session_id,
            )?,
            created_at: row.created_at,
            completed_at: row.completed_at,
        })
    }
}
