//! A scripted in-process agent runtime for tests (placeholder, being written).
