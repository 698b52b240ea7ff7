//! The scripted runtime's own tests, through its public interface: `behaviours` plays each
//! scripted behaviour, `lifecycle` covers instances, threads, concurrency and the dispatch log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod behaviours;
mod lifecycle;

use std::time::Duration;

use spectask_runtimes::agent::{
    AgentEvent, AgentResult, AgentRuntime, InstanceSpec, StopReason, TurnRequest,
};
use tokio::sync::mpsc;

use super::{Behaviour, Script, ScriptedRuntime};
pub(super) use crate::ids::{instance_id, thread_id, work_session, work_session_id};

pub(super) const LONG: Duration = Duration::from_secs(10);

pub(super) fn spec(instance: &str) -> InstanceSpec {
    InstanceSpec {
        instance_id: instance_id(instance),
        spec_task_id: "spt_test".to_owned(),
        workspace: None,
        agent: None,
        config: serde_json::Value::Null,
        extra_roots: Vec::new(),
    }
}

pub(super) fn request(
    instance: &str,
    thread: impl AsRef<str>,
    turn_id: &str,
    prompt: &str,
) -> TurnRequest {
    TurnRequest {
        instance_id: instance_id(instance),
        thread_id: thread_id(thread.as_ref()),
        turn_id: turn_id.to_owned(),
        prompt: prompt.to_owned(),
    }
}

/// A runtime with instance `i1` up and one thread in it.
pub(super) async fn runtime_with_thread(script: Script) -> (ScriptedRuntime, String) {
    let runtime = ScriptedRuntime::new(script);
    runtime.ensure_instance(&spec("i1")).await.unwrap();
    let thread = runtime
        .create_thread(&instance_id("i1"), &work_session("stws_1"), None)
        .await
        .unwrap()
        .into_string();
    (runtime, thread)
}

/// Runs a turn to its end with a roomy channel and returns its result and output.
pub(super) async fn run(
    runtime: &ScriptedRuntime,
    request: &TurnRequest,
) -> (AgentResult<StopReason>, Vec<AgentEvent>) {
    let (tx, mut rx) = mpsc::channel(1024);
    let result = tokio::time::timeout(LONG, runtime.run_turn(request, tx))
        .await
        .expect("turn ended");
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    (result, events)
}

pub(super) fn chunk(i: u32, n: u32, turn: &str) -> AgentEvent {
    AgentEvent::MessageChunk(format!("chunk {i}/{n} of {turn}\n"))
}

/// Waits (bounded) until `n` turns are in flight.
pub(super) async fn until_running(runtime: &ScriptedRuntime, n: usize) {
    tokio::time::timeout(LONG, async {
        while runtime.running_turns() != n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("turns running");
}

pub(super) fn succeed(chunks: u32) -> Behaviour {
    Behaviour::Succeed {
        chunks,
        chunk_delay_ms: 1,
    }
}
