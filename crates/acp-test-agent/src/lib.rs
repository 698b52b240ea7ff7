//! The scripted ACP test agent's public surface: the script format a test writes (`script`) and
//! the environment variables the binary reads (`env`). The protocol handling itself lives in the
//! `spectask-acp-test-agent` binary; tests build scripts with these types and serialize them into
//! the agent's environment or script file.

pub mod script;

/// The only environment variables the agent reads. It inherits nothing else on purpose: a client
/// that spawns agents with an allow-listed environment must be able to run it unchanged.
pub mod env {
    /// A JSON [`Script`](crate::script::Script), used when no script file is named.
    pub const SCRIPT: &str = "SPECTASK_TEST_AGENT_SCRIPT";
    /// A file holding a JSON script; re-read on every prompt, so a test can change behaviour
    /// between turns without restarting the agent. Takes precedence over [`SCRIPT`].
    pub const SCRIPT_FILE: &str = "SPECTASK_TEST_AGENT_SCRIPT_FILE";
    /// Directory of per-session state files (history for `session/load`, rule use counts).
    /// Defaults to a fixed directory under the system temp dir.
    pub const STATE: &str = "SPECTASK_TEST_AGENT_STATE";
    /// If set, one JSON line per received request is appended (and fsync'd) to this file.
    pub const LOG: &str = "SPECTASK_TEST_AGENT_LOG";
}
