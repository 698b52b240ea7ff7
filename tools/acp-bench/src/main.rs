//! Load harness for agent output, with our scripted ACP test agent as a real process and the
//! server in this process (fresh SQLite, or PostgreSQL with `--postgres`), all on loopback:
//!
//! - `relay`: updates per second relayed from agent to stored interaction and to a live
//!   subscriber, with the agent flooding as fast as it can (or, with `--rate`, sending stamped
//!   updates on a schedule, for the latency), beside the raw pipe's rate as a baseline.
//! - `capacity`: how many threads one server holds at once, ramping the number of concurrently
//!   streaming work sessions and reporting throughput, delays, memory and where it falls behind.
//!
//! cargo build --release -p spectask -p spectask-acp-test-agent -p spectask-acp-bench
//! target/release/spectask-acp-bench relay --threads 8 --updates 20000
//! target/release/spectask-acp-bench capacity --levels 8,32,64,128,256

mod capacity;
mod harness;
mod pipe_baseline;
mod relay;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Updates per second relayed from a flooding agent to the store and a live subscriber.
    Relay(relay::RelayArgs),
    /// Concurrent threads one server holds: a ramp of streaming work sessions.
    Capacity(capacity::CapacityArgs),
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().mode {
        Mode::Relay(args) => relay::run(args).await,
        Mode::Capacity(args) => capacity::run(args).await,
    }
}
