//! The real third-party agent of the integration tier: Claude Code through
//! `@agentclientprotocol/claude-agent-acp`, installed by the project's own setup step
//! (`tools/agents`, `npm ci` in `.ci/run`), and the profile that runs it offline against a
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

/// What a scenario prints when the agent is not installed, before passing without running.
pub const CLAUDE_AGENT_SKIPPED: &str =
    "SKIPPED (claude-agent-acp not installed: run `npm ci` in tools/agents)";

/// The installed `claude-agent-acp`, if `npm ci` ran in `tools/agents` (this crate is
/// `crates/testkit`).
pub fn claude_agent_binary() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tools/agents/node_modules/.bin/claude-agent-acp");
    path.canonicalize().ok().filter(|path| path.is_file())
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
        .with_env("ANTHROPIC_BASE_URL", fake.base_url())
        .with_env("ANTHROPIC_API_KEY", "test")
        .with_env("HOME", home.to_string_lossy())
        .with_env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .with_env("DISABLE_TELEMETRY", "1")
        .with_env("DISABLE_ERROR_REPORTING", "1")
        .with_env("DISABLE_AUTOUPDATER", "1")
        .with_env("CLAUDE_CODE_ENABLE_PROMPT_SUGGESTION", "false")
}
