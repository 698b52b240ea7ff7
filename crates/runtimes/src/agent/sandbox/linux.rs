//! Enforcement on Linux: the plan prepared in the parent ([`Prepared::new`]: path descriptors
//! opened, the Landlock ruleset filled, every string converted), then enforced with system calls
//! only ([`Prepared::enforce`]): namespaces, mounts, `landlock_restrict_self`.
//!
//! The only `unsafe` of the sandbox lives here: `unshare` (rustix marks it unsafe because it
//! changes the calling thread's view of the system), the Landlock ABI query (a raw syscall
//! rustix does not wrap) and the `pre_exec` hook. Each carries its safety argument.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
    PathFd, Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus,
};
use rustix::io::Errno;
use rustix::mount::{MountFlags, MountPropagationFlags};
use rustix::thread::UnshareFlags;

use super::{SandboxError, SandboxMode, SandboxPlan, SandboxReport, SandboxSupport};

/// The newest Landlock ABI whose rights the rules ask for (`IOCTL_DEV`); older kernels get what
/// they support (best effort at the crate level, judged by the plan's mode here).
const FS_ABI: ABI = ABI::V5;
/// TCP rules appeared with ABI 4.
const NET_ABI: ABI = ABI::V4;

/// One mount of the plan, its paths already C strings.
#[derive(Debug)]
enum MountOp {
    /// Bind a directory onto itself (it becomes a mount point).
    Pin(CString),
    /// Bind a path onto itself, then remount it read-only.
    ReadOnly(CString),
    /// Cover a directory with an empty read-only tmpfs.
    HideDir(CString),
    /// Cover a file with a read-only bind of `/dev/null`.
    HideFile(CString),
}

/// What enforcement achieved; `Copy`, so the child of a fork can return it without allocating.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Enforced {
    mounts: bool,
    user_namespace: bool,
    filesystem: bool,
    network: bool,
    /// The first namespace or mount error, when best effort went on without it.
    mount_error: Option<Errno>,
}

/// A plan ready to enforce (see the module doc).
#[derive(Debug)]
pub(super) struct Prepared {
    mode: SandboxMode,
    mounts: Vec<MountOp>,
    /// `None` when this kernel has no Landlock (or the ruleset could not be made in best effort).
    ruleset: Option<RulesetCreated>,
    network_requested: bool,
    network_possible: bool,
    /// `"<uid> <uid> 1"`, written to the new user namespace's `uid_map`.
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    /// Why the ruleset is missing or partial, for the report.
    landlock_note: Option<String>,
}

fn c_path(path: &Path) -> Result<CString, SandboxError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| SandboxError::Invalid(format!("{} contains a NUL byte", path.display())))
}

impl Prepared {
    pub(super) fn new(plan: &SandboxPlan) -> Result<Self, SandboxError> {
        let support = super::probe();
        if plan.mode == SandboxMode::Required {
            let missing = support.missing_for(plan);
            if !missing.is_empty() {
                return Err(SandboxError::Unsupported(missing.join("; ")));
            }
        }
        let mut mounts = Vec::new();
        for path in &plan.pinned {
            mounts.push(MountOp::Pin(c_path(path)?));
        }
        for path in &plan.read_only {
            mounts.push(MountOp::ReadOnly(c_path(path)?));
        }
        for path in &plan.hidden {
            let meta = match std::fs::symlink_metadata(path) {
                Ok(meta) => meta,
                // Gone since the plan was made (another check's private directory, removed
                // after its run): there is nothing left to hide.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => {
                    return Err(SandboxError::io(format!("inspect {}", path.display()), err));
                }
            };
            mounts.push(if meta.is_dir() {
                MountOp::HideDir(c_path(path)?)
            } else {
                MountOp::HideFile(c_path(path)?)
            });
        }
        let (ruleset, landlock_note) = match build_ruleset(plan, &support) {
            Ok(ruleset) => (ruleset, None),
            Err(err) if plan.mode == SandboxMode::Required => return Err(err),
            Err(err) => (None, Some(err.to_string())),
        };
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        Ok(Self {
            mode: plan.mode,
            mounts,
            ruleset,
            network_requested: plan.tcp_connect.is_some(),
            network_possible: support.network_rules,
            uid_map: format!("{uid} {uid} 1").into_bytes(),
            gid_map: format!("{gid} {gid} 1").into_bytes(),
            landlock_note,
        })
    }

    /// Enforces the plan with system calls only. Errors (in `required` mode, or from Landlock
    /// itself) come back as the kernel's errno.
    pub(super) fn enforce(&self) -> Result<Enforced, Errno> {
        let mut enforced = Enforced::default();
        if !self.mounts.is_empty() {
            match self.enter_namespace_and_mount() {
                Ok(user_namespace) => {
                    enforced.mounts = true;
                    enforced.user_namespace = user_namespace;
                }
                Err(errno) if self.mode == SandboxMode::Required => return Err(errno),
                Err(errno) => enforced.mount_error = Some(errno),
            }
        }
        if let Some(ruleset) = &self.ruleset {
            // `try_clone` duplicates the descriptor (one syscall), so a `pre_exec` hook, which
            // may run more than once, never consumes the prepared ruleset.
            let ruleset = ruleset
                .try_clone()
                .map_err(|err| Errno::from_io_error(&err).unwrap_or(Errno::IO))?;
            let status = ruleset.restrict_self().map_err(|_| Errno::PERM)?;
            match status.ruleset {
                RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced => {
                    enforced.filesystem = true;
                    enforced.network = self.network_requested && self.network_possible;
                }
                RulesetStatus::NotEnforced if self.mode == SandboxMode::Required => {
                    return Err(Errno::NOSYS);
                }
                RulesetStatus::NotEnforced => {}
            }
        }
        if self.mode == SandboxMode::Required && !enforced.filesystem {
            return Err(Errno::NOSYS);
        }
        Ok(enforced)
    }

    pub(super) fn enforce_with_report(&self) -> Result<SandboxReport, SandboxError> {
        let enforced = self.enforce().map_err(|errno| {
            SandboxError::Enforce(format!(
                "enforcing the plan failed: {}",
                std::io::Error::from(errno)
            ))
        })?;
        let mut skipped = Vec::new();
        if let Some(errno) = enforced.mount_error {
            skipped.push(format!(
                "mounts (.git internals writable, secrets readable): {}",
                std::io::Error::from(errno)
            ));
        }
        if !enforced.filesystem {
            skipped.push(format!(
                "Landlock: {}",
                self.landlock_note
                    .as_deref()
                    .unwrap_or("not supported by this kernel")
            ));
        }
        if self.network_requested && !enforced.network {
            skipped.push("TCP connect rules (Landlock ABI 4)".to_owned());
        }
        Ok(SandboxReport {
            filesystem: enforced.filesystem,
            network: enforced.network,
            mounts: enforced.mounts,
            user_namespace: enforced.user_namespace,
            skipped,
        })
    }

    /// A private mount namespace (in a new user namespace when possible, which also takes
    /// root's powers over the host's namespaces away), mounts private, then the plan's mounts.
    /// Returns whether a user namespace was made.
    fn enter_namespace_and_mount(&self) -> Result<bool, Errno> {
        let user_namespace = match unshare(UnshareFlags::NEWUSER | UnshareFlags::NEWNS) {
            Ok(()) => {
                write_proc(c"/proc/self/setgroups", b"deny")?;
                write_proc(c"/proc/self/uid_map", &self.uid_map)?;
                write_proc(c"/proc/self/gid_map", &self.gid_map)?;
                true
            }
            // EINVAL: the caller has other threads; EPERM/ENOSPC: user namespaces are off.
            // Root (or CAP_SYS_ADMIN) can still make a plain mount namespace.
            Err(_) => {
                unshare(UnshareFlags::NEWNS)?;
                false
            }
        };
        // Nothing done here may reach the host's namespace through shared propagation.
        rustix::mount::mount_change(
            c"/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )?;
        for op in &self.mounts {
            match op {
                MountOp::Pin(path) => {
                    rustix::mount::mount_bind_recursive(path.as_c_str(), path.as_c_str())?
                }
                MountOp::ReadOnly(path) => {
                    rustix::mount::mount_bind_recursive(path.as_c_str(), path.as_c_str())?;
                    remount_read_only(path)?;
                }
                // A hidden entry removed since it was inspected has nothing left to hide.
                MountOp::HideDir(path) => match rustix::mount::mount(
                    c"tmpfs",
                    path.as_c_str(),
                    c"tmpfs",
                    MountFlags::RDONLY
                        | MountFlags::NOSUID
                        | MountFlags::NODEV
                        | MountFlags::NOEXEC,
                    c"size=4k,nr_inodes=2,mode=000",
                ) {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(errno) => return Err(errno),
                },
                MountOp::HideFile(path) => {
                    match rustix::mount::mount_bind(c"/dev/null", path.as_c_str()) {
                        Ok(()) => remount_read_only(path)?,
                        Err(Errno::NOENT) => {}
                        Err(errno) => return Err(errno),
                    }
                }
            }
        }
        Ok(user_namespace)
    }
}

/// Remounts the bind mount at `path` read-only, keeping the flags a user namespace may not
/// clear (nosuid, nodev, noexec, atime).
fn remount_read_only(path: &CString) -> Result<(), Errno> {
    let current = rustix::fs::statvfs(path.as_c_str())?;
    let kept =
        MountFlags::from_bits_truncate(u32::try_from(current.f_flag.bits()).unwrap_or_default())
            & (MountFlags::NOSUID
                | MountFlags::NODEV
                | MountFlags::NOEXEC
                | MountFlags::NOATIME
                | MountFlags::NODIRATIME
                | MountFlags::RELATIME);
    rustix::mount::mount_remount(
        path.as_c_str(),
        MountFlags::BIND | MountFlags::RDONLY | kept,
        c"",
    )
}

/// Writes `bytes` to a `/proc` file with one `write` (the kernel wants the whole map at once).
fn write_proc(path: &std::ffi::CStr, bytes: &[u8]) -> Result<(), Errno> {
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let written = rustix::io::write(&fd, bytes)?;
    if written == bytes.len() {
        Ok(())
    } else {
        Err(Errno::IO)
    }
}

#[allow(unsafe_code)]
fn unshare(flags: UnshareFlags) -> Result<(), Errno> {
    // SAFETY: `unshare` gives the calling thread new namespaces. The callers are the process
    // about to exec the agent (or a probe child that exits at once); nothing in them relies on
    // the namespaces they leave, and no file descriptor or memory becomes invalid.
    unsafe { rustix::thread::unshare_unsafe(flags) }
}

/// The Landlock ruleset of `plan`: every write right handled (and reads, when restricted),
/// writes allowed beneath the writable paths and on the devices.
fn build_ruleset(
    plan: &SandboxPlan,
    support: &SandboxSupport,
) -> Result<Option<RulesetCreated>, SandboxError> {
    if support.landlock_abi.is_none() {
        return Ok(None);
    }
    let err = |what: &str, err: landlock::RulesetError| {
        SandboxError::Enforce(format!("Landlock {what}: {err}"))
    };
    let write: BitFlags<AccessFs> = AccessFs::from_write(FS_ABI);
    let handled = match plan.readable {
        Some(_) => AccessFs::from_all(FS_ABI),
        None => write,
    };
    let file_rights = AccessFs::from_file(FS_ABI) & handled;
    let mut ruleset = Ruleset::default().set_compatibility(CompatLevel::BestEffort);
    ruleset = ruleset
        .handle_access(handled)
        .map_err(|e| err("file-system rights", e))?;
    if plan.tcp_connect.is_some() {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(NET_ABI) & AccessNet::ConnectTcp)
            .map_err(|e| err("network rights", e))?;
    }
    let mut created = ruleset.create().map_err(|e| err("ruleset", e))?;
    let mut rule = |path: &Path, access: BitFlags<AccessFs>| -> Result<(), SandboxError> {
        let fd = PathFd::new(path).map_err(|e| {
            SandboxError::Enforce(format!("Landlock cannot open {}: {e}", path.display()))
        })?;
        let is_dir = std::fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false);
        let access = if is_dir { access } else { access & file_rights };
        (&mut created)
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| err(&format!("rule for {}", path.display()), e))?;
        Ok(())
    };
    for path in &plan.writable_dirs {
        rule(path, handled)?;
    }
    for path in plan.writable_files.iter().chain(&plan.devices) {
        rule(path, handled)?;
    }
    if let Some(readable) = &plan.readable {
        let read = AccessFs::from_read(FS_ABI);
        for path in readable.iter().filter(|path| path.exists()) {
            rule(path, read)?;
        }
    }
    if let Some(ports) = &plan.tcp_connect {
        for port in ports {
            created = created
                .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
                .map_err(|e| err(&format!("rule for port {port}"), e))?;
        }
    }
    Ok(Some(created))
}

/// The kernel's Landlock ABI version; `None` when Landlock is unavailable.
#[allow(unsafe_code)]
fn landlock_abi() -> Option<u32> {
    // SAFETY: `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)` only returns
    // the ABI version (or an error); it reads no memory and creates no descriptor.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0_usize,
            1_u32,
        )
    };
    u32::try_from(version).ok().filter(|v| *v > 0)
}

pub(super) fn probe() -> SandboxSupport {
    let landlock_abi = landlock_abi();
    let user_namespace = namespace_works(UnshareFlags::NEWUSER | UnshareFlags::NEWNS);
    let mount_namespace = user_namespace || namespace_works(UnshareFlags::NEWNS);
    SandboxSupport {
        landlock_abi,
        network_rules: landlock_abi.is_some_and(|abi| abi >= 4),
        mount_namespace,
        user_namespace,
    }
}

/// Whether a child can make `flags` namespaces: a forked child tries them in its `pre_exec` hook
/// and reports success as a marker error, so it never execs anything and the caller's own
/// namespaces are untouched.
#[allow(unsafe_code)]
fn namespace_works(flags: UnshareFlags) -> bool {
    let mut command = std::process::Command::new("/proc/self/exe");
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: the hook runs in the forked child before exec and makes one system call; it
    // allocates nothing (`Errno` converts into `io::Error` without allocating).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || match unshare(flags) {
            Ok(()) => Err(Errno::CANCELED.into()),
            Err(errno) => Err(errno.into()),
        });
    }
    match command.spawn() {
        Err(err) => err.raw_os_error() == Some(Errno::CANCELED.raw_os_error()),
        Ok(mut child) => {
            // Cannot happen (the hook never returns Ok); do not leave a process behind.
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    }
}

/// Makes `command`'s child enforce `prepared` right before `exec`.
#[allow(unsafe_code)]
pub(super) fn install(prepared: Arc<Prepared>, command: &mut tokio::process::Command) {
    // SAFETY: the hook runs in the forked child of a possibly multi-threaded parent, where only
    // async-signal-safe work is allowed: `enforce` makes system calls on data prepared (and
    // allocated) in the parent, and converts its errno without allocating.
    unsafe {
        command.pre_exec(move || prepared.enforce().map(|_| ()).map_err(Into::into));
    }
}
