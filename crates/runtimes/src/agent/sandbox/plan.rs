//! The plan of one agent instance: from its profile's [`SandboxSettings`], its workspace, the
//! data directory and the agent's home to a [`SandboxPlan`] of absolute paths, plus the
//! environment the agent must get (`TMPDIR`, and `HOME` when private).
//!
//! Building a plan prepares the file system it names: the instance's private directory
//! (`<data-dir>/instances/<id>/`, with a fresh `tmp/` and, for `home = "private"`, a `home/`),
//! missing state directories, and an empty `.git/hooks` and `config.worktree` (in `.git` and
//! in each linked worktree's admin directory) where a repository has none (so they can be
//! mounted read-only). Nothing else is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{HomeMode, SandboxError, SandboxMode, SandboxPlan, SandboxSettings};

/// Device files and directories tools need: null sinks, randomness, the terminal, pseudo-terminals
/// and POSIX shared memory. Those missing on a system are left out.
pub const DEVICES: [&str; 10] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/shm",
    "/dev/fd",
];

/// The entries of the data directory an agent may still see: the projected specs (which a
/// planning agent writes when the data directory is the project's `.spectask`) and the
/// instances' private directories (of which only its own stays visible).
const VISIBLE_DATA_ENTRIES: [&str; 2] = ["specs", INSTANCES_DIR];

/// Where instances keep their private directories, inside the data directory.
pub const INSTANCES_DIR: &str = "instances";

/// What the runtime knows when it starts an instance.
#[derive(Debug, Clone)]
pub struct SandboxRequest<'a> {
    pub settings: &'a SandboxSettings,
    /// The instance id (letters, digits, `_` and `-`): names its private directory.
    pub instance_id: &'a str,
    /// The canonical workspace.
    pub workspace: &'a Path,
    /// More canonical directories the agent may write (the task's worktrees).
    pub extra_writable: &'a [PathBuf],
    /// spectask's data directory (canonical).
    pub data_dir: &'a Path,
    /// The `HOME` the agent would inherit (the profile's `HOME`, else the server's).
    pub inherited_home: Option<&'a Path>,
    /// spectask's own port (its MCP endpoint), always allowed when connects are restricted.
    pub spectask_port: Option<u16>,
}

/// An instance's plan and the environment its agent gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSandbox {
    pub plan: SandboxPlan,
    /// `TMPDIR` (and `TMP`, `TEMP`), and `HOME` when private: set over the profile's
    /// environment.
    pub env: BTreeMap<String, String>,
    /// `<data-dir>/instances/<id>`.
    pub private_dir: PathBuf,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> SandboxError {
    move |err| SandboxError::io(context, err)
}

/// Builds the plan of one instance (see the module doc for what it creates). `Ok(None)` when the
/// profile's sandbox is off.
pub fn plan_instance(
    request: &SandboxRequest<'_>,
) -> Result<Option<InstanceSandbox>, SandboxError> {
    let settings = request.settings;
    if settings.mode == SandboxMode::Off {
        return Ok(None);
    }
    let id = request.instance_id;
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(SandboxError::Invalid(format!(
            "instance id `{id}` cannot name a directory"
        )));
    }
    for (what, path) in [
        ("workspace", request.workspace),
        ("data directory", request.data_dir),
    ] {
        if !path.is_absolute() {
            return Err(SandboxError::Invalid(format!(
                "the {what} {} is not absolute",
                path.display()
            )));
        }
    }

    let private_dir = request.data_dir.join(INSTANCES_DIR).join(id);
    let tmp = private_dir.join("tmp");
    // A fresh temp directory per start: nothing of an earlier run's scratch files survives.
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(format!("clear {}", tmp.display())))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(format!("create {}", tmp.display())))?;
    let mut env = BTreeMap::new();
    for name in ["TMPDIR", "TMP", "TEMP"] {
        env.insert(name.to_owned(), tmp.to_string_lossy().into_owned());
    }
    let home = match settings.home {
        HomeMode::Private => {
            let home = private_dir.join("home");
            std::fs::create_dir_all(&home).map_err(io(format!("create {}", home.display())))?;
            env.insert("HOME".to_owned(), home.to_string_lossy().into_owned());
            Some(home)
        }
        HomeMode::Inherit => request.inherited_home.map(Path::to_path_buf),
    };

    let mut writable_dirs = vec![request.workspace.to_path_buf()];
    writable_dirs.extend(request.extra_writable.iter().cloned());
    writable_dirs.push(tmp);
    if let Some(home) = &home
        && settings.home == HomeMode::Private
    {
        writable_dirs.push(home.clone());
    }
    for dir in &settings.state_dirs {
        let dir = resolve(dir, home.as_deref())?;
        std::fs::create_dir_all(&dir)
            .map_err(io(format!("create state directory {}", dir.display())))?;
        writable_dirs.push(canonical(&dir)?);
    }
    let mut writable_files = Vec::new();
    for file in &settings.state_files {
        let file = resolve(file, home.as_deref())?;
        // A missing file cannot get a rule (rules name existing inodes); the agent makes it on
        // its first run in a sandbox-free start, or the profile lists its directory instead.
        if file.exists() {
            writable_files.push(canonical(&file)?);
        }
    }
    let devices = DEVICES
        .iter()
        .map(PathBuf::from)
        .filter(|path| path.exists())
        .collect();

    let mut pinned = Vec::new();
    let mut read_only = Vec::new();
    protect_git(
        request.workspace,
        &writable_dirs,
        &mut pinned,
        &mut read_only,
    )?;
    for root in request.extra_writable {
        protect_git(root, &writable_dirs, &mut pinned, &mut read_only)?;
        // A worktree root holds one worktree per work session, each with its `.git` file.
        if let Ok(entries) = std::fs::read_dir(root) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    protect_git(&entry.path(), &writable_dirs, &mut pinned, &mut read_only)?;
                }
            }
        }
    }
    let hidden = secrets(request.data_dir, id, &writable_dirs)?;
    if request.data_dir.is_dir() && within_any(request.data_dir, &writable_dirs) {
        // A data directory inside the workspace must survive the agent: pinned, it can be
        // neither renamed nor removed.
        pinned.push(request.data_dir.to_path_buf());
    }
    pinned.sort_by_key(|path| path.components().count());
    pinned.dedup();

    let readable = match &settings.readable {
        None => None,
        Some(paths) => Some(
            paths
                .iter()
                .map(|path| resolve(path, home.as_deref()))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let tcp_connect = settings.connect_ports.as_ref().map(|ports| {
        let mut ports = ports.clone();
        ports.extend(request.spectask_port);
        ports.sort_unstable();
        ports.dedup();
        ports
    });

    Ok(Some(InstanceSandbox {
        plan: SandboxPlan {
            mode: settings.mode,
            writable_dirs,
            writable_files,
            devices,
            readable,
            pinned,
            read_only,
            hidden,
            tcp_connect,
        },
        env,
        private_dir,
    }))
}

/// `~/x` against `home`; absolute paths as they are; anything else is refused.
fn resolve(path: &str, home: Option<&Path>) -> Result<PathBuf, SandboxError> {
    if let Some(rest) = path.strip_prefix("~/") {
        let home = home.ok_or_else(|| {
            SandboxError::Invalid(format!(
                "`{path}` names the agent's home, but it has no HOME"
            ))
        })?;
        return Ok(home.join(rest));
    }
    let path = PathBuf::from(path);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(SandboxError::Invalid(format!(
            "`{}` must be absolute or start with `~/`",
            path.display()
        )))
    }
}

fn canonical(path: &Path) -> Result<PathBuf, SandboxError> {
    path.canonicalize()
        .map_err(io(format!("resolve {}", path.display())))
}

fn within_any(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|root| path.starts_with(root))
}

/// The git internals beneath `root` that no agent may change: hooks and config of the
/// repository, of its submodules (`modules/…`) and of its worktrees' admin directories. A
/// missing `hooks` is created empty so it can be mounted read-only. `.git` itself is pinned (a
/// renamed `.git` would leave the protection behind); a `.git` file (a worktree's pointer) is
/// made read-only, and the directory it points to is protected if the agent can write there.
fn protect_git(
    root: &Path,
    writable: &[PathBuf],
    pinned: &mut Vec<PathBuf>,
    read_only: &mut Vec<PathBuf>,
) -> Result<(), SandboxError> {
    let dot_git = root.join(".git");
    let Ok(meta) = std::fs::symlink_metadata(&dot_git) else {
        return Ok(());
    };
    if meta.is_dir() {
        pinned.push(dot_git.clone());
        protect_git_dir(&dot_git, read_only)?;
    } else if meta.is_file() {
        read_only.push(dot_git.clone());
        let text =
            std::fs::read_to_string(&dot_git).map_err(io(format!("read {}", dot_git.display())))?;
        if let Some(target) = text.trim().strip_prefix("gitdir:") {
            let target = root.join(target.trim());
            if let Ok(target) = target.canonicalize()
                && within_any(&target, writable)
            {
                protect_git_dir(&target, read_only)?;
                let common = std::fs::read_to_string(target.join("commondir"))
                    .ok()
                    .and_then(|common| target.join(common.trim()).canonicalize().ok());
                if let Some(common) = common
                    && within_any(&common, writable)
                {
                    protect_git_dir(&common, read_only)?;
                }
            }
        }
    }
    Ok(())
}

/// What of a git directory may run code or redirect git: `hooks`, `config`, `config.worktree`
/// (read when the repository enables `extensions.worktreeConfig`; a missing one is created
/// empty so that the agent cannot plant it), and in each linked worktree's admin directory
/// its `config.worktree` likewise, its `gitdir` and `commondir` (where git and spectask find
/// the worktree and its repository). Objects, refs, index and HEAD stay writable: an agent may
/// commit in its worktree. Admin directories made after the agent started are not covered
/// here; spectask's git layer never trusts them (see `spectask-git`).
fn protect_git_dir(git_dir: &Path, read_only: &mut Vec<PathBuf>) -> Result<(), SandboxError> {
    let hooks = git_dir.join("hooks");
    if !hooks.exists() {
        std::fs::create_dir_all(&hooks).map_err(io(format!("create {}", hooks.display())))?;
    }
    push_unique(read_only, hooks);
    let config = git_dir.join("config");
    if config.is_file() {
        push_unique(read_only, config);
    }
    protect_worktree_config(git_dir, read_only)?;
    if let Ok(entries) = std::fs::read_dir(git_dir.join("worktrees")) {
        for entry in entries.flatten() {
            let admin = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            protect_worktree_config(&admin, read_only)?;
            for name in ["gitdir", "commondir"] {
                let file = admin.join(name);
                if file.is_file() {
                    push_unique(read_only, file);
                }
            }
        }
    }
    protect_modules(&git_dir.join("modules"), read_only)
}

/// `<dir>/config.worktree` read-only, created empty first if missing (a regular file only:
/// anything else there is left alone and not mounted).
fn protect_worktree_config(dir: &Path, read_only: &mut Vec<PathBuf>) -> Result<(), SandboxError> {
    let file = dir.join("config.worktree");
    if std::fs::symlink_metadata(&file).is_err() {
        std::fs::write(&file, "").map_err(io(format!("create {}", file.display())))?;
    }
    if std::fs::symlink_metadata(&file).is_ok_and(|meta| meta.is_file()) {
        push_unique(read_only, file);
    }
    Ok(())
}

/// Submodule git directories live at `modules/<name>` (names may contain slashes, so the tree
/// is walked down to the directories that hold a `HEAD`).
fn protect_modules(dir: &Path, read_only: &mut Vec<PathBuf>) -> Result<(), SandboxError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if path.join("HEAD").is_file() {
            protect_git_dir(&path, read_only)?;
        } else {
            protect_modules(&path, read_only)?;
        }
    }
    Ok(())
}

fn push_unique(paths: &mut Vec<PathBuf>, path: PathBuf) {
    if !paths.contains(&path) {
        paths.push(path);
    }
}

/// What of the data directory the agent must not read: every entry but the visible ones, and
/// in `instances/` every instance's directory but its own. Symbolic links are left alone (a
/// mount would cover their target). Entries the agent may write (a workspace, or a task's
/// worktree root, inside the data directory) are never hidden; of a directory that holds one,
/// only the entries beside it are (`worktrees/<other task>`).
fn secrets(
    data_dir: &Path,
    instance_id: &str,
    writable: &[PathBuf],
) -> Result<Vec<PathBuf>, SandboxError> {
    let mut hidden = Vec::new();
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return Ok(hidden);
    };
    for entry in entries {
        let entry = entry.map_err(io(format!("list {}", data_dir.display())))?;
        let name = entry.file_name();
        if VISIBLE_DATA_ENTRIES.iter().any(|visible| name == *visible) {
            continue;
        }
        hide_unless_writable(entry.path(), writable, &mut hidden);
    }
    if let Ok(entries) = std::fs::read_dir(data_dir.join(INSTANCES_DIR)) {
        for entry in entries.flatten() {
            if entry.file_name() != instance_id {
                hide_unless_writable(entry.path(), writable, &mut hidden);
            }
        }
    }
    hidden.sort();
    Ok(hidden)
}

/// Hides `path` unless it is a symbolic link or holds a writable directory; a directory above
/// a writable one is looked into instead, hiding what lies beside the writable one.
fn hide_unless_writable(path: PathBuf, writable: &[PathBuf], hidden: &mut Vec<PathBuf>) {
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        return;
    }
    if !writable.iter().any(|w| w.starts_with(&path)) {
        hidden.push(path);
        return;
    }
    if writable.contains(&path) {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(&path) {
        for entry in entries.flatten() {
            hide_unless_writable(entry.path(), writable, hidden);
        }
    }
}
