//! A prompt in a work session's thread: sent to that thread as a follow-up message
//! (`POST /work-sessions/{id}/message`), whose turn then streams in as the agent's own updates
//! until it ends. `session/cancel` cancels the work session.

use agent_client_protocol::Error;
use agent_client_protocol::v1::schema::StopReason;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::api_error;
use super::editor::Editor;
use super::thread::{Cursor, Replayer};
use crate::client::Client;
use crate::task::basics::encode;
use crate::task::events::{EventStream, Next};

pub struct WorkThread<'a> {
    pub client: &'a Client,
    pub editor: &'a Editor,
    pub task_id: &'a str,
    pub ws_id: &'a str,
    pub helix: &'a str,
}

impl WorkThread<'_> {
    pub async fn prompt(
        &self,
        text: &str,
        mut cancel: watch::Receiver<bool>,
    ) -> Result<StopReason, Error> {
        // Connected before the message is queued: none of its turn's events can be missed.
        let mut stream = EventStream::connect(self.client, self.task_id)
            .await
            .map_err(api_error)?;
        let queued = self
            .client
            .post(
                &format!("/work-sessions/{}/message", encode(self.ws_id)),
                &json!({"text": text}),
            )
            .await
            .map_err(api_error)?;
        let turn_id = queued["turn_id"].as_str().unwrap_or_default().to_owned();
        let interaction = self.interaction_of(&turn_id).await?;
        let mut cursor = Cursor::default();
        let mut replayer = Replayer::default();
        loop {
            for entry in cursor
                .read(self.client, self.helix, &interaction)
                .await
                .map_err(api_error)?
            {
                replayer.send(self.editor, &entry)?;
            }
            if let Some(reason) = self.ended(&interaction, &mut cursor, &mut replayer).await? {
                return Ok(reason);
            }
            // Any event may be the turn's end or new output; both are read again above.
            loop {
                let next = tokio::select! {
                    next = stream.next() => Some(next.map_err(api_error)?),
                    _ = cancel.wait_for(|cancelled| *cancelled) => None,
                };
                match next {
                    None => {
                        self.client
                            .post(
                                &format!("/work-sessions/{}/cancel", encode(self.ws_id)),
                                &json!({}),
                            )
                            .await
                            .map_err(api_error)?;
                        return Ok(StopReason::Cancelled);
                    }
                    Some(Next::Event(event)) if self.concerns(&event) => break,
                    Some(Next::Resumed) => break,
                    Some(_) => {}
                }
            }
        }
    }

    fn concerns(&self, event: &Value) -> bool {
        let payload = &event["payload"];
        payload["session_id"].as_str() == Some(self.helix)
            || event["entity_id"].as_str() == Some(self.ws_id)
            || payload["work_session_id"].as_str() == Some(self.ws_id)
            || event["kind"]
                .as_str()
                .is_some_and(|kind| kind.starts_with("turn."))
    }

    /// The interaction the queued turn writes.
    async fn interaction_of(&self, turn_id: &str) -> Result<String, Error> {
        let detail = self
            .client
            .get(&format!("/work-sessions/{}", encode(self.ws_id)))
            .await
            .map_err(api_error)?;
        detail["turns"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|turn| turn["id"] == turn_id)
            .and_then(|turn| turn["interaction_id"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| Error::internal_error().data(format!("turn {turn_id} not found")))
    }

    /// `Some` once the interaction has ended, after its last entries were sent.
    async fn ended(
        &self,
        interaction: &str,
        cursor: &mut Cursor,
        replayer: &mut Replayer,
    ) -> Result<Option<StopReason>, Error> {
        let session = self
            .client
            .get(&format!("/sessions/{}", encode(self.helix)))
            .await
            .map_err(api_error)?;
        let Some(found) = session["interactions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["id"] == interaction)
        else {
            return Ok(None);
        };
        let state = found["state"].as_str().unwrap_or("waiting");
        if state == "waiting" {
            return Ok(None);
        }
        // Entries written between the last read and the end.
        for entry in cursor
            .read(self.client, self.helix, interaction)
            .await
            .map_err(api_error)?
        {
            replayer.send(self.editor, &entry)?;
        }
        if let Some(error) = found["error"].as_str() {
            self.editor
                .text(&format!("\n\n**The turn ended: {error}**\n"))?;
        }
        Ok(Some(if state == "interrupted" {
            StopReason::Cancelled
        } else {
            StopReason::EndTurn
        }))
    }
}
