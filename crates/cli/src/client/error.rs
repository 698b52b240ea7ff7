//! What a client command can end with, and the process exit code for each: 0 ok, 1 an error
//! (the server unreachable, bad output), 2 bad usage, 3 the server refused (its code printed),
//! 4 the task ended failed.

use serde_json::Value;

/// The documented exit codes of a failed command (success is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Error = 1,
    Usage = 2,
    Refused = 3,
    TaskFailed = 4,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    /// The server answered with an error: its status, stable code and message.
    #[error("the server refused ({status} {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
        body: Value,
    },
    /// The task this command waited on ended in a failed status.
    #[error("{0}")]
    TaskFailed(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::Usage,
            CliError::Refused { .. } => ExitCode::Refused,
            CliError::TaskFailed(_) => ExitCode::TaskFailed,
            CliError::Other(_) => ExitCode::Error,
        }
    }
}

pub type CliResult<T> = Result<T, CliError>;
