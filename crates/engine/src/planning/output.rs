//! Streams a turn's output into its interaction as it arrives, in small batches so a fast model
//! or a flooding agent does not cost one transaction per token.
//!
//! A planner sends text deltas; an agent sends [`AgentEvent`]s, which also become interaction
//! entries. A batch's entries are compacted before they are written: consecutive message (or
//! thought) chunks are one entry, and consecutive reports of the same tool call, plan or usage
//! keep only the latest (each report is the whole state, so nothing is lost).

use std::time::Duration;

use spectask_domain::{EntryBody, PlanEntry, TextEntry, ToolCallContent, ToolCallEntry};
use spectask_runtimes::agent::AgentEvent;
use spectask_runtimes::llm::LlmEvent;
use spectask_store::{Store, StoreError, TurnClaim};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Batches above this size (reply text plus entry payloads, roughly) are written at once.
const MAX_BATCH_BYTES: usize = 8 * 1024;
/// Batches with this many entries are written at once.
const MAX_BATCH_ENTRIES: usize = 256;

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

    fn is_full(&self) -> bool {
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
                self.bytes += tool_call_bytes(&call);
                let id = call.tool_call_id.clone();
                self.replace_last_or_push(EntryBody::ToolCall(call), |last| {
                    matches!(last, EntryBody::ToolCall(previous) if previous.tool_call_id == id)
                });
            }
            AgentEvent::Plan(entries) => {
                self.bytes += entries.iter().map(|e| e.content.len()).sum::<usize>();
                let body = EntryBody::Plan(PlanEntry { entries });
                self.replace_last_or_push(body, |last| matches!(last, EntryBody::Plan(_)));
            }
            AgentEvent::Usage(usage) => {
                self.bytes += 32;
                self.replace_last_or_push(EntryBody::Usage(usage), |last| {
                    matches!(last, EntryBody::Usage(_))
                });
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

/// Roughly how many bytes a tool call's entry stores.
fn tool_call_bytes(call: &ToolCallEntry) -> usize {
    let content: usize = call
        .content
        .iter()
        .map(|item| match item {
            ToolCallContent::Text { text, .. } => text.len(),
            ToolCallContent::Diff { path, new_text, .. } => path.len() + new_text.len(),
            ToolCallContent::Terminal { terminal_id } => terminal_id.len(),
        })
        .sum();
    let locations: usize = call.locations.iter().map(|l| l.path.len()).sum();
    let input = call.raw_input.as_ref().map_or(0, |v| v.to_string().len());
    call.title.len() + content + locations + input
}

/// Consumes `events` until the sender is dropped; returns the reply text written so far (after
/// the last reset). Stops early with `ClaimLost` if the turn is no longer this worker's.
pub(crate) async fn write_output<T: Into<OutputItem>>(
    store: Store,
    claim: TurnClaim,
    mut events: mpsc::Receiver<T>,
    flush_interval: Duration,
) -> Result<String, StoreError> {
    let mut written = String::new();
    let mut pending = Batch::default();
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
        let Some(item) = next else {
            // The sender is gone and everything it sent was received.
            flush(&store, &claim, &mut pending, &mut written).await?;
            return Ok(written);
        };
        match item.into() {
            OutputItem::Reset { attempt, reason } => {
                tracing::info!(retry = attempt, %reason, "planner retry: discarding partial reply");
                pending = Batch::default();
                written.clear();
                deadline = None;
                store.reset_turn_output(&claim).await?;
                continue;
            }
            OutputItem::Text(delta) => {
                if pending.is_empty() {
                    deadline = Some(Instant::now() + flush_interval);
                }
                pending.push_text(&delta);
            }
            OutputItem::Agent(event) => {
                if pending.is_empty() {
                    deadline = Some(Instant::now() + flush_interval);
                }
                pending.push_event(event);
            }
        }
        if pending.is_full() {
            flush(&store, &claim, &mut pending, &mut written).await?;
            deadline = None;
        }
    }
}

async fn flush(
    store: &Store,
    claim: &TurnClaim,
    pending: &mut Batch,
    written: &mut String,
) -> Result<(), StoreError> {
    if pending.is_empty() {
        return Ok(());
    }
    let batch = std::mem::take(pending);
    store
        .append_turn_output(claim, &batch.text, &batch.entries)
        .await?;
    written.push_str(&batch.text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use spectask_domain::{AgentPlanStep, UsageEntry};

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
    fn a_batch_is_full_by_bytes_or_by_entries() {
        let mut batch = Batch::default();
        batch.push_text(&"x".repeat(MAX_BATCH_BYTES));
        assert!(batch.is_full());
        let mut batch = Batch::default();
        for i in 0..MAX_BATCH_ENTRIES {
            batch.push_event(call(&format!("c{i}"), "pending"));
        }
        assert!(batch.is_full());
        let mut batch = Batch::default();
        let mut big = ToolCallEntry::unknown("c");
        big.content
            .push(ToolCallContent::text(&"x".repeat(MAX_BATCH_BYTES)));
        batch.push_event(AgentEvent::ToolCall(big));
        assert!(batch.is_full(), "a tool call's output counts");
    }
}
