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
pub enum Command {
    /// Run the HTTP server (REST API under /api/v1, live events, OpenAPI at /api/v1/openapi.json).
    ///
    /// With no options it stores everything in a SQLite file in ./.spectask/ (created and
    /// migrated on start). Give --database-url postgres://… to use PostgreSQL instead.
    Serve(ServeArgs),
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
    /// Database connections (PostgreSQL), or SQLite read connections.
    #[arg(long, env = "SPECTASK_DB_MAX_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,
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
        let Command::Serve(args) = cli.command;
        assert_eq!(args.bind, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(args.data_dir, PathBuf::from(".spectask"));
    }

    #[test]
    fn rejects_bad_bind_address() {
        assert!(Cli::try_parse_from(["spectask", "serve", "--bind", "nope"]).is_err());
    }
}
