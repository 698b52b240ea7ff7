//! What spectask sends the editor for one of its threads: message chunks, the plan, tool calls
//! and permission questions, as ACP `session/update` notifications and requests.

use agent_client_protocol::v1::ConnectionTo;
use agent_client_protocol::v1::schema::{
    ContentBlock, ContentChunk, PermissionOption, Plan, RequestPermissionOutcome,
    RequestPermissionRequest, RequestPermissionResponse, ResourceLink, SessionId,
    SessionInfoUpdate, SessionNotification, SessionUpdate, TextContent, ToolCall, ToolCallUpdate,
};
use agent_client_protocol::{Client, Error};

/// One editor thread's outgoing side.
#[derive(Clone)]
pub struct Editor {
    cx: ConnectionTo<Client>,
    session: SessionId,
}

impl Editor {
    pub fn new(cx: ConnectionTo<Client>, session: SessionId) -> Self {
        Self { cx, session }
    }

    fn send(&self, update: SessionUpdate) -> Result<(), Error> {
        self.cx
            .send_notification(SessionNotification::new(self.session.clone(), update))
    }

    /// Agent text (Markdown).
    pub fn text(&self, text: &str) -> Result<(), Error> {
        if text.is_empty() {
            return Ok(());
        }
        self.send(SessionUpdate::AgentMessageChunk(ContentChunk::new(
            ContentBlock::Text(TextContent::new(text)),
        )))
    }

    /// What the user said, replayed by `session/load`.
    pub fn user_text(&self, text: &str) -> Result<(), Error> {
        self.send(SessionUpdate::UserMessageChunk(ContentChunk::new(
            ContentBlock::Text(TextContent::new(text)),
        )))
    }

    pub fn thought(&self, text: &str) -> Result<(), Error> {
        self.send(SessionUpdate::AgentThoughtChunk(ContentChunk::new(
            ContentBlock::Text(TextContent::new(text)),
        )))
    }

    /// A link the editor can open (a spec document).
    pub fn link(&self, name: &str, uri: &str) -> Result<(), Error> {
        self.send(SessionUpdate::AgentMessageChunk(ContentChunk::new(
            ContentBlock::ResourceLink(ResourceLink::new(name, uri).mime_type("text/markdown")),
        )))
    }

    pub fn plan(&self, plan: Plan) -> Result<(), Error> {
        self.send(SessionUpdate::Plan(plan))
    }

    pub fn tool_call(&self, call: ToolCall) -> Result<(), Error> {
        self.send(SessionUpdate::ToolCall(call))
    }

    pub fn tool_update(&self, update: ToolCallUpdate) -> Result<(), Error> {
        self.send(SessionUpdate::ToolCallUpdate(update))
    }

    /// The thread's title (the task's name once it has one).
    pub fn title(&self, title: &str) -> Result<(), Error> {
        self.send(SessionUpdate::SessionInfoUpdate(
            SessionInfoUpdate::new().title(title.to_owned()),
        ))
    }

    /// Asks the person at the editor; `None` when the editor cancelled the question (the turn
    /// was cancelled).
    pub async fn ask(
        &self,
        tool_call: ToolCallUpdate,
        options: Vec<PermissionOption>,
    ) -> Result<Option<String>, Error> {
        let request = RequestPermissionRequest::new(self.session.clone(), tool_call, options);
        let response: RequestPermissionResponse =
            self.cx.send_request(request).block_task().await?;
        Ok(match response.outcome {
            RequestPermissionOutcome::Selected(selected) => Some(selected.option_id.to_string()),
            _ => None,
        })
    }
}
