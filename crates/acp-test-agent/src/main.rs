//! The `spectask-acp-test-agent` binary: a scripted ACP agent speaking the protocol on stdio.
//! Stdout carries only the protocol; logs go to stderr. See `spectask_acp_test_agent::script` for
//! the script format and `spectask_acp_test_agent::env` for the variables it reads.

mod agent;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A fixed level rather than `RUST_LOG`: the agent reads no environment beyond its own
    // variables, so it behaves the same under an allow-listed environment.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .init();
    let config = agent::Config::from_env();
    tracing::info!(?config, pid = std::process::id(), "test agent starting");
    agent::serve(config).await
}
