//! Streams a planner's reply into the turn's interaction as it arrives, in small batches so a
//! fast model does not cost one transaction per token.

use std::time::Duration;

use spectask_runtimes::llm::LlmEvent;
use spectask_store::{Store, StoreError, TurnClaim};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Batches above this size are written at once.
const MAX_BATCH_BYTES: usize = 8 * 1024;

/// Consumes `events` until the sender is dropped; returns the reply text written so far (after
/// the last reset). Stops early with `ClaimLost` if the turn is no longer this worker's.
pub(crate) async fn write_output(
    store: Store,
    claim: TurnClaim,
    mut events: mpsc::Receiver<LlmEvent>,
    flush_interval: Duration,
) -> Result<String, StoreError> {
    let mut written = String::new();
    let mut pending = String::new();
    let mut deadline: Option<Instant> = None;
    loop {
        let next = match deadline {
            Some(at) => tokio::select! {
                next = events.recv() => next,
                _ = tokio::time::sleep_until(at) => {
                    flush(&store, &claim, &mut pending, &mut written).await?;
                    deadline = None;
                    continue;
                }
            },
            None => events.recv().await,
        };
        match next {
            Some(LlmEvent::Delta(delta)) => {
                if pending.is_empty() {
                    deadline = Some(Instant::now() + flush_interval);
                }
                pending.push_str(&delta);
                if pending.len() >= MAX_BATCH_BYTES {
                    flush(&store, &claim, &mut pending, &mut written).await?;
                    deadline = None;
                }
            }
            Some(LlmEvent::Reset { attempt, reason }) => {
                tracing::info!(turn_id = %claim.turn.id, attempt, %reason, "planner retry: discarding partial reply");
                pending.clear();
                written.clear();
                deadline = None;
                store.reset_turn_output(&claim).await?;
            }
            // The sender is gone and everything it sent was received.
            None => {
                flush(&store, &claim, &mut pending, &mut written).await?;
                return Ok(written);
            }
        }
    }
}

async fn flush(
    store: &Store,
    claim: &TurnClaim,
    pending: &mut String,
    written: &mut String,
) -> Result<(), StoreError> {
    if pending.is_empty() {
        return Ok(());
    }
    store.append_turn_output(claim, pending).await?;
    written.push_str(pending);
    pending.clear();
    Ok(())
}
