//! The implementation-plan parser (issue 3). Placeholder module: filled in by the plan parser work.
