//! The real third-party agent of the integration tier: Claude Code through
//! `@agentclientprotocol/claude-agent-acp`, pinned in `tools/agents` and installed on first use
//! with `npm ci` (`.ci/run` also runs it up front), and the profile that runs it offline against a
//! [`FakeAnthropic`].
//!
//! What the agent needs to run offline, found by running it: `ANTHROPIC_BASE_URL` and any
//! `ANTHROPIC_API_KEY`; a `HOME` of its own, so it neither reads nor writes the developer's
//! `~/.claude`; the switches that turn off its telemetry, error reports, update checks and other
//! traffic to Anthropic; prompt suggestions off (a post-turn request that looks like a model turn
//! and would take the next scripted reply).

use std::path::{Path, PathBuf};

use spectask_runtimes::agent::acp::{AcpProfile, PermissionPolicy};

use crate::FakeAnthropic;

/// Why a scenario is skipped (see [`crate::skip`]) when the agent is not installed.
pub const CLAUDE_AGENT_MISSING: &str = "claude-agent-acp is not installed and `npm ci` in \
     tools/agents could not install it: Node.js and npm with access to the npm registry are needed";

/// The pinned `claude-agent-acp` from `tools/agents` (this crate is `crates/testkit`). When it
/// is not installed yet, it is installed first with `npm ci` (under a lock shared by all test
/// processes), so `cargo test --workspace` on a fresh clone runs the tier too; `None` when it
/// cannot be installed (no npm, no registry).
pub fn claude_agent_binary() -> Option<PathBuf> {
    let agents = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/agents");
    let installed = || {
        agents
            .join("node_modules/.bin/claude-agent-acp")
            .canonicalize()
            .ok()
            .filter(|path| path.is_file())
    };
    if let Some(path) = installed() {
        return Some(path);
    }
    let lock_path = std::env::temp_dir().join("spectask-claude-agent-install.lock");
    let lock = std::fs::File::create(&lock_path).ok()?;
    // Several test processes may get here at once; one installs, the others find it installed.
    lock.lock().ok()?;
    if let Some(path) = installed() {
        return Some(path);
    }
    eprintln!(
        "installing the pinned claude-agent-acp: npm ci in {}",
        agents.display()
    );
    match std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&agents)
        .stdout(std::process::Stdio::null())
        .status()
    {
        Ok(status) if status.success() => {}
        Ok(status) => eprintln!("npm ci in tools/agents failed: {status}"),
        Err(err) => eprintln!("npm could not be run: {err}"),
    }
    installed()
}

/// Prepares `home` as the agent's `HOME`: a `.claude/settings.json` with prompt suggestions off.
///
/// # Panics
/// When the directory cannot be written: a test cannot go on without it.
pub fn prepare_claude_home(home: &Path) {
    let claude = home.join(".claude");
    std::fs::create_dir_all(&claude).expect("create the agent's ~/.claude");
    // Without this, after each turn the agent forks the conversation (tools included) to ask the
    // model for the user's next prompt.
    std::fs::write(
        claude.join("settings.json"),
        serde_json::json!({"promptSuggestionEnabled": false}).to_string(),
    )
    .expect("write the agent's settings.json");
}

/// A profile named `name` running `command args…` as Claude Code against `fake`, with `home`
/// (prepared by [`prepare_claude_home`]) as its `HOME` and the `allow_workspace_edits` policy.
pub fn claude_profile(
    name: &str,
    command: &str,
    args: Vec<String>,
    home: &Path,
    fake: &FakeAnthropic,
) -> AcpProfile {
    AcpProfile::new(name, command, args)
        .with_policy(PermissionPolicy::AllowWorkspaceEdits)
        .with_sandbox(spectask_runtimes::agent::acp::profiles::claude_code_state())
        .with_env("ANTHROPIC_BASE_URL", fake.base_url())
        .with_env("ANTHROPIC_API_KEY", "test")
        .with_env("HOME", home.to_string_lossy())
        .with_env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .with_env("DISABLE_TELEMETRY", "1")
        .with_env("DISABLE_ERROR_REPORTING", "1")
        .with_env("DISABLE_AUTOUPDATER", "1")
        .with_env("CLAUDE_CODE_ENABLE_PROMPT_SUGGESTION", "false")
}
