//! The chat-completions client against the scripted fake OpenAI server over loopback HTTP:
//! streaming and whole replies, retries with Retry-After and backoff, timeouts of each phase,
//! resets after partial output, malformed replies, and the request the client sends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::json;
use spectask_runtimes::llm::{
    ChatMessage, ChatRole, Completion, LlmClient, LlmConfig, LlmError, LlmEvent,
};
use spectask_test_doubles::fake_openai::{FakeOpenAi, FakeReply};
use tokio::sync::mpsc;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// Short timeouts and backoffs so no test takes more than a moment.
fn config(fake: &FakeOpenAi) -> LlmConfig {
    LlmConfig {
        base_url: fake.base_url(),
        model: "test-model".into(),
        api_key: Some("sk-test".into()),
        stream: true,
        connect_timeout: MS(1000),
        first_byte_timeout: MS(1000),
        idle_timeout: MS(1000),
        total_timeout: MS(5000),
        max_attempts: 3,
        initial_backoff: MS(10),
        max_backoff: MS(40),
        max_retry_after: MS(2000),
        temperature: None,
        max_tokens: None,
    }
}

fn conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("You write specs."),
        ChatMessage::user("Plan a to-do app."),
    ]
}

/// Fails unless `result` is an invalid-response error whose message contains `part`.
fn assert_invalid_response(result: Result<Completion, LlmError>, part: &str) {
    let error = result.unwrap_err();
    assert!(
        matches!(&error, LlmError::InvalidResponse(m) if m.contains(part)),
        "{error:?}"
    );
}

/// Runs one completion and returns its result with every event it sent.
async fn run(config: LlmConfig) -> (Result<Completion, LlmError>, Vec<LlmEvent>) {
    let client = LlmClient::new(config).unwrap();
    let (tx, mut rx) = mpsc::channel(4096);
    let result = client.complete(&conversation(), tx).await;
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    (result, events)
}

fn deltas(events: &[LlmEvent]) -> String {
    events
        .iter()
        .map(|e| match e {
            LlmEvent::Delta(text) => text.as_str(),
            LlmEvent::Reset { .. } => "|RESET|",
        })
        .collect()
}

fn rate_limited(retry_after: &str) -> FakeReply {
    FakeReply::Status {
        status: 429,
        retry_after: Some(retry_after.into()),
        body: json!({"error": {"message": "rate limited"}}),
    }
}

#[tokio::test]
async fn streamed_deltas_arrive_in_order_before_the_completion() {
    let fake = FakeOpenAi::start().await;
    fake.push(FakeReply::Stream {
        chunks: vec!["Hel".into(), "lo ".into(), "world".into()],
        delay: MS(300),
    });
    let client = LlmClient::new(config(&fake)).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let task = tokio::spawn(async move { client.complete(&conversation(), tx).await });

    let first = tokio::time::timeout(MS(2000), rx.recv()).await.unwrap();
    assert_eq!(first, Some(LlmEvent::Delta("Hel".into())));
    // The fake waits 300 ms before each of the two remaining chunks: the completion cannot be
    // done yet, so the first delta was delivered while the reply was still being written.
    assert!(!task.is_finished());

    let completion = task.await.unwrap().unwrap();
    let mut rest = Vec::new();
    while let Some(event) = rx.recv().await {
        rest.push(event);
    }
    assert_eq!(
        rest,
        [
            LlmEvent::Delta("lo ".into()),
            LlmEvent::Delta("world".into())
        ]
    );
    assert_eq!(completion.content, "Hello world");
    assert_eq!(completion.finish_reason.as_deref(), Some("stop"));
    assert_eq!(completion.attempts, 1);
    assert_eq!(completion.model.as_deref(), Some("test-model"));
    let usage = completion.usage.unwrap();
    assert_eq!(usage.completion_tokens, 3);
    assert_eq!(usage.total_tokens, usage.prompt_tokens + 3);
}

#[tokio::test]
async fn a_non_streaming_reply_is_one_delta() {
    let fake = FakeOpenAi::start().await;
    fake.push(FakeReply::Complete {
        content: "The whole spec.".into(),
    });
    // The same streamed script also answers a non-streaming request, as one body.
    fake.push_text_reply("Streamed script, whole reply.");
    let config = LlmConfig {
        stream: false,
        ..config(&fake)
    };

    let (result, events) = run(config.clone()).await;
    let completion = result.unwrap();
    assert_eq!(completion.content, "The whole spec.");
    assert_eq!(completion.finish_reason.as_deref(), Some("stop"));
    assert!(completion.usage.is_some());
    assert_eq!(events, [LlmEvent::Delta("The whole spec.".into())]);

    let (result, events) = run(config).await;
    assert_eq!(result.unwrap().content, "Streamed script, whole reply.");
    assert_eq!(events.len(), 1);

    let body = &fake.requests()[0].body;
    assert_eq!(body["stream"], json!(false));
    assert!(body.get("stream_options").is_none(), "{body}");
}

#[tokio::test]
async fn a_429_is_retried_after_retry_after() {
    let fake = FakeOpenAi::start().await;
    fake.push(rate_limited("1"));
    fake.push_text_reply("after the rate limit");

    let (result, events) = run(config(&fake)).await;
    let completion = result.unwrap();
    assert_eq!(completion.content, "after the rate limit");
    assert_eq!(completion.attempts, 2);
    // The failed attempt sent no delta, so there is nothing to reset.
    assert_eq!(deltas(&events), "after the rate limit");

    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].received_at - requests[0].received_at;
    assert!(
        waited >= MS(950),
        "retried after {waited:?}, not after Retry-After: 1"
    );
}

#[tokio::test]
async fn retry_after_is_clamped_to_the_configured_maximum() {
    let fake = FakeOpenAi::start().await;
    fake.push(rate_limited("3600"));
    fake.push_text_reply("soon enough");
    let config = LlmConfig {
        max_retry_after: MS(100),
        ..config(&fake)
    };
    let started = Instant::now();
    let (result, _) = run(config).await;
    assert_eq!(result.unwrap().attempts, 2);
    assert!(started.elapsed() < MS(3000));
}

#[tokio::test]
async fn five_500s_exhaust_five_attempts_with_the_reason() {
    let fake = FakeOpenAi::start().await;
    for _ in 0..5 {
        fake.push(FakeReply::Status {
            status: 500,
            retry_after: None,
            body: json!({"error": {"message": "upstream exploded"}}),
        });
    }
    let config = LlmConfig {
        max_attempts: 5,
        ..config(&fake)
    };

    let (result, events) = run(config).await;
    let error = result.unwrap_err();
    let LlmError::RetriesExhausted { attempts, last } = &error else {
        panic!("expected RetriesExhausted, got {error:?}");
    };
    assert_eq!(*attempts, 5);
    assert!(
        matches!(**last, LlmError::Status { status: 500, .. }),
        "{last:?}"
    );
    let message = error.to_string();
    assert!(message.contains("5 attempts"), "{message}");
    assert!(message.contains("HTTP 500"), "{message}");
    assert!(message.contains("upstream exploded"), "{message}");
    assert!(!error.is_retryable());
    assert!(events.is_empty());
    assert_eq!(fake.requests().len(), 5);
}

#[tokio::test]
async fn a_400_fails_fast() {
    let fake = FakeOpenAi::start().await;
    fake.push(FakeReply::Status {
        status: 400,
        retry_after: None,
        body: json!({"error": {"message": "unknown model test-model", "type": "invalid_request_error"}}),
    });
    fake.push_text_reply("never requested");

    let (result, _) = run(config(&fake)).await;
    assert_eq!(
        result.unwrap_err(),
        LlmError::Status {
            status: 400,
            message: "unknown model test-model".into()
        }
    );
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(fake.pending_replies(), 1);
}

#[tokio::test]
async fn a_hung_server_times_out_on_every_attempt() {
    let fake = FakeOpenAi::start().await;
    for _ in 0..3 {
        fake.push(FakeReply::Hang);
    }
    let config = LlmConfig {
        first_byte_timeout: MS(200),
        ..config(&fake)
    };

    let (result, _) = run(config).await;
    let error = result.unwrap_err();
    let LlmError::RetriesExhausted { attempts: 3, last } = &error else {
        panic!("expected RetriesExhausted after 3 attempts, got {error:?}");
    };
    assert_eq!(
        **last,
        LlmError::Timeout {
            phase: "first byte",
            after: MS(200)
        }
    );
    assert!(
        error
            .to_string()
            .contains("did not start answering within 200ms"),
        "{error}"
    );
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn a_stream_that_goes_silent_hits_the_idle_timeout() {
    let fake = FakeOpenAi::start().await;
    fake.push(FakeReply::StreamThenHang {
        chunks: vec!["partial ".into(), "spec".into()],
    });
    let config = LlmConfig {
        idle_timeout: MS(300),
        max_attempts: 1,
        ..config(&fake)
    };

    let (result, events) = run(config).await;
    assert_eq!(
        result.unwrap_err(),
        LlmError::Timeout {
            phase: "idle",
            after: MS(300)
        }
    );
    assert_eq!(deltas(&events), "partial spec");
}

#[tokio::test]
async fn a_slow_stream_hits_the_total_timeout() {
    let fake = FakeOpenAi::start().await;
    fake.push(FakeReply::Stream {
        chunks: vec!["a".into(); 20],
        delay: MS(100),
    });
    let config = LlmConfig {
        total_timeout: MS(400),
        max_attempts: 1,
        ..config(&fake)
    };
    let (result, events) = run(config).await;
    assert_eq!(
        result.unwrap_err(),
        LlmError::Timeout {
            phase: "total",
            after: MS(400)
        }
    );
    assert!(!events.is_empty());
}

#[tokio::test]
async fn a_dropped_stream_is_reset_and_retried() {
    let fake = FakeOpenAi::start().await;
    fake.push(FakeReply::StreamThenDrop {
        chunks: vec!["first ".into(), "draft".into()],
    });
    fake.push_text_reply("the final spec");

    let (result, events) = run(config(&fake)).await;
    let completion = result.unwrap();
    assert_eq!(completion.content, "the final spec");
    assert_eq!(completion.attempts, 2);
    assert_eq!(deltas(&events), "first draft|RESET|the final spec");
    let reset = events
        .iter()
        .find(|e| matches!(e, LlmEvent::Reset { .. }))
        .unwrap();
    let LlmEvent::Reset { attempt, reason } = reset else {
        unreachable!()
    };
    assert_eq!(*attempt, 2);
    assert!(reason.contains("connection"), "{reason}");
}

#[tokio::test]
async fn a_stream_closed_before_it_finished_is_retried() {
    let fake = FakeOpenAi::start().await;
    // A clean end of body, but without a finish reason or `[DONE]`.
    fake.push(FakeReply::RawSse(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"half\"}}]}\n\n".into(),
    ));
    fake.push_text_reply("whole");

    let (result, events) = run(config(&fake)).await;
    assert_eq!(result.unwrap().content, "whole");
    assert_eq!(deltas(&events), "half|RESET|whole");
}

#[tokio::test]
async fn malformed_sse_is_an_invalid_response_and_not_retried() {
    let fake = FakeOpenAi::start().await;
    fake.push(FakeReply::RawSse(
        "data: {\"choices\":[{\"delta\": oops\n\n".into(),
    ));
    fake.push_text_reply("never requested");

    let (result, _) = run(config(&fake)).await;
    let error = result.unwrap_err();
    assert!(matches!(error, LlmError::InvalidResponse(_)), "{error:?}");
    assert!(!error.is_retryable());
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn a_body_that_is_not_an_event_stream_is_invalid() {
    let fake = FakeOpenAi::start().await;
    fake.push(FakeReply::RawSse("<html>proxy login</html>".into()));
    let (result, _) = run(config(&fake)).await;
    assert_invalid_response(result, "proxy login");
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn errors_inside_a_200_stream() {
    let fake = FakeOpenAi::start().await;
    // With an HTTP-like code the error is that status: 503 is retried.
    fake.push(FakeReply::RawSse(
        "data: {\"error\":{\"message\":\"provider overloaded\",\"code\":503}}\n\n".into(),
    ));
    fake.push_text_reply("recovered");
    let (result, _) = run(config(&fake)).await;
    assert_eq!(result.unwrap().attempts, 2);

    // Without one the reply is unusable, and asking again would not help.
    fake.push(FakeReply::RawSse(
        ": keep-alive\n\ndata: {\"error\":{\"message\":\"content filtered\"}}\n\n".into(),
    ));
    fake.push_text_reply("never requested");
    let (result, _) = run(config(&fake)).await;
    assert_invalid_response(result, "content filtered");
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn an_empty_reply_is_invalid() {
    let fake = FakeOpenAi::start().await;
    fake.push(FakeReply::RawSse(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n\
         data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
         data: [DONE]\n\n"
            .into(),
    ));
    let (result, events) = run(config(&fake)).await;
    assert_invalid_response(result, "empty");
    assert!(events.is_empty());
}

#[tokio::test]
async fn tolerant_sse_crlf_comments_multiline_data_and_no_done() {
    let fake = FakeOpenAi::start().await;
    fake.push(FakeReply::RawSse(
        ": keep-alive\r\n\r\n\
         data: {\"model\":\"served-model\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\r\n\r\n\
         data: {\"choices\":\r\ndata: [{\"index\":0,\"delta\":{\"content\":\"multi\"}}]}\r\n\r\n\
         data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":null}}]}\r\n\r\n\
         data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"-line\"},\"finish_reason\":\"length\"}]}\r\n\r\n"
            .into(),
    ));
    let (result, events) = run(config(&fake)).await;
    let completion = result.unwrap();
    assert_eq!(completion.content, "multi-line");
    assert_eq!(completion.finish_reason.as_deref(), Some("length"));
    assert_eq!(completion.model.as_deref(), Some("served-model"));
    assert_eq!(completion.usage, None);
    assert_eq!(deltas(&events), "multi-line");
}

#[tokio::test]
async fn utf8_split_across_tcp_chunks_arrives_whole() {
    let fake = FakeOpenAi::start().await;
    let text = "仕様 🦀 ✓ é";
    let frame = format!(
        "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
        json!({"choices": [{"index": 0, "delta": {"content": text}}]}),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
    );
    // Cut the bytes every 3 bytes, which lands inside most of the multi-byte characters.
    let chunks = frame.as_bytes().chunks(3).map(<[u8]>::to_vec).collect();
    fake.push(FakeReply::RawSseChunks {
        chunks,
        delay: MS(1),
    });
    // And the content split into chunks by the fake, between characters.
    fake.push_text_reply("日本語の仕様書を書きます 🦀🦀🦀 — done ✓");

    let (result, _) = run(config(&fake)).await;
    assert_eq!(result.unwrap().content, text);
    let (result, events) = run(config(&fake)).await;
    let content = result.unwrap().content;
    assert_eq!(content, "日本語の仕様書を書きます 🦀🦀🦀 — done ✓");
    assert_eq!(deltas(&events), content);
    assert!(events.len() > 8, "{events:?}");
}

#[tokio::test]
async fn the_request_carries_model_messages_stream_and_key() {
    let fake = FakeOpenAi::start().await;
    fake.push_text_reply("ok");
    fake.push_text_reply("ok");
    let with_options = LlmConfig {
        temperature: Some(0.25),
        max_tokens: Some(2048),
        ..config(&fake)
    };
    run(with_options).await.0.unwrap();
    let without_key = LlmConfig {
        api_key: None,
        ..config(&fake)
    };
    run(without_key).await.0.unwrap();

    let requests = fake.requests();
    assert_eq!(requests[0].authorization.as_deref(), Some("Bearer sk-test"));
    assert_eq!(
        requests[0].body,
        json!({
            "model": "test-model",
            "messages": [
                {"role": "system", "content": "You write specs."},
                {"role": "user", "content": "Plan a to-do app."},
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": 0.25,
            "max_tokens": 2048,
        })
    );
    assert_eq!(requests[1].authorization, None);
    assert!(requests[1].body.get("temperature").is_none());
    assert_eq!(
        serde_json::to_value(ChatRole::Assistant).unwrap(),
        json!("assistant")
    );
}

#[tokio::test]
async fn a_trailing_slash_on_the_base_url_is_tolerated() {
    let fake = FakeOpenAi::start().await;
    fake.push_text_reply("slash");
    let config = LlmConfig {
        base_url: format!("{}/", fake.base_url()),
        ..config(&fake)
    };
    assert_eq!(run(config).await.0.unwrap().content, "slash");
}

#[tokio::test]
async fn a_closed_event_receiver_is_not_an_error() {
    let fake = FakeOpenAi::start().await;
    fake.push_text_reply("nobody is watching");
    let client = LlmClient::new(config(&fake)).unwrap();
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let completion = client.complete(&conversation(), tx).await.unwrap();
    assert_eq!(completion.content, "nobody is watching");
}

#[tokio::test]
async fn a_refused_connection_is_a_retried_transport_error() {
    // Bind then drop a listener, so the port is (almost certainly) closed.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let fake = FakeOpenAi::start().await;
    let config = LlmConfig {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        max_attempts: 2,
        ..config(&fake)
    };
    let (result, _) = run(config).await;
    let error = result.unwrap_err();
    let LlmError::RetriesExhausted { attempts: 2, last } = &error else {
        panic!("expected RetriesExhausted, got {error:?}");
    };
    assert!(matches!(**last, LlmError::Transport(_)), "{last:?}");
}

#[tokio::test]
async fn an_empty_script_answers_500_loudly() {
    let fake = FakeOpenAi::start().await;
    let config = LlmConfig {
        max_attempts: 1,
        ..config(&fake)
    };
    let (result, _) = run(config).await;
    let error = result.unwrap_err();
    assert!(
        error.to_string().contains("fake: no scripted reply"),
        "{error}"
    );
    let requests = fake.wait_for_requests(1, MS(100)).await;
    assert_eq!(requests.len(), 1);
}
