//! Which token a client command presents: `--token` or `SPECTASK_API_TOKEN` when given; for a
//! server on this machine (a loopback host), the `api-token` file `spectask serve` wrote into the
//! data directory, if it is there; otherwise none (a loopback server does not require one).

use std::path::Path;

use super::error::{CliError, CliResult};

/// The token for `server`.
pub fn resolve(
    given: Option<&str>,
    server: &reqwest::Url,
    data_dir: &Path,
) -> CliResult<Option<String>> {
    if let Some(token) = given {
        let token = token.trim();
        if token.is_empty() {
            return Err(CliError::Usage("--token is empty".into()));
        }
        return Ok(Some(token.to_owned()));
    }
    if !is_loopback(server) {
        return Ok(None);
    }
    let path = data_dir.join(crate::token::TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_owned())),
        _ => Ok(None),
    }
}

/// Whether `server` names this machine: `localhost` or a loopback address.
pub fn is_loopback(server: &reqwest::Url) -> bool {
    let host = server.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
