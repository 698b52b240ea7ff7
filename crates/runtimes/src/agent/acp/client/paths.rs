//! The paths an agent names, resolved and classified: `~/…` expanded against the agent's HOME,
//! confinement to the instance's roots (its workspace and extra roots) on real (canonical) paths,
//! and the protected paths refused under every policy.

use std::path::{Component, Path, PathBuf};

/// Why `resolved` (inside one of `roots`) is a protected path, if it is: files that git or other
/// tools execute or trust, so a write there runs code outside any review. Named relative to the
/// innermost root holding it, so a `.git` (a directory, or a worktree's `.git` file) is
/// protected in each root and in each worktree beneath one.
pub(crate) fn protected_reason(roots: &[PathBuf], resolved: &Path) -> Option<&'static str> {
    let relative = roots
        .iter()
        .filter_map(|root| resolved.strip_prefix(root).ok())
        .min_by_key(|relative| relative.components().count())
        .unwrap_or(resolved);
    let names: Vec<&std::ffi::OsStr> = relative
        .components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    if names.iter().any(|name| *name == ".git") {
        return Some("git's internals (hooks, config) under .git");
    }
    if names.iter().any(|name| *name == ".husky") {
        return Some("git hooks run by husky (.husky)");
    }
    if names.last().is_some_and(|name| *name == ".envrc") {
        return Some(".envrc, which direnv runs");
    }
    None
}

/// Words in a command that point at a protected path (a heuristic for commands, which name paths
/// in free text; the OS sandbox is what actually confines them).
pub(super) const PROTECTED_IN_COMMANDS: [&str; 4] =
    [".git/hooks", ".git/config", ".envrc", ".husky/"];

/// `requested` with a leading `~` expanded against `home`, as a shell would for the agent.
/// `~user` forms are refused: resolving another user's home is not something spectask does.
pub(crate) fn expand_home(home: Option<&Path>, requested: &Path) -> Result<PathBuf, String> {
    let mut components = requested.components();
    let Some(Component::Normal(first)) = components.next() else {
        return Ok(requested.to_path_buf());
    };
    let Some(first) = first.to_str() else {
        return Ok(requested.to_path_buf());
    };
    if first == "~" {
        let home = home.ok_or_else(|| {
            format!(
                "{} names the home directory, and the agent has no HOME",
                requested.display()
            )
        })?;
        Ok(home.join(components.as_path()))
    } else if first.starts_with('~') {
        Err(format!(
            "{}: `~user` paths are not supported",
            requested.display()
        ))
    } else {
        Ok(requested.to_path_buf())
    }
}

/// Resolves `requested` (absolute, or relative to `base`) to the real path it names, and fails if
/// that path is in none of `roots` (which must be canonical; the first is the workspace). The
/// file need not exist, but its longest existing ancestor is resolved, and what follows may not
/// contain `..`.
pub(crate) fn resolve_in_roots(
    roots: &[PathBuf],
    base: &Path,
    requested: &Path,
) -> Result<PathBuf, String> {
    let path = if requested.is_absolute() {
        requested.to_path_buf()
    } else {
        base.join(requested)
    };
    let mut existing = path.as_path();
    let resolved_prefix = loop {
        if existing.symlink_metadata().is_ok() {
            break existing
                .canonicalize()
                .map_err(|err| format!("cannot resolve {}: {err}", existing.display()))?;
        }
        existing = existing
            .parent()
            .ok_or_else(|| format!("{} has no existing ancestor", path.display()))?;
    };
    let rest = path.strip_prefix(existing).map_err(|err| err.to_string())?;
    let mut resolved = resolved_prefix;
    for component in rest.components() {
        match component {
            Component::Normal(name) => resolved.push(name),
            Component::CurDir => {}
            // `..` after a directory that does not exist cannot be resolved by the file system;
            // refusing it is simpler than reasoning about it lexically.
            _ => return Err(format!("{} is not a plain path", path.display())),
        }
    }
    if roots.iter().any(|root| resolved.starts_with(root)) {
        Ok(resolved)
    } else {
        let roots: Vec<String> = roots
            .iter()
            .map(|root| root.display().to_string())
            .collect();
        Err(format!(
            "{} resolves to {}, outside the workspace and the task's roots ({})",
            path.display(),
            resolved.display(),
            roots.join(", ")
        ))
    }
}
