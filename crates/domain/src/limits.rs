//! Sizes that outside input must respect. The server enforces them at the edge; the store's column
//! sizes agree with them.

/// Largest accepted prompt, in bytes (UTF-8).
pub const MAX_PROMPT_BYTES: usize = 256 * 1024;
/// Largest accepted request body, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest task name, in characters (the seed's `VARCHAR(255)`).
pub const MAX_NAME_CHARS: usize = 255;
/// Longest task description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = MAX_PROMPT_BYTES;
/// Longest agent profile name, in characters.
pub const MAX_AGENT_NAME_CHARS: usize = 100;
/// Longest project path, in bytes (the seed's `VARCHAR(500)`).
pub const MAX_PROJECT_PATH_BYTES: usize = 500;
/// Length of a name derived from the prompt before it is cut.
pub const DERIVED_NAME_CHARS: usize = 60;
/// Largest free text an actor attaches to an action (a message to an agent, a review comment, a
/// progress note), in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Largest imported spec document (requirements, design or plan), in bytes.
pub const MAX_SPEC_DOCUMENT_BYTES: usize = 256 * 1024;
/// Longest label of where imported specs came from (a path or a name), in bytes.
pub const MAX_IMPORT_SOURCE_BYTES: usize = 1000;
/// Largest page of a listing.
pub const MAX_PAGE_LIMIT: i64 = 200;
/// Page size when none is asked for.
pub const DEFAULT_PAGE_LIMIT: i64 = 50;

/// Checks free text an actor attaches to an action: not blank when `required`, at most
/// [`MAX_TEXT_BYTES`]. The refusal is the message to answer, naming `field`.
pub fn text_field(field: &str, value: &str, required: bool) -> Result<(), String> {
    if required && value.trim().is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if value.len() > MAX_TEXT_BYTES {
        return Err(format!("{field} must be at most {MAX_TEXT_BYTES} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_field_refuses_blank_required_text_and_oversized_text() {
        assert_eq!(
            text_field("comment", " \n", true),
            Err("comment must not be empty".to_owned())
        );
        assert_eq!(text_field("note", "", false), Ok(()));
        let big = "x".repeat(MAX_TEXT_BYTES + 1);
        assert_eq!(
            text_field("text", &big, false),
            Err("text must be at most 65536 bytes".to_owned())
        );
        assert_eq!(text_field("text", &big[1..], true), Ok(()));
    }
}
