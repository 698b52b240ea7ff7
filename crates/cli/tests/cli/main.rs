//! The `spectask` binary as a user runs it: help text, zero-configuration start, and durability
//! across a SIGKILL on both databases (git isolation too), and no agent process outliving a killed
//! server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod acp;
mod acp_sdk;
mod agent_trees;
mod browser;
mod follow_run;
mod git_sigkill;
mod import_export;
mod replicas;
mod sigkill;
mod startup;
mod support;
mod task_commands;
mod task_harness;
