//! Drives the built `spectask-acp-test-agent` binary as a real ACP client would: the crate's own
//! client side over the child's stdio, the child spawned with an empty environment plus the
//! agent's variables, in its own process group that is killed at the end of each test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod scripts;
mod support;
mod tools;
mod turns;
