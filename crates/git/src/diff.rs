//! Tree-to-tree diffs for review, paged by file, through the git CLI (unified patch text and
//! rename detection are git's): one `git diff --raw --numstat -z` for the file list and the
//! totals, one `git diff` for the patches of the page's files, split per file.

use std::collections::HashMap;

use serde::Serialize;

use crate::cli::{Git, nul_fields};
use crate::{CommitId, GitError, Repository, Result};

/// Which files of a diff to return, and how much of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiffPage {
    /// Index of the first file (files are sorted by path).
    pub offset: usize,
    /// How many files at most.
    pub limit: usize,
    /// A file's patch longer than this is cut (at a line end when there is one) and flagged.
    pub max_patch_bytes: usize,
    /// Whether to produce patches at all (the list and counts are cheaper).
    pub with_patches: bool,
}

impl Default for DiffPage {
    /// The first 50 files with patches of at most 256 KiB each.
    fn default() -> Self {
        DiffPage {
            offset: 0,
            limit: 50,
            max_patch_bytes: 256 * 1024,
            with_patches: true,
        }
    }
}

/// A page of the diff of `head` against `base`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Diff {
    /// The old side.
    pub base: CommitId,
    /// The new side.
    pub head: CommitId,
    /// How many files changed in all.
    pub total_files: usize,
    /// Lines added over all files (binary files count none).
    pub additions: u64,
    /// Lines deleted over all files.
    pub deletions: u64,
    /// This page's files, sorted by path.
    pub files: Vec<FileDiff>,
    /// The offset of the next page; `None` on the last.
    pub next_offset: Option<usize>,
}

/// How a file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FileStatus {
    /// New in `head`.
    Added,
    /// Content or mode changed.
    Modified,
    /// Gone in `head`.
    Deleted,
    /// Moved (possibly changed), from `old_path`.
    Renamed,
    /// Copied from `old_path`.
    Copied,
    /// Changed kind (file, symlink, submodule).
    TypeChanged,
}

/// One changed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileDiff {
    /// The path in `head` (in `base` for a deleted file).
    pub path: String,
    /// The path in `base`, for a rename or copy.
    pub old_path: Option<String>,
    /// How it changed.
    pub status: FileStatus,
    /// Lines added.
    pub additions: u64,
    /// Lines deleted.
    pub deletions: u64,
    /// Git sees binary content (no line counts, no patch).
    pub binary: bool,
    /// The unified diff of this file; `None` without patches or for a binary file.
    pub patch: Option<String>,
    /// The patch was cut at `max_patch_bytes`.
    pub patch_truncated: bool,
}

/// Options both diff commands share, so that they pair files the same way.
const DIFF_OPTIONS: &[&str] = &[
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--no-relative",
    "--find-renames",
    "--src-prefix=a/",
    "--dst-prefix=b/",
];

impl Repository {
    /// The diff of `head` against `base` (trees; renames detected), the files of `page` with
    /// their patches, the totals over all files.
    pub fn diff(&self, base: &CommitId, head: &CommitId, page: DiffPage) -> Result<Diff> {
        let git = Git::new(&self.dirs);
        let mut args: Vec<&str> = vec!["diff", "--raw", "--numstat", "-z"];
        args.extend_from_slice(DIFF_OPTIONS);
        args.extend([base.as_str(), head.as_str(), "--"]);
        let mut files = parse_raw_numstat(&git.run(&args)?)?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let total_files = files.len();
        let additions = files.iter().map(|f| f.additions).sum();
        let deletions = files.iter().map(|f| f.deletions).sum();
        let end = page.offset.saturating_add(page.limit).min(total_files);
        let start = page.offset.min(end);
        let mut files: Vec<FileDiff> = files.drain(start..end).collect();
        if page.with_patches {
            self.fill_patches(&git, base, head, &mut files, page.max_patch_bytes)?;
        }
        Ok(Diff {
            base: base.clone(),
            head: head.clone(),
            total_files,
            additions,
            deletions,
            files,
            next_offset: (end < total_files).then_some(end),
        })
    }

    /// One `git diff` limited to the page's paths (both sides of renames), split at each
    /// `diff --git` header and matched to the files by that header.
    fn fill_patches(
        &self,
        git: &Git,
        base: &CommitId,
        head: &CommitId,
        files: &mut [FileDiff],
        max_bytes: usize,
    ) -> Result<()> {
        let wanted: Vec<usize> = (0..files.len()).filter(|i| !files[*i].binary).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let mut args: Vec<String> = vec!["diff".to_owned()];
        args.extend(DIFF_OPTIONS.iter().map(|o| (*o).to_owned()));
        args.extend([base.to_string(), head.to_string(), "--".to_owned()]);
        for i in &wanted {
            args.extend(files[*i].old_path.clone());
            args.push(files[*i].path.clone());
        }
        let out = git.run(&args)?;
        let text = String::from_utf8_lossy(&out);
        let by_header: HashMap<String, usize> =
            wanted.iter().map(|i| (header_of(&files[*i]), *i)).collect();
        for chunk in split_patches(&text) {
            let header = chunk.lines().next().unwrap_or_default();
            let Some(index) = by_header.get(header) else {
                tracing::warn!(header, "diff chunk matches no file of the page");
                continue;
            };
            let file = &mut files[*index];
            let (patch, truncated) = truncate_patch(chunk, max_bytes);
            file.patch = Some(patch);
            file.patch_truncated = truncated;
        }
        Ok(())
    }
}

/// The `diff --git` line git writes for `file`.
fn header_of(file: &FileDiff) -> String {
    let old = file.old_path.as_deref().unwrap_or(&file.path);
    format!(
        "diff --git {} {}",
        quote_path("a/", old),
        quote_path("b/", &file.path)
    )
}

/// `prefix` + `path`, C-quoted as git does (with `core.quotePath=false`) when the path holds a
/// double quote, a backslash or a control character.
fn quote_path(prefix: &str, path: &str) -> String {
    let needs_quotes = path
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_ascii_control());
    if !needs_quotes {
        return format!("{prefix}{path}");
    }
    let mut quoted = String::from("\"");
    quoted.push_str(prefix);
    for c in path.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\u{7}' => quoted.push_str("\\a"),
            '\u{8}' => quoted.push_str("\\b"),
            '\t' => quoted.push_str("\\t"),
            '\n' => quoted.push_str("\\n"),
            '\u{b}' => quoted.push_str("\\v"),
            '\u{c}' => quoted.push_str("\\f"),
            '\r' => quoted.push_str("\\r"),
            c if c.is_ascii_control() => quoted.push_str(&format!("\\{:03o}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// The patch text split before each `diff --git ` line.
fn split_patches(text: &str) -> Vec<&str> {
    let mut starts: Vec<usize> = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with("diff --git ") {
            starts.push(offset);
        }
        offset += line.len();
    }
    starts
        .iter()
        .enumerate()
        .map(|(n, start)| &text[*start..starts.get(n + 1).copied().unwrap_or(text.len())])
        .collect()
}

/// The patch, cut to at most `max_bytes` (at the last line end within it, or at a character
/// boundary if a single line is longer), and whether it was cut.
fn truncate_patch(patch: &str, max_bytes: usize) -> (String, bool) {
    if patch.len() <= max_bytes {
        return (patch.to_owned(), false);
    }
    let mut cut = max_bytes;
    while !patch.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = &patch[..cut];
    let cut = head.rfind('\n').map_or(cut, |newline| newline + 1);
    (patch[..cut].to_owned(), true)
}

/// Parses `git diff --raw --numstat -z`: first one raw record per file
/// (`:<modes> <ids> <status>` NUL `<path>` NUL [`<new path>` NUL]), then one numstat record per
/// file in the same order (`<added>\t<deleted>\t<path>` NUL, or for a rename
/// `<added>\t<deleted>\t` NUL `<old>` NUL `<new>` NUL; `-` counts for binary files).
fn parse_raw_numstat(out: &[u8]) -> Result<Vec<FileDiff>> {
    let unexpected = |detail: String| GitError::UnexpectedOutput {
        what: "git diff --raw --numstat",
        detail,
    };
    let fields = nul_fields(out);
    let mut fields = fields.into_iter().peekable();
    let mut files = Vec::new();
    while let Some(field) = fields.next_if(|f| f.starts_with(':')) {
        let status_letters = field.rsplit(' ').next().unwrap_or_default();
        let (status, two_paths) = match status_letters.chars().next() {
            Some('A') => (FileStatus::Added, false),
            Some('M') => (FileStatus::Modified, false),
            Some('D') => (FileStatus::Deleted, false),
            Some('T') => (FileStatus::TypeChanged, false),
            Some('R') => (FileStatus::Renamed, true),
            Some('C') => (FileStatus::Copied, true),
            _ => return Err(unexpected(format!("status in {field:?}"))),
        };
        let first = fields
            .next()
            .ok_or_else(|| unexpected("missing path".to_owned()))?;
        let (path, old_path) = if two_paths {
            let second = fields
                .next()
                .ok_or_else(|| unexpected("missing new path".to_owned()))?;
            (second, Some(first))
        } else {
            (first, None)
        };
        files.push(FileDiff {
            path,
            old_path,
            status,
            additions: 0,
            deletions: 0,
            binary: false,
            patch: None,
            patch_truncated: false,
        });
    }
    for file in &mut files {
        let field = fields
            .next()
            .ok_or_else(|| unexpected(format!("no numstat for {}", file.path)))?;
        let mut parts = field.splitn(3, '\t');
        let (added, deleted) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let path = parts.next().unwrap_or_default();
        if path.is_empty() {
            // A rename or copy: the two paths follow as fields of their own.
            fields.next();
            fields.next();
        }
        if added == "-" && deleted == "-" {
            file.binary = true;
        } else {
            file.additions = added
                .parse()
                .map_err(|_| unexpected(format!("count in {field:?}")))?;
            file.deletions = deleted
                .parse()
                .map_err(|_| unexpected(format!("count in {field:?}")))?;
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_are_cut_at_a_line_end() {
        let (cut, truncated) = truncate_patch("line one\nline two\nline three\n", 20);
        assert_eq!(cut, "line one\nline two\n");
        assert!(truncated);
        let (whole, truncated) = truncate_patch("short\n", 20);
        assert_eq!(whole, "short\n");
        assert!(!truncated);
        let (one_line, _) = truncate_patch("ééééé", 3);
        assert_eq!(one_line, "é");
    }

    #[test]
    fn paths_with_special_characters_are_quoted_like_git() {
        assert_eq!(quote_path("a/", "plain name.txt"), "a/plain name.txt");
        assert_eq!(quote_path("b/", "tab\there\"q"), "\"b/tab\\there\\\"q\"");
        assert_eq!(quote_path("a/", "bell\u{1}"), "\"a/bell\\001\"");
    }
}
