//! The API token of `serve`: given (`--api-token`, `SPECTASK_API_TOKEN`), or generated at the
//! first start into `<data-dir>/api-token` (256 random bits, hex, mode 0600) and reused after.
//! A non-loopback bind needs a given token: a generated one would be a secret nobody was told.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The file the generated token lives in, inside the data directory.
pub const TOKEN_FILE: &str = "api-token";

/// Shortest token accepted from the user: anything shorter is guessable over the network.
const MIN_TOKEN_CHARS: usize = 16;

/// Where the token in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Given,
    File(PathBuf),
}

/// The token `serve` runs with, and its source (for the start-up log, which never shows it).
pub fn resolve(
    given: Option<&str>,
    bind: SocketAddr,
    data_dir: &Path,
) -> Result<(String, TokenSource)> {
    if let Some(token) = given {
        return Ok((checked(token)?, TokenSource::Given));
    }
    anyhow::ensure!(
        bind.ip().is_loopback(),
        "refusing to listen on {bind}, which is not a loopback address, without an API token: \
         set --api-token or SPECTASK_API_TOKEN (at least {MIN_TOKEN_CHARS} characters) and give \
         it to every client as `Authorization: Bearer <token>`"
    );
    let path = data_dir.join(TOKEN_FILE);
    Ok((load_or_create(&path)?, TokenSource::File(path)))
}

fn checked(token: &str) -> Result<String> {
    let token = token.trim();
    anyhow::ensure!(
        token.chars().count() >= MIN_TOKEN_CHARS,
        "the API token must have at least {MIN_TOKEN_CHARS} characters"
    );
    anyhow::ensure!(
        token.chars().all(|c| c.is_ascii_graphic()),
        "the API token must be printable ASCII without spaces (it travels in an HTTP header)"
    );
    Ok(token.to_owned())
}

/// Reads the token file, or creates it with a fresh token if there is none (an existing file is
/// never overwritten, so two servers starting at once end up with the same token).
fn load_or_create(path: &Path) -> Result<String> {
    match create(path) {
        Ok(token) => {
            tracing::info!(path = %path.display(), "API token generated");
            Ok(token)
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => load(path),
        Err(err) => {
            Err(err).with_context(|| format!("cannot create the API token file {}", path.display()))
        }
    }
}

fn create(path: &Path) -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(token.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(token)
}

fn load(path: &Path) -> Result<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the API token file was readable by others; restricting it to its owner (0600)"
            );
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot restrict {}", path.display()))?;
        }
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the API token file {}", path.display()))?;
    checked(&text).with_context(|| format!("in {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_or_spaced_token_is_refused() {
        assert!(checked("short").is_err());
        assert!(checked("0123456789 abcdef").is_err());
        assert_eq!(checked(" 0123456789abcdef\n").unwrap(), "0123456789abcdef");
    }

    #[test]
    fn a_wildcard_bind_needs_a_given_token() {
        let dir = tempfile::tempdir().unwrap();
        let bind: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let err = resolve(None, bind, dir.path()).unwrap_err().to_string();
        assert!(err.contains("--api-token"), "{err}");
        assert!(!dir.path().join(TOKEN_FILE).exists());
        let (token, source) = resolve(Some("0123456789abcdef"), bind, dir.path()).unwrap();
        assert_eq!(
            (token.as_str(), source),
            ("0123456789abcdef", TokenSource::Given)
        );
    }
}
