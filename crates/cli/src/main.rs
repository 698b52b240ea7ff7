//! The `spectask` binary: parses the command line, resolves the configuration and runs the
//! server; re-executed as `spectask agent-shim …`, it is the supervisor of one agent process. Exit codes: 0 on a clean shutdown, 1 on a runtime error, 2 on bad usage (clap).

mod cli;
mod config;
mod data_dir;
mod serve;
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
    let result = runtime.block_on(async {
        match args.command {
            cli::Command::Serve(serve_args) => serve::run(serve_args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(args: &cli::Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}
