//! Field checks shared by handlers. Each returns the value to store or the error to answer.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use spectask_domain::{ParseEnumError, limits};

use crate::error::ApiError;

/// A required prompt: non-blank and within the size limit.
pub fn prompt(raw: &str) -> Result<String, ApiError> {
    if raw.len() > limits::MAX_PROMPT_BYTES {
        return Err(ApiError::PromptTooLarge {
            size: raw.len(),
            limit: limits::MAX_PROMPT_BYTES,
        });
    }
    if raw.trim().is_empty() {
        return Err(ApiError::Validation("prompt must not be empty".into()));
    }
    Ok(raw.to_owned())
}

/// A task name: at most 255 characters as sent (so the OpenAPI `maxLength` means what it says),
/// trimmed, non-empty, no control characters.
pub fn name(raw: &str) -> Result<String, ApiError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(ApiError::Validation("name must not be empty".into()));
    }
    if raw.chars().count() > limits::MAX_NAME_CHARS {
        return Err(ApiError::Validation(format!(
            "name must be at most {} characters",
            limits::MAX_NAME_CHARS
        )));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ApiError::Validation(
            "name must not contain control characters".into(),
        ));
    }
    Ok(trimmed.to_owned())
}

/// Required free text within the size limit, as sent.
pub fn required_text(field: &str, raw: &str) -> Result<String, ApiError> {
    limits::text_field(field, raw, true).map_err(ApiError::Validation)?;
    Ok(raw.to_owned())
}

/// An optional enum field or query parameter, parsed by its canonical spelling.
pub fn optional_enum<T: FromStr<Err = ParseEnumError>>(
    raw: Option<&str>,
) -> Result<Option<T>, ApiError> {
    Ok(raw.map(str::parse::<T>).transpose()?)
}

/// A description: any text within the size limit.
pub fn description(raw: &str) -> Result<String, ApiError> {
    if raw.len() > limits::MAX_DESCRIPTION_BYTES {
        return Err(ApiError::Validation(format!(
            "description must be at most {} bytes",
            limits::MAX_DESCRIPTION_BYTES
        )));
    }
    Ok(raw.to_owned())
}

/// An agent profile name: `[A-Za-z0-9._-]`, 1 to 100 characters.
pub fn agent_name(field: &str, raw: &str) -> Result<String, ApiError> {
    let ok = !raw.is_empty()
        && raw.len() <= limits::MAX_AGENT_NAME_CHARS
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::Validation(format!(
            "{field} must be 1 to {} characters of letters, digits, `.`, `_` or `-`",
            limits::MAX_AGENT_NAME_CHARS
        )))
    }
}

/// A project path: absolute, an existing directory, canonicalised (symlinks resolved), and inside
/// `root` when one is configured.
pub async fn project_path(raw: &str, root: Option<&Path>) -> Result<String, ApiError> {
    let invalid = |why: String| ApiError::InvalidProjectPath(format!("project_path `{raw}` {why}"));
    if raw.is_empty() || raw.contains('\0') {
        return Err(invalid("is empty or contains NUL".into()));
    }
    let path = PathBuf::from(raw);
    if !path.is_absolute() {
        return Err(invalid("must be an absolute path".into()));
    }
    let canonical = tokio::fs::canonicalize(&path)
        .await
        .map_err(|err| invalid(format!("cannot be resolved: {err}")))?;
    let metadata = tokio::fs::metadata(&canonical)
        .await
        .map_err(|err| invalid(format!("cannot be read: {err}")))?;
    if !metadata.is_dir() {
        return Err(invalid("is not a directory".into()));
    }
    if let Some(root) = root
        && !canonical.starts_with(root)
    {
        return Err(invalid(format!(
            "is outside the workspace root {}",
            root.display()
        )));
    }
    let text = canonical
        .to_str()
        .ok_or_else(|| invalid("is not valid UTF-8".into()))?
        .to_owned();
    if text.len() > limits::MAX_PROJECT_PATH_BYTES {
        return Err(invalid(format!(
            "is longer than {} bytes",
            limits::MAX_PROJECT_PATH_BYTES
        )));
    }
    Ok(text)
}

/// Parses a path segment as an id; a malformed id names nothing, so it is a 404.
pub fn id<T, E>(
    entity: &'static str,
    raw: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<T, ApiError> {
    parse(raw).map_err(|_| ApiError::NotFound {
        entity,
        id: raw.to_owned(),
    })
}
