//! Command-line shape. Parsing only: no I/O happens here; `serve` resolves paths and URLs.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// spectask: spec-driven, multi-session AI coding.
///
/// Create a SpecTask from a prompt; a planning agent writes requirements, design and an
/// implementation plan; a human approves; the plan fans out into parallel agent threads.
#[derive(Debug, Parser)]
#[command(name = "spectask", version, propagate_version = true)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` overrides it.
    #[arg(
        long,
        global = true,
        default_value = "info,sqlx=warn,tower_http=info",
        env = "SPECTASK_LOG"
    )]
    pub log: String,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "SPECTASK_LOG_JSON")]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once per process: the size of the server's options does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the HTTP server (REST API under /api/v1, live events, OpenAPI at /api/v1/openapi.json).
    ///
    /// With no options it stores everything in a SQLite file in ./.spectask/ (created and
    /// migrated on start). Give --database-url postgres://… to use PostgreSQL instead.
    Serve(ServeArgs),
    /// Work with SpecTasks on a spectask server (create, review, approve, follow, import…).
    Task(TaskArgs),
    /// Everything in one command, for one person at a terminal: create a task, watch it plan,
    /// review the spec, follow the implementation, approve the result.
    Run(RunArgs),
    /// Serve the Agent Client Protocol on stdin/stdout, as an agent an editor (Zed, JetBrains,
    /// Neovim, Emacs) hosts: each editor thread is a SpecTask or one of its work sessions.
    ///
    /// A thin client of the server at --server; with none answering there, it starts one on the
    /// data directory. Logs go to stderr: stdout carries only the protocol.
    Acp(AcpArgs),
}

/// How a client command reaches the server, and how it prints.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The server's base URL.
    #[arg(
        long,
        global = true,
        env = "SPECTASK_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// The API token. Default: `SPECTASK_API_TOKEN`, else, for a server on this machine, the
    /// `api-token` file in the data directory.
    #[arg(
        long,
        global = true,
        env = "SPECTASK_API_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// The data directory whose `api-token` file holds the token of a local server.
    #[arg(
        long,
        global = true,
        env = "SPECTASK_DATA_DIR",
        default_value = ".spectask"
    )]
    pub data_dir: PathBuf,
    /// Print the API's JSON (one document per command; JSON lines for `follow`).
    #[arg(long, global = true)]
    pub json: bool,
    /// No colours (also when `NO_COLOR` is set or the output is not a terminal).
    #[arg(long, global = true)]
    pub no_color: bool,
}

#[derive(Debug, Args)]
pub struct TaskArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: TaskCommand,
}

/// The three planning documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Doc {
    Requirements,
    Design,
    Plan,
}

/// Spec layouts other tools write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SpecFormat {
    /// `.kiro/specs/<name>/` with requirements.md, design.md, tasks.md.
    Kiro,
    /// spec-kit's `specs/NNN-name/` with spec.md, plan.md, tasks.md.
    Speckit,
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Create a SpecTask from a prompt (planning starts at once unless --no-start).
    Create {
        /// What to build, in your words.
        prompt: String,
        /// The project checkout (default: the current directory).
        #[arg(long)]
        project: Option<PathBuf>,
        /// A planner profile, or an agent profile to plan over ACP.
        #[arg(long)]
        planner: Option<String>,
        /// The implementation agent profile.
        #[arg(long)]
        agent: Option<String>,
        /// feature, bug, refactor, chore, docs or test.
        #[arg(long = "type")]
        task_type: Option<String>,
        /// low, medium, high or critical.
        #[arg(long)]
        priority: Option<String>,
        /// Leave the task in backlog.
        #[arg(long)]
        no_start: bool,
    },
    /// List tasks.
    List {
        #[arg(long)]
        status: Option<String>,
        /// Text to find in names and prompts.
        #[arg(long)]
        query: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One task.
    Show { id: String },
    /// The planning documents of a revision (default: the latest).
    Specs {
        id: String,
        #[arg(long)]
        revision: Option<u32>,
        #[arg(long, value_enum)]
        doc: Option<Doc>,
    },
    /// The diff between two revisions (default: the last two).
    Diff {
        id: String,
        #[arg(long)]
        from: Option<u32>,
        #[arg(long)]
        to: Option<u32>,
    },
    /// Comment on a passage of a document.
    Comment {
        id: String,
        #[arg(long, value_enum)]
        doc: Doc,
        /// The passage, exactly as it appears in the document.
        #[arg(long)]
        quote: Option<String>,
        comment: String,
    },
    /// Approve the spec (the revision you read: default the latest).
    Approve {
        id: String,
        #[arg(long)]
        revision: Option<u32>,
    },
    /// Ask the planner for a new revision.
    RequestChanges {
        id: String,
        why: String,
        #[arg(long)]
        revision: Option<u32>,
    },
    /// The task's work sessions.
    Sessions { id: String },
    /// Send a follow-up message to a running work session.
    Message { session: String, text: String },
    /// Cancel a work session.
    Cancel { session: String },
    /// Retry a failed (or blocked) work session.
    Retry { session: String },
    /// Spawn a work session from a running one.
    Spawn {
        id: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: String,
    },
    /// Pending permission requests (of one task, or every task).
    Permissions { id: Option<String> },
    /// Answer a permission request with one of its options.
    Answer { request: String, option: String },
    /// Archive a task.
    Archive { id: String },
    /// Delete a task.
    Delete { id: String },
    /// Follow a task live until it reaches a review or a final status.
    Follow { id: String },
    /// Create a task in spec review from an existing Kiro or spec-kit spec folder.
    Import {
        dir: PathBuf,
        /// The project checkout (default: the current directory).
        #[arg(long)]
        project: Option<PathBuf>,
    },
    /// Write a task's approved documents in Kiro's or spec-kit's layout.
    Export {
        id: String,
        #[arg(long, value_enum)]
        format: SpecFormat,
        dir: PathBuf,
        /// Overwrite files that already exist in DIR.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to build, in your words.
    pub prompt: String,
    /// The project checkout (default: the current directory).
    #[arg(long)]
    pub project: Option<PathBuf>,
    #[arg(long)]
    pub planner: Option<String>,
    #[arg(long)]
    pub agent: Option<String>,
}

#[derive(Debug, Args)]
pub struct AcpArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The planner profile new tasks use (default: the server's).
    #[arg(long)]
    pub planner: Option<String>,
    /// The agent profile new tasks' work sessions use (default: the server's).
    #[arg(long)]
    pub agent: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "SPECTASK_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Directory for spectask's own files (the SQLite database, configuration). Created if
    /// missing.
    #[arg(long, env = "SPECTASK_DATA_DIR", default_value = ".spectask")]
    pub data_dir: PathBuf,
    /// Database URL: `postgres://user@host/db` for PostgreSQL or `sqlite://path` for a specific
    /// SQLite file. Default: `<data-dir>/spectask.db`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Confine every task's project_path to this directory (canonicalised). Default: any
    /// existing directory.
    #[arg(long, env = "SPECTASK_WORKSPACE_ROOT")]
    pub workspace_root: Option<PathBuf>,
    /// Configuration file (planner profiles). Default: `<data-dir>/spectask.toml`, if it exists.
    #[arg(long, env = "SPECTASK_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub llm: LlmArgs,
    /// The API token clients present as `Authorization: Bearer <token>`. Required to listen on a
    /// non-loopback address, where every request must carry it; on loopback it is optional for
    /// clients, and without this option one is generated into `<data-dir>/api-token` (mode 0600)
    /// at the first start and reused. Prefer the environment variable: arguments are visible to
    /// other local users.
    #[arg(long, env = "SPECTASK_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// A host name requests may address the server by (the `Host` header), besides IP addresses
    /// and `localhost`: e.g. the name of a reverse proxy. Repeatable; the variable takes a
    /// comma-separated list. Other names are refused (DNS rebinding).
    #[arg(
        long = "allowed-host",
        env = "SPECTASK_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,
    /// How long a worker holds a claimed turn without renewing it; after a crash, the turn runs
    /// again once this has passed.
    #[arg(long, env = "SPECTASK_TURN_LEASE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub turn_lease_secs: u64,
    /// How long a replica owns a SpecTask's agent instance without renewing the lease (renewed
    /// every worker tick). Several replicas on one PostgreSQL database: only the owner runs the
    /// task's turns, and a dead replica's instances are taken over once this has passed.
    #[arg(long, env = "SPECTASK_INSTANCE_LEASE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub instance_lease_secs: u64,
    /// This replica's name, the first part of every claim owner (`<replica>/<process>`). On
    /// start, the turns the previous process on this data directory was running are re-run at
    /// once; other processes' turns, also those of the same replica name, wait for their leases.
    /// Default: the host name.
    #[arg(long, env = "SPECTASK_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// Planning turns running at once.
    #[arg(long, env = "SPECTASK_MAX_CONCURRENT_PLANNING", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub max_concurrent_planning: u64,
    /// Implementation threads running at once in one SpecTask's instance.
    #[arg(long, env = "SPECTASK_MAX_PARALLEL_THREADS", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub max_parallel_threads: u64,
    /// SpecTasks implementing at once on this server; more wait in `implementation_queued`.
    #[arg(long, env = "SPECTASK_MAX_ACTIVE_INSTANCES", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_active_instances: u64,
    /// An implementation turn with no agent activity for this long is cancelled and counted as a
    /// failure.
    #[arg(long, env = "SPECTASK_TURN_TIMEOUT_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub turn_timeout_secs: u64,
    /// How long a permission request under the `ask` policy waits for a human before the agent
    /// is told `cancelled`.
    #[arg(long, env = "SPECTASK_PERMISSION_TIMEOUT_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub permission_timeout_secs: u64,
    /// How often each running ACP agent is probed for liveness (an extension request any live
    /// agent answers, if only with "method not found").
    #[arg(long, env = "SPECTASK_AGENT_PROBE_INTERVAL_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub agent_probe_interval_secs: u64,
    /// An agent that leaves a probe, or a cancelled turn, unanswered this long is declared hung:
    /// its process group is terminated, its threads become disconnected, and it is restarted.
    #[arg(long, env = "SPECTASK_AGENT_PROBE_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub agent_probe_timeout_secs: u64,
    /// The longest wait between restarts of an agent that keeps failing (the wait starts at one
    /// second and doubles per consecutive failure; an agent up for a minute starts over).
    #[arg(long, env = "SPECTASK_AGENT_RESTART_BACKOFF_MAX_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub agent_restart_backoff_max_secs: u64,
    /// The longest line an ACP agent may write to stdout, in bytes; a longer one ends that agent
    /// (its turn fails saying so) instead of growing the server's memory.
    #[arg(long, env = "SPECTASK_AGENT_MAX_LINE_BYTES", default_value_t = 16 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1024..=1024 * 1024 * 1024))]
    pub agent_max_line_bytes: u64,
    /// An ACP agent instance with no turn running for this long is stopped; its next dispatch
    /// starts it again and resumes its threads. 0 keeps instances until their task ends.
    #[arg(long, env = "SPECTASK_AGENT_IDLE_TIMEOUT_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub agent_idle_timeout_secs: u64,
    /// Failed implementation turns of one work session retried before it fails for good.
    #[arg(long, env = "SPECTASK_MAX_TURN_RETRIES", default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_turn_retries: u32,
    /// The longest one check command (a plan task's `_Verify:` line, the project check) may run
    /// after a work session's turn, in seconds; it is killed then and counts as failed.
    #[arg(long, env = "SPECTASK_CHECK_TIMEOUT_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub check_timeout_secs: u64,
    /// Check rounds a work session gets: a failing check sends the agent a follow-up turn with
    /// the output until this many rounds ran; then the session fails.
    #[arg(long, env = "SPECTASK_MAX_CHECK_ROUNDS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_check_rounds: u32,
    /// The longest an agent's MCP token lives, in seconds (it dies sooner when its work session
    /// ends, its thread is set up again, or its instance or server stops).
    #[arg(long, env = "SPECTASK_MCP_TOKEN_TTL_SECS", default_value_t = 86400, value_parser = clap::value_parser!(u64).range(1..=2_592_000))]
    pub mcp_token_ttl_secs: u64,
    /// Work sessions agents may spawn per SpecTask (over MCP; every spawn counts).
    #[arg(long, env = "SPECTASK_MAX_SPAWNED_SESSIONS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub max_spawned_sessions: u32,
    /// How deep agents may spawn: 1 lets the plan's sessions spawn, 2 lets their spawns spawn
    /// once more; 0 turns agents' spawning off.
    #[arg(long, env = "SPECTASK_MAX_SPAWN_DEPTH", default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=16))]
    pub max_spawn_depth: u32,
    /// How a task's work sessions share its project when its `workspace_config` names no
    /// `isolation`: `worktree` (a git worktree and branch per work session, merged into a task
    /// branch; only for a project that is a git repository, others run shared) or `shared` (all
    /// in the project directory).
    #[arg(long, env = "SPECTASK_DEFAULT_ISOLATION", default_value = "worktree", value_parser = ["worktree", "shared"])]
    pub default_isolation: String,
    /// What happens when two running work sessions of a task edit the same file, for tasks
    /// whose `workspace_config` names no `overlap_policy`: `warn` (an `overlap` event shown on
    /// both) or `serialize` (the later one waits for the earlier to complete).
    #[arg(long, env = "SPECTASK_DEFAULT_OVERLAP_POLICY", default_value = "warn", value_parser = ["warn", "serialize"])]
    pub default_overlap_policy: String,
    /// The author and committer name of spectask's commits and merges.
    #[arg(long, env = "SPECTASK_GIT_AUTHOR_NAME", default_value = "spectask")]
    pub git_author_name: String,
    /// The author and committer email of spectask's commits and merges.
    #[arg(
        long,
        env = "SPECTASK_GIT_AUTHOR_EMAIL",
        default_value = "spectask@localhost"
    )]
    pub git_author_email: String,
    /// Follow-up turns a work session gets to resolve a merge conflict before it is blocked for
    /// a human.
    #[arg(long, env = "SPECTASK_MAX_MERGE_ATTEMPTS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=20))]
    pub max_merge_attempts: u32,
    /// Database connections (PostgreSQL), or SQLite read connections.
    #[arg(long, env = "SPECTASK_DB_MAX_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,
}

/// The default planner: any server speaking the OpenAI chat-completions API (OpenAI, Ollama,
/// vLLM, LiteLLM, OpenRouter, Helix). Planning is enabled when a model is set.
#[derive(Debug, Args)]
pub struct LlmArgs {
    /// API root of the planner, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`
    /// (Ollama). Falls back to OPENAI_BASE_URL, then OpenAI.
    #[arg(long, env = "SPECTASK_LLM_BASE_URL")]
    pub llm_base_url: Option<String>,
    /// Model name, e.g. `gpt-4.1` or `qwen2.5-coder:32b`. Without it (here or in spectask.toml)
    /// there is no default planner and tasks wait in backlog.
    #[arg(long, env = "SPECTASK_LLM_MODEL")]
    pub llm_model: Option<String>,
    /// API key, sent as a bearer token. Falls back to OPENAI_API_KEY.
    #[arg(long, env = "SPECTASK_LLM_API_KEY", hide_env_values = true)]
    pub llm_api_key: Option<String>,
    /// Longest wait for the planner's first byte and between streamed chunks, in seconds.
    #[arg(long, env = "SPECTASK_LLM_TIMEOUT_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub llm_timeout_secs: u64,
    /// Attempts per planner request (429, 5xx, timeouts and dropped connections are retried).
    #[arg(long, env = "SPECTASK_LLM_MAX_ATTEMPTS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub llm_max_attempts: u32,
    /// Ask for one JSON response instead of a stream (for servers without streaming).
    #[arg(long, env = "SPECTASK_LLM_NO_STREAM")]
    pub llm_no_stream: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_defaults() {
        let cli = Cli::try_parse_from(["spectask", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.bind, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(args.data_dir, PathBuf::from(".spectask"));
    }

    #[test]
    fn allowed_hosts_repeat() {
        let cli = Cli::try_parse_from([
            "spectask",
            "serve",
            "--allowed-host",
            "a.example",
            "--allowed-host",
            "b.example,c.example",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.allowed_hosts, ["a.example", "b.example", "c.example"]);
    }

    #[test]
    fn rejects_bad_bind_address() {
        assert!(Cli::try_parse_from(["spectask", "serve", "--bind", "nope"]).is_err());
    }
}
