//! Turns ACP `session/update`s into [`AgentEvent`]s, one turn at a time.
//!
//! Tool calls are merged by id: a `tool_call_update` carries only the fields that changed (a
//! collection, when present, replaces the previous one), so the event for it is the whole merged
//! state. Plans are full replacements, as ACP defines them. Usage comes from `usage_update`, the
//! stable v1 report; the end-of-turn token usage of `PromptResponse` needs the crate's
//! `unstable_end_turn_token_usage` feature, which spectask does not turn on (an unstable field
//! could change shape under a minor release).

use std::collections::HashMap;

use agent_client_protocol::v1::schema::{
    ContentBlock, ContentChunk, Plan, SessionUpdate, ToolCall, ToolCallContent as AcpContent,
    ToolCallLocation as AcpLocation, ToolCallUpdate, UsageUpdate,
};
use serde::Serialize;

use crate::agent::{
    AgentEvent, AgentPlanStep, ToolCallContent, ToolCallEntry, ToolCallLocation, UsageEntry,
};

/// The state one turn's conversion needs.
#[derive(Debug, Default)]
pub(crate) struct TurnEvents {
    /// The merged state of every tool call seen in this turn, by id.
    tool_calls: HashMap<String, ToolCallEntry>,
}

impl TurnEvents {
    /// The event for `update`, or `None` for kinds spectask does not record (user message echoes,
    /// mode and command lists, session info, notices, compaction).
    pub(crate) fn convert(&mut self, update: SessionUpdate) -> Option<AgentEvent> {
        match update {
            SessionUpdate::AgentMessageChunk(chunk) => text_of(chunk).map(AgentEvent::MessageChunk),
            SessionUpdate::AgentThoughtChunk(chunk) => text_of(chunk).map(AgentEvent::Thought),
            SessionUpdate::ToolCall(call) => Some(self.start(call)),
            SessionUpdate::ToolCallUpdate(update) => Some(self.merge(update)),
            SessionUpdate::Plan(plan) => Some(AgentEvent::Plan(plan_steps(plan))),
            SessionUpdate::UsageUpdate(usage) => Some(AgentEvent::Usage(usage_of(usage))),
            _ => None,
        }
    }

    fn start(&mut self, call: ToolCall) -> AgentEvent {
        let mut entry = ToolCallEntry::unknown(&call.tool_call_id.0);
        entry.title = call.title;
        entry.kind = wire_name(&call.kind, "other");
        entry.status = wire_name(&call.status, "pending");
        if let Some(input) = call.raw_input {
            entry.set_raw_input(input);
        }
        entry.locations = locations(call.locations);
        entry.content = contents(call.content);
        self.tool_calls
            .insert(entry.tool_call_id.clone(), entry.clone());
        AgentEvent::ToolCall(entry)
    }

    fn merge(&mut self, update: ToolCallUpdate) -> AgentEvent {
        let id = update.tool_call_id.0.to_string();
        let entry = self
            .tool_calls
            .entry(id.clone())
            .or_insert_with(|| ToolCallEntry::unknown(&id));
        let fields = update.fields;
        if let Some(title) = fields.title {
            entry.title = title;
        }
        if let Some(kind) = fields.kind {
            entry.kind = wire_name(&kind, "other");
        }
        if let Some(status) = fields.status {
            entry.status = wire_name(&status, "pending");
        }
        if let Some(input) = fields.raw_input {
            entry.set_raw_input(input);
        }
        if let Some(found) = fields.locations {
            entry.locations = locations(found);
        }
        if let Some(content) = fields.content {
            entry.content = contents(content);
        }
        AgentEvent::ToolCall(entry.clone())
    }
}

fn text_of(chunk: ContentChunk) -> Option<String> {
    match chunk.content {
        ContentBlock::Text(text) => Some(text.text),
        // Images, audio and resources are not part of a text transcript.
        _ => None,
    }
}

/// The protocol's own spelling of an enum value (`in_progress`, `switch_mode`), or `fallback`
/// for a value that has none.
fn wire_name<T: Serialize>(value: &T, fallback: &str) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => fallback.to_owned(),
    }
}

fn locations(found: Vec<AcpLocation>) -> Vec<ToolCallLocation> {
    found
        .into_iter()
        .map(|location| ToolCallLocation {
            path: location.path.display().to_string(),
            line: location.line,
        })
        .collect()
}

fn contents(content: Vec<AcpContent>) -> Vec<ToolCallContent> {
    content
        .into_iter()
        .filter_map(|item| match item {
            AcpContent::Content(content) => match content.content {
                ContentBlock::Text(text) => Some(ToolCallContent::text(&text.text)),
                _ => None,
            },
            AcpContent::Diff(diff) => Some(ToolCallContent::diff(
                diff.path.display().to_string(),
                &diff.new_text,
            )),
            AcpContent::Terminal(terminal) => Some(ToolCallContent::Terminal {
                terminal_id: terminal.terminal_id.0.to_string(),
            }),
            _ => None,
        })
        .collect()
}

fn plan_steps(plan: Plan) -> Vec<AgentPlanStep> {
    plan.entries
        .into_iter()
        .map(|entry| AgentPlanStep {
            priority: wire_name(&entry.priority, "medium"),
            status: wire_name(&entry.status, "pending"),
            content: entry.content,
        })
        .collect()
}

fn usage_of(usage: UsageUpdate) -> UsageEntry {
    UsageEntry {
        used: usage.used,
        size: usage.size,
        cost: usage.cost.map(|cost| spectask_domain::UsageCost {
            amount: cost.amount,
            currency: cost.currency,
        }),
    }
}

#[cfg(test)]
mod tests {
    use agent_client_protocol::v1::schema::{
        Cost, Diff, PlanEntry, PlanEntryPriority, PlanEntryStatus, TextContent, ToolCallStatus,
        ToolCallUpdateFields, ToolKind,
    };

    use super::*;

    fn text(text: &str) -> ContentChunk {
        ContentChunk::new(ContentBlock::Text(TextContent::new(text)))
    }

    fn tool_call(event: Option<AgentEvent>) -> ToolCallEntry {
        match event {
            Some(AgentEvent::ToolCall(call)) => call,
            other => panic!("expected a tool call, got {other:?}"),
        }
    }

    #[test]
    fn message_and_thought_chunks_keep_their_text() {
        let mut events = TurnEvents::default();
        assert_eq!(
            events.convert(SessionUpdate::AgentMessageChunk(text("hi"))),
            Some(AgentEvent::MessageChunk("hi".to_owned()))
        );
        assert_eq!(
            events.convert(SessionUpdate::AgentThoughtChunk(text("hmm"))),
            Some(AgentEvent::Thought("hmm".to_owned()))
        );
        assert_eq!(
            events.convert(SessionUpdate::UserMessageChunk(text("echo"))),
            None
        );
    }

    #[test]
    fn tool_call_updates_merge_into_the_first_report() {
        let mut events = TurnEvents::default();
        let started = tool_call(
            events.convert(SessionUpdate::ToolCall(
                ToolCall::new("t1", "Write a.txt")
                    .kind(ToolKind::Edit)
                    .raw_input(serde_json::json!({ "path": "a.txt" }))
                    .locations(vec![AcpLocation::new("/w/a.txt").line(3)]),
            )),
        );
        assert_eq!(started.tool_call_id, "t1");
        assert_eq!(started.kind, "edit");
        assert_eq!(started.status, "pending");
        assert_eq!(
            started.locations,
            vec![ToolCallLocation {
                path: "/w/a.txt".to_owned(),
                line: Some(3)
            }]
        );

        let running = tool_call(events.convert(SessionUpdate::ToolCallUpdate(
            ToolCallUpdate::new(
                "t1",
                ToolCallUpdateFields::new().status(ToolCallStatus::InProgress),
            ),
        )));
        assert_eq!(running.status, "in_progress");
        assert_eq!(running.title, "Write a.txt");
        assert_eq!(
            running.raw_input,
            Some(serde_json::json!({ "path": "a.txt" }))
        );

        let done = tool_call(
            events.convert(SessionUpdate::ToolCallUpdate(ToolCallUpdate::new(
                "t1",
                ToolCallUpdateFields::new()
                    .status(ToolCallStatus::Completed)
                    .title("Wrote a.txt")
                    .content(vec![
                        AcpContent::from("ok"),
                        AcpContent::from(Diff::new("/w/a.txt", "new text")),
                    ]),
            ))),
        );
        assert_eq!(done.status, "completed");
        assert_eq!(done.title, "Wrote a.txt");
        assert_eq!(done.kind, "edit");
        assert_eq!(done.locations.len(), 1);
        assert_eq!(
            done.content,
            vec![
                ToolCallContent::text("ok"),
                ToolCallContent::diff("/w/a.txt".to_owned(), "new text")
            ]
        );
    }

    #[test]
    fn an_update_for_an_unseen_call_starts_from_its_id() {
        let mut events = TurnEvents::default();
        let call = tool_call(
            events.convert(SessionUpdate::ToolCallUpdate(ToolCallUpdate::new(
                "t9",
                ToolCallUpdateFields::new().status(ToolCallStatus::Failed),
            ))),
        );
        assert_eq!(call.tool_call_id, "t9");
        assert_eq!(call.status, "failed");
        assert_eq!(call.title, "");
    }

    #[test]
    fn a_big_raw_input_is_cut() {
        let mut events = TurnEvents::default();
        let call = tool_call(
            events.convert(SessionUpdate::ToolCall(
                ToolCall::new("t1", "Write")
                    .raw_input(serde_json::json!({ "content": "x".repeat(100_000) })),
            )),
        );
        assert!(call.raw_input_truncated);
    }

    #[test]
    fn plans_replace_and_keep_priority_and_status() {
        let mut events = TurnEvents::default();
        let plan = Plan::new(vec![
            PlanEntry::new("read", PlanEntryPriority::High, PlanEntryStatus::Completed),
            PlanEntry::new("write", PlanEntryPriority::Low, PlanEntryStatus::InProgress),
        ]);
        assert_eq!(
            events.convert(SessionUpdate::Plan(plan)),
            Some(AgentEvent::Plan(vec![
                AgentPlanStep {
                    content: "read".to_owned(),
                    priority: "high".to_owned(),
                    status: "completed".to_owned()
                },
                AgentPlanStep {
                    content: "write".to_owned(),
                    priority: "low".to_owned(),
                    status: "in_progress".to_owned()
                },
            ]))
        );
    }

    #[test]
    fn usage_updates_carry_context_and_cost() {
        let mut events = TurnEvents::default();
        assert_eq!(
            events.convert(SessionUpdate::UsageUpdate(
                UsageUpdate::new(1200, 200_000).cost(Cost::new(0.25, "USD"))
            )),
            Some(AgentEvent::Usage(UsageEntry {
                used: 1200,
                size: 200_000,
                cost: Some(spectask_domain::UsageCost {
                    amount: 0.25,
                    currency: "USD".to_owned()
                })
            }))
        );
    }
}
