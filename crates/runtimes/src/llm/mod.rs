//! The OpenAI chat-completions client used by the planning agent: its configuration, the
//! conversation and result types, and the events a caller watches while a reply streams in.
//!
//! It speaks the API that OpenAI, Ollama, vLLM, LiteLLM, OpenRouter and Helix share: a POST to
//! `{base_url}/chat/completions`, streamed as server-sent events or answered in one JSON body.
//! Retries, timeouts and the wire format stay inside this module; callers get owned values.

mod attempt;
mod client;
mod config;
mod error;
mod reply;
mod retry;
mod sse;
mod wire;

use serde::{Deserialize, Serialize};

pub use client::LlmClient;
pub use config::LlmConfig;
pub use error::LlmError;

/// Who wrote a message of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

/// One message of the conversation sent to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::System,
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::User,
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::Assistant,
            content: content.into(),
        }
    }
}

/// What the caller sees while a completion is in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmEvent {
    /// A piece of the reply's content, in order. Concatenating the deltas sent since the last
    /// `Reset` gives the reply so far.
    Delta(String),
    /// The attempt that sent the deltas before this event failed and is being retried: those
    /// deltas are void. `attempt` is the attempt now starting (2 for the first retry); `reason`
    /// says why the previous one failed. Sent only when that attempt had sent a delta.
    Reset { attempt: u32, reason: String },
}

/// Token counts as reported by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u32,
    #[serde(default)]
    pub completion_tokens: u32,
    #[serde(default)]
    pub total_tokens: u32,
}

/// The result of a successful completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The full reply of the successful attempt (never empty).
    pub content: String,
    pub finish_reason: Option<String>,
    /// Present when the server reports it (streaming asks for it with `stream_options`).
    pub usage: Option<Usage>,
    /// Attempts made, including the successful one.
    pub attempts: u32,
    /// The model as reported by the server, which may differ from the one requested.
    pub model: Option<String>,
}
