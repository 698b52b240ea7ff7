//! The ACP runtime against a real ACP agent process: the scripted `spectask-acp-test-agent`
//! binary (crate `crates/acp-test-agent`), found next to this test executable. Its script, state
//! directory and request log are passed through the profile's environment, which also shows that
//! profile variables reach the agent through the allow-list.
//!
//! When the binary has not been built into this target directory (`cargo test -p
//! spectask-runtimes` alone does not build other packages' binaries; `cargo test --workspace`
//! does), each scenario prints `SKIPPED (agent)` and passes, rather than being ignored; where
//! `SPECTASK_REQUIRE_TIERS` requires the agent tier (as CI does) it fails instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod checks;
mod process_tree;
mod sessions;
mod support;
mod turns;
