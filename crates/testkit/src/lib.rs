//! Test support shared by every crate's integration tests.
//!
//! - [`TestDatabase`]: a fresh, empty database per test: a SQLite file in a temporary directory, or
//!   a new PostgreSQL database created from `SPECTASK_TEST_DATABASE_URL` and dropped afterwards.
//! - [`TestApp`]: the real HTTP server on a random port over such a database, with a client.
//! - [`backend_tests!`]: writes each test once and runs it on both databases; without
//!   `SPECTASK_TEST_DATABASE_URL` the PostgreSQL variants print that they were skipped.
//!
//! - [`ScriptedRuntime`]: the scripted in-process agent runtime, and [`test_server_binary`]: the
//!   `spectask-test-server` binary that runs the real server with it, for tests that kill and
//!   restart a server process.
//!
//! - [`FakeAnthropic`]: a loopback Anthropic Messages API, and [`claude_profile`]: the
//!   installed `claude-agent-acp` pointed at it, for the real-agent integration tier.
//!
//! The doubles themselves ([`ScriptedRuntime`], [`FakeOpenAi`], [`FakeAnthropic`]) live in the
//! test-only `spectask-test-doubles` crate; they are re-exported here.
//!
//! - [`require_browser`]: Chromium, Node.js and playwright-core for the web UI's browser tests,
//!   and [`screenshots_dir`], where they leave screenshots.
//!
//! - [`require_acp_sdk`]: Node.js and the pinned ACP TypeScript SDK under `tests/acp-sdk/` for
//!   the test that drives `spectask acp` with it.
//!
//! - [`agent_tree`]: the live processes of one agent's tree, by the marker variable it inherits.
//!
//! - [`skip`]: how a test whose tier cannot run here says so, and fails instead when
//!   `SPECTASK_REQUIRE_TIERS` requires that tier (CI requires them all).
//!
//! Set `TEST_LOG=1` to see the server's logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod acp_sdk;
mod app;
mod browser;
mod claude_agent;
mod database;
mod git_repo;

pub use acp_sdk::{AcpSdkTools, require_acp_sdk};
pub use app::{Response, TestApp, TestOptions, fast_engine, fast_llm, fast_planner};
pub use browser::{BrowserTools, require_browser, screenshots_dir};
pub use claude_agent::{
    CLAUDE_AGENT_MISSING, claude_agent_binary, claude_profile, prepare_claude_home,
};
pub use database::{TestDatabase, postgres_url, skip_postgres};
pub use git_repo::{TestRepo, git_in};
pub use spectask_test_doubles::process_tree::{
    TREE_VAR, agent_tree, process_state, wait_for_agent_tree,
};
pub use spectask_test_doubles::{
    AnthropicReply, AnthropicRequest, Behaviour, Dispatch, FakeAnthropic, FakeOpenAi, FakeReply,
    FileWrite, Rule, Script, ScriptedRuntime, tool_results,
};
pub use spectask_test_doubles::{
    Observation, REQUIRE_TIERS_VAR, Tier, WAIT_DEADLINE, skip, wait_until, wait_until_within,
};
pub use spectask_test_doubles::{ids, turns};

/// The path of the `spectask-test-server` binary (see `src/bin/spectask-test-server.rs`).
///
/// `env!("CARGO_BIN_EXE_spectask-test-server")` exists only in this crate's own tests, so this
/// finds the binary next to the running test executable instead: tests run from
/// `target/<profile>/deps/`, binaries live in `target/<profile>/`.
///
/// Cargo builds the binary only for the testkit crate's integration tests; a test in another
/// crate needs it built first (`cargo build -p spectask-testkit --bin spectask-test-server`).
/// Panics, saying so, when it is missing.
pub fn test_server_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let deps = exe.parent().expect("test executable in a directory");
    let profile_dir = if deps.file_name().is_some_and(|name| name == "deps") {
        deps.parent().expect("deps/ inside the profile directory")
    } else {
        deps
    };
    let binary = profile_dir.join(format!(
        "spectask-test-server{}",
        std::env::consts::EXE_SUFFIX
    ));
    assert!(
        binary.is_file(),
        "{} not found: build it with `cargo build -p spectask-testkit --bin spectask-test-server` \
         (cargo builds it by itself only for spectask-testkit's own tests)",
        binary.display()
    );
    binary
}

/// Installs a log subscriber once, printing only when `TEST_LOG` is set.
pub fn init_test_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    "debug,sqlx=warn,hyper=info",
                ))
                .with_test_writer()
                .try_init();
        }
    });
}

/// Defines each test twice: `sqlite::name` and `postgres::name`. The body gets `$db:
/// TestDatabase`, fresh and empty.
#[macro_export]
macro_rules! backend_tests {
    ($( $(#[$meta:meta])* async fn $name:ident($db:ident) $body:block )*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::init_test_logging();
                    let $db = $crate::TestDatabase::sqlite().await;
                    $body
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::init_test_logging();
                    let Some($db) = $crate::TestDatabase::postgres().await else {
                        $crate::skip_postgres(concat!(module_path!(), "::", stringify!($name)));
                        return;
                    };
                    $body
                }
            )*
        }
    };
}

/// Why the agent tier is skipped: [`require_test_agent`] found a binary missing.
const TEST_AGENT_MISSING: &str = "no test agent: run `cargo test --workspace`, which builds \
     spectask-acp-test-agent and spectask (its agent shim)";

/// The scripted ACP test agent binary, when it and the `spectask` binary (its shim) were built;
/// `None` after [`skip`]ping the [`Tier::Agent`] tier otherwise (which fails the test where that
/// tier is required).
pub fn require_test_agent() -> Option<std::path::PathBuf> {
    match (acp_test_agent_binary(), spectask_binary()) {
        (Some(agent), Some(_)) => Some(agent),
        _ => {
            skip(Tier::Agent, TEST_AGENT_MISSING);
            None
        }
    }
}

/// The installed `claude-agent-acp`, when it and the `spectask` binary (its shim) are there;
/// `None` after [`skip`]ping the tier that is missing ([`Tier::Claude`] or [`Tier::Agent`]).
pub fn require_claude_agent() -> Option<std::path::PathBuf> {
    match (claude_agent_binary(), spectask_binary()) {
        (Some(path), Some(_)) => Some(path),
        (None, _) => {
            skip(Tier::Claude, CLAUDE_AGENT_MISSING);
            None
        }
        (_, None) => {
            skip(
                Tier::Agent,
                "no agent shim: build `spectask` into this target directory",
            );
            None
        }
    }
}

/// A profile named `name` that runs our test agent with `script` (its JSON), keeping the agent's
/// state in `state`. `None` when the agent was not built (see [`require_test_agent`]).
pub fn test_agent_profile(
    name: &str,
    script: &serde_json::Value,
    state: &std::path::Path,
) -> Option<spectask_runtimes::agent::acp::AcpProfile> {
    let agent = require_test_agent()?;
    Some(
        spectask_runtimes::agent::acp::AcpProfile::new(
            name,
            agent.to_string_lossy(),
            Vec::<String>::new(),
        )
        .with_env("SPECTASK_TEST_AGENT_SCRIPT", script.to_string())
        .with_env("SPECTASK_TEST_AGENT_STATE", state.to_string_lossy())
        // Its session files (and the request log tests put beside them) are its state.
        .with_sandbox(
            spectask_runtimes::agent::sandbox::SandboxSettings::default()
                .with_state([state.to_string_lossy()], Vec::<String>::new()),
        ),
    )
}

/// The supervisor shim every ACP agent of a test runs under: the `spectask` binary of this
/// target directory, recording into `run_dir`. [`require_test_agent`] skips a test when that
/// binary was not built; without it an agent fails to start, with the missing path in the error.
pub fn agent_shim(run_dir: &std::path::Path) -> spectask_runtimes::agent::shim::AgentShim {
    spectask_runtimes::agent::shim::AgentShim {
        program: spectask_binary().unwrap_or_else(|| target_dir_binary("spectask")),
        run_dir: run_dir.to_path_buf(),
    }
}

/// The `spectask` binary in this target directory, if it was built (`cargo test --workspace`
/// builds it).
pub fn spectask_binary() -> Option<std::path::PathBuf> {
    let path = target_dir_binary("spectask");
    path.is_file().then_some(path)
}

/// Where a binary of this workspace is built: `<target>/<profile>/<name>`, the test executable
/// being `<target>/<profile>/deps/<test>-<hash>`.
fn target_dir_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// The scripted ACP test agent binary (`spectask-acp-test-agent`) in this target directory, if it
/// was built (`cargo test --workspace` builds it; a single-package run may not).
pub fn acp_test_agent_binary() -> Option<std::path::PathBuf> {
    let path = target_dir_binary("spectask-acp-test-agent");
    path.is_file().then_some(path)
}
