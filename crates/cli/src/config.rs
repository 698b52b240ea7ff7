//! Resolves the planners and the ACP agent profiles from the command line, the environment and
//! `spectask.toml`.
//!
//! ```toml
//! # <data-dir>/spectask.toml
//! default_agent = "claude"         # for tasks that name no implementation_agent; unset: the
//!                                 # only built-in agent found on PATH, if exactly one is
//!
//! [agents.claude]                 # selected by a task's implementation_agent = "claude"
//! command = "claude-agent-acp"
//! env_from = ["ANTHROPIC_API_KEY"]
//! permission_policy = "allow_workspace_edits"
//! authenticate = "api-key"        # optional: an `authMethods` id the agent offers
//! sandbox = "best_effort"         # or "required" (refuse to start unsandboxed) or "off"
//! home = "inherit"                # or "private": a writable HOME under the data directory
//! state_dirs = ["~/.claude"]      # writable; a preset's name alone keeps the preset's
//! state_files = ["~/.claude.json"]
//! # readable = ["/usr", "/etc", "~/"]  # default: everything but the data directory's secrets
//! # connect_ports = [443]              # default: TCP unrestricted; spectask's port is added
//!
//! [planners.careful]              # selected by a task's spec_agent = "careful"
//!                                 # (spec_agent = "claude" plans over ACP with that agent)
//! model = "gpt-4.1"
//! base_url = "https://api.openai.com/v1"   # default: the server's --llm-base-url
//! api_key_env = "OPENAI_API_KEY"           # environment variable holding the key
//! system_prompt = "Prefer small, independent tasks."
//! stream = true
//! timeout_secs = 300
//! max_attempts = 4
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;
use spectask_engine::{PlannerProfile, PlannerRegistry};
use spectask_runtimes::agent::acp::{self, AcpProfile, PermissionPolicy};
use spectask_runtimes::agent::sandbox::{HomeMode, SandboxMode, SandboxSettings};
use spectask_runtimes::llm::LlmConfig;

use crate::cli::LlmArgs;

const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub planners: BTreeMap<String, PlannerEntry>,
    /// ACP agent profiles, selected by a task's `implementation_agent`; a profile named like a
    /// built-in preset replaces it.
    #[serde(default)]
    pub agents: BTreeMap<String, AgentEntry>,
    /// The agent profile for tasks that name none.
    pub default_agent: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEntry {
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment for the agent (it inherits nothing but PATH, HOME and LANG).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Names of variables of the server's own environment to pass through (e.g. API keys).
    #[serde(default)]
    pub env_from: Vec<String>,
    /// `allow_workspace_edits` (default), `deny` or `ask`.
    pub permission_policy: Option<String>,
    /// The `authenticate` method sent after `initialize`, one of the agent's `authMethods`.
    pub authenticate: Option<String>,
    /// `best_effort` (default), `required` or `off`.
    pub sandbox: Option<String>,
    /// `inherit` (default) or `private`.
    pub home: Option<String>,
    /// Writable state directories (`~/…` or absolute); default: the preset's of the same name.
    pub state_dirs: Option<Vec<String>>,
    /// Writable state files; default: the preset's of the same name.
    pub state_files: Option<Vec<String>>,
    /// Restricts reads to these paths (plus what the agent may write).
    pub readable: Option<Vec<String>>,
    /// Restricts TCP connects to these ports (plus spectask's own).
    pub connect_ports: Option<Vec<u16>>,
    /// Lets the agent write git's internals (`.git/`), `.envrc` and `.husky/` (default false).
    #[serde(default)]
    pub allow_protected_paths: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannerEntry {
    pub model: String,
    pub base_url: Option<String>,
    /// Name of the environment variable that holds the key.
    pub api_key_env: Option<String>,
    pub system_prompt: Option<String>,
    pub stream: Option<bool>,
    pub timeout_secs: Option<u64>,
    pub max_attempts: Option<u32>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
}

/// Reads the configuration file: the explicit one must exist; the default one may be absent.
pub fn load(explicit: Option<&Path>, data_dir: &Path) -> Result<(ConfigFile, Option<PathBuf>)> {
    let (path, required) = match explicit {
        Some(path) => (path.to_owned(), true),
        None => (data_dir.join("spectask.toml"), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if !required && err.kind() == std::io::ErrorKind::NotFound => {
            return Ok((ConfigFile::default(), None));
        }
        Err(err) => {
            return Err(err)
                .with_context(|| format!("cannot read configuration {}", path.display()));
        }
    };
    let config: ConfigFile = toml::from_str(&text)
        .with_context(|| format!("invalid configuration {}", path.display()))?;
    Ok((config, Some(path)))
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// The base LLM settings from flags and environment (`OPENAI_*` as fallbacks).
fn base_config(args: &LlmArgs, env: &dyn Fn(&str) -> Option<String>) -> LlmConfig {
    let timeout = Duration::from_secs(args.llm_timeout_secs);
    LlmConfig {
        base_url: non_empty(args.llm_base_url.clone())
            .or_else(|| non_empty(env("OPENAI_BASE_URL")))
            .unwrap_or_else(|| OPENAI_BASE_URL.to_owned()),
        model: args.llm_model.clone().unwrap_or_default(),
        api_key: non_empty(args.llm_api_key.clone()).or_else(|| non_empty(env("OPENAI_API_KEY"))),
        stream: !args.llm_no_stream,
        first_byte_timeout: timeout,
        idle_timeout: timeout,
        max_attempts: args.llm_max_attempts,
        ..LlmConfig::default()
    }
}

/// Builds the planner registry.
pub fn planners(
    args: &LlmArgs,
    file: &ConfigFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PlannerRegistry> {
    let base = base_config(args, env);
    let default = match non_empty(args.llm_model.clone()) {
        Some(_) => Some(
            PlannerProfile::new("default", base.clone(), None)
                .context("invalid planner settings")?,
        ),
        None => None,
    };
    let mut profiles = Vec::new();
    for (name, entry) in &file.planners {
        let mut config = base.clone();
        config.model = entry.model.clone();
        if let Some(url) = &entry.base_url {
            config.base_url = url.clone();
        }
        if let Some(var) = &entry.api_key_env {
            config.api_key = Some(env(var).with_context(|| {
                format!("planner `{name}`: environment variable {var} is not set")
            })?);
        }
        if let Some(stream) = entry.stream {
            config.stream = stream;
        }
        if let Some(secs) = entry.timeout_secs {
            config.first_byte_timeout = Duration::from_secs(secs);
            config.idle_timeout = Duration::from_secs(secs);
        }
        if let Some(attempts) = entry.max_attempts {
            config.max_attempts = attempts.max(1);
        }
        config.temperature = entry.temperature.or(config.temperature);
        config.max_tokens = entry.max_tokens.or(config.max_tokens);
        profiles.push(
            PlannerProfile::new(name.clone(), config, entry.system_prompt.clone())
                .with_context(|| format!("planner `{name}` is misconfigured"))?,
        );
    }
    Ok(PlannerRegistry::new(default, profiles))
}

/// The ACP agent profiles: the built-in presets, then the file's profiles (which replace a preset
/// of the same name).
pub fn agents(file: &ConfigFile, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<AcpProfile>> {
    let mut profiles: BTreeMap<String, AcpProfile> = acp::profiles::presets()
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    for (name, entry) in &file.agents {
        let mut profile = AcpProfile::new(name.clone(), entry.command.clone(), entry.args.clone());
        for (key, value) in &entry.env {
            profile = profile.with_env(key.clone(), value.clone());
        }
        for key in &entry.env_from {
            let value = env(key).with_context(|| {
                format!("agent `{name}`: environment variable {key} is not set")
            })?;
            profile = profile.with_env(key.clone(), value);
        }
        let policy = match entry.permission_policy.as_deref() {
            None | Some("allow_workspace_edits") => PermissionPolicy::AllowWorkspaceEdits,
            Some("deny") => PermissionPolicy::Deny,
            Some("ask") => PermissionPolicy::Ask,
            Some(other) => anyhow::bail!(
                "agent `{name}`: permission_policy must be allow_workspace_edits, deny or ask, not `{other}`"
            ),
        };
        let mut profile = profile
            .with_policy(policy)
            .with_protected_paths_allowed(entry.allow_protected_paths);
        if let Some(method) = &entry.authenticate {
            anyhow::ensure!(
                !method.trim().is_empty(),
                "agent `{name}`: authenticate must name a method"
            );
            profile = profile.with_authenticate(method.clone());
        }
        let preset = profiles.get(name).map(|preset| preset.sandbox.clone());
        let profile = profile.with_sandbox(sandbox_settings(name, entry, preset)?);
        profiles.insert(name.clone(), profile);
    }
    if let Some(default) = &file.default_agent {
        anyhow::ensure!(
            profiles.contains_key(default),
            "default_agent `{default}` is not a configured agent profile"
        );
    }
    Ok(profiles.into_values().collect())
}

/// The default agent and how it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultAgent {
    /// `default_agent` in the configuration.
    Configured(String),
    /// None configured; this was the only built-in agent whose program was found.
    Detected(String),
    /// None configured, and not exactly one built-in agent found (these were).
    None { found: Vec<String> },
}

impl DefaultAgent {
    pub fn name(&self) -> Option<&str> {
        match self {
            DefaultAgent::Configured(name) | DefaultAgent::Detected(name) => Some(name),
            DefaultAgent::None { .. } => None,
        }
    }
}

/// The default agent: the configured one, else the only built-in preset among `agents` whose
/// program `is_found` (several or none found: no default). A preset the file replaced counts
/// with the file's command.
pub fn default_agent(
    file: &ConfigFile,
    agents: &[AcpProfile],
    is_found: &dyn Fn(&AcpProfile) -> bool,
) -> DefaultAgent {
    if let Some(name) = &file.default_agent {
        return DefaultAgent::Configured(name.clone());
    }
    let presets: Vec<String> = acp::profiles::presets()
        .into_iter()
        .map(|preset| preset.name)
        .collect();
    let found: Vec<String> = agents
        .iter()
        .filter(|agent| presets.contains(&agent.name) && is_found(agent))
        .map(|agent| agent.name.clone())
        .collect();
    match <[String; 1]>::try_from(found) {
        Ok([only]) => DefaultAgent::Detected(only),
        Err(found) => DefaultAgent::None { found },
    }
}

/// The sandbox options of agent `name`; state paths it does not list come from the preset it
/// replaces, if any.
fn sandbox_settings(
    name: &str,
    entry: &AgentEntry,
    preset: Option<SandboxSettings>,
) -> Result<SandboxSettings> {
    let preset = preset.unwrap_or_default();
    let mode = match entry.sandbox.as_deref() {
        None => SandboxMode::default(),
        Some(text) => SandboxMode::parse(text).with_context(|| {
            format!("agent `{name}`: sandbox must be required, best_effort or off, not `{text}`")
        })?,
    };
    let home = match entry.home.as_deref() {
        None | Some("inherit") => HomeMode::Inherit,
        Some("private") => HomeMode::Private,
        Some(other) => {
            anyhow::bail!("agent `{name}`: home must be inherit or private, not `{other}`")
        }
    };
    let paths = entry
        .state_dirs
        .iter()
        .chain(&entry.state_files)
        .chain(&entry.readable)
        .flatten();
    for path in paths {
        anyhow::ensure!(
            path.starts_with("~/") || Path::new(path).is_absolute(),
            "agent `{name}`: `{path}` must be absolute or start with `~/`"
        );
    }
    Ok(SandboxSettings {
        mode,
        home,
        state_dirs: entry.state_dirs.clone().unwrap_or(preset.state_dirs),
        state_files: entry.state_files.clone().unwrap_or(preset.state_files),
        readable: entry.readable.clone(),
        connect_ports: entry.connect_ports.clone(),
    })
}

/// A task's `spec_agent` names a planner profile or an agent profile, so no name may be both
/// (built-in agent presets included): the configuration is refused rather than one silently
/// shadowing the other.
pub fn ensure_distinct_profiles(planners: &PlannerRegistry, agents: &[AcpProfile]) -> Result<()> {
    let shared: Vec<&str> = agents
        .iter()
        .map(|agent| agent.name.as_str())
        .filter(|name| planners.has_profile(name))
        .collect();
    anyhow::ensure!(
        shared.is_empty(),
        "{} both a planner profile and an agent profile, so a task's spec_agent would be ambiguous; rename the planner",
        shared
            .iter()
            .map(|name| format!("`{name}` is"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn llm_args(args: &[&str]) -> LlmArgs {
        let mut argv = vec!["spectask", "serve"];
        argv.extend_from_slice(args);
        let Command::Serve(serve) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not serve")
        };
        serve.llm
    }

    #[test]
    fn no_model_means_no_default_planner() {
        let registry = planners(&llm_args(&[]), &ConfigFile::default(), &|_| None).unwrap();
        assert!(!registry.can_plan(None));
    }

    #[test]
    fn openai_environment_is_the_fallback() {
        let env = |k: &str| match k {
            "OPENAI_API_KEY" => Some("sk-env".to_owned()),
            "OPENAI_BASE_URL" => Some("http://127.0.0.1:9/v1".to_owned()),
            _ => None,
        };
        let config = base_config(&llm_args(&["--llm-model", "m"]), &env);
        assert_eq!(config.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(config.api_key.as_deref(), Some("sk-env"));
        let explicit = base_config(
            &llm_args(&[
                "--llm-model",
                "m",
                "--llm-base-url",
                "http://x/v1",
                "--llm-api-key",
                "k",
            ]),
            &env,
        );
        assert_eq!(
            (explicit.base_url.as_str(), explicit.api_key.as_deref()),
            ("http://x/v1", Some("k"))
        );
    }

    #[test]
    fn profiles_come_from_the_file() {
        let file: ConfigFile = toml::from_str(
            "[planners.careful]\nmodel = \"big\"\napi_key_env = \"CAREFUL_KEY\"\nsystem_prompt = \"Be careful.\"\n",
        )
        .unwrap();
        let env = |k: &str| (k == "CAREFUL_KEY").then(|| "sk-careful".to_owned());
        let registry = planners(&llm_args(&[]), &file, &env).unwrap();
        let profile = registry.resolve(Some("careful")).unwrap();
        assert_eq!(profile.client.config().model, "big");
        assert_eq!(profile.system_prompt_extra.as_deref(), Some("Be careful."));
        assert!(registry.resolve(Some("other")).is_err());
        let missing = planners(&llm_args(&[]), &file, &|_| None).unwrap_err();
        assert!(format!("{missing:#}").contains("CAREFUL_KEY"));
        assert!(toml::from_str::<ConfigFile>("[planners.x]\nmodle = \"typo\"\n").is_err());
    }

    #[test]
    fn agents_are_presets_plus_the_file() {
        let file: ConfigFile = toml::from_str(
            "default_agent = \"mine\"\n[agents.mine]\ncommand = \"/opt/agent\"\nargs = [\"--acp\"]\nenv_from = [\"MY_KEY\"]\npermission_policy = \"deny\"\n\
             [agents.gemini]\ncommand = \"gemini-nightly\"\nargs = [\"--acp\"]\n",
        )
        .unwrap();
        let env = |k: &str| (k == "MY_KEY").then(|| "secret".to_owned());
        let profiles = agents(&file, &env).unwrap();
        let mine = profiles.iter().find(|p| p.name == "mine").unwrap();
        assert_eq!(
            (mine.command.as_str(), mine.args.clone()),
            ("/opt/agent", vec!["--acp".to_owned()])
        );
        assert_eq!(mine.env.get("MY_KEY").map(String::as_str), Some("secret"));
        assert_eq!(mine.permission_policy, PermissionPolicy::Deny);
        assert_eq!(
            profiles
                .iter()
                .find(|p| p.name == "gemini")
                .unwrap()
                .command,
            "gemini-nightly"
        );
        assert!(profiles.iter().any(|p| p.name == "claude-agent-acp"));
        assert!(
            agents(&file, &|_| None).is_err(),
            "a missing env_from variable is an error"
        );
        let bad: ConfigFile = toml::from_str("default_agent = \"nobody\"\n").unwrap();
        assert!(agents(&bad, &|_| None).is_err());
    }

    #[test]
    fn the_only_built_in_agent_found_is_the_default() {
        let empty = ConfigFile::default();
        let profiles = agents(&empty, &|_| None).unwrap();
        let found_only = |names: &'static [&'static str]| {
            move |profile: &AcpProfile| names.contains(&profile.name.as_str())
        };
        assert_eq!(
            default_agent(&empty, &profiles, &found_only(&["codex-acp"])),
            DefaultAgent::Detected("codex-acp".to_owned())
        );
        assert_eq!(
            default_agent(&empty, &profiles, &found_only(&[])),
            DefaultAgent::None { found: vec![] }
        );
        // Several found: none is picked, and the log names them.
        assert_eq!(
            default_agent(&empty, &profiles, &found_only(&["gemini", "codex-acp"])),
            DefaultAgent::None {
                found: vec!["codex-acp".to_owned(), "gemini".to_owned()]
            }
        );
        assert_eq!(
            default_agent(&empty, &profiles, &found_only(&["gemini"])).name(),
            Some("gemini")
        );

        // A configured profile is no built-in agent, found or not.
        let file: ConfigFile = toml::from_str("[agents.mine]\ncommand = \"/opt/agent\"\n").unwrap();
        let profiles = agents(&file, &|_| None).unwrap();
        assert_eq!(
            default_agent(&file, &profiles, &found_only(&["mine", "goose"])),
            DefaultAgent::Detected("goose".to_owned())
        );
        // A configured default wins whatever is found.
        let file: ConfigFile =
            toml::from_str("default_agent = \"mine\"\n[agents.mine]\ncommand = \"/opt/agent\"\n")
                .unwrap();
        let profiles = agents(&file, &|_| None).unwrap();
        assert_eq!(
            default_agent(&file, &profiles, &found_only(&["goose"])),
            DefaultAgent::Configured("mine".to_owned())
        );
    }

    #[test]
    fn an_agent_may_name_its_authenticate_method() {
        let file: ConfigFile = toml::from_str(
            "[agents.keyed]\ncommand = \"agent\"\nauthenticate = \"api-key\"\n[agents.plain]\ncommand = \"agent\"\n",
        )
        .unwrap();
        let profiles = agents(&file, &|_| None).unwrap();
        let method = |name: &str| {
            profiles
                .iter()
                .find(|p| p.name == name)
                .unwrap()
                .authenticate
                .clone()
        };
        assert_eq!(method("keyed").as_deref(), Some("api-key"));
        assert_eq!(method("plain"), None);
        let blank: ConfigFile =
            toml::from_str("[agents.x]\ncommand = \"agent\"\nauthenticate = \" \"\n").unwrap();
        let err = agents(&blank, &|_| None).unwrap_err();
        assert!(format!("{err:#}").contains("authenticate"), "{err:#}");
    }

    #[test]
    fn agents_choose_their_sandbox() {
        let file: ConfigFile = toml::from_str(
            "[agents.claude-agent-acp]\ncommand = \"claude-agent-acp\"\nsandbox = \"required\"\n\
             [agents.hardened]\ncommand = \"agent\"\nhome = \"private\"\nstate_dirs = [\"~/.agent\"]\n\
             readable = [\"/usr\"]\nconnect_ports = [443]\n[agents.loose]\ncommand = \"agent\"\nsandbox = \"off\"\n",
        )
        .unwrap();
        let profiles = agents(&file, &|_| None).unwrap();
        let find = |name: &str| {
            profiles
                .iter()
                .find(|a| a.name == name)
                .unwrap()
                .sandbox
                .clone()
        };
        let claude = find("claude-agent-acp");
        assert_eq!(claude.mode, SandboxMode::Required);
        // A replaced preset keeps the preset's state paths unless the entry lists its own.
        assert_eq!(claude.state_dirs, vec!["~/.claude".to_owned()]);
        assert_eq!(claude.state_files, vec!["~/.claude.json".to_owned()]);
        let hardened = find("hardened");
        assert_eq!(
            (hardened.mode, hardened.home),
            (SandboxMode::BestEffort, HomeMode::Private)
        );
        assert_eq!(hardened.state_dirs, vec!["~/.agent".to_owned()]);
        assert_eq!(hardened.readable, Some(vec!["/usr".to_owned()]));
        assert_eq!(hardened.connect_ports, Some(vec![443]));
        assert_eq!(find("loose").mode, SandboxMode::Off);
        assert_eq!(find("gemini").state_dirs, vec!["~/.gemini".to_owned()]);

        for bad in [
            "sandbox = \"maybe\"",
            "home = \"shared\"",
            "state_dirs = [\"relative\"]",
        ] {
            let file: ConfigFile =
                toml::from_str(&format!("[agents.x]\ncommand = \"agent\"\n{bad}\n")).unwrap();
            let err = agents(&file, &|_| None).unwrap_err();
            assert!(format!("{err:#}").contains("agent `x`"), "{bad}: {err:#}");
        }
    }

    #[test]
    fn a_name_cannot_be_both_a_planner_and_an_agent() {
        let file: ConfigFile = toml::from_str(
            "[planners.careful]\nmodel = \"big\"\n[planners.gemini]\nmodel = \"g\"\n[agents.mine]\ncommand = \"/opt/agent\"\n",
        )
        .unwrap();
        let registry = planners(&llm_args(&[]), &file, &|_| None).unwrap();
        let profiles = agents(&file, &|_| None).unwrap();
        let err = ensure_distinct_profiles(&registry, &profiles).unwrap_err();
        assert!(
            err.to_string()
                .contains("`gemini` is both a planner profile and an agent profile"),
            "{err}"
        );
        let fine: ConfigFile = toml::from_str(
            "[planners.careful]\nmodel = \"big\"\n[agents.mine]\ncommand = \"/opt/agent\"\n",
        )
        .unwrap();
        let registry = planners(&llm_args(&[]), &fine, &|_| None).unwrap();
        assert!(ensure_distinct_profiles(&registry, &agents(&fine, &|_| None).unwrap()).is_ok());
    }
}
