//! `LlmClient`: validates the configuration once, then runs completions as a bounded series of
//! attempts, waiting between them as the server or the backoff says and telling the caller when
//! deltas it already received are void.

use std::fmt;
use std::sync::Arc;

use reqwest::Url;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use tokio::sync::mpsc;

use super::attempt::{self, AttemptFailure, DeltaSink};
use super::reply::Reply;
use super::wire::{ChatRequest, StreamOptions};
use super::{ChatMessage, Completion, LlmConfig, LlmError, LlmEvent, retry};

/// A chat-completions client. Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    endpoint: Url,
    /// `Bearer …`, marked sensitive so reqwest never prints it.
    authorization: Option<HeaderValue>,
    config: Arc<LlmConfig>,
}

impl fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `LlmConfig`'s own Debug redacts the key; the header is left out entirely.
        f.debug_struct("LlmClient")
            .field("endpoint", &self.endpoint.as_str())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LlmClient {
    /// Checks the configuration and builds the HTTP client. Fails with `LlmError::Config` on a
    /// base URL that is not http(s), an empty model, zero attempts or an unusable API key.
    pub fn new(config: LlmConfig) -> Result<Self, LlmError> {
        if config.model.trim().is_empty() {
            return Err(LlmError::Config("no model is set".to_owned()));
        }
        if config.max_attempts == 0 {
            return Err(LlmError::Config(
                "max_attempts must be at least 1".to_owned(),
            ));
        }
        let endpoint = endpoint(&config.base_url)?;
        let authorization = match config.api_key.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(key) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                    LlmError::Config(
                        "the API key has characters that cannot be sent in an HTTP header"
                            .to_owned(),
                    )
                })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("spectask/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            endpoint,
            authorization,
            config: Arc::new(config),
        })
    }

    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// Sends the conversation. Streams every content delta through `events` as it arrives
    /// (non-streaming: one `Delta` with the whole content). On a retryable failure it waits
    /// (`Retry-After`, seconds or HTTP date, when present; else exponential backoff with jitter),
    /// sends `LlmEvent::Reset` if any delta of the failed attempt was sent, and tries again, at
    /// most `max_attempts` attempts in total. A closed `events` receiver is not an error.
    ///
    /// When every attempt fails retryably the error is `RetriesExhausted` (or, with
    /// `max_attempts == 1`, the single attempt's own error). When a failure is not retryable it is
    /// returned at once; deltas already sent for that attempt are then simply not followed by a
    /// `Reset`.
    pub async fn complete(
        &self,
        messages: &[ChatMessage],
        events: mpsc::Sender<LlmEvent>,
    ) -> Result<Completion, LlmError> {
        let config = &*self.config;
        let body = ChatRequest {
            model: &config.model,
            messages,
            stream: config.stream,
            stream_options: config.stream.then_some(StreamOptions {
                include_usage: true,
            }),
            temperature: config.temperature,
            max_tokens: config.max_tokens,
        };
        let mut sink = DeltaSink::new(events);
        let mut attempt = 1;
        loop {
            tracing::info!(
                attempt,
                max_attempts = config.max_attempts,
                model = %config.model,
                host = self.endpoint.host_str().unwrap_or(""),
                stream = config.stream,
                messages = messages.len(),
                "chat completion attempt"
            );
            sink.delivered = false;
            let mut reply = Reply::default();
            let result = tokio::time::timeout(
                config.total_timeout,
                attempt::run(self.request(&body), config, &mut sink, &mut reply),
            )
            .await
            .unwrap_or_else(|_| {
                Err(AttemptFailure::from(LlmError::Timeout {
                    phase: "total",
                    after: config.total_timeout,
                }))
            });
            let failure = match result {
                Ok(()) if reply.content.is_empty() => AttemptFailure::from(
                    LlmError::InvalidResponse("the model returned an empty reply".to_owned()),
                ),
                Ok(()) => {
                    tracing::info!(
                        attempt,
                        finish_reason = reply.finish_reason.as_deref().unwrap_or(""),
                        completion_tokens = reply.usage.map(|u| u.completion_tokens),
                        chars = reply.content.chars().count(),
                        "chat completion finished"
                    );
                    return Ok(reply.into_completion(attempt));
                }
                Err(failure) => failure,
            };
            let error = failure.error;
            if !error.is_retryable() {
                tracing::warn!(attempt, error = %error, "chat completion failed; not retryable");
                return Err(error);
            }
            if attempt >= config.max_attempts {
                tracing::warn!(attempt, error = %error, "chat completion failed; no attempts left");
                return Err(if attempt == 1 {
                    error
                } else {
                    LlmError::RetriesExhausted {
                        attempts: attempt,
                        last: Box::new(error),
                    }
                });
            }
            let wait = retry::delay(
                attempt,
                failure.retry_after,
                config.initial_backoff,
                config.max_backoff,
                config.max_retry_after,
            );
            tracing::warn!(
                attempt,
                error = %error,
                retry_after = failure.retry_after.map(|d| d.as_secs_f64()),
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "chat completion attempt failed; retrying"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
            if sink.delivered {
                sink.send(LlmEvent::Reset {
                    attempt,
                    reason: error.to_string(),
                })
                .await;
            }
        }
    }

    fn request(&self, body: &ChatRequest<'_>) -> reqwest::RequestBuilder {
        let accept = if self.config.stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        let request = self
            .http
            .post(self.endpoint.clone())
            .header(ACCEPT, accept)
            .json(body);
        match &self.authorization {
            Some(value) => request.header(AUTHORIZATION, value.clone()),
            None => request,
        }
    }
}

/// `{base_url}/chat/completions`, tolerating a trailing slash on the base URL.
fn endpoint(base_url: &str) -> Result<Url, LlmError> {
    let base = base_url.trim().trim_end_matches('/');
    let url = Url::parse(&format!("{base}/chat/completions"))
        .map_err(|e| LlmError::Config(format!("the base URL `{base_url}` is not a URL: {e}")))?;
    match url.scheme() {
        "http" => {}
        "https" if cfg!(feature = "tls") => {}
        "https" => {
            return Err(LlmError::Config(format!(
                "the base URL `{base_url}` needs HTTPS, which this build lacks \
                 (spectask-runtimes' `tls` feature)"
            )));
        }
        other => {
            return Err(LlmError::Config(format!(
                "the base URL `{base_url}` has scheme `{other}`; expected http or https"
            )));
        }
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(LlmError::Config(format!(
            "the base URL `{base_url}` must not have a query or fragment"
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_tolerate_a_trailing_slash() {
        for base in [
            "http://127.0.0.1:11434/v1",
            "http://127.0.0.1:11434/v1/",
            " http://127.0.0.1:11434/v1// ",
        ] {
            assert_eq!(
                endpoint(base).unwrap().as_str(),
                "http://127.0.0.1:11434/v1/chat/completions"
            );
        }
    }

    #[test]
    fn bad_configurations_are_refused() {
        for base in ["", "localhost:8080", "ftp://x/v1", "http://x/v1?key=1"] {
            assert!(matches!(endpoint(base), Err(LlmError::Config(_))), "{base}");
        }
        let no_model = LlmConfig {
            model: " ".into(),
            ..LlmConfig::default()
        };
        assert!(matches!(LlmClient::new(no_model), Err(LlmError::Config(_))));
        let no_attempts = LlmConfig {
            base_url: "http://127.0.0.1:1/v1".into(),
            max_attempts: 0,
            ..LlmConfig::default()
        };
        assert!(matches!(
            LlmClient::new(no_attempts),
            Err(LlmError::Config(_))
        ));
        let bad_key = LlmConfig {
            base_url: "http://127.0.0.1:1/v1".into(),
            api_key: Some("line\nbreak".into()),
            ..LlmConfig::default()
        };
        assert!(matches!(LlmClient::new(bad_key), Err(LlmError::Config(_))));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let client = LlmClient::new(LlmConfig {
            base_url: "http://127.0.0.1:1/v1".into(),
            api_key: Some("sk-very-secret".into()),
            ..LlmConfig::default()
        })
        .unwrap();
        let shown = format!("{client:?}");
        assert!(!shown.contains("sk-very-secret"), "{shown}");
    }
}
