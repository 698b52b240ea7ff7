//! `LlmConfig`: where the model server is, which model to ask, and the timeout and retry budget.
//! Its `Debug` is written by hand so the API key never reaches a log line.

use std::fmt;
use std::time::Duration;

/// How to reach the model server and how patient to be with it.
#[derive(Clone, PartialEq)]
pub struct LlmConfig {
    /// The API root, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`; requests go
    /// to `{base_url}/chat/completions` (a trailing slash is tolerated).
    pub base_url: String,
    pub model: String,
    /// Sent as `Authorization: Bearer …` when set. Never logged and never shown by `Debug`.
    pub api_key: Option<String>,
    /// `true`: ask for a server-sent-event stream; `false`: one JSON response.
    pub stream: bool,
    pub connect_timeout: Duration,
    /// From sending the request until the response headers arrive.
    pub first_byte_timeout: Duration,
    /// The longest gap between two stream chunks (non-streaming: until the whole body arrived).
    pub idle_timeout: Duration,
    /// One attempt, end to end.
    pub total_timeout: Duration,
    /// Attempts in total, including the first (at least 1).
    pub max_attempts: u32,
    /// The first retry's backoff; doubled per retry, capped by `max_backoff`, with jitter.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this is clamped to it.
    pub max_retry_after: Duration,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
}

impl Default for LlmConfig {
    /// Production defaults: patient with slow first tokens (large prompts on local models), bounded
    /// overall so a wedged server cannot hold a planning session for ever.
    fn default() -> Self {
        Self {
            base_url: "https://api.openai.com/v1".to_owned(),
            model: "gpt-4o".to_owned(),
            api_key: None,
            stream: true,
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(120),
            total_timeout: Duration::from_secs(30 * 60),
            max_attempts: 4,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            temperature: None,
            max_tokens: None,
        }
    }
}

impl fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("stream", &self.stream)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("max_retry_after", &self.max_retry_after)
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_api_key() {
        let config = LlmConfig {
            api_key: Some("sk-secret-value".to_owned()),
            ..LlmConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("sk-secret-value"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
