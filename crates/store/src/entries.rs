//! Interaction entries: appended in batches inside the transaction that appends a turn's output,
//! read back a page at a time.
//!
//! Entries are append-only. A tool call is stored again with its merged state each time it
//! changes, rather than upserted in place: a reader polling with `after_seq` then sees every
//! change (an upsert would change rows behind its cursor), and the latest entry per
//! `tool_call_id` is the call's current state. `interactions.entry_count` is both the next seq and
//! the count the session endpoints show, so appending needs no scan.

use chrono::{DateTime, Utc};
use spectask_domain::{EntryBody, EntryKind, InteractionEntry, InteractionId, SessionId};
use sqlx::types::Json;

use crate::Store;
use crate::db::{Tx, query, query_as, query_scalar};
use crate::error::{StoreError, StoreResult};

/// Rows of one multi-row entry insert: at 6 parameters a row, far under either database's limit.
const ENTRIES_PER_INSERT: usize = 100;

/// Appends a batch of streamed output to interaction `interaction` inside `tx`: `text` to its
/// reply and `entries` after its last entry, in two statements (the interaction's update returns
/// the first new seq; the entries are one multi-row insert per chunk). Returns the first seq.
pub(crate) async fn append_output(
    tx: &mut Tx,
    interaction: &str,
    text: &str,
    entries: &[EntryBody],
    now: DateTime<Utc>,
) -> StoreResult<i32> {
    let added = i32::try_from(entries.len())
        .map_err(|_| StoreError::Conflict("too many entries in one batch".into()))?;
    let first: i32 = query_scalar(
        "UPDATE interactions SET response_message = response_message || $1, updated_at = $2, \
         entry_count = entry_count + $3 WHERE id = $4 RETURNING entry_count - $3",
    )
    .bind(text)
    .bind(now)
    .bind(added)
    .bind(interaction)
    .fetch_one(&mut *tx)
    .await?;
    for (chunk_index, chunk) in entries.chunks(ENTRIES_PER_INSERT).enumerate() {
        let rows: Vec<String> = (0..chunk.len())
            .map(|row| {
                let p = row * 6;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6
                )
            })
            .collect();
        let mut insert = query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO interaction_entries (interaction_id, seq, kind, tool_call_id, payload, created_at) VALUES {}",
            rows.join(", ")
        )));
        for (offset, entry) in chunk.iter().enumerate() {
            let tool_call_id = match entry {
                EntryBody::ToolCall(call) => Some(call.tool_call_id.as_str()),
                _ => None,
            };
            insert = insert
                .bind(interaction)
                .bind(first + (chunk_index * ENTRIES_PER_INSERT + offset) as i32)
                .bind(entry.kind().as_str())
                .bind(tool_call_id)
                .bind(Json(entry.payload_json()))
                .bind(now);
        }
        insert.execute(&mut *tx).await?;
    }
    Ok(first)
}

/// Deletes every entry of interaction `interaction` inside `tx` (a retried attempt starts clean,
/// its seqs from 0).
pub(crate) async fn clear_entries(tx: &mut Tx, interaction: &str) -> StoreResult<()> {
    query("DELETE FROM interaction_entries WHERE interaction_id = $1")
        .bind(interaction)
        .execute(&mut *tx)
        .await?;
    query("UPDATE interactions SET entry_count = 0 WHERE id = $1")
        .bind(interaction)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct EntryRow {
    interaction_id: String,
    seq: i32,
    kind: String,
    payload: Json<serde_json::Value>,
    created_at: DateTime<Utc>,
}

impl TryFrom<EntryRow> for InteractionEntry {
    type Error = StoreError;
    fn try_from(row: EntryRow) -> StoreResult<Self> {
        const T: &str = "interaction_entries";
        let kind: EntryKind = row.kind.parse().map_err(|e| StoreError::corrupt(T, e))?;
        Ok(InteractionEntry {
            interaction_id: InteractionId::parse(&row.interaction_id)
                .map_err(|e| StoreError::corrupt(T, e))?,
            seq: row.seq,
            body: EntryBody::from_parts(kind, row.payload.0)
                .map_err(|e| StoreError::corrupt(T, e))?,
            created_at: row.created_at,
        })
    }
}

impl Store {
    /// Up to `limit` entries of an interaction of `session`, in seq order, after `after_seq` when
    /// given. `NotFound` for an unknown session, or an interaction that is not in it.
    pub async fn list_interaction_entries(
        &self,
        session: &SessionId,
        interaction: &InteractionId,
        after_seq: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<InteractionEntry>> {
        let mut tx = self.backend.begin_read().await?;
        let session_exists: Option<String> = query_scalar("SELECT id FROM sessions WHERE id = $1")
            .bind(session.as_str())
            .fetch_optional(&mut tx)
            .await?;
        let owner: Option<String> =
            query_scalar("SELECT session_id FROM interactions WHERE id = $1")
                .bind(interaction.as_str())
                .fetch_optional(&mut tx)
                .await?;
        let rows: Vec<EntryRow> = query_as(
            "SELECT interaction_id, seq, kind, payload, created_at FROM interaction_entries \
                     WHERE interaction_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(interaction.as_str())
        .bind(after_seq.unwrap_or(-1))
        .bind(limit)
        .fetch_all(&mut tx)
        .await?;
        tx.commit().await?;
        if session_exists.is_none() {
            return Err(StoreError::not_found("session", session));
        }
        if owner.as_deref() != Some(session.as_str()) {
            return Err(StoreError::not_found("interaction", interaction));
        }
        rows.into_iter().map(InteractionEntry::try_from).collect()
    }
}
