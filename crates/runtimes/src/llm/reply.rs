//! Assembling a reply: applying streamed chunks one by one, or reading a whole JSON response, into
//! the content, finish reason, usage and model of one attempt. Pure: no I/O, so each rule is a
//! unit test.

use serde_json::Value;

use super::sse::SseEvent;
use super::wire::{self, ChatResponse, ServerError, StreamChunk};
use super::{Completion, LlmError, Usage};

/// What one attempt has received so far.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub content: String,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    pub model: Option<String>,
    /// `data: [DONE]` arrived: the stream is complete.
    pub done: bool,
}

impl Reply {
    /// Applies one stream event; returns the content delta it carried, if any.
    pub fn apply_event(&mut self, event: &SseEvent) -> Result<Option<String>, LlmError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(None);
        }
        let value: Value = serde_json::from_str(data).map_err(|e| {
            LlmError::InvalidResponse(format!(
                "a stream event is not JSON ({e}): {}",
                wire::truncate(data, 200)
            ))
        })?;
        if let Some(error) = wire::server_error(&value) {
            return Err(reported(error));
        }
        if event.event.as_deref() == Some("error") {
            return Err(LlmError::InvalidResponse(format!(
                "the stream reported an error: {}",
                wire::truncate(data, 300)
            )));
        }
        let chunk: StreamChunk = serde_json::from_value(value).map_err(|e| {
            LlmError::InvalidResponse(format!(
                "a stream event is not a chat-completion chunk ({e}): {}",
                wire::truncate(data, 200)
            ))
        })?;
        if let Some(model) = chunk.model.filter(|m| !m.is_empty()) {
            self.model = Some(model);
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        let Some(choice) = chunk
            .choices
            .and_then(|choices| wire::first_choice(choices, |c| c.index))
        else {
            // The usage chunk has no choices; neither do some servers' heartbeats.
            return Ok(None);
        };
        if choice.finish_reason.is_some() {
            self.finish_reason = choice.finish_reason;
        }
        let delta = choice
            .delta
            .and_then(|d| d.content)
            .filter(|c| !c.is_empty());
        if let Some(delta) = &delta {
            self.content.push_str(delta);
        }
        Ok(delta)
    }

    /// Reads a whole, non-streamed response body.
    pub fn from_response(body: &[u8]) -> Result<Self, LlmError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            LlmError::InvalidResponse(format!(
                "the reply is not JSON ({e}): {}",
                wire::truncate(&String::from_utf8_lossy(body), 200)
            ))
        })?;
        if let Some(error) = wire::server_error(&value) {
            return Err(reported(error));
        }
        let response: ChatResponse = serde_json::from_value(value).map_err(|e| {
            LlmError::InvalidResponse(format!("the reply is not a chat completion ({e})"))
        })?;
        let choice = response
            .choices
            .and_then(|choices| wire::first_choice(choices, |c| c.index))
            .ok_or_else(|| LlmError::InvalidResponse("the reply has no choices".to_owned()))?;
        Ok(Self {
            content: choice.message.and_then(|m| m.content).unwrap_or_default(),
            finish_reason: choice.finish_reason,
            usage: response.usage,
            model: response.model.filter(|m| !m.is_empty()),
            done: true,
        })
    }

    pub fn into_completion(self, attempts: u32) -> Completion {
        Completion {
            content: self.content,
            finish_reason: self.finish_reason,
            usage: self.usage,
            attempts,
            model: self.model,
        }
    }
}

/// An error the server reported inside a 200 body: with an HTTP-like code it is that status (so
/// a provider's 502 relayed mid-stream is retried); without one, the reply is unusable.
fn reported(error: ServerError) -> LlmError {
    match error.status {
        Some(status) => LlmError::Status {
            status,
            message: error.message,
        },
        None => LlmError::InvalidResponse(format!(
            "the model server reported an error: {}",
            error.message
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.to_owned(),
        }
    }

    #[test]
    fn a_typical_stream_assembles() {
        let mut reply = Reply::default();
        let events = [
            r#"{"model":"m-1","choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":null}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
            "[DONE]",
        ];
        let deltas: Vec<_> = events
            .iter()
            .filter_map(|e| reply.apply_event(&ev(e)).unwrap())
            .collect();
        assert_eq!(deltas, ["Hel", "lo"]);
        assert_eq!(
            reply,
            Reply {
                content: "Hello".into(),
                finish_reason: Some("stop".into()),
                usage: Some(Usage {
                    prompt_tokens: 3,
                    completion_tokens: 2,
                    total_tokens: 5
                }),
                model: Some("m-1".into()),
                done: true,
            }
        );
    }

    #[test]
    fn errors_inside_a_stream() {
        let mut reply = Reply::default();
        let e = reply
            .apply_event(&ev(r#"{"error":{"message":"upstream died","code":502}}"#))
            .unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert!(e.to_string().contains("upstream died"), "{e}");
        let e = reply
            .apply_event(&ev(r#"{"error":{"message":"content policy"}}"#))
            .unwrap_err();
        assert!(matches!(e, LlmError::InvalidResponse(_)), "{e:?}");
        let e = reply.apply_event(&ev("{not json")).unwrap_err();
        assert!(matches!(e, LlmError::InvalidResponse(_)), "{e:?}");
        let e = reply.apply_event(&ev(r#"{"choices":"nope"}"#)).unwrap_err();
        assert!(matches!(e, LlmError::InvalidResponse(_)), "{e:?}");
    }

    #[test]
    fn whole_responses() {
        let reply = Reply::from_response(
            br#"{"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"length"}]}"#,
        )
        .unwrap();
        assert_eq!(reply.content, "hi");
        assert_eq!(reply.finish_reason.as_deref(), Some("length"));
        for bad in [
            &b"{}"[..],
            br#"{"choices":[]}"#,
            b"<html>",
            br#"{"error":"boom"}"#,
        ] {
            let e = Reply::from_response(bad).unwrap_err();
            assert!(matches!(e, LlmError::InvalidResponse(_)), "{e:?}");
        }
    }
}
