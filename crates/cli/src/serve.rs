//! `spectask serve`: lock the data directory, resolve the configuration, open the store, run the
//! server until Ctrl-C or SIGTERM.

use std::path::Path;

use anyhow::{Context, Result};
use spectask_engine::{Engine, EngineSettings};
use spectask_server::{ApiSettings, Server};
use spectask_store::{ConnectOptions, Store};

use crate::cli::ServeArgs;

/// The SQLite URL for a file inside the data directory.
fn sqlite_url(data_dir: &Path) -> Result<String> {
    let file = data_dir.join("spectask.db");
    let text = file
        .to_str()
        .context("data directory path is not valid UTF-8")?;
    Ok(format!("sqlite://{text}"))
}

pub async fn run(args: ServeArgs) -> Result<()> {
    run_until(args, None, spectask_server::shutdown_signal()).await
}

/// Runs the server until `shutdown` resolves; `listening` gets the bound address once requests
/// can be made (how `spectask run` starts an embedded server on a free port).
pub async fn run_until(
    args: ServeArgs,
    listening: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    tokio::fs::create_dir_all(&args.data_dir)
        .await
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let data_dir = tokio::fs::canonicalize(&args.data_dir)
        .await
        .with_context(|| format!("cannot resolve data directory {}", args.data_dir.display()))?;
    // First, before anything touches the directory: one process per data directory, and proof
    // that its previous process is gone. Held until this function returns.
    let data_dir_lock = crate::data_dir::lock(&data_dir)?;
    let predecessor_owner = data_dir_lock.predecessor_owner()?;
    // Before anything else opens: a non-loopback bind without a token must not start at all.
    let (api_token, token_source) =
        crate::token::resolve(args.api_token.as_deref(), args.bind, &data_dir)?;
    let agent_shim = agent_shim(&data_dir)?;
    let database_url = match args.database_url {
        Some(url) => url,
        None => sqlite_url(&data_dir)?,
    };
    let workspace_root = match &args.workspace_root {
        Some(root) => {
            let canonical = tokio::fs::canonicalize(root)
                .await
                .with_context(|| format!("cannot resolve workspace root {}", root.display()))?;
            anyhow::ensure!(
                canonical.is_dir(),
                "workspace root {} is not a directory",
                canonical.display()
            );
            Some(canonical)
        }
        None => None,
    };

    let options = ConnectOptions {
        max_connections: args.db_max_connections,
        ..ConnectOptions::default()
    };
    let store = Store::connect(&database_url, options)
        .await
        .with_context(|| format!("cannot open the {} database", redact(&database_url)))?;
    let (file, config_path) = crate::config::load(args.config.as_deref(), &data_dir)?;
    let planners = crate::config::planners(&args.llm, &file, &|name| std::env::var(name).ok())?;
    if let Some(path) = &config_path {
        tracing::info!(path = %path.display(), "configuration loaded");
    }
    if planners.can_plan(None) {
        tracing::info!(
            model = args.llm.llm_model.as_deref().unwrap_or_default(),
            "default planner configured"
        );
    } else {
        tracing::warn!(
            "no default planner (--llm-model): new tasks wait in backlog unless they name a planner profile"
        );
    }
    let engine_settings =
        EngineSettings {
            turn_lease: std::time::Duration::from_secs(args.turn_lease_secs),
            instance_lease: std::time::Duration::from_secs(args.instance_lease_secs),
            max_concurrent_turns: fits(args.max_concurrent_planning, "--max-concurrent-planning")?,
            replica_id: args.replica_id.clone().unwrap_or_else(default_replica_id),
            max_parallel_threads: fits(args.max_parallel_threads, "--max-parallel-threads")?,
            max_active_instances: fits(args.max_active_instances, "--max-active-instances")?,
            turn_timeout: std::time::Duration::from_secs(args.turn_timeout_secs),
            max_turn_retries: fits(args.max_turn_retries, "--max-turn-retries")?,
            check_timeout: std::time::Duration::from_secs(args.check_timeout_secs),
            max_check_rounds: fits(args.max_check_rounds, "--max-check-rounds")?,
            mcp_token_ttl: std::time::Duration::from_secs(args.mcp_token_ttl_secs),
            max_spawned_sessions: args.max_spawned_sessions,
            max_spawn_depth: args.max_spawn_depth,
            predecessor_owner,
            default_overlap_policy: args.default_overlap_policy.parse().map_err(|_| {
                anyhow::anyhow!("--default-overlap-policy must be warn or serialize")
            })?,
            git: spectask_engine::GitSettings {
                worktrees_dir: Some(data_dir.join("worktrees")),
                author: spectask_git::Signature {
                    name: args.git_author_name.clone(),
                    email: args.git_author_email.clone(),
                },
                default_isolation: args.default_isolation.parse().map_err(|_| {
                    anyhow::anyhow!("--default-isolation must be worktree or shared")
                })?,
                max_merge_attempts: fits(args.max_merge_attempts, "--max-merge-attempts")?,
            },
            ..EngineSettings::default()
        };
    let agents = crate::config::agents(&file, &|name| std::env::var(name).ok())?;
    crate::config::ensure_distinct_profiles(&planners, &agents)?;
    let default_agent =
        crate::config::default_agent(&file, &agents, &|agent| agent.resolve_program().is_some());
    tracing::info!(
        agents = %agents.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", "),
        default = default_agent.name().unwrap_or("none"),
        "ACP agent profiles"
    );
    match &default_agent {
        crate::config::DefaultAgent::Configured(_) => {}
        crate::config::DefaultAgent::Detected(name) => tracing::info!(
            agent = %name,
            "default agent detected on PATH (the only built-in agent found; set default_agent in spectask.toml to choose another)"
        ),
        crate::config::DefaultAgent::None { found } if found.is_empty() => tracing::info!(
            "no default agent: spectask.toml names none and no built-in agent was found on PATH"
        ),
        crate::config::DefaultAgent::None { found } => tracing::info!(
            found = %found.join(", "),
            "no default agent: spectask.toml names none and several built-in agents were found on PATH; set default_agent to choose one"
        ),
    }
    let desk = spectask_engine::PermissionDesk::new(
        store.clone(),
        std::time::Duration::from_secs(args.permission_timeout_secs),
    );
    let supervision = spectask_runtimes::agent::acp::SupervisionSettings {
        probe_interval: std::time::Duration::from_secs(args.agent_probe_interval_secs),
        probe_timeout: std::time::Duration::from_secs(args.agent_probe_timeout_secs),
        cancel_timeout: std::time::Duration::from_secs(args.agent_probe_timeout_secs),
        restart_backoff_max: std::time::Duration::from_secs(args.agent_restart_backoff_max_secs),
        ..spectask_runtimes::agent::acp::SupervisionSettings::default()
    };
    let mut runtime = spectask_runtimes::agent::acp::AcpRuntime::new(
        agents,
        default_agent.name().map(str::to_owned),
        agent_shim,
    )
    .with_broker(std::sync::Arc::new(desk))
    .with_supervision(supervision)
    .with_data_dir(data_dir.clone())
    .with_limits(spectask_runtimes::agent::acp::AgentLimits {
        max_line_bytes: fits(args.agent_max_line_bytes, "--agent-max-line-bytes")?,
        idle_timeout: (args.agent_idle_timeout_secs > 0)
            .then(|| std::time::Duration::from_secs(args.agent_idle_timeout_secs)),
    });
    if matches!(default_agent, crate::config::DefaultAgent::Detected(_)) {
        runtime = runtime.with_detected_default();
    }
    let engine = Engine::with_runtime(
        store.clone(),
        planners,
        std::sync::Arc::new(runtime),
        engine_settings,
    );
    // Before the worker claims anything: the successor must know whose turns died with us.
    data_dir_lock.record_owner(engine.owner())?;
    let settings = ApiSettings {
        workspace_root,
        api_token: Some(spectask_server::guard::ApiToken::new(&api_token)),
        require_api_token: !args.bind.ip().is_loopback(),
        allowed_hosts: args.allowed_hosts.clone(),
        ..ApiSettings::default()
    };
    match &token_source {
        crate::token::TokenSource::Given => tracing::info!("API token given"),
        crate::token::TokenSource::File(path) => {
            tracing::info!(path = %path.display(), "API token (optional on loopback) in")
        }
    }
    let server = Server::bind(args.bind, engine, settings)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    let addr = server.local_addr()?;
    tracing::info!(%addr, database = store.kind(), data_dir = %data_dir.display(), "spectask listening");
    if let Some(listening) = listening {
        let _ = listening.send(addr);
    }
    server.run(shutdown).await.context("server failed")?;
    store.close().await;
    drop(data_dir_lock);
    tracing::info!("spectask stopped");
    Ok(())
}

/// Kills what agent shims of an earlier run of this data directory left behind (a shim that was
/// SIGKILLed could not clean up), then names this executable as the shim for this run's agents.
fn agent_shim(data_dir: &Path) -> Result<spectask_runtimes::agent::shim::AgentShim> {
    let run_dir = spectask_runtimes::agent::shim::run_dir(data_dir);
    let report = spectask_runtimes::agent::shim::reap(&run_dir)
        .with_context(|| format!("cannot read the agent records in {}", run_dir.display()))?;
    if report.records > 0 {
        tracing::info!(
            records = report.records,
            killed = report.killed,
            "agent processes of an earlier run reaped"
        );
    }
    let program = std::env::current_exe()
        .context("cannot locate the spectask executable (it runs as the agent shim)")?;
    Ok(spectask_runtimes::agent::shim::AgentShim { program, run_dir })
}

/// `value` of `flag` in the type the engine uses, or an error naming the flag: a value that does
/// not fit is refused, never replaced by a default.
fn fits<From, To>(value: From, flag: &str) -> Result<To>
where
    From: Copy + std::fmt::Display,
    To: TryFrom<From>,
{
    To::try_from(value)
        .map_err(|_| anyhow::anyhow!("{flag} {value} is out of range on this platform"))
}

/// The host name, which is a stable, distinct name for one replica per host.
fn default_replica_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .unwrap_or_else(|| "local".to_owned())
}

/// Hides a password in a URL for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***{}", &url[..scheme_end], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{fits, redact};

    #[test]
    fn a_flag_value_that_does_not_fit_is_refused_not_replaced() {
        assert_eq!(fits::<u64, usize>(4, "--max-parallel-threads").unwrap(), 4);
        let err = fits::<u64, u8>(300, "--max-parallel-threads").unwrap_err();
        assert_eq!(
            err.to_string(),
            "--max-parallel-threads 300 is out of range on this platform"
        );
    }

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite:///x/y.db"), "sqlite:///x/y.db");
    }
}
