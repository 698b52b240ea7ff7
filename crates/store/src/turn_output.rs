//! Streamed turn output, written for every running turn of this process together.
//!
//! Each turn's output writer (`engine::planning::output`) already gathers what arrives while its
//! previous write is in flight. Here the writes of *all* turns are combined the same way: a write
//! joins a queue; the first writer to find no combined write in progress takes everything queued
//! and writes it as one transaction, in a handful of multi-row statements whatever the number of
//! turns (claims checked in one `SELECT`, the interactions updated by one `UPDATE … FROM
//! (VALUES …)`, entries and events in multi-row inserts). Output that arrives meanwhile waits for
//! the next one. With a thousand streaming turns that is a few statements a commit instead of
//! four per turn, so the single writer is no longer saturated by small writes and control writes
//! (claims, status changes) find it free.
//!
//! Each caller is answered with its own outcome: a turn whose claim was lost gets `ClaimLost`
//! and writes nothing, the others are written. Should the combined transaction fail, each turn's
//! output is retried alone, so one turn's bad output cannot fail another's. The combined write
//! runs in a spawned task: a caller that goes away mid-write does not abandon the others.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use serde_json::json;
use spectask_domain::{EntryBody, EventKind, NewEvent};
use tokio::sync::oneshot;

use crate::Store;
use crate::db::{Tx, query, query_as, value_rows};
use crate::entries::{OutputAppend, append_outputs, clear_entries};
use crate::error::{StoreError, StoreResult};
use crate::events::{append_event, append_events};
use crate::ids::now;
use crate::sessions::clear_reply_pieces;
use crate::turns::{TurnClaim, verify_claim};

/// Most turns' output in one combined write: bounds one transaction's statements and time.
const MAX_TURNS_PER_WRITE: usize = 1024;
/// Most output bytes (reply text and entry payloads, roughly) in one combined write; a single
/// larger turn batch still goes alone.
const MAX_BYTES_PER_WRITE: usize = 8 * 1024 * 1024;

/// Turn output waiting for a combined write, and who writes it.
#[derive(Debug, Default)]
pub(crate) struct OutputQueue {
    pending: Mutex<VecDeque<PendingOutput>>,
    /// Held by the caller whose combined write is in progress.
    leader: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct PendingOutput {
    claim: TurnClaim,
    text: String,
    entries: Vec<EntryBody>,
    bytes: usize,
    answer: oneshot::Sender<StoreResult<()>>,
}

impl OutputQueue {
    fn push(&self, output: PendingOutput) {
        self.lock().push_back(output);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<PendingOutput>> {
        // A panic while holding this lock cannot leave the queue half-changed (each use is one
        // push or one drain), so a poisoned lock is still a good queue.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The queued output for the next combined write, oldest first: at most one batch per turn
    /// (a turn's second batch must follow its first's seqs, so it waits for the next write)
    /// and within the write's bounds.
    fn take_batch(&self) -> Vec<PendingOutput> {
        let mut pending = self.lock();
        let mut batch = Vec::new();
        let mut turns = HashSet::new();
        let mut bytes = 0;
        let mut kept = VecDeque::new();
        while let Some(output) = pending.pop_front() {
            let fits = batch.len() < MAX_TURNS_PER_WRITE
                && (batch.is_empty() || bytes + output.bytes <= MAX_BYTES_PER_WRITE);
            if fits && turns.insert(output.claim.turn.id.clone()) {
                bytes += output.bytes;
                batch.push(output);
            } else {
                kept.push_back(output);
            }
        }
        *pending = kept;
        batch
    }
}

/// Roughly how many bytes a batch stores.
fn output_bytes(text: &str, entries: &[EntryBody]) -> usize {
    text.len() + entries.iter().map(EntryBody::approx_bytes).sum::<usize>()
}

impl Store {
    /// Appends one batch of streamed output to the claimed turn's interaction: reply text and
    /// structured entries, with one `interaction.updated` event carrying the new text and the
    /// seq range of the new entries, so watchers see it as it is written. Answered once the
    /// output is committed (together with other turns' output; see [`crate::turn_output`]);
    /// `ClaimLost` if the turn is no longer this worker's, and then nothing is written.
    pub async fn append_turn_output(
        &self,
        claim: &TurnClaim,
        text: String,
        entries: Vec<EntryBody>,
    ) -> StoreResult<()> {
        let (answer, mut answered) = oneshot::channel();
        let bytes = output_bytes(&text, &entries);
        self.output.push(PendingOutput {
            claim: claim.clone(),
            text,
            entries,
            bytes,
            answer,
        });
        loop {
            let leader = self.output.leader.lock().await;
            match answered.try_recv() {
                Ok(result) => return result,
                Err(oneshot::error::TryRecvError::Closed) => return Err(abandoned()),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch = self.output.take_batch();
            if batch.is_empty() {
                // Ours was taken by a write whose leader went away; that write goes on alone.
                drop(leader);
                return answered.await.unwrap_or_else(|_| Err(abandoned()));
            }
            let store = self.clone();
            // Ours may have been left for the next write (a bound, or a batch of the same turn
            // ahead of it): the loop takes the lead again.
            let _ = tokio::spawn(async move { store.write_outputs(batch).await }).await;
        }
    }

    /// Empties the claimed turn's interaction response and deletes its entries (its earlier
    /// output is void: a retry).
    pub async fn reset_turn_output(&self, claim: &TurnClaim) -> StoreResult<()> {
        let now = now();
        let interaction = claim.turn.interaction_id.as_str();
        self.write_bulk(async |tx| {
            verify_claim(&mut *tx, claim).await?;
            query("UPDATE interactions SET response_message = '', updated_at = $1 WHERE id = $2")
                .bind(now)
                .bind(interaction)
                .execute(&mut *tx)
                .await?;
            clear_reply_pieces(&mut *tx, interaction).await?;
            clear_entries(&mut *tx, interaction).await?;
            let event = NewEvent {
                spec_task_id: Some(claim.turn.spec_task_id.clone()),
                kind: EventKind::InteractionUpdated,
                entity_id: claim.turn.interaction_id.to_string(),
                actor: claim.owner.clone(),
                payload: json!({ "session_id": claim.turn.session_id, "turn_id": claim.turn.id, "reset": true }),
            };
            append_event(&mut *tx, &event, now).await?;
            Ok(())
        })
        .await
    }

    /// Writes `batch` in one transaction and answers each of its callers; if that transaction
    /// fails, each output is written alone.
    async fn write_outputs(&self, batch: Vec<PendingOutput>) {
        let outcomes = self
            .write_bulk(async |tx| write_batch(tx, &batch).await)
            .await;
        match outcomes {
            Ok(outcomes) => {
                for (output, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = output.answer.send(outcome);
                }
            }
            Err(err) if batch.len() == 1 => {
                if let Some(output) = batch.into_iter().next() {
                    let _ = output.answer.send(Err(err));
                }
            }
            Err(err) => {
                tracing::warn!(%err, turns = batch.len(), "combined output write failed; writing each turn's alone");
                for output in batch {
                    let alone = std::slice::from_ref(&output);
                    let outcome = self
                        .write_bulk(async |tx| write_batch(tx, alone).await)
                        .await
                        .and_then(|mut outcomes| outcomes.pop().unwrap_or(Ok(())));
                    let _ = output.answer.send(outcome);
                }
            }
        }
    }
}

fn abandoned() -> StoreError {
    StoreError::CommitFailed("the output write was abandoned".into())
}

/// The combined write's body: which claims still hold, then the output of those turns and one
/// event each. Returns each output's outcome, in `batch` order.
async fn write_batch(tx: &mut Tx, batch: &[PendingOutput]) -> StoreResult<Vec<StoreResult<()>>> {
    let held = held_claims(tx, batch).await?;
    let writable: Vec<&PendingOutput> = batch
        .iter()
        .filter(|output| held.contains(output.claim.turn.id.as_str()))
        .collect();
    let now = now();
    let appends: Vec<OutputAppend<'_>> = writable
        .iter()
        .map(|output| OutputAppend {
            interaction: output.claim.turn.interaction_id.as_str(),
            text: &output.text,
            entries: &output.entries,
        })
        .collect();
    let firsts = append_outputs(tx, &appends, now).await?;
    let events: Vec<NewEvent> = writable
        .iter()
        .zip(firsts)
        .map(|(output, first_seq)| {
            let claim = &output.claim;
            let mut payload = json!({ "session_id": claim.turn.session_id, "turn_id": claim.turn.id, "delta": output.text });
            if !output.entries.is_empty() {
                payload["entries"] = json!({ "first_seq": first_seq, "count": output.entries.len() });
            }
            NewEvent {
                spec_task_id: Some(claim.turn.spec_task_id.clone()),
                kind: EventKind::InteractionUpdated,
                entity_id: claim.turn.interaction_id.to_string(),
                actor: claim.owner.clone(),
                payload,
            }
        })
        .collect();
    append_events(tx, &events, now).await?;
    Ok(batch
        .iter()
        .map(|output| {
            if held.contains(output.claim.turn.id.as_str()) {
                Ok(())
            } else {
                Err(StoreError::ClaimLost(output.claim.turn.id.to_string()))
            }
        })
        .collect())
}

/// The turns of `batch` still running under their claims (on PostgreSQL locked until commit),
/// as [`verify_claim`] checks one.
async fn held_claims(tx: &mut Tx, batch: &[PendingOutput]) -> StoreResult<HashSet<String>> {
    let lock = tx.dialect().for_update();
    let mut held = HashSet::with_capacity(batch.len());
    for chunk in batch.chunks(MAX_TURNS_PER_WRITE) {
        let mut select = query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, owner, claim_token FROM turns WHERE status = 'running' AND id IN {}{lock}",
            value_rows(1, chunk.len(), 0)
        )));
        for output in chunk {
            select = select.bind(output.claim.turn.id.as_str());
        }
        let running: Vec<(String, Option<String>, Option<String>)> =
            select.fetch_all(&mut *tx).await?;
        let claims: HashMap<&str, &TurnClaim> = chunk
            .iter()
            .map(|output| (output.claim.turn.id.as_str(), &output.claim))
            .collect();
        for (id, owner, token) in running {
            if let Some(claim) = claims.get(id.as_str())
                && owner.as_deref() == Some(claim.owner.as_str())
                && token.as_deref() == Some(claim.token.as_str())
            {
                held.insert(id);
            }
        }
    }
    Ok(held)
}
