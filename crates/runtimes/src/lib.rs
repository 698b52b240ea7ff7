//! spectask's agent runtimes: the processes and remote services that do the agents' work, behind
//! owned types and channels so the rest of spectask never sees a wire format.
//!
//! - `agent`: the interface that realises a Zed instance (an agent host with threads); the ACP and
//!   Zed runtimes implement it (the scripted runtime for tests lives in `spectask-test-doubles`).
//! - `llm`: the OpenAI chat-completions client used by the planning agent.

pub mod agent;
pub mod llm;
