//! A work session's thread as the editor sees it: its stored entries (`GET …/entries`) read page
//! by page, turned into ACP updates for a replayed thread ([`Replayer`]), or condensed into the
//! Markdown a task thread shows inside the session's tool call ([`Digest`]).

use std::collections::{BTreeSet, HashSet};

use agent_client_protocol::Error;
use agent_client_protocol::v1::schema::{
    ContentBlock, Diff, Plan, PlanEntry, PlanEntryPriority, PlanEntryStatus, TextContent, ToolCall,
    ToolCallContent, ToolCallLocation, ToolCallStatus, ToolCallUpdate, ToolCallUpdateFields,
    ToolKind,
};
use serde_json::Value;

use super::editor::Editor;
use crate::client::{CliResult, Client};
use crate::task::basics::encode;

const PAGE: usize = 500;
/// How much of a thread's text a task thread shows in the session's tool call: the newest part
/// (the whole thread is one `session/load` away).
const DIGEST_BYTES: usize = 16 * 1024;

/// The entries of one interaction after `after_seq` (all of them for `None`), in order.
pub async fn entries_after(
    client: &Client,
    helix: &str,
    interaction: &str,
    mut after_seq: Option<i64>,
) -> CliResult<Vec<Value>> {
    let mut all = Vec::new();
    loop {
        let mut path = format!(
            "/sessions/{}/interactions/{}/entries?limit={PAGE}",
            encode(helix),
            encode(interaction)
        );
        if let Some(seq) = after_seq {
            path.push_str(&format!("&after_seq={seq}"));
        }
        let page = client.get(&path).await?;
        let entries = page["entries"].as_array().cloned().unwrap_or_default();
        let count = entries.len();
        after_seq = entries.last().and_then(|e| e["seq"].as_i64()).or(after_seq);
        all.extend(entries);
        if count < PAGE {
            return Ok(all);
        }
    }
}

/// Where reading an interaction's entries got to.
#[derive(Debug, Default, Clone)]
pub struct Cursor {
    pub interaction: Option<String>,
    pub seq: Option<i64>,
}

impl Cursor {
    /// The entries of `interaction` not read yet (all of them when it is a new interaction).
    pub async fn read(
        &mut self,
        client: &Client,
        helix: &str,
        interaction: &str,
    ) -> CliResult<Vec<Value>> {
        if self.interaction.as_deref() != Some(interaction) {
            self.interaction = Some(interaction.to_owned());
            self.seq = None;
        }
        let entries = entries_after(client, helix, interaction, self.seq).await?;
        if let Some(seq) = entries.last().and_then(|e| e["seq"].as_i64()) {
            self.seq = Some(seq);
        }
        Ok(entries)
    }
}

/// A tool call entry as ACP fields.
fn tool_fields(payload: &Value) -> ToolCallUpdateFields {
    let mut fields = ToolCallUpdateFields::new()
        .title(payload["title"].as_str().unwrap_or("tool").to_owned())
        .status(parse::<ToolCallStatus>(&payload["status"]).unwrap_or(ToolCallStatus::Pending))
        .kind(parse::<ToolKind>(&payload["kind"]).unwrap_or(ToolKind::Other))
        .locations(
            payload["locations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l["path"].as_str())
                .map(ToolCallLocation::new)
                .collect::<Vec<_>>(),
        )
        .content(tool_content(&payload["content"]));
    if !payload["raw_input"].is_null() {
        fields = fields.raw_input(payload["raw_input"].clone());
    }
    fields
}

/// Our stored tool output (`text`, `diff`; a terminal is the agent's own, not the editor's).
fn tool_content(content: &Value) -> Vec<ToolCallContent> {
    content
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| match item["type"].as_str() {
            Some("text") => Some(ToolCallContent::from(ContentBlock::Text(TextContent::new(
                item["text"].as_str().unwrap_or_default(),
            )))),
            Some("diff") => Some(ToolCallContent::Diff(Diff::new(
                item["path"].as_str().unwrap_or_default(),
                item["new_text"].as_str().unwrap_or_default(),
            ))),
            _ => None,
        })
        .collect()
}

fn parse<T: serde::de::DeserializeOwned>(value: &Value) -> Option<T> {
    serde_json::from_value(value.clone()).ok()
}

/// An agent plan entry (`plan` kind) as an ACP plan.
pub fn agent_plan(payload: &Value) -> Plan {
    Plan::new(
        payload["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|step| {
                PlanEntry::new(
                    step["content"].as_str().unwrap_or_default(),
                    parse::<PlanEntryPriority>(&step["priority"])
                        .unwrap_or(PlanEntryPriority::Medium),
                    parse::<PlanEntryStatus>(&step["status"]).unwrap_or(PlanEntryStatus::Pending),
                )
            })
            .collect(),
    )
}

/// Sends stored entries as the updates the agent first sent: text, thoughts, tool calls (a
/// call's later states as updates of it), plans.
#[derive(Default)]
pub struct Replayer {
    tools: HashSet<String>,
}

impl Replayer {
    pub fn send(&mut self, editor: &Editor, entry: &Value) -> Result<(), Error> {
        let payload = &entry["payload"];
        match entry["kind"].as_str() {
            Some("message") => editor.text(payload["text"].as_str().unwrap_or_default()),
            Some("thought") => editor.thought(payload["text"].as_str().unwrap_or_default()),
            Some("tool_call") => {
                let id = payload["tool_call_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let fields = tool_fields(payload);
                if self.tools.insert(id.clone()) {
                    let call: ToolCall = ToolCallUpdate::new(id.clone(), fields)
                        .try_into()
                        .unwrap_or_else(|_| ToolCall::new(id, "tool"));
                    editor.tool_call(call)
                } else {
                    editor.tool_update(ToolCallUpdate::new(id, fields))
                }
            }
            Some("plan") => editor.plan(agent_plan(payload)),
            _ => Ok(()),
        }
    }
}

enum Item {
    Text(String),
    Tool { id: String, line: String },
}

/// One turn of a thread: its prompt and what the agent did.
struct Group {
    interaction: String,
    prompt: String,
    items: Vec<Item>,
}

/// A thread condensed for a task thread: per turn, the agent's text and one line per tool call
/// with its latest status; the files its tool calls named. Entries are grouped by their
/// interaction, so a turn's late entries land in its place even after a newer turn began.
#[derive(Default)]
pub struct Digest {
    groups: Vec<Group>,
    pub files: BTreeSet<String>,
}

impl Digest {
    /// Registers a turn (in thread order) before its entries arrive.
    pub fn begin(&mut self, interaction: &str, prompt: &str) {
        if !self.groups.iter().any(|g| g.interaction == interaction) {
            self.groups.push(Group {
                interaction: interaction.to_owned(),
                prompt: prompt.to_owned(),
                items: Vec::new(),
            });
        }
    }

    fn group(&mut self, interaction: &str) -> &mut Vec<Item> {
        let index = match self
            .groups
            .iter()
            .position(|g| g.interaction == interaction)
        {
            Some(index) => index,
            None => {
                self.begin(interaction, "");
                self.groups.len() - 1
            }
        };
        &mut self.groups[index].items
    }

    pub fn add(&mut self, entry: &Value) {
        let payload = &entry["payload"];
        let interaction = entry["interaction_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match entry["kind"].as_str() {
            Some("message") => {
                let text = payload["text"].as_str().unwrap_or_default();
                let items = self.group(&interaction);
                match items.last_mut() {
                    Some(Item::Text(last)) => last.push_str(text),
                    _ => items.push(Item::Text(text.to_owned())),
                }
            }
            Some("tool_call") => {
                let id = payload["tool_call_id"].as_str().unwrap_or_default();
                let line = format!(
                    "`{}` {}",
                    payload["status"].as_str().unwrap_or("pending"),
                    payload["title"].as_str().unwrap_or("tool")
                );
                for location in payload["locations"].as_array().into_iter().flatten() {
                    if let Some(path) = location["path"].as_str() {
                        self.files.insert(path.to_owned());
                    }
                }
                let items = self.group(&interaction);
                let existing = items.iter_mut().find_map(|item| match item {
                    Item::Tool { id: known, line } if known == id => Some(line),
                    _ => None,
                });
                match existing {
                    Some(known) => *known = line,
                    None => items.push(Item::Tool {
                        id: id.to_owned(),
                        line,
                    }),
                }
            }
            _ => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(|g| g.items.is_empty())
    }

    /// The newest [`DIGEST_BYTES`] of the thread as Markdown, a rule and the prompt between
    /// turns.
    pub fn markdown(&self) -> String {
        let mut text = String::new();
        for (n, group) in self.groups.iter().enumerate() {
            if n > 0 {
                text.push_str(&format!("\n\n---\n> {}\n\n", first_line(&group.prompt)));
            }
            for item in &group.items {
                match item {
                    Item::Text(chunk) => text.push_str(chunk),
                    Item::Tool { line, .. } => {
                        if !text.is_empty() && !text.ends_with('\n') {
                            text.push('\n');
                        }
                        text.push_str("- ");
                        text.push_str(line);
                        text.push('\n');
                    }
                }
            }
        }
        if text.len() <= DIGEST_BYTES {
            return text;
        }
        let mut start = text.len() - DIGEST_BYTES;
        while !text.is_char_boundary(start) {
            start += 1;
        }
        format!("…\n{}", &text[start..])
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_digest_keeps_each_tool_call_once_at_its_latest_status() {
        let mut digest = Digest::default();
        digest.add(&json!({"kind": "message", "payload": {"text": "Writing "}}));
        digest.add(&json!({"kind": "message", "payload": {"text": "part one."}}));
        let call = |status: &str| {
            json!({"kind": "tool_call", "payload": {"tool_call_id": "t1", "title": "Write a.txt",
                "kind": "edit", "status": status, "locations": [{"path": "/p/a.txt"}]}})
        };
        digest.add(&call("pending"));
        digest.add(&call("completed"));
        assert_eq!(
            digest.markdown(),
            "Writing part one.\n- `completed` Write a.txt\n"
        );
        assert_eq!(digest.files.iter().collect::<Vec<_>>(), ["/p/a.txt"]);
    }

    #[test]
    fn a_turns_late_entries_keep_their_place_after_a_newer_turn_began() {
        let mut digest = Digest::default();
        digest.begin("int-1", "Task 1");
        digest.add(
            &json!({"interaction_id": "int-1", "kind": "message", "payload": {"text": "Working."}}),
        );
        digest.begin("int-2", "Also add a test\nwith detail");
        digest.add(
            &json!({"interaction_id": "int-2", "kind": "message", "payload": {"text": "Added."}}),
        );
        digest.add(
            &json!({"interaction_id": "int-1", "kind": "message", "payload": {"text": " Done."}}),
        );
        assert_eq!(
            digest.markdown(),
            "Working. Done.\n\n---\n> Also add a test\n\nAdded."
        );
    }

    #[test]
    fn a_long_digest_shows_its_newest_part() {
        let mut digest = Digest::default();
        digest.add(&json!({"kind": "message", "payload": {"text": "é".repeat(DIGEST_BYTES)}}));
        digest.add(&json!({"kind": "message", "payload": {"text": "the end"}}));
        let text = digest.markdown();
        assert!(text.starts_with("…\n") && text.ends_with("the end"));
        assert!(text.len() <= DIGEST_BYTES + 8);
    }

    #[test]
    fn stored_tool_output_becomes_acp_content() {
        let content = tool_content(&json!([
            {"type": "text", "text": "ok", "truncated": false},
            {"type": "diff", "path": "/p/a.txt", "new_text": "hi"},
            {"type": "terminal", "terminal_id": "term-1"}
        ]));
        assert_eq!(content.len(), 2);
        assert!(matches!(content[1], ToolCallContent::Diff(_)));
    }
}
