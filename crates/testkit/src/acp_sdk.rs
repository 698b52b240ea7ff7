//! The ACP SDK tier: `spectask acp` driven by the official ACP TypeScript SDK
//! (`@agentclientprotocol/sdk`, pinned in `tests/acp-sdk/package-lock.json`) from a Node.js
//! script, so that code spectask did not write checks its wire format.

use std::path::PathBuf;

use spectask_test_doubles::skip::{Tier, skip};

use crate::browser::{find_on_path, workspace_root};

/// What an ACP SDK test runs.
#[derive(Debug, Clone)]
pub struct AcpSdkTools {
    /// `node`.
    pub node: PathBuf,
    /// `tests/acp-sdk/`, with its `node_modules` installed.
    pub dir: PathBuf,
    /// `tests/acp-sdk/flow.mjs`, the editor's flow.
    pub script: PathBuf,
}

/// Node.js and the installed SDK, or `None` after [`skip`]ping [`Tier::AcpSdk`] (a failure
/// where CI requires it) with what is missing and how to get it.
pub fn require_acp_sdk() -> Option<AcpSdkTools> {
    let dir = workspace_root().join("tests/acp-sdk");
    let script = dir.join("flow.mjs");
    let missing = match find_on_path("node") {
        None => "no `node` on PATH".to_owned(),
        Some(_) if !dir.join("node_modules/@agentclientprotocol/sdk").is_dir() => format!(
            "@agentclientprotocol/sdk is not installed: cd {} && npm ci",
            dir.display()
        ),
        Some(node) => return Some(AcpSdkTools { node, dir, script }),
    };
    skip(Tier::AcpSdk, &missing);
    None
}
