//! The script format: what the test agent does on each prompt, and the request-log line it writes.
//!
//! A script is a default list of steps plus rules chosen by the prompt text (first match wins).
//! Example:
//!
//! ```json
//! {
//!   "steps": [{"kind": "chunks", "count": 3}],
//!   "rules": [
//!     {"prompt_contains": "crash", "times": 1, "steps": [{"kind": "crash", "exit_code": 3}]},
//!     {"prompt_contains": "write", "steps": [{"kind": "write_file", "path": "a.txt", "content": "hi"}]}
//!   ]
//! }
//! ```

use serde::{Deserialize, Serialize};

/// The whole behaviour of the agent. Unknown fields are rejected so a typo in a test's script
/// fails loudly instead of silently running the default steps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// Advertise `loadSession` in `initialize` (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_session: Option<bool>,
    /// Steps run when no rule matches.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Rules tried in order against the prompt text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// Authentication methods advertised in `initialize` (`authMethods`), and what
    /// `authenticate` checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// The first this many `initialize` requests seen in the state directory make the process
    /// exit (code 42) instead of answering: an agent that crashes at start, counted across
    /// restarts so a client's backoff can be observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_on_start: Option<u32>,
}

/// What the agent offers for `authenticate`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Method ids advertised in `authMethods` (each named after its id).
    pub methods: Vec<String>,
    /// `authenticate` with an advertised method succeeds only if this variable of the agent's
    /// environment is set and non-empty; otherwise it fails with "`{var}` is not set".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_env: Option<String>,
}

impl Script {
    /// A script whose default steps are `steps` and which has no rules.
    #[must_use]
    pub fn steps(steps: Vec<Step>) -> Self {
        Self {
            steps,
            ..Self::default()
        }
    }

    /// Whether `initialize` advertises `loadSession`.
    #[must_use]
    pub fn advertises_load_session(&self) -> bool {
        self.load_session.unwrap_or(true)
    }
}

/// Steps chosen by the prompt text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The rule matches when the prompt's text contains this (case-sensitive).
    pub prompt_contains: String,
    pub steps: Vec<Step>,
    /// Match at most this many times. Uses are counted in the state directory, not in memory, so
    /// `{"times": 1}` with a `crash` step crashes once even though the crash restarts the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
}

/// One thing the agent does during a turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// `count` agent message chunks `"chunk {i}/{count}\n"` (1-based), `delay_ms` apart.
    Chunks {
        count: u32,
        #[serde(default)]
        delay_ms: u64,
    },
    /// One agent message chunk with this text.
    Message { text: String },
    /// One agent thought chunk.
    Thought { text: String },
    /// `fs/write_text_file` on the client, wrapped in a tool call (kind `edit`). `path` is relative
    /// to the session cwd (an absolute path is used as is). A client error marks the tool call
    /// failed; the turn goes on.
    WriteFile { path: String, content: String },
    /// `fs/read_text_file` on the client, wrapped in a tool call (kind `read`); the first line
    /// read is echoed back as an agent message chunk `"{line}\n"`.
    ReadFile { path: String },
    /// `session/request_permission` for a pending tool call (kind `other`) titled `title`.
    /// An allow option lets the following steps run; a reject option or a `cancelled` outcome
    /// ends the turn with `end_turn` after the chunk `"permission refused: {title}\n"`.
    RequestPermission {
        title: String,
        /// Defaults to `allow` (allow_once) and `reject` (reject_once).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        options: Option<Vec<PermissionChoice>>,
    },
    /// Runs `sh -c command` in the session cwd, as coding agents run shell commands: a tool call
    /// of kind `execute` whose raw input is `{"command": …}`, preceded (when `ask_permission`,
    /// the default) by `session/request_permission` for that tool call with `allow`/`reject`
    /// options; a refusal ends the turn like `request_permission`. In the foreground the step
    /// waits for the command and reports `"exit {code}\n{output}"` (output cut at 4 KiB) as the
    /// tool call's content and as a chunk; the tool call fails on a non-zero exit, and the turn
    /// goes on. With `background` the command is started and left running (nothing waits for it
    /// or kills it): how an agent leaves processes behind.
    RunCommand {
        command: String,
        #[serde(default = "default_true")]
        ask_permission: bool,
        #[serde(default)]
        background: bool,
    },
    /// Calls `tool` on the HTTP MCP server named `server` in the session's `mcpServers`, inside a
    /// tool call (kind `other`), and echoes the result's text as a chunk `"{text}\n"`. Failures
    /// mark the tool call failed; the turn goes on.
    CallMcpTool {
        server: String,
        tool: String,
        #[serde(default)]
        arguments: serde_json::Map<String, serde_json::Value>,
    },
    /// A plan update (full replacement).
    Plan { entries: Vec<PlanItem> },
    /// A `usage_update`: `used` tokens of a `size`-token context window.
    Usage { used: u64, size: u64 },
    /// `updates` agent message chunks `"{i}\n"` (1-based), sent as fast as possible.
    Flood { updates: u32 },
    /// `count` agent message chunks `"@{t}\n"`, one every `interval_ms` milliseconds plus
    /// `interval_us` microseconds on a fixed schedule, where `t` is the send time in microseconds
    /// since the Unix epoch: a benchmark reads the delay from agent to store and subscriber off
    /// each one. (Sub-millisecond intervals are kept on average: the timer wakes every
    /// millisecond and sends what is due.)
    Stamped {
        count: u32,
        #[serde(default)]
        interval_ms: u64,
        #[serde(default)]
        interval_us: u64,
    },
    /// Do nothing until the turn is cancelled.
    Hang,
    /// Stop the whole process (SIGSTOP to itself): it stays alive but answers nothing more,
    /// not even `session/cancel` or unknown requests, until it is killed. A wedged agent.
    Freeze,
    /// Exit the process with `exit_code` in the middle of the turn (pending output is flushed
    /// first, the prompt is never answered).
    Crash {
        #[serde(default = "default_exit_code")]
        exit_code: i32,
    },
    /// End the turn now with `reason`.
    Stop {
        #[serde(default)]
        reason: StopReasonName,
    },
    /// Write `bytes` bytes of `x` straight to stdout, past the SDK and without a newline: one
    /// line that never ends, to test a client's line limit. Then wait until cancelled (a client
    /// that stops reading leaves the write blocked; one that kills the agent ends it).
    LongLine { bytes: u64 },
}

fn default_exit_code() -> i32 {
    101
}

fn default_true() -> bool {
    true
}

/// A permission option offered by a `request_permission` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionChoice {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub kind: PermissionKind,
}

/// ACP's permission option kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PermissionKind {
    AllowOnce,
    AllowAlways,
    RejectOnce,
    RejectAlways,
}

impl PermissionKind {
    /// Whether choosing an option of this kind lets the turn go on.
    #[must_use]
    pub fn allows(self) -> bool {
        matches!(self, Self::AllowOnce | Self::AllowAlways)
    }
}

/// One plan entry; priority defaults to `medium`, status to `pending`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanItem {
    pub content: String,
    #[serde(default)]
    pub priority: PlanPriority,
    #[serde(default)]
    pub status: PlanStatus,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanPriority {
    High,
    #[default]
    Medium,
    Low,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    #[default]
    Pending,
    InProgress,
    Completed,
}

/// The stop reasons a script may end a turn with (`cancelled` is reserved for real cancels).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReasonName {
    #[default]
    EndTurn,
    MaxTokens,
    MaxTurnRequests,
    Refusal,
}

/// One line of the request log (`SPECTASK_TEST_AGENT_LOG`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The ACP method, e.g. `session/prompt` (`session/cancel` is logged too).
    pub method: String,
    /// The session the request is about (for `session/new`, the one it created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The prompt's text blocks joined with newlines (`session/prompt` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Milliseconds since the Unix epoch when the agent received it.
    pub ts_ms: u64,
    /// The agent process that received it, so tests can tell restarts apart.
    pub pid: u32,
    /// `session/new` and `session/load`: the MCP servers the client named, as
    /// `name url [header names]` (header values carry credentials and are not logged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_servers: Vec<String>,
    /// `session/new` and `session/load`: the working directory the client gave the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_the_documented_shape() {
        let script: Script = serde_json::from_str(
            r#"{
              "steps": [{"kind": "chunks", "count": 3}, {"kind": "stop", "reason": "refusal"}],
              "rules": [{"prompt_contains": "crash", "times": 1,
                         "steps": [{"kind": "crash", "exit_code": 3}]}]
            }"#,
        )
        .unwrap();
        assert!(script.advertises_load_session());
        assert_eq!(
            script.steps,
            vec![
                Step::Chunks {
                    count: 3,
                    delay_ms: 0
                },
                Step::Stop {
                    reason: StopReasonName::Refusal
                }
            ]
        );
        assert_eq!(script.rules[0].times, Some(1));
        let round_trip: Script =
            serde_json::from_str(&serde_json::to_string(&script).unwrap()).unwrap();
        assert_eq!(round_trip, script);
    }

    #[test]
    fn parses_auth_crash_on_start_and_freeze() {
        let script: Script = serde_json::from_str(
            r#"{"auth": {"methods": ["api-key"], "require_env": "TOKEN"}, "crash_on_start": 2,
                "steps": [{"kind": "freeze"}]}"#,
        )
        .unwrap();
        let auth = script.auth.unwrap();
        assert_eq!(auth.methods, vec!["api-key".to_owned()]);
        assert_eq!(auth.require_env.as_deref(), Some("TOKEN"));
        assert_eq!(script.crash_on_start, Some(2));
        assert_eq!(script.steps, vec![Step::Freeze]);
        assert!(serde_json::from_str::<Auth>(r#"{"method": ["x"]}"#).is_err());
    }

    #[test]
    fn parses_stamped_chunks() {
        let step: Step =
            serde_json::from_str(r#"{"kind": "stamped", "count": 5, "interval_ms": 50}"#).unwrap();
        assert_eq!(
            step,
            Step::Stamped {
                count: 5,
                interval_ms: 50,
                interval_us: 0,
            }
        );
        // Microseconds for sub-millisecond schedules; no interval at all is a stamped flood.
        let step: Step =
            serde_json::from_str(r#"{"kind": "stamped", "count": 5, "interval_us": 400}"#).unwrap();
        assert_eq!(
            step,
            Step::Stamped {
                count: 5,
                interval_ms: 0,
                interval_us: 400,
            }
        );
        assert!(serde_json::from_str::<Step>(r#"{"kind": "stamped"}"#).is_err());
    }

    #[test]
    fn parses_run_command_with_defaults() {
        let step: Step =
            serde_json::from_str(r#"{"kind": "run_command", "command": "echo hi"}"#).unwrap();
        assert_eq!(
            step,
            Step::RunCommand {
                command: "echo hi".to_owned(),
                ask_permission: true,
                background: false
            }
        );
        let step: Step = serde_json::from_str(
            r#"{"kind": "run_command", "command": "sleep 9", "ask_permission": false, "background": true}"#,
        )
        .unwrap();
        assert_eq!(
            step,
            Step::RunCommand {
                command: "sleep 9".to_owned(),
                ask_permission: false,
                background: true
            }
        );
    }

    #[test]
    fn parses_a_long_line() {
        let step: Step = serde_json::from_str(r#"{"kind": "long_line", "bytes": 1024}"#).unwrap();
        assert_eq!(step, Step::LongLine { bytes: 1024 });
    }

    #[test]
    fn rejects_unknown_fields_and_kinds() {
        assert!(serde_json::from_str::<Script>(r#"{"stepz": []}"#).is_err());
        assert!(serde_json::from_str::<Step>(r#"{"kind": "dance"}"#).is_err());
        assert!(serde_json::from_str::<Step>(r#"{"kind": "chunks", "count": 1, "x": 1}"#).is_err());
    }
}
