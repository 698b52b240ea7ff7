//! Interaction entries: the structured record of a turn (message text, thoughts, tool calls,
//! plans, usage), appended in order while the agent works.
//!
//! An entry is `{seq, kind, payload}`; the payload's shape is fixed by the kind. A tool call is
//! recorded again each time it changes, each time with its whole merged state, so a reader that
//! keeps the latest entry per `tool_call_id` has every call's current state and a reader that
//! follows `seq` sees every change.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::enums::string_enum;
use crate::ids::InteractionId;

/// Largest raw tool input kept, in bytes of JSON; a bigger input is kept as a cut JSON string.
pub const MAX_TOOL_INPUT_BYTES: usize = 16 * 1024;
/// Largest text kept per tool-call content item, in bytes.
pub const MAX_TOOL_CONTENT_BYTES: usize = 16 * 1024;
/// Default page size of the entries endpoint.
pub const DEFAULT_ENTRY_PAGE: i64 = 500;
/// Largest page of the entries endpoint.
pub const MAX_ENTRY_PAGE: i64 = 5000;

string_enum! {
    /// What an entry records.
    pub enum EntryKind as "entry kind" {
        Message = "message",
        Thought = "thought",
        ToolCall = "tool_call",
        Plan = "plan",
        Usage = "usage",
    }
}

/// An entry's kind and payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", content = "payload", rename_all = "snake_case")]
pub enum EntryBody {
    /// Agent message text (consecutive chunks of one batch are one entry).
    Message(TextEntry),
    /// The agent's visible reasoning.
    Thought(TextEntry),
    /// The merged state of one tool call after a change.
    ToolCall(ToolCallEntry),
    /// The agent's whole plan (each report replaces the previous one).
    Plan(PlanEntry),
    /// Context window use (and cost, when the agent reports it).
    Usage(UsageEntry),
}

impl EntryBody {
    pub fn kind(&self) -> EntryKind {
        match self {
            EntryBody::Message(_) => EntryKind::Message,
            EntryBody::Thought(_) => EntryKind::Thought,
            EntryBody::ToolCall(_) => EntryKind::ToolCall,
            EntryBody::Plan(_) => EntryKind::Plan,
            EntryBody::Usage(_) => EntryKind::Usage,
        }
    }

    /// Roughly how many bytes the entry stores: its texts, without serialising it (bounds a
    /// batch of output cheaply).
    pub fn approx_bytes(&self) -> usize {
        match self {
            EntryBody::Message(entry) | EntryBody::Thought(entry) => entry.text.len(),
            EntryBody::ToolCall(call) => call.approx_bytes(),
            EntryBody::Plan(plan) => plan.entries.iter().map(|e| e.content.len()).sum(),
            EntryBody::Usage(_) => 32,
        }
    }

    /// The payload alone, as stored.
    pub fn payload_json(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut map)) => {
                map.remove("payload").unwrap_or(serde_json::Value::Null)
            }
            _ => serde_json::Value::Null,
        }
    }

    /// Rebuilds a body from a stored kind and payload.
    pub fn from_parts(kind: EntryKind, payload: serde_json::Value) -> Result<Self, String> {
        serde_json::from_value(serde_json::json!({ "kind": kind, "payload": payload }))
            .map_err(|err| format!("{kind} entry payload: {err}"))
    }
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InteractionEntry {
    pub interaction_id: InteractionId,
    /// 0-based position in the interaction (restarts when a retried attempt clears it).
    pub seq: i32,
    #[serde(flatten)]
    pub body: EntryBody,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TextEntry {
    pub text: String,
}

/// A tool call as it stands after its latest update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolCallEntry {
    pub tool_call_id: String,
    pub title: String,
    /// `read`, `edit`, `delete`, `move`, `search`, `execute`, `think`, `fetch`, `switch_mode` or
    /// `other`.
    pub kind: String,
    /// `pending`, `in_progress`, `completed` or `failed`.
    pub status: String,
    /// The tool's input as the agent reported it; a cut JSON string when it was too big.
    #[serde(default)]
    pub raw_input: Option<serde_json::Value>,
    #[serde(default)]
    pub raw_input_truncated: bool,
    #[serde(default)]
    pub locations: Vec<ToolCallLocation>,
    #[serde(default)]
    pub content: Vec<ToolCallContent>,
}

impl ToolCallEntry {
    /// Roughly how many bytes the call's entry stores (see [`EntryBody::approx_bytes`]).
    pub fn approx_bytes(&self) -> usize {
        let content: usize = self
            .content
            .iter()
            .map(|item| match item {
                ToolCallContent::Text { text, .. } => text.len(),
                ToolCallContent::Diff { path, new_text, .. } => path.len() + new_text.len(),
                ToolCallContent::Terminal { terminal_id } => terminal_id.len(),
            })
            .sum();
        let locations: usize = self.locations.iter().map(|l| l.path.len()).sum();
        let input = self.raw_input.as_ref().map_or(0, |v| v.to_string().len());
        self.title.len() + content + locations + input
    }

    /// A call known only by its id (an update for a call whose start was never seen).
    pub fn unknown(tool_call_id: &str) -> Self {
        Self {
            tool_call_id: tool_call_id.to_owned(),
            title: String::new(),
            kind: "other".to_owned(),
            status: "pending".to_owned(),
            raw_input: None,
            raw_input_truncated: false,
            locations: Vec::new(),
            content: Vec::new(),
        }
    }

    /// Sets the raw input, cut to [`MAX_TOOL_INPUT_BYTES`].
    pub fn set_raw_input(&mut self, input: serde_json::Value) {
        let text = input.to_string();
        if text.len() <= MAX_TOOL_INPUT_BYTES {
            self.raw_input = Some(input);
            self.raw_input_truncated = false;
        } else {
            self.raw_input = Some(serde_json::Value::String(
                cap_text(&text, MAX_TOOL_INPUT_BYTES).0,
            ));
            self.raw_input_truncated = true;
        }
    }
}

/// A file a tool call touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolCallLocation {
    pub path: String,
    #[serde(default)]
    pub line: Option<u32>,
}

/// What a tool call produced. Texts are cut to [`MAX_TOOL_CONTENT_BYTES`] (`truncated` says so).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolCallContent {
    Text {
        text: String,
        #[serde(default)]
        truncated: bool,
    },
    /// A file edit: the new text of `path`.
    Diff {
        path: String,
        new_text: String,
        #[serde(default)]
        truncated: bool,
    },
    /// A terminal the agent runs the tool in.
    Terminal { terminal_id: String },
}

impl ToolCallContent {
    pub fn text(text: &str) -> Self {
        let (text, truncated) = cap_text(text, MAX_TOOL_CONTENT_BYTES);
        Self::Text { text, truncated }
    }

    pub fn diff(path: String, new_text: &str) -> Self {
        let (new_text, truncated) = cap_text(new_text, MAX_TOOL_CONTENT_BYTES);
        Self::Diff {
            path,
            new_text,
            truncated,
        }
    }
}

/// The agent's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanEntry {
    pub entries: Vec<AgentPlanStep>,
}

/// One step of the agent's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentPlanStep {
    pub content: String,
    /// `high`, `medium` or `low`.
    pub priority: String,
    /// `pending`, `in_progress` or `completed`.
    pub status: String,
}

/// Context window use, as the agent reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageEntry {
    /// Tokens in context.
    pub used: u64,
    /// The context window, in tokens.
    pub size: u64,
    #[serde(default)]
    pub cost: Option<UsageCost>,
}

/// Cumulative cost of the agent's session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageCost {
    pub amount: f64,
    /// An ISO 4217 code, or another unit such as `credits`.
    pub currency: String,
}

/// `text` cut to at most `max` bytes at a character boundary, and whether it was cut.
pub fn cap_text(text: &str, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text.to_owned(), false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_owned(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_round_trips_through_its_stored_parts() {
        let mut call = ToolCallEntry::unknown("t1");
        call.title = "Write a.txt".to_owned();
        call.content.push(ToolCallContent::text("done"));
        for body in [
            EntryBody::Message(TextEntry {
                text: "hi".to_owned(),
            }),
            EntryBody::ToolCall(call),
            EntryBody::Usage(UsageEntry {
                used: 10,
                size: 100,
                cost: Some(UsageCost {
                    amount: 0.5,
                    currency: "USD".to_owned(),
                }),
            }),
        ] {
            let rebuilt = EntryBody::from_parts(body.kind(), body.payload_json());
            assert_eq!(rebuilt, Ok(body));
        }
        assert!(EntryBody::from_parts(EntryKind::Plan, serde_json::json!({"x": 1})).is_err());
    }

    #[test]
    fn an_entry_serializes_as_seq_kind_and_payload() {
        let entry = InteractionEntry {
            interaction_id: InteractionId::from_ulid(ulid::Ulid::nil()),
            seq: 3,
            body: EntryBody::Thought(TextEntry {
                text: "hmm".to_owned(),
            }),
            created_at: DateTime::<Utc>::UNIX_EPOCH,
        };
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["seq"], 3);
        assert_eq!(json["kind"], "thought");
        assert_eq!(json["payload"], serde_json::json!({"text": "hmm"}));
    }

    #[test]
    fn big_inputs_and_texts_are_cut_at_a_char_boundary() {
        let (cut, truncated) = cap_text("ééé", 3);
        assert_eq!((cut.as_str(), truncated), ("é", true));
        let mut call = ToolCallEntry::unknown("t");
        call.set_raw_input(serde_json::json!({ "content": "x".repeat(MAX_TOOL_INPUT_BYTES) }));
        assert!(call.raw_input_truncated);
        match &call.raw_input {
            Some(serde_json::Value::String(text)) => assert_eq!(text.len(), MAX_TOOL_INPUT_BYTES),
            other => panic!("expected a cut string, got {other:?}"),
        }
        call.set_raw_input(serde_json::json!({ "path": "a.txt" }));
        assert!(!call.raw_input_truncated);
        assert_eq!(call.raw_input, Some(serde_json::json!({ "path": "a.txt" })));
    }
}
