//! Turns ACP `session/update`s into [`AgentEvent`]s, one turn at a time.
//!
//! Tool calls are upserted by id: a `tool_call_update` carries only the fields that changed, so
//! the event for it is the merged state (the title of the first report with the latest status).

use std::collections::HashMap;

use agent_client_protocol::v1::schema::{
    ContentBlock, ContentChunk, SessionUpdate, ToolCallStatus, ToolCallUpdate,
};

use crate::agent::AgentEvent;

/// The state one turn's conversion needs.
#[derive(Debug, Default)]
pub(crate) struct TurnEvents {
    /// Title and status of every tool call seen in this turn, by id.
    tool_calls: HashMap<String, (String, String)>,
}

impl TurnEvents {
    /// The event for `update`, or `None` for kinds spectask does not record (yet).
    pub(crate) fn convert(&mut self, update: SessionUpdate) -> Option<AgentEvent> {
        match update {
            SessionUpdate::AgentMessageChunk(chunk) => text_of(chunk).map(AgentEvent::MessageChunk),
            SessionUpdate::AgentThoughtChunk(chunk) => text_of(chunk).map(AgentEvent::Thought),
            SessionUpdate::ToolCall(call) => {
                let id = call.tool_call_id.0.to_string();
                let entry = (call.title, status_name(call.status).to_owned());
                self.tool_calls.insert(id.clone(), entry.clone());
                Some(AgentEvent::ToolCall {
                    id,
                    title: entry.0,
                    status: entry.1,
                })
            }
            SessionUpdate::ToolCallUpdate(update) => Some(self.merge(update)),
            _ => None,
        }
    }

    fn merge(&mut self, update: ToolCallUpdate) -> AgentEvent {
        let id = update.tool_call_id.0.to_string();
        let entry = self.tool_calls.entry(id.clone()).or_insert_with(|| {
            (
                String::new(),
                status_name(ToolCallStatus::Pending).to_owned(),
            )
        });
        if let Some(title) = update.fields.title {
            entry.0 = title;
        }
        if let Some(status) = update.fields.status {
            entry.1 = status_name(status).to_owned();
        }
        AgentEvent::ToolCall {
            id,
            title: entry.0.clone(),
            status: entry.1.clone(),
        }
    }
}

fn text_of(chunk: ContentChunk) -> Option<String> {
    match chunk.content {
        ContentBlock::Text(text) => Some(text.text),
        // Images, audio and resources are not part of a text transcript.
        _ => None,
    }
}

fn status_name(status: ToolCallStatus) -> &'static str {
    match status {
        ToolCallStatus::Pending => "pending",
        ToolCallStatus::InProgress => "in_progress",
        ToolCallStatus::Completed => "completed",
        ToolCallStatus::Failed => "failed",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use agent_client_protocol::v1::schema::{TextContent, ToolCall, ToolCallUpdateFields};

    use super::*;

    #[test]
    fn tool_call_updates_merge_into_the_first_report() {
        let mut events = TurnEvents::default();
        assert_eq!(
            events.convert(SessionUpdate::AgentMessageChunk(ContentChunk::new(
                ContentBlock::Text(TextContent::new("hi"))
            ))),
            Some(AgentEvent::MessageChunk("hi".to_owned()))
        );
        assert_eq!(
            events.convert(SessionUpdate::ToolCall(ToolCall::new("t1", "Write a.txt"))),
            Some(AgentEvent::ToolCall {
                id: "t1".to_owned(),
                title: "Write a.txt".to_owned(),
                status: "pending".to_owned()
            })
        );
        assert_eq!(
            events.convert(SessionUpdate::ToolCallUpdate(ToolCallUpdate::new(
                "t1",
                ToolCallUpdateFields::new().status(ToolCallStatus::Completed)
            ))),
            Some(AgentEvent::ToolCall {
                id: "t1".to_owned(),
                title: "Write a.txt".to_owned(),
                status: "completed".to_owned()
            })
        );
    }
}
