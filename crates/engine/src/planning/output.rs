//! Streams a turn's output into its interaction as it arrives, in batches gathered while the
//! previous write is in flight, so a fast model or a flooding agent does not cost one
//! transaction per token and a slow trickle is not held back by a timer.
//!
//! A planner sends text deltas; an agent sends [`AgentEvent`]s, which also become interaction
//! entries. A batch's entries are compacted before they are written: consecutive message (or
//! thought) chunks are one entry, and consecutive reports of the same tool call, plan or usage
//! keep only the latest (each report is the whole state, so nothing is lost).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use spectask_domain::{EntryBody, PlanEntry, TextEntry};
use spectask_runtimes::agent::AgentEvent;
use spectask_runtimes::llm::LlmEvent;
use spectask_store::{Store, StoreError, TurnClaim};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// While a batch is this large (reply text plus entry payloads, roughly) or has this many entries,
/// no more output is taken until the write in flight is done: the agent's pipe holds the rest.
const MAX_BATCH_BYTES: usize = 1024 * 1024;
const MAX_BATCH_ENTRIES: usize = 4096;

/// One thing a writer is told.
pub(crate) enum OutputItem {
    /// Reply text that is not recorded as an entry (a planner's delta).
    Text(String),
    /// What an agent did.
    Agent(AgentEvent),
    /// Everything written so far is void (the planner retried).
    Reset { attempt: u32, reason: String },
}

impl From<LlmEvent> for OutputItem {
    fn from(event: LlmEvent) -> Self {
        match event {
            LlmEvent::Delta(delta) => OutputItem::Text(delta),
            LlmEvent::Reset { attempt, reason } => OutputItem::Reset { attempt, reason },
        }
    }
}

impl From<AgentEvent> for OutputItem {
    fn from(event: AgentEvent) -> Self {
        OutputItem::Agent(event)
    }
}

/// The output not written yet.
#[derive(Default)]
struct Batch {
    text: String,
    entries: Vec<EntryBody>,
    bytes: usize,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.text.is_empty() && self.entries.is_empty()
    }

    fn is_over_limit(&self) -> bool {
        self.bytes >= MAX_BATCH_BYTES || self.entries.len() >= MAX_BATCH_ENTRIES
    }

    fn push_text(&mut self, text: &str) {
        self.text.push_str(text);
        self.bytes += text.len();
    }

    fn push_event(&mut self, event: AgentEvent) {
        match event {
            AgentEvent::MessageChunk(text) => {
                self.push_text(&text);
                match self.entries.last_mut() {
                    Some(EntryBody::Message(last)) => last.text.push_str(&text),
                    _ => self.entries.push(EntryBody::Message(TextEntry { text })),
                }
            }
            AgentEvent::Thought(text) => {
                self.bytes += text.len();
                match self.entries.last_mut() {
                    Some(EntryBody::Thought(last)) => last.text.push_str(&text),
                    _ => self.entries.push(EntryBody::Thought(TextEntry { text })),
                }
            }
            AgentEvent::ToolCall(call) => {
                self.bytes += call.approx_bytes();
                let id = call.tool_call_id.clone();
                self.replace_last_or_push(EntryBody::ToolCall(call), |last| {
                    matches!(last, EntryBody::ToolCall(previous) if previous.tool_call_id == id)
                });
            }
            AgentEvent::Plan(entries) => {
                let body = EntryBody::Plan(PlanEntry { entries });
                self.bytes += body.approx_bytes();
                self.replace_last_or_push(body, |last| matches!(last, EntryBody::Plan(_)));
            }
            AgentEvent::Usage(usage) => {
                let body = EntryBody::Usage(usage);
                self.bytes += body.approx_bytes();
                self.replace_last_or_push(body, |last| matches!(last, EntryBody::Usage(_)));
            }
        }
    }

    fn replace_last_or_push(&mut self, body: EntryBody, same: impl Fn(&EntryBody) -> bool) {
        match self.entries.last_mut() {
            Some(last) if same(last) => *last = body,
            _ => self.entries.push(body),
        }
    }
}

/// Consumes `events` until the sender is dropped; returns the reply text written so far (after
/// the last reset). Stops early with `ClaimLost` if the turn is no longer this worker's.
///
/// Batching is natural rather than timed: the first output after a quiet spell is written at
/// once; while that write is in flight (waiting for its group's commit), whatever arrives is
/// gathered into the next batch, written as soon as the previous one is done. So a trickle is
/// relayed with the latency of one write, and a flood in few large writes; the busier the
/// database, the larger the batches. `min_spacing` (the engine's `flush_interval`) additionally
/// keeps a turn's writes that far apart; gathered output waits at most that long.
pub(crate) async fn write_output<T: Into<OutputItem>>(
    store: Store,
    claim: TurnClaim,
    mut events: mpsc::Receiver<T>,
    min_spacing: Duration,
) -> Result<String, StoreError> {
    let mut written = String::new();
    let mut pending = Batch::default();
    let mut in_flight: Option<InFlight> = None;
    let mut last_write: Option<Instant> = None;
    let mut open = true;
    loop {
        // When output waits and no write is in flight: the time the next write is due, if it is
        // too soon after the previous one (gather until then); otherwise write now. Once the
        // sender is gone, the rest is written at once.
        let mut spacing_due = None;
        if in_flight.is_none() && !pending.is_empty() {
            spacing_due = last_write
                .map(|at| at + min_spacing)
                .filter(|due| open && *due > Instant::now());
            if spacing_due.is_none() {
                in_flight = Some(start_write(&store, &claim, &mut pending));
                last_write = Some(Instant::now());
            }
        }
        if !open && pending.is_empty() && in_flight.is_none() {
            return Ok(written);
        }
        tokio::select! {
            done = async {
                match in_flight.as_mut() {
                    Some(write) => write.await,
                    None => std::future::pending().await,
                }
            }, if in_flight.is_some() => {
                in_flight = None;
                written.push_str(&done?);
            }
            // Due: the write starts at the top of the loop.
            _ = tokio::time::sleep_until(spacing_due.unwrap_or_else(Instant::now)), if spacing_due.is_some() => {}
            next = events.recv(), if open && !pending.is_over_limit() => match next.map(Into::into) {
                None => open = false,
                Some(OutputItem::Reset { attempt, reason }) => {
                    tracing::info!(retry = attempt, %reason, "planner retry: discarding partial reply");
                    if let Some(write) = in_flight.take() {
                        write.await?;
                    }
                    pending = Batch::default();
                    written.clear();
                    store.reset_turn_output(&claim).await?;
                }
                Some(OutputItem::Text(delta)) => pending.push_text(&delta),
                Some(OutputItem::Agent(event)) => pending.push_event(event),
            },
        }
    }
}

/// A batch being written; resolves to its reply text once committed.
type InFlight = Pin<Box<dyn Future<Output = Result<String, StoreError>> + Send>>;

fn start_write(store: &Store, claim: &TurnClaim, pending: &mut Batch) -> InFlight {
    let batch = std::mem::take(pending);
    let store = store.clone();
    let claim = claim.clone();
    Box::pin(async move {
        let text = batch.text.clone();
        store
            .append_turn_output(&claim, batch.text, batch.entries)
            .await?;
        Ok(text)
    })
}

#[cfg(test)]
mod tests {
    use spectask_domain::{AgentPlanStep, ToolCallContent, ToolCallEntry, UsageEntry};

    use super::*;

    fn call(id: &str, status: &str) -> AgentEvent {
        let mut call = ToolCallEntry::unknown(id);
        call.status = status.to_owned();
        AgentEvent::ToolCall(call)
    }

    #[test]
    fn a_batch_coalesces_chunks_and_keeps_the_latest_of_repeated_reports() {
        let mut batch = Batch::default();
        for event in [
            AgentEvent::MessageChunk("a".into()),
            AgentEvent::MessageChunk("b".into()),
            AgentEvent::Thought("t1".into()),
            AgentEvent::Thought("t2".into()),
            call("c1", "pending"),
            call("c1", "completed"),
            call("c2", "pending"),
            AgentEvent::MessageChunk("c".into()),
            AgentEvent::Plan(vec![]),
            AgentEvent::Plan(vec![AgentPlanStep {
                content: "x".into(),
                priority: "high".into(),
                status: "pending".into(),
            }]),
            AgentEvent::Usage(UsageEntry {
                used: 1,
                size: 9,
                cost: None,
            }),
            AgentEvent::Usage(UsageEntry {
                used: 2,
                size: 9,
                cost: None,
            }),
        ] {
            batch.push_event(event);
        }
        assert_eq!(batch.text, "abc");
        let summary: Vec<String> = batch
            .entries
            .iter()
            .map(|entry| match entry {
                EntryBody::Message(m) => format!("message {}", m.text),
                EntryBody::Thought(t) => format!("thought {}", t.text),
                EntryBody::ToolCall(c) => format!("tool {} {}", c.tool_call_id, c.status),
                EntryBody::Plan(p) => format!("plan {}", p.entries.len()),
                EntryBody::Usage(u) => format!("usage {}", u.used),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "message ab",
                "thought t1t2",
                "tool c1 completed",
                "tool c2 pending",
                "message c",
                "plan 1",
                "usage 2"
            ]
        );
    }

    #[test]
    fn a_batch_is_over_its_limit_by_bytes_or_by_entries() {
        let mut batch = Batch::default();
        batch.push_text(&"x".repeat(MAX_BATCH_BYTES));
        assert!(batch.is_over_limit());
        let mut batch = Batch::default();
        for i in 0..MAX_BATCH_ENTRIES {
            batch.push_event(call(&format!("c{i}"), "pending"));
        }
        assert!(batch.is_over_limit());
        let mut batch = Batch::default();
        let output = "x".repeat(spectask_domain::entry::MAX_TOOL_CONTENT_BYTES);
        for i in 0..MAX_BATCH_BYTES / output.len() {
            let mut big = ToolCallEntry::unknown(&format!("c{i}"));
            big.content.push(ToolCallContent::text(&output));
            batch.push_event(AgentEvent::ToolCall(big));
        }
        assert!(batch.entries.len() < MAX_BATCH_ENTRIES);
        assert!(batch.is_over_limit(), "a tool call's output counts");
    }
}
