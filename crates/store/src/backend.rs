//! The two databases and how to reach them.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::db::{Pool, Tx, query};
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

/// Which SQL dialect a statement is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The suffix that locks the rows a `SELECT` reads until commit: PostgreSQL locks rows;
    /// SQLite has one writer, so a write transaction already excludes every other.
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }
}

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
        query("SELECT 1").execute(self.reader()).await?;
        Ok(())
    }

    /// The pool for statements that write outside a transaction.
    pub(crate) fn writer(&self) -> Pool<'_> {
        match self {
            Backend::Sqlite { writer, .. } => Pool::Sqlite(writer),
            Backend::Postgres(pool) => Pool::Postgres(pool),
        }
    }

    /// The pool for reads.
    pub(crate) fn reader(&self) -> Pool<'_> {
        match self {
            Backend::Sqlite { reader, .. } => Pool::Sqlite(reader),
            Backend::Postgres(pool) => Pool::Postgres(pool),
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Backend::Sqlite { .. } => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Opens a transaction that only reads (one consistent snapshot across several statements).
    pub(crate) async fn begin_read(&self) -> StoreResult<Tx> {
        self.reader().begin().await
    }

    /// Opens a transaction that writes but appends no event, so it takes no event lock.
    pub(crate) async fn begin_write_without_events(&self) -> StoreResult<Tx> {
        self.writer().begin().await
    }

    /// Opens a transaction that writes.
    ///
    /// On PostgreSQL a write transaction takes the event-order advisory lock
    /// ([`crate::events::EVENT_LOCK_KEY`]) before anything else. Taking it later, when the first
    /// event is appended, deadlocks: a writer holding a row lock waits for the event lock while
    /// the holder of the event lock waits for that row. Taken first, the event lock orders
    /// writers before they lock any row, as SQLite's single writer does. Every transaction that
    /// may append an event must therefore be opened here.
    pub(crate) async fn begin_write(&self) -> StoreResult<Tx> {
        let mut tx = self.writer().begin().await?;
        if tx.dialect() == Dialect::Postgres {
            query("SELECT pg_advisory_xact_lock($1)")
                .bind(crate::events::EVENT_LOCK_KEY)
                .execute(&mut tx)
                .await?;
        }
        Ok(tx)
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
