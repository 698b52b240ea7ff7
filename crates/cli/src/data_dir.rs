//! The data directory's exclusive lock, and the record of the claim owner of the process that
//! held it last.
//!
//! `serve` takes an exclusive `flock` on `<data-dir>/spectask.lock` right after creating the
//! directory and holds it for its whole life (the kernel drops it when the process dies, however
//! it dies): a second `serve` on the same directory refuses to start. Holding the lock also proves
//! that every earlier process of this directory has ended, so the claim owner it recorded in
//! `<data-dir>/claim-owner` names a dead process: its running turns are requeued at once and its
//! MCP tokens revoked. Anything else that must know "the previous run of this data directory is
//! gone" (e.g. reaping processes it recorded) may rely on the same lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The lock file, inside the data directory.
pub const LOCK_FILE: &str = "spectask.lock";
/// The claim owner of the process holding (or last holding) the lock.
pub const OWNER_FILE: &str = "claim-owner";

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct DataDirLock {
    /// Kept open: the `flock` lives as long as this descriptor.
    _file: File,
    dir: PathBuf,
}

/// Takes the data directory's exclusive lock, or fails with a message naming the holder's pid.
pub fn lock(data_dir: &Path) -> Result<DataDirLock> {
    let path = data_dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match try_lock_after_dead_holder(&file) {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            // Best effort: the pid is only for the message.
            let _ = file.seek(SeekFrom::Start(0));
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() {
                "another process".to_owned()
            } else {
                format!("process {holder}")
            };
            bail!(
                "the data directory {} is in use by {holder} (another `spectask serve`); stop it, \
                 or give this one its own --data-dir",
                data_dir.display()
            );
        }
        Err(TryLockError::Error(err)) => {
            return Err(err).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)).map(|_| ()))
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(DataDirLock {
        _file: file,
        dir: data_dir.to_owned(),
    })
}

/// How long a lock whose recorded holder is dead may stay held: by a child the dead process had
/// just forked, which drops the inherited descriptor when it execs or exits.
const DEAD_HOLDER_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Takes the lock; when it is held but the pid recorded in the file is no longer running (a
/// SIGKILLed server whose just-forked child still holds the inherited lock for a moment), tries
/// again for [`DEAD_HOLDER_GRACE`] before giving up.
fn try_lock_after_dead_holder(file: &File) -> Result<(), TryLockError> {
    let deadline = std::time::Instant::now() + DEAD_HOLDER_GRACE;
    loop {
        match file.try_lock() {
            Err(TryLockError::WouldBlock)
                if std::time::Instant::now() < deadline && !recorded_holder_alive(file) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Whether the pid written in the lock file names a running process (unknown counts as alive).
fn recorded_holder_alive(file: &File) -> bool {
    let mut text = String::new();
    let mut reader = file;
    if reader.seek(SeekFrom::Start(0)).is_err() || reader.read_to_string(&mut text).is_err() {
        return true;
    }
    match text.trim().parse::<u32>() {
        Ok(pid) => Path::new(&format!("/proc/{pid}")).exists(),
        Err(_) => true,
    }
}

impl DataDirLock {
    /// The claim owner recorded by the previous process of this data directory, which is dead
    /// (we hold the lock); `None` on a first start.
    pub fn predecessor_owner(&self) -> Result<Option<String>> {
        let path = self.dir.join(OWNER_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_owned()).filter(|owner| !owner.is_empty())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Records `owner` as this process's claim owner, durably (written aside, synced, renamed),
    /// before the process claims anything, so its successor knows whose turns died with it.
    pub fn record_owner(&self, owner: &str) -> Result<()> {
        let path = self.dir.join(OWNER_FILE);
        let aside = self.dir.join(format!("{OWNER_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&aside)?;
            writeln!(file, "{owner}")?;
            file.sync_all()?;
            std::fs::rename(&aside, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        write().with_context(|| format!("cannot record the claim owner in {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_the_owner_record_survives_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        assert_eq!(first.predecessor_owner().unwrap(), None);
        first.record_owner("host/123-abc").unwrap();
        let refused = lock(dir.path()).unwrap_err().to_string();
        assert!(refused.contains("is in use by process"), "{refused}");
        drop(first);
        let second = lock(dir.path()).unwrap();
        assert_eq!(
            second.predecessor_owner().unwrap().as_deref(),
            Some("host/123-abc")
        );
    }
}
