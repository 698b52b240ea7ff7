//! The browser tier: what runs the web UI's tests in real headless Chromium (Debian's `chromium`,
//! driven by the pinned `playwright-core` under `tests/browser/`, with Node.js), and where they
//! leave their screenshots (`target/browser-screenshots/`, kept by CI as artefacts).

use std::path::{Path, PathBuf};

use spectask_test_doubles::skip::{Tier, skip};

/// The programs and files a browser test needs.
#[derive(Debug, Clone)]
pub struct BrowserTools {
    /// `node`.
    pub node: PathBuf,
    /// The Chromium executable (`SPECTASK_CHROMIUM`, default `/usr/bin/chromium`).
    pub chromium: PathBuf,
    /// `tests/browser/`, with its `node_modules` installed.
    pub dir: PathBuf,
}

/// The browser tools, or `None` after [`skip`]ping [`Tier::Browser`] (a failure where CI
/// requires it) with what is missing and how to get it.
pub fn require_browser() -> Option<BrowserTools> {
    let dir = workspace_root().join("tests/browser");
    let chromium = std::env::var_os("SPECTASK_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    let node = find_on_path("node");
    let missing = if !chromium.is_file() {
        Some(format!(
            "no Chromium at {} (apt-get install chromium, or set SPECTASK_CHROMIUM)",
            chromium.display()
        ))
    } else if node.is_none() {
        Some("no `node` on PATH".to_owned())
    } else if !dir.join("node_modules/playwright-core").is_dir() {
        Some(format!(
            "playwright-core is not installed: cd {} && npm ci",
            dir.display()
        ))
    } else {
        None
    };
    match (missing, node) {
        (None, Some(node)) => Some(BrowserTools {
            node,
            chromium,
            dir,
        }),
        (missing, _) => {
            skip(
                Tier::Browser,
                &missing.unwrap_or_else(|| "no `node` on PATH".into()),
            );
            None
        }
    }
}

/// Where browser tests put their screenshots: `<target dir>/browser-screenshots/<suite>`.
pub fn screenshots_dir(suite: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // <target>/debug/deps/<test binary>
    let target = exe
        .ancestors()
        .nth(3)
        .map_or_else(|| workspace_root().join("target"), Path::to_path_buf);
    target.join("browser-screenshots").join(suite)
}

/// The workspace's root directory (this crate is `crates/testkit`).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `program` in a directory of `PATH`.
pub(crate) fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
