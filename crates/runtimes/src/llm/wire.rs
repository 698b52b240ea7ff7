//! The chat-completions wire format: the request body, the shapes of a streamed chunk and of a
//! whole response, and the error bodies servers send. Only the fields spectask reads are declared;
//! everything is optional because OpenAI-compatible servers differ in what they fill in.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ChatMessage, Usage};

#[derive(Debug, Serialize)]
pub(crate) struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: &'a [ChatMessage],
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

#[derive(Debug, Serialize)]
pub(crate) struct StreamOptions {
    /// Asks for a last chunk carrying the token usage, which streams otherwise omit.
    pub include_usage: bool,
}

/// One `data:` payload of a stream (`object: "chat.completion.chunk"`).
#[derive(Debug, Deserialize)]
pub(crate) struct StreamChunk {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub choices: Option<Vec<StreamChoice>>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct StreamChoice {
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(default)]
    pub delta: Option<Delta>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Delta {
    #[serde(default)]
    pub content: Option<String>,
}

/// A whole, non-streamed response (`object: "chat.completion"`).
#[derive(Debug, Deserialize)]
pub(crate) struct ChatResponse {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub choices: Option<Vec<ResponseChoice>>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ResponseChoice {
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(default)]
    pub message: Option<ResponseMessage>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ResponseMessage {
    #[serde(default)]
    pub content: Option<String>,
}

/// The first choice, by `index` when the server numbers them.
pub(crate) fn first_choice<T>(choices: Vec<T>, index: impl Fn(&T) -> Option<u32>) -> Option<T> {
    let position = choices.iter().position(|c| index(c).unwrap_or(0) == 0)?;
    choices.into_iter().nth(position)
}

/// An error a server reported in a body: its message, and an HTTP-like code when it gave one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerError {
    pub message: String,
    pub status: Option<u16>,
}

/// Finds an error object in a JSON body: OpenAI's `{"error":{"message","code"}}`, Ollama's
/// `{"error":"…"}`, vLLM's `{"object":"error","message","code"}`. `None` when it is not one.
pub(crate) fn server_error(body: &Value) -> Option<ServerError> {
    let object = body.as_object()?;
    if let Some(error) = object.get("error").filter(|e| !e.is_null()) {
        return Some(match error {
            Value::String(message) => ServerError {
                message: message.clone(),
                status: None,
            },
            Value::Object(fields) => ServerError {
                message: fields
                    .get("message")
                    .and_then(Value::as_str)
                    .map_or_else(|| error.to_string(), str::to_owned),
                status: fields.get("code").and_then(http_code),
            },
            other => ServerError {
                message: other.to_string(),
                status: None,
            },
        });
    }
    if object.get("object").and_then(Value::as_str) == Some("error") {
        return Some(ServerError {
            message: object
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| body.to_string(), str::to_owned),
            status: object.get("code").and_then(http_code),
        });
    }
    None
}

/// A code that reads as an HTTP status (OpenRouter sends `"code": 502` inside streams); string
/// codes like `"rate_limit_exceeded"` are not statuses.
fn http_code(code: &Value) -> Option<u16> {
    let n = match code {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    u16::try_from(n).ok().filter(|n| (400..=599).contains(n))
}

/// The message to show for a non-success status: the server's error message when the body has
/// one, else the body itself, shortened.
pub(crate) fn status_message(body: &[u8], canonical_reason: Option<&str>) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        if let Some(error) = server_error(&value) {
            return error.message;
        }
        for key in ["message", "detail"] {
            if let Some(message) = value.get(key).and_then(Value::as_str) {
                return message.to_owned();
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        canonical_reason.unwrap_or("no details given").to_owned()
    } else {
        truncate(text, 300)
    }
}

/// At most `max` characters of `text`, cut at a character boundary, marked when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn error_bodies_of_the_usual_servers() {
        let openai = json!({"error": {"message": "rate limited", "type": "requests", "code": "rate_limit_exceeded"}});
        assert_eq!(
            server_error(&openai),
            Some(ServerError {
                message: "rate limited".into(),
                status: None
            })
        );
        let openrouter = json!({"error": {"message": "provider down", "code": 502}});
        assert_eq!(server_error(&openrouter).and_then(|e| e.status), Some(502));
        let ollama = json!({"error": "model \"x\" not found"});
        assert_eq!(
            server_error(&ollama).map(|e| e.message),
            Some("model \"x\" not found".into())
        );
        let vllm = json!({"object": "error", "message": "bad prompt", "code": 400});
        assert_eq!(server_error(&vllm).and_then(|e| e.status), Some(400));
        assert_eq!(server_error(&json!({"choices": []})), None);
        assert_eq!(server_error(&json!({"error": null})), None);
    }

    #[test]
    fn status_messages_fall_back_to_the_body() {
        assert_eq!(
            status_message(br#"{"error":{"message":"bad key"}}"#, None),
            "bad key"
        );
        assert_eq!(
            status_message(br#"{"detail":"Not Found"}"#, None),
            "Not Found"
        );
        assert_eq!(
            status_message(b"  <html>oops</html> ", None),
            "<html>oops</html>"
        );
        assert_eq!(status_message(b"", Some("Bad Gateway")), "Bad Gateway");
        let long = "é".repeat(500);
        assert_eq!(status_message(long.as_bytes(), None).chars().count(), 301);
    }
}
