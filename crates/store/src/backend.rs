//! The two databases and how to reach them.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::{StoreError, StoreResult};

/// Pool sizes and timeouts.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// PostgreSQL connections, and SQLite read connections (SQLite writes use one connection).
    pub max_connections: u32,
    /// How long a request waits for a free connection.
    pub acquire_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// A connected database.
#[derive(Debug)]
pub enum Backend {
    /// SQLite allows one writer at a time; sending every write through a single connection
    /// serialises them in the pool instead of failing with `SQLITE_BUSY`, while reads run in
    /// parallel on the reader pool (WAL mode).
    Sqlite {
        writer: SqlitePool,
        reader: SqlitePool,
    },
    Postgres(PgPool),
}

/// Which SQL dialect a block is being expanded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// Opening a transaction that writes.
///
/// On PostgreSQL a write transaction takes the event-order advisory lock
/// ([`crate::events::EVENT_LOCK_KEY`]) before anything else. Taking it later, when the first
/// event is appended, deadlocks: a writer holding a row lock waits for the event lock while the
/// holder of the event lock waits for that row. Taken first, the event lock orders writers before
/// they lock any row, as SQLite's single writer does.
pub(crate) trait WritePool {
    type Db: sqlx::Database;

    fn begin_write(
        &self,
    ) -> impl Future<Output = StoreResult<sqlx::Transaction<'static, Self::Db>>> + Send;
}

impl WritePool for SqlitePool {
    type Db = sqlx::Sqlite;

    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.begin().await?)
    }
}

impl WritePool for PgPool {
    type Db = sqlx::Postgres;

    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(crate::events::EVENT_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

/// Expands `$body` once per backend with `$w` (the pool for writes), `$r` (the pool for reads)
/// and `$d` (the [`Dialect`]) bound.
macro_rules! on_backend {
    ($backend:expr, |$w:ident, $r:ident, $d:ident| $body:expr) => {
        match $backend {
            $crate::backend::Backend::Sqlite { writer, reader } => {
                #[allow(unused_variables)]
                let ($w, $r, $d) = (writer, reader, $crate::backend::Dialect::Sqlite);
                $body
            }
            $crate::backend::Backend::Postgres(pool) => {
                #[allow(unused_variables)]
                let ($w, $r, $d) = (pool, pool, $crate::backend::Dialect::Postgres);
                $body
            }
        }
    };
}
pub(crate) use on_backend;

impl Backend {
    pub(crate) async fn connect(url: &str, options: ConnectOptions) -> StoreResult<Self> {
        if url.starts_with("sqlite:") {
            let base = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit acknowledged to a client survives power loss, not only a crash.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(base.clone())
                .await?;
            let reader = SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(options.acquire_timeout)
                .connect_with(base.read_only(true))
                .await?;
            Ok(Backend::Sqlite { writer, reader })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections.max(2))
                .acquire_timeout(options.acquire_timeout)
                .connect(url)
                .await?;
            Ok(Backend::Postgres(pool))
        } else {
            Err(StoreError::UnsupportedUrl(url.to_owned()))
        }
    }

    pub(crate) async fn migrate(&self) -> StoreResult<()> {
        match self {
            Backend::Sqlite { writer, .. } => {
                sqlx::migrate!("migrations/sqlite").run(writer).await?
            }
            Backend::Postgres(pool) => sqlx::migrate!("migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    pub(crate) async fn ping(&self) -> StoreResult<()> {
        on_backend!(self, |w, r, d| {
            sqlx::query("SELECT 1").execute(r).await?;
        });
        Ok(())
    }

    pub(crate) async fn close(&self) {
        match self {
            Backend::Sqlite { writer, reader } => {
                reader.close().await;
                writer.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }
}
