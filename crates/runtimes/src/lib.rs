//! spectask's agent runtimes: the processes and remote services that do the agents' work, behind
//! owned types and channels so the rest of spectask never sees a wire format.
//!
//! `llm` is the OpenAI chat-completions client used by the planning agent.

pub mod llm;
