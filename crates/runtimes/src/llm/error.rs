//! `LlmError`: every way a completion can fail, worded so the message can be shown to a user as
//! the failure reason, and which of them are worth retrying.

use std::time::Duration;

/// Why a completion failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// A timeout of one attempt; `phase` is "connect", "first byte", "idle" or "total".
    #[error("{}", timeout_message(phase, *after))]
    Timeout {
        phase: &'static str,
        after: Duration,
    },
    /// An HTTP status, or an error with a status code reported inside a stream. `message` comes
    /// from the server's error body when it has one, else the truncated body.
    #[error("the model server answered HTTP {status}: {message}")]
    Status { status: u16, message: String },
    /// Every attempt failed with a retryable error; `last` is the final attempt's.
    #[error("gave up after {attempts} attempts; the last one failed: {last}")]
    RetriesExhausted { attempts: u32, last: Box<LlmError> },
    /// The connection failed: refused, reset, closed before the reply was complete.
    #[error("the connection to the model server failed: {0}")]
    Transport(String),
    /// The server answered, but not with a usable chat completion.
    #[error("the model server sent an unusable reply: {0}")]
    InvalidResponse(String),
    /// The configuration cannot work (bad base URL, empty model, …).
    #[error("the model configuration is invalid: {0}")]
    Config(String),
}

impl LlmError {
    /// Whether another attempt may succeed: rate limits, server errors, timeouts and transport
    /// failures. Other client errors and unusable replies would fail the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => is_retryable_status(*status),
            Self::Timeout { .. } | Self::Transport(_) => true,
            Self::RetriesExhausted { .. } | Self::InvalidResponse(_) | Self::Config(_) => false,
        }
    }
}

/// 408 and 429 ask to come back later; 5xx are the server's trouble, except 501 and 505, which
/// say the request itself can never work there.
fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429) || ((500..=599).contains(&status) && !matches!(status, 501 | 505))
}

fn timeout_message(phase: &str, after: Duration) -> String {
    let after = human_duration(after);
    match phase {
        "connect" => format!("could not connect to the model server within {after}"),
        "first byte" => format!("the model server did not start answering within {after}"),
        "idle" => format!("the model server went silent for {after} in the middle of the reply"),
        "total" => format!("the model server did not finish the reply within {after}"),
        other => format!("the model server timed out ({other}) after {after}"),
    }
}

/// "250ms", "2s", "1.5s", "30m": short and readable in a failure reason.
pub(crate) fn human_duration(d: Duration) -> String {
    let millis = d.as_millis();
    if millis < 1000 {
        format!("{millis}ms")
    } else if millis.is_multiple_of(60_000) {
        format!("{}m", millis / 60_000)
    } else if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        for status in [408, 429, 500, 502, 503, 504, 529] {
            let e = LlmError::Status {
                status,
                message: String::new(),
            };
            assert!(e.is_retryable(), "{status}");
        }
        for status in [400, 401, 403, 404, 422, 501, 505] {
            let e = LlmError::Status {
                status,
                message: String::new(),
            };
            assert!(!e.is_retryable(), "{status}");
        }
        assert!(LlmError::Transport("reset".into()).is_retryable());
        assert!(!LlmError::InvalidResponse("bad".into()).is_retryable());
    }

    #[test]
    fn messages_read_as_reasons() {
        let e = LlmError::RetriesExhausted {
            attempts: 3,
            last: Box::new(LlmError::Timeout {
                phase: "first byte",
                after: Duration::from_millis(1500),
            }),
        };
        assert_eq!(
            e.to_string(),
            "gave up after 3 attempts; the last one failed: \
             the model server did not start answering within 1.5s"
        );
        assert_eq!(human_duration(Duration::from_secs(1800)), "30m");
        assert_eq!(human_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(human_duration(Duration::from_secs(10)), "10s");
    }
}
