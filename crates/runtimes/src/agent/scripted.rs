//! `ScriptedRuntime`: an in-process [`AgentRuntime`] whose behaviour each test scripts (succeed
//! after N chunks, fail, hang, disconnect, refuse, flood, tool calls), and which records every call
//! so tests can assert what the engine dispatched. Test support only (`test-support` feature), so
//! no production configuration can select it.
//!
//! It enforces the rules a real agent host would, because those are what the engine must respect:
//! a turn needs an ensured instance and a thread that this runtime object created or resumed (a
//! restarted server must resume, never silently open a new thread); a disconnect unloads the
//! instance's threads until `ensure_instance` and `resume_thread` bring them back; one turn at a
//! time per thread.
//!
//! With [`ScriptedRuntime::with_dispatch_log`] every call is also appended as one JSON line to a
//! file, synced per line, so a test that SIGKILLs the server process still reads every call that
//! process made.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::{
    AgentError, AgentEvent, AgentResult, AgentRuntime, InstanceSpec, StopReason, ToolCallContent,
    ToolCallEntry, ToolCallLocation, TurnRequest,
};

/// What the runtime does with each turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Script {
    /// What a turn does when no rule matches.
    pub default: Behaviour,
    /// Checked in order; the first match decides.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl Script {
    /// Every turn behaves like `behaviour`.
    pub fn always(behaviour: Behaviour) -> Self {
        Self {
            default: behaviour,
            rules: Vec::new(),
        }
    }
}

/// A behaviour for turns whose prompt contains a string, optionally only a number of times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub prompt_contains: String,
    pub behaviour: Behaviour,
    /// How many turns this rule decides before it stops matching; `None` is unlimited.
    #[serde(default)]
    pub times: Option<u32>,
}

/// How one turn plays out. Chunks are `MessageChunk("chunk {i}/{n} of {turn_id}\n")`, `i` from 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Behaviour {
    /// `chunks` chunks, each after `chunk_delay_ms`, then `EndTurn`.
    Succeed { chunks: u32, chunk_delay_ms: u64 },
    /// `after_chunks` chunks, then `Err(Failed(message))`.
    Fail { message: String, after_chunks: u32 },
    /// Never ends until `cancel_turn` (then `Cancelled`), a disconnect, or the future is dropped.
    Hang,
    /// `after_chunks` chunks, then the whole instance disconnects: every turn in flight on it
    /// returns `Err(Disconnected)` and its threads are unloaded (see
    /// [`ScriptedRuntime::disconnect_instance`]).
    Disconnect { after_chunks: u32 },
    /// `Ok(Refusal)` without output.
    Refuse,
    /// `updates` chunks with no delay (each send awaited, so a slow reader applies backpressure),
    /// then `EndTurn`.
    Flood { updates: u32 },
    /// `calls` tool calls (`call-{i}`, "Edit file {i}"), each after `chunk_delay_ms`, reported
    /// `pending` and then `completed`, then `EndTurn`.
    ToolCalls { calls: u32, chunk_delay_ms: u64 },
}

/// One `run_turn` call as the runtime saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dispatch {
    pub turn_id: String,
    pub thread_id: String,
    pub instance_id: String,
    pub prompt: String,
    /// Unix epoch milliseconds.
    pub started_at_ms: u128,
    /// `None` while the turn runs.
    pub ended_at_ms: Option<u128>,
    /// `end_turn`, `cancelled`, `refusal`, `failed: …`, `disconnected: …`, `unknown_thread`,
    /// `unknown_instance`, or `dropped` when the caller dropped the future first.
    pub outcome: Option<String>,
}

/// The scripted runtime. Clones share their state, so a test keeps one handle and gives the
/// engine another.
#[derive(Debug, Clone)]
pub struct ScriptedRuntime {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    log: Mutex<Option<File>>,
    /// The number of dispatches so far, for [`ScriptedRuntime::wait_for_dispatches`].
    dispatch_count: watch::Sender<usize>,
    /// Prefix of thread ids: creation time and a random part, so a restarted process (a new
    /// runtime object) never hands out an id an earlier one did.
    id_prefix: String,
}

#[derive(Debug)]
struct State {
    script: Script,
    /// Turns each rule of `script` has decided, by index.
    rule_uses: Vec<u32>,
    instances: HashMap<String, Instance>,
    threads: Vec<(String, String, String)>,
    next_thread: u64,
    dispatches: Vec<Dispatch>,
    /// Turns in flight, by a per-runtime sequence number.
    running: HashMap<u64, Running>,
    next_turn: u64,
    /// High-water mark of turns in flight, per instance (kept after shutdown).
    max_in_flight: HashMap<String, usize>,
}

#[derive(Debug, Default)]
struct Instance {
    /// False after a disconnect until the next `ensure_instance`.
    up: bool,
    /// Threads a turn may run on: created or resumed since the instance last came up.
    loaded: HashSet<String>,
}

#[derive(Debug)]
struct Running {
    instance_id: String,
    thread_id: String,
    turn_id: String,
    interrupt: watch::Sender<Option<Interrupt>>,
}

/// Why a running turn must stop early.
#[derive(Debug, Clone, PartialEq)]
enum Interrupt {
    Cancel,
    Disconnect(String),
}

impl Interrupt {
    fn into_result(self) -> AgentResult<StopReason> {
        match self {
            Interrupt::Cancel => Ok(StopReason::Cancelled),
            Interrupt::Disconnect(message) => Err(AgentError::Disconnected(message)),
        }
    }
}

/// One line of the dispatch log.
#[derive(Debug, Serialize)]
struct LogLine<'a> {
    event: &'a str,
    instance_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    turn_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    work_session_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'a str>,
    at_ms: u128,
}

impl<'a> LogLine<'a> {
    fn new(event: &'a str, instance_id: &'a str) -> Self {
        Self {
            event,
            instance_id,
            thread_id: None,
            turn_id: None,
            work_session_id: None,
            outcome: None,
            at_ms: now_ms(),
        }
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock has already failed; later calls still see
    // consistent data because every critical section is a few plain assignments.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn outcome_of(result: &AgentResult<StopReason>) -> String {
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
    pub fn new(script: Script) -> Self {
        let created = now_ms();
        // A fresh RandomState is seeded randomly; hashing nothing with it gives a random number
        // without a dependency on a random crate.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let rule_uses = vec![0; script.rules.len()];
        let (dispatch_count, _) = watch::channel(0);
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    script,
                    rule_uses,
                    instances: HashMap::new(),
                    threads: Vec::new(),
                    next_thread: 1,
                    dispatches: Vec::new(),
                    running: HashMap::new(),
                    next_turn: 1,
                    max_in_flight: HashMap::new(),
                }),
                log: Mutex::new(None),
                dispatch_count,
                id_prefix: format!("scripted-{created}-{:06x}", random & 0xff_ffff),
            }),
        }
    }

    /// Also appends every call as one JSON line to `path` (created if missing), flushed and synced
    /// per line so a killed process loses nothing it already logged. Fields: `event`
    /// (`ensure_instance`, `create_thread`, `resume_thread`, `turn_started`, `turn_ended`,
    /// `cancel_turn`, `shutdown_instance`), `instance_id`, and where they apply `thread_id`,
    /// `turn_id`, `work_session_id`, `outcome` (of a turn, or `unknown_instance` for a refused
    /// call), and `at_ms` (unix epoch milliseconds).
    pub fn with_dispatch_log(self, path: impl Into<PathBuf>) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path.into())?;
        *lock(&self.shared.log) = Some(file);
        Ok(self)
    }

    /// Replaces the script (and resets the rules' `times` budgets) for turns that start from now.
    pub fn set_script(&self, script: Script) {
        let mut state = lock(&self.shared.state);
        state.rule_uses = vec![0; script.rules.len()];
        state.script = script;
    }

    /// Every `run_turn`, in start order.
    pub fn dispatches(&self) -> Vec<Dispatch> {
        lock(&self.shared.state).dispatches.clone()
    }

    /// `(instance_id, thread_id, work_session_id)` of every `create_thread`, in order.
    pub fn threads(&self) -> Vec<(String, String, String)> {
        lock(&self.shared.state).threads.clone()
    }

    /// The most turns that ran at once in `instance_id`.
    pub fn max_concurrent_turns(&self, instance_id: &str) -> usize {
        lock(&self.shared.state)
            .max_in_flight
            .get(instance_id)
            .copied()
            .unwrap_or(0)
    }

    /// Turns in flight now, over all instances.
    pub fn running_turns(&self) -> usize {
        lock(&self.shared.state).running.len()
    }

    /// Simulates the instance going away: every turn in flight on it returns
    /// `Err(Disconnected)`, and its threads are unloaded, so a turn on them fails with
    /// `UnknownThread` until `ensure_instance` and then `resume_thread` are called.
    pub fn disconnect_instance(&self, instance_id: &str) {
        self.disconnect(instance_id, "instance disconnected by the test");
    }

    /// Waits until at least `n` turns were dispatched or `timeout` passed, and returns the
    /// dispatches there are.
    pub async fn wait_for_dispatches(&self, n: usize, timeout: Duration) -> Vec<Dispatch> {
        let mut count = self.shared.dispatch_count.subscribe();
        // The sender lives as long as `self`, so `wait_for` only ends by reaching `n`.
        let _ = tokio::time::timeout(timeout, count.wait_for(|c| *c >= n)).await;
        self.dispatches()
    }

    fn disconnect(&self, instance_id: &str, message: &str) {
        let mut state = lock(&self.shared.state);
        if let Some(instance) = state.instances.get_mut(instance_id) {
            instance.up = false;
            instance.loaded.clear();
        }
        for running in state.running.values() {
            if running.instance_id == instance_id {
                running
                    .interrupt
                    .send_replace(Some(Interrupt::Disconnect(message.to_owned())));
            }
        }
    }

    fn log(&self, line: &LogLine<'_>) {
        let mut log = lock(&self.shared.log);
        let Some(file) = log.as_mut() else {
            return;
        };
        let result = serde_json::to_string(line)
            .map_err(std::io::Error::from)
            .and_then(|mut text| {
                text.push('\n');
                // One write per line, so concurrent processes appending to the same file never
                // interleave within a line.
                file.write_all(text.as_bytes())?;
                file.flush()?;
                file.sync_data()
            });
        if let Err(err) = result {
            tracing::error!(%err, "cannot write the scripted runtime's dispatch log");
        }
    }

    /// Records the turn and decides whether and how it runs.
    fn start_turn(&self, request: &TurnRequest) -> Result<Started, (usize, AgentError)> {
        let mut state = lock(&self.shared.state);
        let index = state.dispatches.len();
        state.dispatches.push(Dispatch {
            turn_id: request.turn_id.clone(),
            thread_id: request.thread_id.clone(),
            instance_id: request.instance_id.clone(),
            prompt: request.prompt.clone(),
            started_at_ms: now_ms(),
            ended_at_ms: None,
            outcome: None,
        });
        self.shared.dispatch_count.send_replace(index + 1);
        let Some(instance) = state.instances.get(&request.instance_id) else {
            return Err((
                index,
                AgentError::UnknownInstance(request.instance_id.clone()),
            ));
        };
        if !instance.loaded.contains(&request.thread_id) {
            return Err((index, AgentError::UnknownThread(request.thread_id.clone())));
        }
        if let Some(busy) = state
            .running
            .values()
            .find(|r| r.instance_id == request.instance_id && r.thread_id == request.thread_id)
        {
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
                instance_id: request.instance_id.clone(),
                thread_id: request.thread_id.clone(),
                turn_id: request.turn_id.clone(),
                interrupt,
            },
        );
        let in_flight = state
            .running
            .values()
            .filter(|r| r.instance_id == request.instance_id)
            .count();
        let max = state
            .max_in_flight
            .entry(request.instance_id.clone())
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
    fn end_turn(&self, index: usize, key: Option<u64>, outcome: &str) {
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
    async fn play(
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
            Behaviour::Disconnect { after_chunks } => {
                ctx.chunks(after_chunks, 0, turn_id).await?;
                self.disconnect(
                    &request.instance_id,
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
        }
    }
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
struct Started {
    /// Its place in `State::dispatches`.
    index: usize,
    /// Its key in `State::running`.
    key: u64,
    behaviour: Behaviour,
    interrupt: watch::Receiver<Option<Interrupt>>,
}

/// A running turn's output channel and interrupt signal.
struct TurnCtx<'a> {
    events: &'a mpsc::Sender<AgentEvent>,
    interrupt: watch::Receiver<Option<Interrupt>>,
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
struct TurnGuard<'a> {
    runtime: &'a ScriptedRuntime,
    index: usize,
    key: u64,
    outcome: Option<String>,
}

impl Drop for TurnGuard<'_> {
    fn drop(&mut self) {
        let outcome = self.outcome.take().unwrap_or_else(|| "dropped".to_owned());
        self.runtime.end_turn(self.index, Some(self.key), &outcome);
    }
}

#[async_trait]
impl AgentRuntime for ScriptedRuntime {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    async fn ensure_instance(&self, spec: &InstanceSpec) -> AgentResult<()> {
        {
            let mut state = lock(&self.shared.state);
            let instance = state.instances.entry(spec.instance_id.clone()).or_default();
            instance.up = true;
        }
        self.log(&LogLine::new("ensure_instance", &spec.instance_id));
        Ok(())
    }

    async fn create_thread(&self, instance_id: &str, work_session_id: &str) -> AgentResult<String> {
        let created = {
            let mut state = lock(&self.shared.state);
            let number = state.next_thread;
            match state.instances.get_mut(instance_id) {
                Some(instance) if instance.up => {
                    let thread_id = format!("{}-{number}", self.shared.id_prefix);
                    instance.loaded.insert(thread_id.clone());
                    state.next_thread += 1;
                    state.threads.push((
                        instance_id.to_owned(),
                        thread_id.clone(),
                        work_session_id.to_owned(),
                    ));
                    Some(thread_id)
                }
                _ => None,
            }
        };
        self.log(&LogLine {
            thread_id: created.as_deref(),
            work_session_id: Some(work_session_id),
            outcome: created.is_none().then_some("unknown_instance"),
            ..LogLine::new("create_thread", instance_id)
        });
        created.ok_or_else(|| AgentError::UnknownInstance(instance_id.to_owned()))
    }

    async fn resume_thread(
        &self,
        instance_id: &str,
        work_session_id: &str,
        thread_id: &str,
    ) -> AgentResult<()> {
        // Any id is accepted, including ones another process created: that is what resuming
        // after a restart means. Only the instance must be up.
        let resumed = {
            let mut state = lock(&self.shared.state);
            match state.instances.get_mut(instance_id) {
                Some(instance) if instance.up => {
                    instance.loaded.insert(thread_id.to_owned());
                    true
                }
                _ => false,
            }
        };
        self.log(&LogLine {
            thread_id: Some(thread_id),
            work_session_id: Some(work_session_id),
            outcome: (!resumed).then_some("unknown_instance"),
            ..LogLine::new("resume_thread", instance_id)
        });
        if resumed {
            Ok(())
        } else {
            Err(AgentError::UnknownInstance(instance_id.to_owned()))
        }
    }

    async fn run_turn(
        &self,
        request: &TurnRequest,
        events: mpsc::Sender<AgentEvent>,
    ) -> AgentResult<StopReason> {
        let started = self.start_turn(request);
        self.log(&LogLine {
            thread_id: Some(&request.thread_id),
            turn_id: Some(&request.turn_id),
            ..LogLine::new("turn_started", &request.instance_id)
        });
        let started = match started {
            Ok(started) => started,
            Err((index, error)) => {
                self.end_turn(index, None, &outcome_of(&Err(error.clone())));
                return Err(error);
            }
        };
        let mut guard = TurnGuard {
            runtime: self,
            index: started.index,
            key: started.key,
            outcome: None,
        };
        let mut ctx = TurnCtx {
            events: &events,
            interrupt: started.interrupt,
        };
        let result = match self.play(started.behaviour, request, &mut ctx).await {
            Ok(result) => result,
            Err(interrupt) => interrupt.into_result(),
        };
        guard.outcome = Some(outcome_of(&result));
        drop(guard);
        result
    }

    async fn cancel_turn(&self, instance_id: &str, thread_id: &str) -> AgentResult<()> {
        let cancelled = {
            let state = lock(&self.shared.state);
            state
                .running
                .values()
                .find(|r| r.instance_id == instance_id && r.thread_id == thread_id)
                .map(|running| {
                    running.interrupt.send_if_modified(|current| {
                        // A disconnect that already happened wins over a later cancel.
                        if current.is_none() {
                            *current = Some(Interrupt::Cancel);
                            true
                        } else {
                            false
                        }
                    });
                    running.turn_id.clone()
                })
        };
        self.log(&LogLine {
            thread_id: Some(thread_id),
            turn_id: cancelled.as_deref(),
            ..LogLine::new("cancel_turn", instance_id)
        });
        Ok(())
    }

    async fn shutdown_instance(&self, instance_id: &str) -> AgentResult<()> {
        {
            let mut state = lock(&self.shared.state);
            state.instances.remove(instance_id);
            for running in state.running.values() {
                if running.instance_id == instance_id {
                    running
                        .interrupt
                        .send_replace(Some(Interrupt::Disconnect("instance shut down".into())));
                }
            }
        }
        self.log(&LogLine::new("shutdown_instance", instance_id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const LONG: Duration = Duration::from_secs(10);

    fn spec(instance_id: &str) -> InstanceSpec {
        InstanceSpec {
            instance_id: instance_id.to_owned(),
            spec_task_id: "spt_test".to_owned(),
            workspace: None,
            agent: None,
            config: serde_json::Value::Null,
        }
    }

    fn request(instance_id: &str, thread_id: &str, turn_id: &str, prompt: &str) -> TurnRequest {
        TurnRequest {
            instance_id: instance_id.to_owned(),
            thread_id: thread_id.to_owned(),
            turn_id: turn_id.to_owned(),
            prompt: prompt.to_owned(),
        }
    }

    /// A runtime with instance `i1` up and one thread in it.
    async fn runtime_with_thread(script: Script) -> (ScriptedRuntime, String) {
        let runtime = ScriptedRuntime::new(script);
        runtime.ensure_instance(&spec("i1")).await.unwrap();
        let thread = runtime.create_thread("i1", "stws_1").await.unwrap();
        (runtime, thread)
    }

    /// Runs a turn to its end with a roomy channel and returns its result and output.
    async fn run(
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

    fn chunk(i: u32, n: u32, turn: &str) -> AgentEvent {
        AgentEvent::MessageChunk(format!("chunk {i}/{n} of {turn}\n"))
    }

    /// Waits (bounded) until `n` turns are in flight.
    async fn until_running(runtime: &ScriptedRuntime, n: usize) {
        tokio::time::timeout(LONG, async {
            while runtime.running_turns() != n {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("turns running");
    }

    fn succeed(chunks: u32) -> Behaviour {
        Behaviour::Succeed {
            chunks,
            chunk_delay_ms: 1,
        }
    }

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
            ("turn_a", &*thread, "i1", "do it")
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
        runtime.cancel_turn("i1", &thread).await.unwrap();
        let result = tokio::time::timeout(LONG, turn).await.unwrap().unwrap();
        assert_eq!(result, Ok(StopReason::Cancelled));
        assert_eq!(
            runtime.dispatches()[0].outcome.as_deref(),
            Some("cancelled")
        );
        assert_eq!(runtime.running_turns(), 0);
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
        runtime.cancel_turn("i1", &thread).await.unwrap();
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

    #[tokio::test]
    async fn turns_need_an_ensured_instance_and_a_loaded_thread() {
        let runtime = ScriptedRuntime::new(Script::always(Behaviour::Refuse));
        let (result, _) = run(&runtime, &request("i1", "x", "t1", "p")).await;
        assert_eq!(result, Err(AgentError::UnknownInstance("i1".into())));
        assert_eq!(
            runtime.create_thread("i1", "stws_1").await,
            Err(AgentError::UnknownInstance("i1".into()))
        );

        runtime.ensure_instance(&spec("i1")).await.unwrap();
        runtime.ensure_instance(&spec("i1")).await.unwrap();
        runtime.ensure_instance(&spec("i2")).await.unwrap();
        // Never created nor resumed here: refused, never silently a new thread.
        let (result, _) = run(&runtime, &request("i1", "other-thread", "t2", "p")).await;
        assert_eq!(
            result,
            Err(AgentError::UnknownThread("other-thread".into()))
        );
        // A thread belongs to the instance that created it.
        let thread = runtime.create_thread("i2", "stws_2").await.unwrap();
        let (result, _) = run(&runtime, &request("i1", &thread, "t3", "p")).await;
        assert_eq!(result, Err(AgentError::UnknownThread(thread.clone())));
        // Resuming an id this runtime never created is how a restarted server continues.
        runtime
            .resume_thread("i1", "ws1", "other-thread")
            .await
            .unwrap();
        let (result, _) = run(&runtime, &request("i1", "other-thread", "t4", "p")).await;
        assert_eq!(result, Ok(StopReason::Refusal));

        let outcomes: Vec<_> = runtime
            .dispatches()
            .into_iter()
            .map(|d| d.outcome.unwrap())
            .collect();
        assert_eq!(
            outcomes,
            [
                "unknown_instance",
                "unknown_thread",
                "unknown_thread",
                "refusal"
            ]
        );
        assert_eq!(
            runtime.threads(),
            vec![("i2".to_owned(), thread, "stws_2".to_owned())]
        );
    }

    #[tokio::test]
    async fn thread_ids_are_unique_across_runtime_objects() {
        let mut ids = HashSet::new();
        for _ in 0..3 {
            let runtime = ScriptedRuntime::new(Script::always(Behaviour::Refuse));
            runtime.ensure_instance(&spec("i1")).await.unwrap();
            for n in 1..=3 {
                let id = runtime.create_thread("i1", "stws").await.unwrap();
                assert!(id.starts_with("scripted-") && id.ends_with(&format!("-{n}")));
                assert!(ids.insert(id), "duplicate thread id");
            }
        }
    }

    #[tokio::test]
    async fn one_turn_at_a_time_per_thread() {
        let (runtime, thread) = runtime_with_thread(Script::always(Behaviour::Hang)).await;
        let (tx, _rx) = mpsc::channel(8);
        let first = {
            let runtime = runtime.clone();
            let request = request("i1", &thread, "t1", "p");
            tokio::spawn(async move { runtime.run_turn(&request, tx).await })
        };
        until_running(&runtime, 1).await;
        let (result, _) = run(&runtime, &request("i1", &thread, "t2", "p")).await;
        assert!(
            matches!(&result, Err(AgentError::Failed(m)) if m.contains("already running turn `t1`")),
            "{result:?}"
        );
        runtime.cancel_turn("i1", &thread).await.unwrap();
        assert_eq!(first.await.unwrap(), Ok(StopReason::Cancelled));
    }

    #[tokio::test]
    async fn max_concurrent_turns_is_a_high_water_mark_per_instance() {
        let runtime = ScriptedRuntime::new(Script::always(Behaviour::Hang));
        runtime.ensure_instance(&spec("i1")).await.unwrap();
        runtime.ensure_instance(&spec("i2")).await.unwrap();
        let mut turns = Vec::new();
        let mut threads = Vec::new();
        for (n, instance) in ["i1", "i1", "i1", "i2"].into_iter().enumerate() {
            let thread = runtime.create_thread(instance, "stws").await.unwrap();
            threads.push((instance, thread.clone()));
            let runtime = runtime.clone();
            let request = request(instance, &thread, &format!("t{n}"), "p");
            turns.push(tokio::spawn(async move {
                let (tx, _rx) = mpsc::channel(8);
                runtime.run_turn(&request, tx).await
            }));
        }
        until_running(&runtime, 4).await;
        for (instance, thread) in &threads {
            runtime.cancel_turn(instance, thread).await.unwrap();
        }
        for turn in turns {
            assert_eq!(turn.await.unwrap(), Ok(StopReason::Cancelled));
        }
        assert_eq!(runtime.max_concurrent_turns("i1"), 3);
        assert_eq!(runtime.max_concurrent_turns("i2"), 1);
        assert_eq!(runtime.max_concurrent_turns("i3"), 0);
        assert_eq!(runtime.running_turns(), 0);
    }

    #[tokio::test]
    async fn disconnect_behaviour_drops_every_turn_of_the_instance_and_unloads_threads() {
        let script = Script {
            default: Behaviour::Hang,
            rules: vec![Rule {
                prompt_contains: "crash".into(),
                behaviour: Behaviour::Disconnect { after_chunks: 1 },
                times: Some(1),
            }],
        };
        let runtime = ScriptedRuntime::new(script);
        runtime.ensure_instance(&spec("i1")).await.unwrap();
        runtime.ensure_instance(&spec("i2")).await.unwrap();
        let hanging = runtime.create_thread("i1", "stws_1").await.unwrap();
        let crashing = runtime.create_thread("i1", "stws_2").await.unwrap();
        let elsewhere = runtime.create_thread("i2", "stws_3").await.unwrap();
        let spawn = |thread: &str, turn: &str, prompt: &str| {
            let runtime = runtime.clone();
            let request = request(
                if thread == elsewhere { "i2" } else { "i1" },
                thread,
                turn,
                prompt,
            );
            tokio::spawn(async move {
                let (tx, _rx) = mpsc::channel(8);
                runtime.run_turn(&request, tx).await
            })
        };
        let hung = spawn(&hanging, "t1", "wait");
        let other = spawn(&elsewhere, "t2", "wait");
        until_running(&runtime, 2).await;
        let (result, events) = run(&runtime, &request("i1", &crashing, "t3", "crash")).await;
        assert!(
            matches!(result, Err(AgentError::Disconnected(_))),
            "{result:?}"
        );
        assert_eq!(events, vec![chunk(1, 1, "t3")]);
        let hung = tokio::time::timeout(LONG, hung).await.unwrap().unwrap();
        assert!(matches!(hung, Err(AgentError::Disconnected(_))), "{hung:?}");
        // Other instances are unaffected.
        assert_eq!(runtime.running_turns(), 1);

        // The threads are gone until the instance is ensured and each thread resumed.
        let (result, _) = run(&runtime, &request("i1", &hanging, "t4", "p")).await;
        assert_eq!(result, Err(AgentError::UnknownThread(hanging.clone())));
        assert_eq!(
            runtime.resume_thread("i1", "ws1", &hanging).await,
            Err(AgentError::UnknownInstance("i1".into()))
        );
        runtime.ensure_instance(&spec("i1")).await.unwrap();
        let (result, _) = run(&runtime, &request("i1", &hanging, "t5", "p")).await;
        assert_eq!(result, Err(AgentError::UnknownThread(hanging.clone())));
        runtime.resume_thread("i1", "ws1", &hanging).await.unwrap();
        runtime.set_script(Script::always(Behaviour::Refuse));
        let (result, _) = run(&runtime, &request("i1", &hanging, "t6", "p")).await;
        assert_eq!(result, Ok(StopReason::Refusal));

        runtime.cancel_turn("i2", &elsewhere).await.unwrap();
        assert_eq!(other.await.unwrap(), Ok(StopReason::Cancelled));
        let outcomes: Vec<_> = runtime
            .dispatches()
            .into_iter()
            .map(|d| (d.turn_id, d.outcome.unwrap()))
            .collect();
        assert!(outcomes[2].1.starts_with("disconnected: "), "{outcomes:?}");
        assert!(outcomes[0].1.starts_with("disconnected: "), "{outcomes:?}");
        assert_eq!(outcomes[3].1, "unknown_thread");
    }

    #[tokio::test]
    async fn disconnect_instance_fails_turns_in_flight() {
        let (runtime, thread) = runtime_with_thread(Script::always(Behaviour::Hang)).await;
        let turn = {
            let runtime = runtime.clone();
            let request = request("i1", &thread, "t", "p");
            tokio::spawn(async move {
                let (tx, _rx) = mpsc::channel(8);
                runtime.run_turn(&request, tx).await
            })
        };
        until_running(&runtime, 1).await;
        runtime.disconnect_instance("i1");
        let result = tokio::time::timeout(LONG, turn).await.unwrap().unwrap();
        assert!(
            matches!(result, Err(AgentError::Disconnected(_))),
            "{result:?}"
        );
        runtime.ensure_instance(&spec("i1")).await.unwrap();
        let (result, _) = run(&runtime, &request("i1", &thread, "t2", "p")).await;
        assert_eq!(result, Err(AgentError::UnknownThread(thread)));
    }

    #[tokio::test]
    async fn shutdown_instance_ends_its_turns_and_forgets_it() {
        let (runtime, thread) = runtime_with_thread(Script::always(Behaviour::Hang)).await;
        let turn = {
            let runtime = runtime.clone();
            let request = request("i1", &thread, "t", "p");
            tokio::spawn(async move {
                let (tx, _rx) = mpsc::channel(8);
                runtime.run_turn(&request, tx).await
            })
        };
        until_running(&runtime, 1).await;
        runtime.shutdown_instance("i1").await.unwrap();
        let result = tokio::time::timeout(LONG, turn).await.unwrap().unwrap();
        assert!(
            matches!(result, Err(AgentError::Disconnected(_))),
            "{result:?}"
        );
        let (result, _) = run(&runtime, &request("i1", &thread, "t2", "p")).await;
        assert_eq!(result, Err(AgentError::UnknownInstance("i1".into())));
    }

    #[tokio::test]
    async fn wait_for_dispatches_returns_what_arrived() {
        let (runtime, thread) = runtime_with_thread(Script::always(Behaviour::Refuse)).await;
        let none = runtime
            .wait_for_dispatches(1, Duration::from_millis(10))
            .await;
        assert!(none.is_empty());
        let waiter = {
            let runtime = runtime.clone();
            tokio::spawn(async move { runtime.wait_for_dispatches(2, LONG).await })
        };
        assert_eq!(
            run(&runtime, &request("i1", &thread, "t1", "p")).await.0,
            Ok(StopReason::Refusal)
        );
        assert_eq!(
            run(&runtime, &request("i1", &thread, "t2", "p")).await.0,
            Ok(StopReason::Refusal)
        );
        let got = waiter.await.unwrap();
        assert!(got.len() >= 2);
        assert_eq!(got[0].turn_id, "t1");
        assert_eq!(got[1].turn_id, "t2");
    }

    fn read_log(path: &std::path::Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn the_dispatch_log_has_one_json_line_per_call_and_survives_a_new_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dispatch.jsonl");
        let runtime = ScriptedRuntime::new(Script::always(succeed(1)))
            .with_dispatch_log(&path)
            .unwrap();
        runtime.ensure_instance(&spec("i1")).await.unwrap();
        let thread = runtime.create_thread("i1", "stws_1").await.unwrap();
        assert_eq!(
            run(&runtime, &request("i1", &thread, "turn_1", "p"))
                .await
                .0,
            Ok(StopReason::EndTurn)
        );
        assert_eq!(
            run(&runtime, &request("i1", "ghost", "turn_2", "p"))
                .await
                .0,
            Err(AgentError::UnknownThread("ghost".into()))
        );
        runtime.cancel_turn("i1", &thread).await.unwrap();
        runtime.shutdown_instance("i1").await.unwrap();

        // A second runtime object (as after a restart) appends to the same file.
        let restarted = ScriptedRuntime::new(Script::always(succeed(1)))
            .with_dispatch_log(&path)
            .unwrap();
        restarted.ensure_instance(&spec("i1")).await.unwrap();
        restarted.resume_thread("i1", "ws1", &thread).await.unwrap();
        assert_eq!(
            run(&restarted, &request("i1", &thread, "turn_3", "p"))
                .await
                .0,
            Ok(StopReason::EndTurn)
        );

        let lines = read_log(&path);
        let field = |line: &serde_json::Value, name: &str| line[name].as_str().map(str::to_owned);
        let summary: Vec<_> = lines
            .iter()
            .map(|l| {
                (
                    field(l, "event").unwrap(),
                    field(l, "turn_id"),
                    field(l, "outcome"),
                )
            })
            .collect();
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            summary,
            vec![
                ("ensure_instance".into(), None, None),
                ("create_thread".into(), None, None),
                ("turn_started".into(), s("turn_1"), None),
                ("turn_ended".into(), s("turn_1"), s("end_turn")),
                ("turn_started".into(), s("turn_2"), None),
                ("turn_ended".into(), s("turn_2"), s("unknown_thread")),
                ("cancel_turn".into(), None, None),
                ("shutdown_instance".into(), None, None),
                ("ensure_instance".into(), None, None),
                ("resume_thread".into(), None, None),
                ("turn_started".into(), s("turn_3"), None),
                ("turn_ended".into(), s("turn_3"), s("end_turn")),
            ]
        );
        for line in &lines {
            assert_eq!(line["instance_id"], "i1");
            assert!(line["at_ms"].as_u64().unwrap() > 0);
        }
        assert_eq!(lines[1]["thread_id"], thread.as_str());
        assert_eq!(lines[1]["work_session_id"], "stws_1");
        assert_eq!(lines[3]["thread_id"], thread.as_str());
        assert_eq!(lines[9]["thread_id"], thread.as_str());
        assert!(lines[0].get("thread_id").is_none());
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
}
