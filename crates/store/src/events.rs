//! The append-only event log. Events are written only inside the transaction of the change they
//! describe (through [`append_event`]) and read back by id for history and live streams.
//!
//! Ids must become visible in increasing order, or a stream that has seen id 10 could later miss
//! a slower transaction's id 9. SQLite has one writer, so this holds by construction; on
//! PostgreSQL every write transaction takes the same transaction-scoped advisory lock when it
//! begins (`Backend::begin_write`), so event ids are assigned and committed in one order.

use chrono::{DateTime, Utc};
use spectask_domain::{Event, EventKind, NewEvent, SpecTaskId};
use sqlx::types::Json;

use crate::Store;
use crate::backend::Dialect;
use crate::db::{Tx, query, query_as, query_scalar, value_rows};
use crate::error::{StoreError, StoreResult};

/// Key of the advisory lock that orders event commits on PostgreSQL.
pub(crate) const EVENT_LOCK_KEY: i64 = 0x5e7e_c7a5;

/// Rows of one multi-row event insert (6 parameters a row).
const EVENTS_PER_INSERT: usize = 200;

/// Appends one event inside the open transaction `tx`, which was opened with
/// [`Backend::begin_write`](crate::backend::Backend::begin_write) (on PostgreSQL it holds the
/// event lock); returns its id, which the transaction keeps to announce after commit.
pub(crate) async fn append_event(
    tx: &mut Tx,
    event: &NewEvent,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    append_events(tx, std::slice::from_ref(event), now)
        .await?
        .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
}

/// Appends `events` in order inside the open write transaction `tx`, in one statement per
/// [`EVENTS_PER_INSERT`] events (and on PostgreSQL one notification for all of them); returns
/// the newest id, `None` for no events.
pub(crate) async fn append_events(
    tx: &mut Tx,
    events: &[NewEvent],
    now: DateTime<Utc>,
) -> StoreResult<Option<i64>> {
    let mut newest = None;
    for chunk in events.chunks(EVENTS_PER_INSERT) {
        let mut insert = query_scalar(sqlx::AssertSqlSafe(format!(
            "INSERT INTO events (spec_task_id, kind, entity_id, actor, payload, created_at) \
             VALUES {} RETURNING id",
            value_rows(chunk.len(), 6, 0)
        )));
        for event in chunk {
            insert = insert
                .bind(event.spec_task_id.as_ref().map(|id| id.as_str()))
                .bind(event.kind.as_str())
                .bind(&event.entity_id)
                .bind(&event.actor)
                .bind(Json(&event.payload))
                .bind(now);
        }
        let ids: Vec<i64> = insert.fetch_all(&mut *tx).await?;
        newest = newest.max(ids.into_iter().max());
    }
    let Some(newest) = newest else {
        return Ok(None);
    };
    if tx.dialect() == Dialect::Postgres {
        // Wakes other replicas' streams; delivered only on commit.
        query("SELECT pg_notify('spectask_events', $1)")
            .bind(newest.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.appended_event(newest);
    Ok(Some(newest))
}

/// Relays `NOTIFY spectask_events` from every replica sharing the PostgreSQL database into this
/// process's commit nudges, so live streams here wake at once for commits made elsewhere. Stops
/// when the pool is closed. Losing the listener connection only delays streams until their poll.
pub(crate) async fn forward_notifications(
    pool: sqlx::PgPool,
    committed: tokio::sync::broadcast::Sender<i64>,
) -> StoreResult<()> {
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
    listener.listen("spectask_events").await?;
    tokio::spawn(async move {
        loop {
            match listener.recv().await {
                Ok(notification) => {
                    let id = notification.payload().parse().unwrap_or(0);
                    let _ = committed.send(id);
                }
                Err(err) => {
                    if pool.is_closed() {
                        break;
                    }
                    tracing::warn!(%err, "event notification listener failed; reconnecting");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(())
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only this task's events; `None` for all.
    pub spec_task_id: Option<SpecTaskId>,
    /// Only events with an id greater than this.
    pub after: i64,
    /// At most this many, oldest first.
    pub limit: i64,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    spec_task_id: Option<String>,
    kind: String,
    entity_id: String,
    actor: String,
    payload: Json<serde_json::Value>,
    created_at: DateTime<Utc>,
}

impl TryFrom<EventRow> for Event {
    type Error = StoreError;
    fn try_from(row: EventRow) -> StoreResult<Self> {
        Ok(Event {
            id: row.id,
            spec_task_id: row
                .spec_task_id
                .map(|id| SpecTaskId::parse(&id))
                .transpose()
                .map_err(|e| StoreError::corrupt("events", e))?,
            kind: row
                .kind
                .parse::<EventKind>()
                .map_err(|e| StoreError::corrupt("events", e))?,
            entity_id: row.entity_id,
            actor: row.actor,
            payload: row.payload.0,
            created_at: row.created_at,
        })
    }
}

impl Store {
    /// Events in id order after `query.after`.
    pub async fn list_events(&self, query: &EventQuery) -> StoreResult<Vec<Event>> {
        let limit = query.limit.clamp(1, 10_000);
        let r = self.backend.reader();
        let select =
            "SELECT id, spec_task_id, kind, entity_id, actor, payload, created_at FROM events";
        let rows: Vec<EventRow> = match &query.spec_task_id {
            Some(task) => {
                query_as(sqlx::AssertSqlSafe(format!(
                    "{select} WHERE spec_task_id = $1 AND id > $2 ORDER BY id LIMIT $3"
                )))
                .bind(task.as_str())
                .bind(query.after)
                .bind(limit)
                .fetch_all(r)
                .await?
            }
            None => {
                query_as(sqlx::AssertSqlSafe(format!(
                    "{select} WHERE id > $1 ORDER BY id LIMIT $2"
                )))
                .bind(query.after)
                .bind(limit)
                .fetch_all(r)
                .await?
            }
        };
        rows.into_iter().map(Event::try_from).collect()
    }

    /// The id of the newest committed event (0 when there is none).
    pub async fn last_event_id(&self) -> StoreResult<i64> {
        let id: Option<i64> = query_scalar("SELECT MAX(id) FROM events")
            .fetch_one(self.backend.reader())
            .await?;
        Ok(id.unwrap_or(0))
    }
}
