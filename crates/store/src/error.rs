//! The store's one error type. Constraint violations are mapped to domain meanings here, by
//! constraint name, so callers never see database text.

use spectask_domain::{ParseEnumError, TransitionError};

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No row with that id.
    #[error("{entity} `{id}` not found")]
    NotFound { entity: &'static str, id: String },
    /// The transition table forbids the change from the current status.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The row changed concurrently or is in a state that refuses the operation.
    #[error("{0}")]
    Conflict(String),
    /// A decision named the revision it was made on (`expected`), but another revision is the
    /// latest (`latest`): the reviewer decided on something they were not shown.
    #[error(
        "revision {expected} is on screen but revision {latest} is the latest; review revision {latest}"
    )]
    StaleRevision { expected: i32, latest: i32 },
    /// A uniqueness rule of the schema was hit (named by the rule, not by SQL).
    #[error("{0}")]
    Duplicate(String),
    /// A worker's claim on a turn is gone (its lease expired and another worker took the turn, or
    /// the turn was cancelled): the worker must stop and write nothing more.
    #[error("the claim on turn `{0}` was lost")]
    ClaimLost(String),
    /// The URL names no supported database.
    #[error("unsupported database url `{0}`: expected sqlite://… or postgres://…")]
    UnsupportedUrl(String),
    /// A stored value does not decode into the domain (a bug or a hand-edited row).
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// The commit of the group that held this write failed (the write is not stored).
    #[error("the write was not committed: {0}")]
    CommitFailed(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    pub(crate) fn not_found(entity: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    /// The database could not be reached (pool exhausted or closed, connection lost): the
    /// request may succeed later.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
            ) | StoreError::CommitFailed(_)
        )
    }

    pub(crate) fn corrupt(table: &'static str, detail: impl ToString) -> Self {
        Self::Corrupt {
            table,
            detail: detail.to_string(),
        }
    }
}

/// The uniqueness rules of the schema, by constraint name (PostgreSQL) or column list (SQLite,
/// whose messages name columns, not constraints).
const UNIQUE_RULES: &[(&str, &str, &str)] = &[
    (
        "spec_task_work_sessions_helix_session_id_key",
        "spec_task_work_sessions.helix_session_id",
        "the Helix session already belongs to a work session",
    ),
    (
        "spec_task_work_sessions_spawned_name_key",
        "spec_task_work_sessions.spawned_by_session_id, spec_task_work_sessions.name",
        "this work session already spawned a work session of that name",
    ),
    (
        "spec_task_zed_threads_work_session_id_key",
        "spec_task_zed_threads.work_session_id",
        "the work session already has a Zed thread",
    ),
    (
        "spec_task_zed_threads_spec_task_id_zed_thread_id_key",
        "spec_task_zed_threads.spec_task_id, spec_task_zed_threads.zed_thread_id",
        "the Zed thread id is already used in this spec task",
    ),
    (
        "spec_task_implementation_tasks_key_key",
        "spec_task_implementation_tasks.spec_task_id, spec_task_implementation_tasks.task_key",
        "an implementation task with that key already exists",
    ),
    (
        "spec_task_implementation_tasks_index_key",
        "spec_task_implementation_tasks.spec_task_id, spec_task_implementation_tasks.task_index",
        "an implementation task with that index already exists",
    ),
    (
        "spec_revisions_pkey",
        "spec_revisions.spec_task_id, spec_revisions.revision",
        "that revision number already exists",
    ),
    (
        "turns_one_running_per_session",
        "turns.session_id",
        "the session already has a running turn",
    ),
    (
        "interactions_session_seq_key",
        "interactions.session_id, interactions.seq",
        "that interaction position already exists",
    ),
];

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err
            && db.is_unique_violation()
        {
            let constraint = db.constraint().unwrap_or_default();
            let message = db.message();
            for (name, sqlite_columns, meaning) in UNIQUE_RULES {
                if constraint == *name || message.ends_with(sqlite_columns) {
                    return StoreError::Duplicate((*meaning).to_owned());
                }
            }
        }
        StoreError::Database(err)
    }
}

impl From<ParseEnumError> for StoreError {
    fn from(err: ParseEnumError) -> Self {
        StoreError::corrupt("row", err)
    }
}
