//! How a scripted turn plays out: recording its start and end, choosing its behaviour from the
//! script, streaming its output, and stopping early on a cancel or a disconnect.

use std::collections::HashSet;
use std::time::Duration;

use spectask_runtimes::agent::{
    AgentError, AgentEvent, AgentResult, StopReason, ToolCallContent, ToolCallEntry,
    ToolCallLocation, TurnRequest,
};
use tokio::sync::{mpsc, watch};

use super::log::LogLine;
use super::{Behaviour, Dispatch, Running, ScriptedRuntime, State, now_ms};
use crate::lock;

/// Why a running turn must stop early.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Interrupt {
    Cancel,
    Disconnect(String),
}

impl Interrupt {
    pub(super) fn into_result(self) -> AgentResult<StopReason> {
        match self {
            Interrupt::Cancel => Ok(StopReason::Cancelled),
            Interrupt::Disconnect(message) => Err(AgentError::Disconnected(message)),
        }
    }
}

pub(super) fn outcome_of(result: &AgentResult<StopReason>) -> String {
    match result {
        Ok(reason) => reason.as_str().to_owned(),
        Err(AgentError::Failed(message)) => format!("failed: {message}"),
        Err(AgentError::Disconnected(message)) => format!("disconnected: {message}"),
        Err(AgentError::UnknownThread(_)) => "unknown_thread".to_owned(),
        Err(AgentError::UnknownInstance(_)) => "unknown_instance".to_owned(),
        Err(other) => format!("error: {other}"),
    }
}

impl ScriptedRuntime {
    /// Records the turn and decides whether and how it runs.
    pub(super) fn start_turn(&self, request: &TurnRequest) -> Result<Started, (usize, AgentError)> {
        let mut state = lock(&self.shared.state);
        let index = state.dispatches.len();
        state.dispatches.push(Dispatch {
            turn_id: request.turn_id.clone(),
            thread_id: request.thread_id.to_string(),
            instance_id: request.instance_id.to_string(),
            prompt: request.prompt.clone(),
            started_at_ms: now_ms(),
            ended_at_ms: None,
            outcome: None,
        });
        self.shared.dispatch_count.send_replace(index + 1);
        let Some(instance) = state.instances.get(request.instance_id.as_str()) else {
            return Err((
                index,
                AgentError::UnknownInstance(request.instance_id.to_string()),
            ));
        };
        if !instance.loaded.contains(request.thread_id.as_str()) {
            return Err((
                index,
                AgentError::UnknownThread(request.thread_id.to_string()),
            ));
        }
        if let Some(busy) = state.running.values().find(|r| {
            r.instance_id == request.instance_id.as_str()
                && r.thread_id == request.thread_id.as_str()
        }) {
            let message = format!(
                "thread `{}` is already running turn `{}`",
                request.thread_id, busy.turn_id
            );
            return Err((index, AgentError::Failed(message)));
        }
        let behaviour = choose(&mut state, &request.prompt);
        let key = state.next_turn;
        state.next_turn += 1;
        let (interrupt, receiver) = watch::channel(None);
        state.running.insert(
            key,
            Running {
                instance_id: request.instance_id.to_string(),
                thread_id: request.thread_id.to_string(),
                turn_id: request.turn_id.clone(),
                interrupt,
            },
        );
        let in_flight = state
            .running
            .values()
            .filter(|r| r.instance_id == request.instance_id.as_str())
            .count();
        let max = state
            .max_in_flight
            .entry(request.instance_id.to_string())
            .or_default();
        *max = (*max).max(in_flight);
        Ok(Started {
            index,
            key,
            behaviour,
            interrupt: receiver,
        })
    }

    /// Records how a turn ended (a no-op for a turn already recorded).
    pub(super) fn end_turn(&self, index: usize, key: Option<u64>, outcome: &str) {
        let request = {
            let mut state = lock(&self.shared.state);
            if let Some(key) = key {
                state.running.remove(&key);
            }
            let Some(dispatch) = state.dispatches.get_mut(index) else {
                return;
            };
            if dispatch.outcome.is_some() {
                return;
            }
            dispatch.ended_at_ms = Some(now_ms());
            dispatch.outcome = Some(outcome.to_owned());
            (
                dispatch.instance_id.clone(),
                dispatch.thread_id.clone(),
                dispatch.turn_id.clone(),
            )
        };
        let (instance_id, thread_id, turn_id) = &request;
        self.log(&LogLine {
            thread_id: Some(thread_id),
            turn_id: Some(turn_id),
            outcome: Some(outcome),
            ..LogLine::new("turn_ended", instance_id)
        });
    }

    /// Plays `behaviour`; the outer error is an interrupt that cut the turn short.
    pub(super) async fn play(
        &self,
        behaviour: Behaviour,
        request: &TurnRequest,
        ctx: &mut TurnCtx<'_>,
    ) -> Result<AgentResult<StopReason>, Interrupt> {
        let turn_id = &request.turn_id;
        match behaviour {
            Behaviour::Succeed {
                chunks,
                chunk_delay_ms,
            } => {
                ctx.chunks(chunks, chunk_delay_ms, turn_id).await?;
                Ok(Ok(StopReason::EndTurn))
            }
            Behaviour::Fail {
                message,
                after_chunks,
            } => {
                ctx.chunks(after_chunks, 0, turn_id).await?;
                Ok(Err(AgentError::Failed(message)))
            }
            Behaviour::Hang => Err(ctx.interrupted().await),
            Behaviour::IgnoreCancel => std::future::pending().await,
            Behaviour::Disconnect { after_chunks } => {
                ctx.chunks(after_chunks, 0, turn_id).await?;
                self.disconnect(
                    request.instance_id.as_str(),
                    &format!("scripted disconnect after {after_chunks} chunks"),
                );
                Err(ctx.interrupted().await)
            }
            Behaviour::Refuse => {
                ctx.check()?;
                Ok(Ok(StopReason::Refusal))
            }
            Behaviour::Flood { updates } => {
                ctx.chunks(updates, 0, turn_id).await?;
                Ok(Ok(StopReason::EndTurn))
            }
            Behaviour::ToolCalls {
                calls,
                chunk_delay_ms,
            } => {
                for i in 1..=calls {
                    ctx.pause(chunk_delay_ms).await?;
                    for status in ["pending", "completed"] {
                        ctx.emit(AgentEvent::ToolCall(scripted_tool_call(i, status)))
                            .await?;
                    }
                }
                Ok(Ok(StopReason::EndTurn))
            }
            Behaviour::WriteFiles { files } => {
                let cwd = lock(&self.shared.state)
                    .thread_cwds
                    .get(request.thread_id.as_str())
                    .cloned();
                let Some(cwd) = cwd else {
                    return Ok(Err(AgentError::Failed(
                        "the scripted thread has no working directory".into(),
                    )));
                };
                for (i, file) in files.iter().enumerate() {
                    ctx.check()?;
                    let path = cwd.join(&file.path);
                    let mut call = ToolCallEntry::unknown(&format!("write-{i}"));
                    call.title = format!("Write {}", file.path);
                    call.kind = "edit".to_owned();
                    call.status = "completed".to_owned();
                    call.locations.push(ToolCallLocation {
                        path: path.to_string_lossy().into_owned(),
                        line: None,
                    });
                    let written = match path.parent() {
                        Some(parent) => std::fs::create_dir_all(parent),
                        None => Ok(()),
                    }
                    .and_then(|()| std::fs::write(&path, &file.content));
                    if let Err(err) = written {
                        return Ok(Err(AgentError::Failed(format!(
                            "could not write {}: {err}",
                            path.display()
                        ))));
                    }
                    ctx.emit(AgentEvent::ToolCall(call)).await?;
                }
                Ok(Ok(StopReason::EndTurn))
            }
            Behaviour::EditFiles {
                paths,
                before,
                after,
                then,
            } => {
                if let Some(gate) = before {
                    ctx.gate(&gate).await?;
                }
                for (i, path) in paths.iter().enumerate() {
                    for status in ["pending", "completed"] {
                        ctx.emit(AgentEvent::ToolCall(edit_call(i + 1, path, status)))
                            .await?;
                    }
                }
                if let Some(gate) = after {
                    ctx.gate(&gate).await?;
                }
                match then {
                    Some(next) => Box::pin(self.play(*next, request, ctx)).await,
                    None => Ok(Ok(StopReason::EndTurn)),
                }
            }
        }
    }
}

/// Tool call `edit-{i}` (kind `edit`) on `path` in `status`.
fn edit_call(i: usize, path: &str, status: &str) -> ToolCallEntry {
    let mut call = ToolCallEntry::unknown(&format!("edit-{i}"));
    call.title = format!("Edit {path}");
    call.kind = "edit".to_owned();
    call.status = status.to_owned();
    call.locations.push(ToolCallLocation {
        path: path.to_owned(),
        line: None,
    });
    call
}

/// Tool call `call-{i}` ("Edit file {i}", kind `edit`, on `file-{i}.txt`) in `status`; a
/// completed call carries its output text.
fn scripted_tool_call(i: u32, status: &str) -> ToolCallEntry {
    let path = format!("file-{i}.txt");
    let mut call = ToolCallEntry::unknown(&format!("call-{i}"));
    call.title = format!("Edit file {i}");
    call.kind = "edit".to_owned();
    call.status = status.to_owned();
    call.set_raw_input(serde_json::json!({ "path": path }));
    call.locations.push(ToolCallLocation {
        path: path.clone(),
        line: None,
    });
    if status == "completed" {
        call.content
            .push(ToolCallContent::text(&format!("edited {path}")));
    }
    call
}

/// The first rule that matches `prompt` and has budget left (using one), else the default.
fn choose(state: &mut State, prompt: &str) -> Behaviour {
    let State {
        script, rule_uses, ..
    } = state;
    for (rule, uses) in script.rules.iter().zip(rule_uses.iter_mut()) {
        let budget_left = rule.times.is_none_or(|times| *uses < times);
        if budget_left && prompt.contains(&rule.prompt_contains) {
            *uses += 1;
            return rule.behaviour.clone();
        }
    }
    script.default.clone()
}

/// A turn that passed the checks and is now in flight.
pub(super) struct Started {
    /// Its place in `State::dispatches`.
    pub(super) index: usize,
    /// Its key in `State::running`.
    pub(super) key: u64,
    pub(super) behaviour: Behaviour,
    pub(super) interrupt: watch::Receiver<Option<Interrupt>>,
}

/// A running turn's output channel and interrupt signal.
pub(super) struct TurnCtx<'a> {
    pub(super) events: &'a mpsc::Sender<AgentEvent>,
    pub(super) interrupt: watch::Receiver<Option<Interrupt>>,
    /// The runtime's open gates.
    pub(super) gates: watch::Receiver<HashSet<String>>,
}

impl TurnCtx<'_> {
    /// Fails if the turn was interrupted already.
    fn check(&self) -> Result<(), Interrupt> {
        match self.interrupt.borrow().clone() {
            Some(interrupt) => Err(interrupt),
            None => Ok(()),
        }
    }

    /// Resolves when the turn is interrupted.
    async fn interrupted(&mut self) -> Interrupt {
        // The borrow guard must be gone before any await: it is not `Send`.
        let interrupt = match self.interrupt.wait_for(Option::is_some).await {
            Ok(value) => value.clone(),
            Err(_) => None,
        };
        match interrupt {
            Some(interrupt) => interrupt,
            // The sender sits in the running map until this turn ends, so this does not happen;
            // if it did, the turn would simply hang, as a hung agent does.
            None => std::future::pending().await,
        }
    }

    /// Resolves once gate `name` is open.
    async fn gate(&mut self, name: &str) -> Result<(), Interrupt> {
        self.check()?;
        let mut gates = self.gates.clone();
        tokio::select! {
            interrupt = self.interrupted() => Err(interrupt),
            // The sender lives as long as the runtime, which outlives its turns.
            _ = gates.wait_for(|open| open.contains(name)) => Ok(()),
        }
    }

    async fn pause(&mut self, ms: u64) -> Result<(), Interrupt> {
        self.check()?;
        if ms == 0 {
            return Ok(());
        }
        tokio::select! {
            interrupt = self.interrupted() => Err(interrupt),
            () = tokio::time::sleep(Duration::from_millis(ms)) => Ok(()),
        }
    }

    async fn emit(&mut self, event: AgentEvent) -> Result<(), Interrupt> {
        self.check()?;
        let events = self.events;
        tokio::select! {
            interrupt = self.interrupted() => Err(interrupt),
            // A closed receiver must not stop the turn: the output is lost, the turn goes on.
            _ = events.send(event) => Ok(()),
        }
    }

    async fn chunks(&mut self, n: u32, delay_ms: u64, turn_id: &str) -> Result<(), Interrupt> {
        for i in 1..=n {
            self.pause(delay_ms).await?;
            self.emit(AgentEvent::MessageChunk(format!(
                "chunk {i}/{n} of {turn_id}\n"
            )))
            .await?;
        }
        Ok(())
    }
}

/// Records the end of a turn even when the caller drops the `run_turn` future.
pub(super) struct TurnGuard<'a> {
    pub(super) runtime: &'a ScriptedRuntime,
    pub(super) index: usize,
    pub(super) key: u64,
    pub(super) outcome: Option<String>,
}

impl Drop for TurnGuard<'_> {
    fn drop(&mut self) {
        let outcome = self.outcome.take().unwrap_or_else(|| "dropped".to_owned());
        self.runtime.end_turn(self.index, Some(self.key), &outcome);
    }
}
