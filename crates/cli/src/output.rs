//! How a client command prints: `--json` prints the API's own JSON (one document per command),
//! otherwise lines for people; colour only on a terminal, without `--no-color` or `NO_COLOR`.

use std::io::IsTerminal;

use serde_json::Value;

use crate::cli::ClientArgs;

/// The output settings of one command.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
    pub color: bool,
}

impl Output {
    pub fn new(args: &ClientArgs) -> Self {
        let color = !args.no_color
            && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
            && std::io::stdout().is_terminal();
        Self {
            json: args.json,
            color,
        }
    }

    /// Prints `value` as JSON when `--json`, else `human(value)`.
    pub fn print(&self, value: &Value, human: impl FnOnce(&Value) -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else {
            let text = human(value);
            if !text.is_empty() {
                println!("{}", text.trim_end());
            }
        }
    }

    /// `text` in bold, when colours are on.
    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    /// `text` dimmed, when colours are on.
    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    /// A status coloured by how it stands: green done, red failed, yellow waiting on a person.
    pub fn status(&self, status: &str) -> String {
        let code = match status {
            "done" | "completed" => "32",
            s if s.ends_with("failed") || s == "failed" => "31",
            "spec_review" | "implementation_review" | "blocked" => "33",
            _ => "36",
        };
        self.paint(code, status)
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}
