//! What a runtime says about its agent profiles, for people choosing and checking them (the
//! API's `/agents`): each profile with its program as found on `PATH`, the default agent and
//! where that default came from, and the result of a check (an ACP `initialize` handshake run
//! with a throw-away process of the profile).
//!
//! Nothing here carries a profile's environment: values there may be secrets.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::agent::sandbox::SandboxMode;

/// Where a profile comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProfileSource {
    /// The configuration file (which may replace a preset of the same name).
    #[default]
    Configured,
    /// A built-in preset for a well-known agent.
    Preset,
}

impl ProfileSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileSource::Configured => "configured",
            ProfileSource::Preset => "preset",
        }
    }
}

/// Where the default agent comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultSource {
    /// The configuration names it (`default_agent`).
    Configured,
    /// The configuration names none, and it was the only built-in agent found on `PATH`.
    Detected,
}

impl DefaultSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultSource::Configured => "configured",
            DefaultSource::Detected => "detected",
        }
    }
}

/// One agent profile as people see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentDescription {
    pub name: String,
    pub command: String,
    pub args: Vec<String>,
    pub source: ProfileSource,
    /// The program the command resolves to on the server, if it does (see [`find_program`]).
    pub path: Option<PathBuf>,
    /// `allow_workspace_edits`, `deny` or `ask`.
    pub permission_policy: &'static str,
    pub sandbox: SandboxMode,
    /// Whether tasks that name no agent get this one.
    pub default: bool,
}

/// Every agent profile of a runtime, by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentCatalog {
    pub agents: Vec<AgentDescription>,
    pub default_agent: Option<String>,
    /// `None` when there is no default agent.
    pub default_source: Option<DefaultSource>,
}

/// What an agent said in its `initialize` answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentHandshake {
    pub protocol_version: u16,
    /// `agentInfo`: the agent's name, title and version, if it said.
    pub agent_info: Option<AgentInfo>,
    pub load_session: bool,
    pub prompt_image: bool,
    pub prompt_audio: bool,
    pub prompt_embedded_context: bool,
    pub mcp_http: bool,
    pub mcp_sse: bool,
    /// `authMethods`: the ways the agent offers to authenticate.
    pub auth_methods: Vec<AuthMethodInfo>,
}

/// The agent's own name and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    pub name: String,
    pub title: Option<String>,
    pub version: String,
}

/// One authentication method an agent offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthMethodInfo {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
}

/// The result of checking one profile: its agent started as a task's would (under the shim, with
/// its environment and sandbox), the handshake (and the profile's `authenticate`, if any), then
/// stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCheck {
    pub name: String,
    /// The handshake completed and the agent speaks the protocol version spectask needs.
    pub ok: bool,
    /// What the agent answered, when it answered (also when a later step failed).
    pub handshake: Option<AgentHandshake>,
    pub duration: Duration,
    /// Why the check failed.
    pub error: Option<String>,
}

/// Where `command` resolves as a program: a command with a slash names a file (relative to the
/// server's working directory), one without is looked up in the directories of `path` (a
/// `PATH` value) like `execvp` does. Only executable regular files count.
pub fn find_program(command: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    if command.is_empty() {
        return None;
    }
    if command.contains('/') {
        let candidate = Path::new(command);
        return is_executable(candidate).then(|| candidate.to_path_buf());
    }
    std::env::split_paths(path?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(command))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        metadata.is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn programs_are_found_like_execvp_finds_them() {
        use std::os::unix::fs::PermissionsExt;

        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let write = |dir: &Path, name: &str, mode: u32| {
            let path = dir.join(name);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        write(first.path(), "plain", 0o644);
        let runnable = write(second.path(), "plain", 0o755);
        let path = std::env::join_paths([first.path(), second.path()]).unwrap();

        // The first executable match wins; a non-executable file is passed over.
        assert_eq!(find_program("plain", Some(&path)), Some(runnable.clone()));
        assert_eq!(find_program("missing", Some(&path)), None);
        assert_eq!(find_program("plain", None), None);
        assert_eq!(find_program("", Some(&path)), None);
        // A path is taken as it is; a directory is no program.
        let absolute = runnable.to_str().unwrap();
        assert_eq!(find_program(absolute, None), Some(runnable));
        assert_eq!(find_program(second.path().to_str().unwrap(), None), None);
    }
}
