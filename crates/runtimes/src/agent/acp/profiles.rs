//! Agent profiles: which program an ACP instance runs, with which extra environment, how it
//! authenticates, how its permission requests are answered and how it is sandboxed; plus the
//! built-in presets for well-known ACP agents, each with the state directories its agent writes.

use std::collections::BTreeMap;

use crate::agent::catalog::{ProfileSource, find_program};
use crate::agent::sandbox::SandboxSettings;

/// How `session/request_permission` is answered for an instance of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PermissionPolicy {
    /// Allow, unless the request names a path outside the workspace (real agents edit files
    /// themselves after asking, so the path in the request is the only place to confine them).
    #[default]
    AllowWorkspaceEdits,
    /// Reject every request.
    Deny,
    /// A human decides, through the [`PermissionBroker`](crate::agent::PermissionBroker);
    /// without one, requests are rejected with a log line.
    Ask,
}

impl PermissionPolicy {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionPolicy::AllowWorkspaceEdits => "allow_workspace_edits",
            PermissionPolicy::Deny => "deny",
            PermissionPolicy::Ask => "ask",
        }
    }
}

/// One configured ACP agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpProfile {
    /// The name a task's `implementation_agent` uses.
    pub name: String,
    /// The program, looked up on the allow-listed `PATH` when it has no slash.
    pub command: String,
    pub args: Vec<String>,
    /// Extra environment for the agent, on top of `PATH`, `HOME` and `LANG` (which it overrides).
    pub env: BTreeMap<String, String>,
    pub permission_policy: PermissionPolicy,
    /// The `authenticate` method id sent after `initialize`; it must be one of the agent's
    /// advertised `authMethods`. `None`: nothing is sent.
    pub authenticate: Option<String>,
    /// The OS sandbox around the agent's process tree (`agent::sandbox`).
    pub sandbox: SandboxSettings,
    /// Lets the agent write protected paths (git's internals under `.git/`, `.envrc`, `.husky/`),
    /// which are refused under every policy otherwise.
    pub allow_protected_paths: bool,
    /// A built-in preset, or configured (the default of [`AcpProfile::new`]).
    pub source: ProfileSource,
}

impl AcpProfile {
    /// A profile running `command args…` with no extra environment and the default policy.
    pub fn new(
        name: impl Into<String>,
        command: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            name: name.into(),
            command: command.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: BTreeMap::new(),
            permission_policy: PermissionPolicy::default(),
            authenticate: None,
            sandbox: SandboxSettings::default(),
            allow_protected_paths: false,
            source: ProfileSource::Configured,
        }
    }

    /// The program the agent runs, as the shim will find it: on the `PATH` the profile sets, else
    /// on the server's own; `None` when it is not there.
    pub fn resolve_program(&self) -> Option<std::path::PathBuf> {
        let path = match self.env.get("PATH") {
            Some(path) => Some(std::ffi::OsString::from(path)),
            None => std::env::var_os("PATH"),
        };
        find_program(&self.command, path.as_deref())
    }

    /// The same profile with these sandbox settings.
    #[must_use]
    pub fn with_sandbox(mut self, sandbox: SandboxSettings) -> Self {
        self.sandbox = sandbox;
        self
    }

    /// The same profile, allowed (`true`) to write protected paths.
    #[must_use]
    pub fn with_protected_paths_allowed(mut self, allowed: bool) -> Self {
        self.allow_protected_paths = allowed;
        self
    }

    /// The same profile with one more environment variable.
    #[must_use]
    pub fn with_env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// The same profile with another permission policy.
    #[must_use]
    pub fn with_policy(mut self, policy: PermissionPolicy) -> Self {
        self.permission_policy = policy;
        self
    }

    /// The same profile, authenticating with `method_id` after `initialize`.
    #[must_use]
    pub fn with_authenticate(mut self, method_id: impl Into<String>) -> Self {
        self.authenticate = Some(method_id.into());
        self
    }
}

/// Claude Code through `@agentclientprotocol/claude-agent-acp`: the installed `claude-agent-acp`
/// binary when `installed` is true, otherwise fetched and run with `npx`.
pub fn claude_agent_acp(installed: bool) -> AcpProfile {
    if installed {
        preset("claude-agent-acp", "claude-agent-acp", Vec::<String>::new())
            .with_sandbox(claude_code_state())
    } else {
        // npx keeps its download cache in ~/.npm.
        let mut sandbox = claude_code_state();
        sandbox.state_dirs.push("~/.npm".to_owned());
        preset(
            "claude-agent-acp",
            "npx",
            ["--yes", "@agentclientprotocol/claude-agent-acp"],
        )
        .with_sandbox(sandbox)
    }
}

/// Where Claude Code keeps its login, settings and sessions: `~/.claude/` and `~/.claude.json`
/// (written in place, so a file rule is enough). For profiles that run Claude Code under
/// another name.
pub fn claude_code_state() -> SandboxSettings {
    SandboxSettings::default().with_state(["~/.claude"], ["~/.claude.json"])
}

/// OpenAI Codex through the installed `codex-acp` binary.
pub fn codex_acp() -> AcpProfile {
    preset("codex-acp", "codex-acp", Vec::<String>::new())
        .with_sandbox(SandboxSettings::default().with_state(["~/.codex"], NO_FILES))
}

/// Gemini CLI in ACP mode.
pub fn gemini() -> AcpProfile {
    preset("gemini", "gemini", ["--acp"])
        .with_sandbox(SandboxSettings::default().with_state(["~/.gemini"], NO_FILES))
}

/// OpenCode in ACP mode (XDG config, data, state and cache directories).
pub fn opencode() -> AcpProfile {
    preset("opencode", "opencode", ["acp"]).with_sandbox(SandboxSettings::default().with_state(
        [
            "~/.config/opencode",
            "~/.local/share/opencode",
            "~/.local/state/opencode",
            "~/.cache/opencode",
        ],
        NO_FILES,
    ))
}

/// goose in ACP mode (XDG config, data and state directories).
pub fn goose() -> AcpProfile {
    preset("goose", "goose", ["acp"]).with_sandbox(SandboxSettings::default().with_state(
        [
            "~/.config/goose",
            "~/.local/share/goose",
            "~/.local/state/goose",
        ],
        NO_FILES,
    ))
}

const NO_FILES: [&str; 0] = [];

/// A built-in preset running `command args…`.
fn preset(
    name: &str,
    command: &str,
    args: impl IntoIterator<Item = impl Into<String>>,
) -> AcpProfile {
    let mut profile = AcpProfile::new(name, command, args);
    profile.source = ProfileSource::Preset;
    profile
}

/// Every built-in preset (claude-agent-acp as the installed binary).
pub fn presets() -> Vec<AcpProfile> {
    vec![
        claude_agent_acp(true),
        codex_acp(),
        gemini(),
        opencode(),
        goose(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_distinct_names() {
        let mut names: Vec<String> = presets().into_iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 5);
        assert_eq!(gemini().args, vec!["--acp".to_owned()]);
        assert_eq!(claude_agent_acp(false).command, "npx");
        // Every preset knows where its agent keeps state, so the sandbox leaves it writable.
        assert!(presets().iter().all(|p| !p.sandbox.state_dirs.is_empty()));
        assert!(presets().iter().all(|p| p.source == ProfileSource::Preset));
        assert_eq!(
            AcpProfile::new("x", "x", Vec::<String>::new()).source,
            ProfileSource::Configured
        );
        assert_eq!(
            claude_agent_acp(true).sandbox.state_files,
            vec!["~/.claude.json".to_owned()]
        );
    }
}
