//! Interaction entries: appended in batches inside the transaction that appends a turn's output,
//! read back a page at a time.
//!
//! Entries are append-only. A tool call is stored again with its merged state each time it
//! changes, rather than upserted in place: a reader polling with `after_seq` then sees every
//! change (an upsert would change rows behind its cursor), and the latest entry per
//! `tool_call_id` is the call's current state. `interactions.entry_count` is both the next seq and
//! the count the session endpoints show, so appending needs no scan.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use spectask_domain::{EntryBody, EntryKind, InteractionEntry, InteractionId, SessionId};
use sqlx::types::Json;

use crate::Store;
use crate::db::{Tx, query, query_as, query_scalar, value_rows};
use crate::error::{StoreError, StoreResult};

/// Rows of one multi-row statement: at 6 parameters a row (3 for the interactions' update), far
/// under either database's limit.
const ROWS_PER_STATEMENT: usize = 200;

/// One interaction's share of a batch of streamed output: `text` for its reply and `entries` to
/// append after its last entry.
pub(crate) struct OutputAppend<'a> {
    pub(crate) interaction: &'a str,
    pub(crate) text: &'a str,
    pub(crate) entries: &'a [EntryBody],
}

/// Appends streamed output to several interactions inside `tx`, whatever their number, in one
/// statement per [`ROWS_PER_STATEMENT`] rows: the interactions' update (entry and piece counts)
/// returns each one's new counts, the reply text goes in as one new piece per interaction
/// (`interaction_reply_pieces`: appending costs the same however long the reply already is), and
/// all entries go in multi-row inserts. Returns each append's first new seq, in `appends` order.
/// An interaction must appear at most once.
pub(crate) async fn append_outputs(
    tx: &mut Tx,
    appends: &[OutputAppend<'_>],
    now: DateTime<Utc>,
) -> StoreResult<Vec<i32>> {
    let mut counts: HashMap<String, (i32, i32)> = HashMap::with_capacity(appends.len());
    for chunk in appends.chunks(ROWS_PER_STATEMENT) {
        // The new counts less what was added are the first seqs (FROM-table columns cannot be
        // returned).
        let mut update = query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE interactions SET updated_at = $1, entry_count = entry_count + v.column2, \
             piece_count = piece_count + v.column3 \
             FROM (VALUES {}) AS v WHERE interactions.id = v.column1 \
             RETURNING id, entry_count, piece_count",
            value_rows(chunk.len(), 3, 1)
        )))
        .bind(now);
        for append in chunk {
            let added = i32::try_from(append.entries.len())
                .map_err(|_| StoreError::Conflict("too many entries in one batch".into()))?;
            let piece = i32::from(!append.text.is_empty());
            update = update.bind(append.interaction).bind(added).bind(piece);
        }
        let updated: Vec<(String, i32, i32)> = update.fetch_all(&mut *tx).await?;
        counts.extend(
            updated
                .into_iter()
                .map(|(id, entries, pieces)| (id, (entries, pieces))),
        );
    }
    // Each append's first entry seq, and its piece's seq when it has text: one pass, so an
    // interaction the update did not find fails the write before anything more is inserted.
    let mut firsts = Vec::with_capacity(appends.len());
    let mut pieces = Vec::new();
    for append in appends {
        let (entries, piece_count) = *counts
            .get(append.interaction)
            .ok_or_else(|| StoreError::not_found("interaction", append.interaction))?;
        // Cannot overflow: the count includes the entries just added.
        firsts.push(entries - append.entries.len() as i32);
        if !append.text.is_empty() {
            pieces.push((append.interaction, piece_count - 1, append.text));
        }
    }
    for chunk in pieces.chunks(ROWS_PER_STATEMENT) {
        let mut insert = query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO interaction_reply_pieces (interaction_id, seq, text) VALUES {}",
            value_rows(chunk.len(), 3, 0)
        )));
        for &(interaction, seq, text) in chunk {
            insert = insert.bind(interaction).bind(seq).bind(text);
        }
        insert.execute(&mut *tx).await?;
    }
    let rows: Vec<(&str, i32, &EntryBody)> = appends
        .iter()
        .zip(&firsts)
        .flat_map(|(append, first)| {
            (*first..)
                .zip(append.entries)
                .map(|(seq, entry)| (append.interaction, seq, entry))
        })
        .collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut insert = query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO interaction_entries (interaction_id, seq, kind, tool_call_id, payload, created_at) VALUES {}",
            value_rows(chunk.len(), 6, 0)
        )));
        for &(interaction, seq, entry) in chunk {
            let tool_call_id = match entry {
                EntryBody::ToolCall(call) => Some(call.tool_call_id.as_str()),
                _ => None,
            };
            insert = insert
                .bind(interaction)
                .bind(seq)
                .bind(entry.kind().as_str())
                .bind(tool_call_id)
                .bind(Json(entry.payload_json()))
                .bind(now);
        }
        insert.execute(&mut *tx).await?;
    }
    Ok(firsts)
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
