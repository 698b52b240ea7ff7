//! `ScriptedRuntime`: an in-process [`AgentRuntime`] whose behaviour each test scripts (succeed
//! after N chunks, fail, hang, disconnect, refuse, flood, tool calls, file edits behind gates the
//! test opens), and which records every call
//! so tests can assert what the engine dispatched.
//!
//! It enforces the rules a real agent host would, because those are what the engine must respect:
//! a turn needs an ensured instance and a thread that this runtime object created or resumed (a
//! restarted server must resume, never silently open a new thread); a disconnect unloads the
//! instance's threads until `ensure_instance` and `resume_thread` bring them back; one turn at a
//! time per thread. A thread's working directory must be the instance's workspace or lie in it
//! or one of its extra roots (compared as given, not resolved), and is recorded
//! ([`ScriptedRuntime::thread_cwd`]).
//!
//! With [`ScriptedRuntime::with_dispatch_log`] every call is also appended as one JSON line to a
//! file, synced per line, so a test that SIGKILLs the server process still reads every call that
//! process made.
//!
//! Modules: `turn` plays a turn's behaviour, `runtime` implements the runtime interface, `log`
//! writes the dispatch log.

mod log;
mod runtime;
#[cfg(test)]
mod tests;
mod turn;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::lock;
use spectask_runtimes::agent::AgentThreadId;
use turn::Interrupt;

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
    /// Never ends at all: not on `cancel_turn`, not on a disconnect. Only dropping the
    /// `run_turn` future ends it (its outcome is then `dropped`): an agent whose prompt never
    /// comes back, cancel or not.
    IgnoreCancel,
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
    /// Writes each file (its `path` relative to the thread's working directory, directories
    /// made as needed), each inside an `edit` tool call on that path, then `EndTurn`: an agent
    /// that edits its workspace. A write that fails ends the turn with `Err(Failed)`.
    WriteFiles { files: Vec<FileWrite> },
    /// Waits for gate `before` to open (when given), reports an `edit` tool call (`edit-{i}`,
    /// `pending` then `completed`) on each of `paths` (its location as given), waits for gate
    /// `after` to open (when given), then plays `then` (when given) or ends with `EndTurn`. A
    /// cancel ends it at any point. Gates are opened by [`ScriptedRuntime::open_gate`].
    EditFiles {
        paths: Vec<String>,
        #[serde(default)]
        before: Option<String>,
        #[serde(default)]
        after: Option<String>,
        #[serde(default)]
        then: Option<Box<Behaviour>>,
    },
}

/// One file a [`Behaviour::WriteFiles`] turn writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileWrite {
    pub path: String,
    pub content: String,
}

impl FileWrite {
    pub fn new(path: &str, content: &str) -> Self {
        Self {
            path: path.to_owned(),
            content: content.to_owned(),
        }
    }
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
    /// Gates opened so far (see [`Behaviour::EditFiles`]).
    gates: watch::Sender<HashSet<String>>,
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
    /// The working directory each thread works in (see [`ScriptedRuntime::thread_cwd`]).
    thread_cwds: HashMap<String, PathBuf>,
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
    /// The spec's workspace and extra roots, from the last `ensure_instance`.
    workspace: Option<PathBuf>,
    extra_roots: Vec<PathBuf>,
}

#[derive(Debug)]
struct Running {
    instance_id: String,
    thread_id: String,
    turn_id: String,
    interrupt: watch::Sender<Option<Interrupt>>,
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
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
                    thread_cwds: HashMap::new(),
                    next_thread: 1,
                    dispatches: Vec::new(),
                    running: HashMap::new(),
                    next_turn: 1,
                    max_in_flight: HashMap::new(),
                }),
                log: Mutex::new(None),
                dispatch_count,
                gates: watch::channel(HashSet::new()).0,
                id_prefix: format!("scripted-{created}-{:06x}", random & 0xff_ffff),
            }),
        }
    }

    /// Also appends every call as one JSON line to `path` (created if missing), flushed and synced
    /// per line so a killed process loses nothing it already logged. Fields: `event`
    /// (`ensure_instance`, `create_thread`, `resume_thread`, `turn_started`, `turn_ended`,
    /// `cancel_turn`, `shutdown_instance`), `instance_id`, and where they apply `thread_id`,
    /// `turn_id`, `work_session_id`, `cwd` (the working directory a thread call named), `outcome`
    /// (of a turn, or `unknown_instance` or `config` for a refused call), and `at_ms` (unix epoch
    /// milliseconds).
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

    /// Opens gate `name`: turns waiting on it go on, and later ones do not wait for it.
    pub fn open_gate(&self, name: &str) {
        self.shared.gates.send_modify(|gates| {
            gates.insert(name.to_owned());
        });
    }

    /// Every `run_turn`, in start order.
    pub fn dispatches(&self) -> Vec<Dispatch> {
        lock(&self.shared.state).dispatches.clone()
    }

    /// `(instance_id, thread_id, work_session_id)` of every `create_thread`, in order.
    pub fn threads(&self) -> Vec<(String, String, String)> {
        lock(&self.shared.state).threads.clone()
    }

    /// The working directory `thread_id` works in, as a real runtime would have it: the last one
    /// `create_thread`, `resume_thread` or `refresh_thread` gave it (`None` keeps the previous
    /// one), else its instance's workspace; `None` for a thread this runtime never saw, or one
    /// never given a directory in an instance without a workspace.
    pub fn thread_cwd(&self, thread_id: &AgentThreadId) -> Option<PathBuf> {
        lock(&self.shared.state)
            .thread_cwds
            .get(thread_id.as_str())
            .cloned()
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
}
