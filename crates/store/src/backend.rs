//! The two databases and how to reach them.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::db::{Pool, Tx, query};
use crate::error::{StoreError, StoreResult};
use crate::group_commit::{GroupCommit, WriteStats, WriterPool};

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

/// A connected database: the pool reads run on, and the group-committing writer.
#[derive(Debug)]
pub(crate) struct Backend {
    pools: Pools,
    writer: GroupCommit,
}

/// The connections reads (and PostgreSQL's notification listener) use.
#[derive(Debug)]
pub(crate) enum Pools {
    /// SQLite allows one writer at a time: every write runs on the writer's one connection
    /// (serialised there instead of failing with `SQLITE_BUSY`), while reads run in parallel on
    /// this read-only pool (WAL mode).
    Sqlite(SqlitePool),
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
            sqlx::migrate!("migrations/sqlite").run(&writer).await?;
            let reader = SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(options.acquire_timeout)
                .connect_with(base.read_only(true))
                .await?;
            Ok(Backend {
                pools: Pools::Sqlite(reader),
                writer: GroupCommit::new(WriterPool::Sqlite(writer)),
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                // One connection is the writer's for good.
                .max_connections(options.max_connections.max(2) + 1)
                .acquire_timeout(options.acquire_timeout)
                .connect(url)
                .await?;
            sqlx::migrate!("migrations/postgres").run(&pool).await?;
            Ok(Backend {
                writer: GroupCommit::new(WriterPool::Postgres(pool.clone())),
                pools: Pools::Postgres(pool),
            })
        } else {
            Err(StoreError::UnsupportedUrl(url.to_owned()))
        }
    }

    /// The pools reads run on.
    pub(crate) fn pools(&self) -> &Pools {
        &self.pools
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self.pools {
            Pools::Sqlite(_) => "sqlite",
            Pools::Postgres(_) => "postgres",
        }
    }

    pub(crate) async fn ping(&self) -> StoreResult<()> {
        query("SELECT 1").execute(self.reader()).await?;
        Ok(())
    }

    /// The pool for reads.
    pub(crate) fn reader(&self) -> Pool<'_> {
        match &self.pools {
            Pools::Sqlite(reader) => Pool::Sqlite(reader),
            Pools::Postgres(pool) => Pool::Postgres(pool),
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self.pools {
            Pools::Sqlite(_) => Dialect::Sqlite,
            Pools::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Opens a transaction that only reads (one consistent snapshot across several statements).
    pub(crate) async fn begin_read(&self) -> StoreResult<Tx> {
        self.reader().begin().await
    }

    /// Opens a write transaction: a member of the writer's group ([`crate::group_commit`]).
    ///
    /// On PostgreSQL the group's transaction takes the event-order advisory lock
    /// ([`crate::events::EVENT_LOCK_KEY`]) before anything else. Taking it later, when the first
    /// event is appended, deadlocks: a writer holding a row lock waits for the event lock while
    /// the holder of the event lock waits for that row. Taken first, the event lock orders
    /// writers (and the replicas sharing the database) before they lock any row, as SQLite's
    /// single writer does.
    pub(crate) async fn begin_write(&self) -> StoreResult<Tx> {
        let member = self.writer.join(false).await?;
        Ok(Tx::write(member, self.dialect()))
    }

    /// Opens a bulk write transaction (streamed output): as [`Backend::begin_write`], but it
    /// yields to control writes ([`crate::group_commit::GroupCommit::join`]).
    pub(crate) async fn begin_bulk_write(&self) -> StoreResult<Tx> {
        let member = self.writer.join(true).await?;
        Ok(Tx::write(member, self.dialect()))
    }

    /// How many writes were committed in how many commits.
    pub(crate) fn write_stats(&self) -> WriteStats {
        self.writer.stats()
    }

    pub(crate) async fn close(&self) {
        self.writer.close().await;
        match &self.pools {
            Pools::Sqlite(reader) => reader.close().await,
            Pools::Postgres(pool) => pool.close().await,
        }
    }
}
