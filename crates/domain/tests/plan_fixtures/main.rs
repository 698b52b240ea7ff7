//! Fixture tests for the plan parser: one realistic plan per format (Kiro, cc-sdd, spec-kit,
//! heading plans, plain numbered lists, Japanese, Chinese, Portuguese, a flat checklist, prose,
//! and a broken plan), each asserting the full task list, not counts.

// Helpers outside #[test] fns are not covered by clippy's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used)]

mod languages;
mod plain;
mod spec_tools;
mod support;
