//! Each scripted behaviour played through `run_turn`, and scripts read from JSON.

use std::time::Duration;

use spectask_runtimes::agent::{AgentError, AgentEvent, AgentRuntime, StopReason};
use tokio::sync::mpsc;

use super::*;
use crate::scripted::{Behaviour, Dispatch, Rule, Script};

#[tokio::test]
async fn succeed_streams_numbered_chunks_then_ends_the_turn() {
    let (runtime, thread) = runtime_with_thread(Script::always(succeed(3))).await;
    let (result, events) = run(&runtime, &request("i1", &thread, "turn_a", "do it")).await;
    assert_eq!(result, Ok(StopReason::EndTurn));
    assert_eq!(
        events,
        vec![
            chunk(1, 3, "turn_a"),
            chunk(2, 3, "turn_a"),
            chunk(3, 3, "turn_a")
        ]
    );
    let dispatches = runtime.dispatches();
    assert_eq!(dispatches.len(), 1);
    let d = &dispatches[0];
    assert_eq!(
        (&*d.turn_id, &*d.thread_id, &*d.instance_id, &*d.prompt),
        ("turn_a", &*thread, instance_id("i1").as_str(), "do it")
    );
    assert_eq!(d.outcome.as_deref(), Some("end_turn"));
    assert!(d.ended_at_ms.unwrap() >= d.started_at_ms);
    assert_eq!(runtime.running_turns(), 0);
    assert_eq!(runtime.kind(), "scripted");
}

#[tokio::test]
async fn fail_sends_some_chunks_then_fails() {
    let script = Script::always(Behaviour::Fail {
        message: "boom".into(),
        after_chunks: 2,
    });
    let (runtime, thread) = runtime_with_thread(script).await;
    let (result, events) = run(&runtime, &request("i1", &thread, "t", "p")).await;
    assert_eq!(result, Err(AgentError::Failed("boom".into())));
    assert_eq!(events, vec![chunk(1, 2, "t"), chunk(2, 2, "t")]);
    assert_eq!(
        runtime.dispatches()[0].outcome.as_deref(),
        Some("failed: boom")
    );
}

#[tokio::test]
async fn refuse_returns_refusal_without_output() {
    let (runtime, thread) = runtime_with_thread(Script::always(Behaviour::Refuse)).await;
    let (result, events) = run(&runtime, &request("i1", &thread, "t", "p")).await;
    assert_eq!(result, Ok(StopReason::Refusal));
    assert!(events.is_empty());
    assert_eq!(runtime.dispatches()[0].outcome.as_deref(), Some("refusal"));
}

#[tokio::test]
async fn hang_ends_on_cancel_turn() {
    let (runtime, thread) = runtime_with_thread(Script::always(Behaviour::Hang)).await;
    let (tx, _rx) = mpsc::channel(8);
    let turn = {
        let runtime = runtime.clone();
        let request = request("i1", &thread, "t", "p");
        tokio::spawn(async move { runtime.run_turn(&request, tx).await })
    };
    until_running(&runtime, 1).await;
    assert_eq!(runtime.dispatches()[0].outcome, None);
    runtime
        .cancel_turn(&instance_id("i1"), &thread_id(&thread))
        .await
        .unwrap();
    let result = tokio::time::timeout(LONG, turn).await.unwrap().unwrap();
    assert_eq!(result, Ok(StopReason::Cancelled));
    assert_eq!(
        runtime.dispatches()[0].outcome.as_deref(),
        Some("cancelled")
    );
    assert_eq!(runtime.running_turns(), 0);
}

#[tokio::test]
async fn ignore_cancel_outlives_cancel_turn_and_ends_only_when_dropped() {
    let (runtime, thread) = runtime_with_thread(Script::always(Behaviour::IgnoreCancel)).await;
    let (tx, _rx) = mpsc::channel(8);
    let turn = {
        let runtime = runtime.clone();
        let request = request("i1", &thread, "t", "p");
        tokio::spawn(async move { runtime.run_turn(&request, tx).await })
    };
    until_running(&runtime, 1).await;
    runtime
        .cancel_turn(&instance_id("i1"), &thread_id(&thread))
        .await
        .unwrap();
    tokio::task::yield_now().await;
    assert!(!turn.is_finished(), "a cancel does not end it");
    assert_eq!(runtime.running_turns(), 1);
    assert_eq!(runtime.dispatches()[0].outcome, None);
    turn.abort();
    until_running(&runtime, 0).await;
    assert_eq!(runtime.dispatches()[0].outcome.as_deref(), Some("dropped"));
}

#[tokio::test]
async fn cancel_turn_stops_a_slow_turn_mid_stream() {
    let script = Script::always(Behaviour::Succeed {
        chunks: 1000,
        chunk_delay_ms: 5,
    });
    let (runtime, thread) = runtime_with_thread(script).await;
    let (tx, mut rx) = mpsc::channel(2000);
    let turn = {
        let runtime = runtime.clone();
        let request = request("i1", &thread, "t", "p");
        tokio::spawn(async move { runtime.run_turn(&request, tx).await })
    };
    rx.recv().await.unwrap();
    runtime
        .cancel_turn(&instance_id("i1"), &thread_id(&thread))
        .await
        .unwrap();
    let result = tokio::time::timeout(LONG, turn).await.unwrap().unwrap();
    assert_eq!(result, Ok(StopReason::Cancelled));
}

#[tokio::test]
async fn a_dropped_turn_is_recorded_and_stops_running() {
    let (runtime, thread) = runtime_with_thread(Script::always(Behaviour::Hang)).await;
    let (tx, _rx) = mpsc::channel(8);
    let request = request("i1", &thread, "t", "p");
    let hung =
        tokio::time::timeout(Duration::from_millis(20), runtime.run_turn(&request, tx)).await;
    assert!(hung.is_err(), "a hanging turn does not end by itself");
    assert_eq!(runtime.running_turns(), 0);
    assert_eq!(runtime.dispatches()[0].outcome.as_deref(), Some("dropped"));
    // The thread is free again.
    runtime.set_script(Script::always(Behaviour::Refuse));
    assert_eq!(run(&runtime, &request).await.0, Ok(StopReason::Refusal));
}

#[tokio::test]
async fn flood_delivers_every_update_in_order_under_backpressure() {
    let (runtime, thread) =
        runtime_with_thread(Script::always(Behaviour::Flood { updates: 500 })).await;
    let (tx, mut rx) = mpsc::channel(1);
    let turn = {
        let runtime = runtime.clone();
        let request = request("i1", &thread, "t", "p");
        tokio::spawn(async move { runtime.run_turn(&request, tx).await })
    };
    let mut received = Vec::new();
    while let Some(event) = rx.recv().await {
        received.push(event);
    }
    assert_eq!(turn.await.unwrap(), Ok(StopReason::EndTurn));
    let expected: Vec<_> = (1..=500).map(|i| chunk(i, 500, "t")).collect();
    assert_eq!(received, expected);
}

#[tokio::test]
async fn a_closed_receiver_does_not_stop_the_turn() {
    let (runtime, thread) =
        runtime_with_thread(Script::always(Behaviour::Flood { updates: 50 })).await;
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let request = request("i1", &thread, "t", "p");
    let result = tokio::time::timeout(LONG, runtime.run_turn(&request, tx)).await;
    assert_eq!(result.unwrap(), Ok(StopReason::EndTurn));
}

#[tokio::test]
async fn tool_calls_report_pending_then_completed() {
    let script = Script::always(Behaviour::ToolCalls {
        calls: 2,
        chunk_delay_ms: 1,
    });
    let (runtime, thread) = runtime_with_thread(script).await;
    let (result, events) = run(&runtime, &request("i1", &thread, "t", "p")).await;
    assert_eq!(result, Ok(StopReason::EndTurn));
    let calls: Vec<(String, String, String, usize)> = events
        .iter()
        .map(|event| match event {
            AgentEvent::ToolCall(call) => (
                call.tool_call_id.clone(),
                call.title.clone(),
                call.status.clone(),
                call.content.len(),
            ),
            other => panic!("expected tool calls only, got {other:?}"),
        })
        .collect();
    let call = |i: u32, status: &str, content: usize| {
        (
            format!("call-{i}"),
            format!("Edit file {i}"),
            status.to_owned(),
            content,
        )
    };
    assert_eq!(
        calls,
        vec![
            call(1, "pending", 0),
            call(1, "completed", 1),
            call(2, "pending", 0),
            call(2, "completed", 1)
        ]
    );
    match &events[1] {
        AgentEvent::ToolCall(call) => {
            assert_eq!(call.kind, "edit");
            assert_eq!(call.locations[0].path, "file-1.txt");
            assert_eq!(
                call.raw_input,
                Some(serde_json::json!({ "path": "file-1.txt" }))
            );
        }
        other => panic!("expected a tool call, got {other:?}"),
    }
}

#[tokio::test]
async fn rules_match_in_order_and_respect_their_budget() {
    let script = Script {
        default: succeed(1),
        rules: vec![
            Rule {
                prompt_contains: "task 2".into(),
                behaviour: Behaviour::Refuse,
                times: Some(1),
            },
            Rule {
                prompt_contains: "task".into(),
                behaviour: Behaviour::Fail {
                    message: "generic".into(),
                    after_chunks: 0,
                },
                times: None,
            },
            Rule {
                prompt_contains: "never".into(),
                behaviour: Behaviour::Refuse,
                times: Some(0),
            },
        ],
    };
    let (runtime, thread) = runtime_with_thread(script.clone()).await;
    let outcome = |prompt: &'static str| {
        let runtime = runtime.clone();
        let thread = thread.clone();
        async move { run(&runtime, &request("i1", &thread, "t", prompt)).await.0 }
    };
    // First match wins: the specific rule, once; then the general one.
    assert_eq!(outcome("do task 2").await, Ok(StopReason::Refusal));
    assert_eq!(
        outcome("do task 2").await,
        Err(AgentError::Failed("generic".into()))
    );
    assert_eq!(
        outcome("do task 1").await,
        Err(AgentError::Failed("generic".into()))
    );
    // A rule with no budget never matches; no match falls back to the default.
    assert_eq!(outcome("never").await, Ok(StopReason::EndTurn));
    assert_eq!(outcome("other").await, Ok(StopReason::EndTurn));
    // A new script starts with fresh budgets.
    runtime.set_script(script);
    assert_eq!(outcome("do task 2").await, Ok(StopReason::Refusal));
}

#[test]
fn scripts_read_from_json() {
    let script: Script = serde_json::from_str(
        r#"{"default":{"kind":"succeed","chunks":3,"chunk_delay_ms":20},
            "rules":[{"prompt_contains":"x","behaviour":{"kind":"hang"},"times":2},
                     {"prompt_contains":"y","behaviour":{"kind":"flood","updates":5}}]}"#,
    )
    .unwrap();
    assert_eq!(
        script,
        Script {
            default: Behaviour::Succeed {
                chunks: 3,
                chunk_delay_ms: 20
            },
            rules: vec![
                Rule {
                    prompt_contains: "x".into(),
                    behaviour: Behaviour::Hang,
                    times: Some(2)
                },
                Rule {
                    prompt_contains: "y".into(),
                    behaviour: Behaviour::Flood { updates: 5 },
                    times: None
                },
            ],
        }
    );
    let every = [
        Behaviour::Fail {
            message: "m".into(),
            after_chunks: 1,
        },
        Behaviour::Disconnect { after_chunks: 0 },
        Behaviour::Refuse,
        Behaviour::ToolCalls {
            calls: 1,
            chunk_delay_ms: 0,
        },
    ];
    for behaviour in every {
        let text = serde_json::to_string(&Script::always(behaviour.clone())).unwrap();
        let back: Script = serde_json::from_str(&text).unwrap();
        assert_eq!(back, Script::always(behaviour));
    }
    let dispatch = Dispatch {
        turn_id: "t".into(),
        thread_id: "th".into(),
        instance_id: "i".into(),
        prompt: "p".into(),
        started_at_ms: 1,
        ended_at_ms: None,
        outcome: None,
    };
    let text = serde_json::to_string(&dispatch).unwrap();
    assert_eq!(serde_json::from_str::<Dispatch>(&text).unwrap(), dispatch);
}
