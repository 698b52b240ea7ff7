//! Running one turn of a real agent runtime from a test: the request from readable names, and its
//! events collected while it runs.

use std::time::Duration;

use spectask_runtimes::agent::{AgentEvent, AgentResult, AgentRuntime, StopReason, TurnRequest};
use tokio::sync::mpsc;

use crate::ids::{instance_id, thread_id};

/// The request for turn `turn_id` on the instance named `instance` and the agent's thread
/// `thread`.
pub fn turn_request(instance: &str, thread: &str, turn_id: &str, prompt: &str) -> TurnRequest {
    TurnRequest {
        instance_id: instance_id(instance),
        thread_id: thread_id(thread),
        turn_id: turn_id.to_owned(),
        prompt: prompt.to_owned(),
    }
}

/// Runs a turn to its end (failing the test when it takes longer than `within`), collecting its
/// events through a channel of `capacity` (a small one makes the runtime meet backpressure).
pub async fn collect_turn(
    runtime: &dyn AgentRuntime,
    request: &TurnRequest,
    capacity: usize,
    within: Duration,
) -> (AgentResult<StopReason>, Vec<AgentEvent>) {
    let (tx, mut rx) = mpsc::channel(capacity);
    let collector = async move {
        let mut events = Vec::new();
        while let Some(event) = rx.recv().await {
            events.push(event);
        }
        events
    };
    let turn = async { tokio::time::timeout(within, runtime.run_turn(request, tx)).await };
    let (result, events) = tokio::join!(turn, collector);
    match result {
        Ok(result) => (result, events),
        Err(_) => panic!("the turn did not end within {within:?}"),
    }
}
