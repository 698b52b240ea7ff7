//! The database's own limits, measured in the same run as the API: rows inserted in batches of
//! 1,000 per transaction (SQLite in WAL with `synchronous=FULL`, as the server runs it), and
//! point reads of those rows by key at the bench's concurrency.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use spectask_testkit::TestDatabase;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::{Phase, run_phase};

const BATCH: usize = 1_000;

#[derive(Debug)]
pub struct Baseline {
    pub inserts: Phase,
    pub reads: Phase,
}

enum Raw {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Inserts `rows` rows of `row_bytes` bytes, then reads `rows` of them back by key.
pub async fn measure(
    db: &TestDatabase,
    rows: u32,
    concurrency: u32,
    row_bytes: usize,
) -> Result<Baseline> {
    let raw = match db.sqlite_dir() {
        Some(dir) => {
            let options = SqliteConnectOptions::from_str(&format!(
                "sqlite://{}",
                dir.join("baseline.db").display()
            ))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
            Raw::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(10)
                    .connect_with(options)
                    .await?,
            )
        }
        None => Raw::Postgres(PgPool::connect(db.url()).await?),
    };
    let create = "CREATE TABLE baseline (id TEXT PRIMARY KEY, body TEXT NOT NULL)";
    match &raw {
        Raw::Sqlite(pool) => sqlx::query(create).execute(pool).await.map(|_| ())?,
        Raw::Postgres(pool) => sqlx::query(create).execute(pool).await.map(|_| ())?,
    }
    let body = "x".repeat(row_bytes);
    let ids: Arc<Vec<String>> = Arc::new((0..rows).map(|i| format!("row_{i:026}")).collect());

    let started = Instant::now();
    let mut latencies = Vec::with_capacity(ids.len());
    for batch in ids.chunks(BATCH) {
        let batch_started = Instant::now();
        insert_batch(&raw, batch, &body).await?;
        // Every row of a batch waits for the batch's commit.
        latencies.extend(std::iter::repeat_n(batch_started.elapsed(), batch.len()));
    }
    let inserts = Phase {
        elapsed: started.elapsed(),
        latencies,
    };

    let reads = run_phase(rows, concurrency, |i| {
        let id = ids[i as usize % ids.len()].clone();
        let raw = &raw;
        async move {
            let select = "SELECT id, body FROM baseline WHERE id = $1";
            let found: Option<(String, String)> = match raw {
                Raw::Sqlite(pool) => {
                    sqlx::query_as(select)
                        .bind(&id)
                        .fetch_optional(pool)
                        .await?
                }
                Raw::Postgres(pool) => {
                    sqlx::query_as(select)
                        .bind(&id)
                        .fetch_optional(pool)
                        .await?
                }
            };
            anyhow::ensure!(found.is_some(), "row {id} not found");
            Ok(())
        }
    })
    .await?;
    match raw {
        Raw::Sqlite(pool) => pool.close().await,
        Raw::Postgres(pool) => pool.close().await,
    }
    Ok(Baseline { inserts, reads })
}

async fn insert_batch(raw: &Raw, batch: &[String], body: &str) -> Result<()> {
    // The same statements on either driver's pool (their transaction types differ).
    macro_rules! insert_in_one_transaction {
        ($pool:expr) => {{
            let mut tx = $pool.begin().await?;
            for id in batch {
                sqlx::query("INSERT INTO baseline (id, body) VALUES ($1, $2)")
                    .bind(id)
                    .bind(body)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }};
    }
    match raw {
        Raw::Sqlite(pool) => insert_in_one_transaction!(pool),
        Raw::Postgres(pool) => insert_in_one_transaction!(pool),
    }
    Ok(())
}
