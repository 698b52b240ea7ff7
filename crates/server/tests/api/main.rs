//! The server's integration tests, one binary (one link of the whole server): each module is a
//! group, selected by its name (`cargo test -p spectask-server --test api mcp::`); what they share
//! is in `support`. Every test runs on SQLite and on PostgreSQL (`backend_tests!`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod acp;
mod acp_bounds;
mod acp_permissions;
mod acp_planning;
mod acp_sandbox;
mod acp_supervision;
mod agents;
mod checks;
mod edge;
mod entries;
mod git_isolation;
mod git_review;
mod implementation;
mod imports;
mod mcp;
mod planning;
mod rest;
mod spec_review;
mod support;
mod ui;
