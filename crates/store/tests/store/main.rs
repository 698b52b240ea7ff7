//! The store's behaviour on both databases: guarded transitions for every state machine, races,
//! the seed's unique constraints, cascades, all-or-nothing batches and the event log.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod agents;
mod data;
mod group_commit;
mod leases;
mod support;
mod transitions;
