//! The engine driven step by step: each test brings a SpecTask to `spec_approved` in a fresh
//! store, then calls [`spectask_engine::Engine::tick`] itself and looks at the store and the
//! tick's outcome after every step, with the scripted agent runtime deciding how each turn ends.
//! No test waits for time to pass: a step ends when the turns its tick started have ended
//! (`support`). The HTTP tests (`crates/server/tests/implementation.rs`) cover the API; these
//! cover the engine's decisions one tick at a time. Every test runs on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

#[macro_use]
mod support;

mod dependency_order;
mod disconnects;
mod failures;
mod git_worktrees;
mod overlaps;
mod retries;
mod spawns;
