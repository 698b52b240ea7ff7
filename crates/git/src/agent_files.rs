//! Files an agent can write, read and rewritten without being fooled by them: no symbolic link
//! followed at the last component, no hang on a FIFO or a device, only regular files read.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The content of `path` if it is a regular file (at most `limit` bytes); `None` if it is
/// missing, a symbolic link, a directory, a FIFO, a device or a socket.
pub(crate) fn read_regular(path: &Path, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    // O_NOFOLLOW: a link is refused (ELOOP), not followed; O_NONBLOCK: opening a FIFO does not
    // wait for a writer (and has no effect on a regular file).
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(error)
            if error.kind() == std::io::ErrorKind::NotFound
                || error.raw_os_error() == Some(libc::ELOOP) =>
        {
            return Ok(None);
        }
        Err(error) => return Err(error),
    };
    if !file.metadata()?.is_file() {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Replaces whatever is at `path` (a file, a symbolic link, a FIFO; not a directory) by a new
/// regular file holding `content`. The new file is created exclusively, so a link put there
/// meanwhile is never written through.
pub(crate) fn replace_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)?;
    file.write_all(content)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

    use super::*;

    #[test]
    fn only_regular_files_are_read_and_links_are_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "0123456789").unwrap();
        assert_eq!(read_regular(&file, 4).unwrap().unwrap(), b"0123");
        assert_eq!(read_regular(&dir.path().join("missing"), 4).unwrap(), None);
        assert_eq!(read_regular(dir.path(), 4).unwrap(), None);

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_regular(&link, 100).unwrap(), None);

        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        assert_eq!(read_regular(&fifo, 100).unwrap(), None); // returns at once

        replace_file(&link, b"new").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"0123456789");
        assert_eq!(read_regular(&link, 100).unwrap().unwrap(), b"new");
        replace_file(&fifo, b"gone").unwrap();
        assert_eq!(read_regular(&fifo, 100).unwrap().unwrap(), b"gone");
        assert!(replace_file(dir.path(), b"x").is_err());
    }
}
