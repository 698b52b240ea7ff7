//! The `spectask` binary: parses the command line, resolves the configuration and runs the
//! server, or a client command (`task …`, `run`) against a server's API; re-executed as
//! `spectask agent-shim …`, it is the supervisor of one agent process. Exit codes: 0 ok (a clean
//! shutdown), 1 a runtime error, 2 bad usage (clap's too), 3 refused by the server, 4 the task
//! ended failed.

mod acp;
mod cli;
mod client;
mod config;
mod data_dir;
mod output;
mod run;
mod serve;
mod task;
mod token;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // `spectask agent-shim …` is the supervisor the server starts each agent under: dispatched
    // before any async runtime, thread or tracing exists, so the shim stays one small thread.
    let words: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if words
        .first()
        .is_some_and(|word| word == spectask_runtimes::agent::shim::SUBCOMMAND)
    {
        return spectask_runtimes::agent::shim::main(&words[1..]);
    }
    let args = cli::Cli::parse();
    init_tracing(&args);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match args.command {
        cli::Command::Serve(serve_args) => match runtime.block_on(serve::run(serve_args)) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!("{err:#}");
                eprintln!("error: {err:#}");
                std::process::ExitCode::FAILURE
            }
        },
        cli::Command::Task(task_args) => client_exit(runtime.block_on(task::run(task_args))),
        cli::Command::Run(run_args) => client_exit(runtime.block_on(run::run(run_args))),
        cli::Command::Acp(acp_args) => client_exit(runtime.block_on(acp::run(acp_args))),
    }
}

/// A client command's result as the process exit code (see `client/error.rs`); the error is
/// printed on stderr, with the server's code when it refused.
fn client_exit(result: client::CliResult<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(err.exit_code() as u8)
        }
    }
}

/// Logs to stderr; `spectask run` logs to `<data-dir>/run.log` instead, so an embedded server's
/// lines never mix with the questions it asks on the terminal.
fn init_tracing(args: &cli::Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log));
    let log_file = match &args.command {
        cli::Command::Run(run) => std::fs::create_dir_all(&run.client.data_dir)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(run.client.data_dir.join("run.log"))
            })
            .ok(),
        _ => None,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match (log_file, args.log_json) {
        (Some(file), true) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .json()
            .init(),
        (Some(file), false) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .init(),
        (None, true) => builder.with_writer(std::io::stderr).json().init(),
        (None, false) => builder.with_writer(std::io::stderr).init(),
    }
}
