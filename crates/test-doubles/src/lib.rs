//! Test doubles for spectask's integration tests. A test-only crate (`publish = false`): the
//! shipped `spectask` binary never links it (a tidy test in `crates/cli/tests/tidy.rs` checks),
//! so no production configuration can select a double.
//!
//! - [`scripted`]: [`ScriptedRuntime`], an in-process agent runtime whose turns each test scripts
//!   and which records every call.
//! - [`fake_openai`]: [`FakeOpenAi`], a loopback OpenAI chat-completions server scripted per test
//!   (the planning agent's model).
//! - [`fake_anthropic`]: [`FakeAnthropic`], a loopback Anthropic Messages API, so a real
//!   third-party agent (Claude Code) runs offline.
//! - [`ids`]: typed ids from readable names, for tests that call a runtime directly.
//! - [`turns`]: one turn of a real runtime run from a test, its events collected.
//! - [`process_tree`]: the live processes of one agent's tree, by the marker variable it inherits.

pub mod fake_anthropic;
pub mod fake_openai;
pub mod ids;
mod loopback;
pub mod process_tree;
pub mod scripted;
pub mod skip;
pub mod turns;
pub mod wait;

use std::sync::{Mutex, MutexGuard, PoisonError};

pub use fake_anthropic::{AnthropicReply, AnthropicRequest, FakeAnthropic, tool_results};
pub use fake_openai::{FakeOpenAi, FakeReply, RecordedRequest};
pub use scripted::{Behaviour, Dispatch, FileWrite, Rule, Script, ScriptedRuntime};
pub use skip::{REQUIRE_TIERS_VAR, Tier, skip};
pub use wait::{Observation, WAIT_DEADLINE, wait_until, wait_until_within};

/// A poisoned lock only means another test thread panicked; the data is still usable, because
/// every critical section in these doubles is a few plain assignments.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
