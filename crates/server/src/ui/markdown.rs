//! The spec documents as safe HTML for the spec review view: `GET
//! /ui/render/spec-tasks/{id}/revisions/{n}/{doc}` answers one document of one revision as a
//! `text/html` fragment the page inserts as is.
//!
//! [`render`] is CommonMark with tables, strikethrough and task lists (pulldown-cmark), made safe
//! for a page whose content an agent wrote:
//! - raw HTML in the Markdown is shown as text, never passed through;
//! - a link or image whose URL has a scheme other than `http`, `https` or `mailto` (such as
//!   `javascript:` or `data:`) loses its link and keeps its text; images become links (no
//!   request leaves the page to load them);
//! - headings move one level down (the page has its own `h1`) and get `id`s from their text,
//!   prefixed with the document's name so the three documents on one page never clash;
//! - fenced code is highlighted by syntect into `<span class="hl-…">` (scope names as classes;
//!   the colours are in `ui/css/spec.css`), with plain escaped text when the language is unknown,
//!   the block is large or the highlighter gives up.
//!
//! The only HTML this module writes itself is fixed markup around escaped text.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use pulldown_cmark::{CodeBlockKind, CowStr, Event, HeadingLevel, LinkType, Options, Parser, Tag};
use spectask_domain::SpecDocument;
use syntect::html::{ClassStyle, ClassedHTMLGenerator};
use syntect::parsing::SyntaxSet;
use syntect::util::LinesWithEndings;

use crate::error::ApiError;
use crate::routes::lookup::task_id;
use crate::routes::planning::revision_number;
use crate::state::AppState;

/// The render route's path.
pub const RENDER_PATH: &str = "/ui/render/spec-tasks/{id}/revisions/{n}/{doc}";

/// Code blocks longer than this are shown without highlighting (the highlighter is linear but
/// not fast, and a planner can write a lot).
const MAX_HIGHLIGHT_BYTES: usize = 64 * 1024;

/// The class prefix of highlighted code (`hl-keyword`, `hl-string`, …).
const CLASS_STYLE: ClassStyle = ClassStyle::SpacedPrefixed { prefix: "hl-" };

static SYNTAXES: LazyLock<SyntaxSet> = LazyLock::new(SyntaxSet::load_defaults_newlines);

/// `GET /ui/render/spec-tasks/{id}/revisions/{n}/{doc}`: one document of one revision as an HTML
/// fragment (`doc` is `requirements`, `design` or `plan`). Unknown task, revision or document:
/// 404 with the JSON error.
pub async fn render_revision_document(
    State(state): State<AppState>,
    Path((id, n, doc)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let id = task_id(&id)?;
    let n = revision_number(&id, &n)?;
    let document: SpecDocument = doc.parse().map_err(|_| ApiError::NotFound {
        entity: "document",
        id: doc.clone(),
    })?;
    let revision = state.store.get_revision(&id, n).await?;
    let text = match document {
        SpecDocument::Requirements => revision.requirements_spec,
        SpecDocument::Design => revision.technical_design,
        SpecDocument::Plan => revision.implementation_plan,
    };
    let prefix = document.as_str().to_owned();
    let html = tokio::task::spawn_blocking(move || render(&text, &prefix))
        .await
        .map_err(|err| ApiError::Internal(format!("rendering the document failed: {err}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // A revision never changes; the renderer may, between versions of the server.
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        html,
    )
        .into_response())
}

/// Renders `markdown` to safe HTML; heading ids start with `id_prefix` and a dash.
pub fn render(markdown: &str, id_prefix: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events: Vec<Event<'_>> = Parser::new_ext(markdown, options).collect();
    let mut out = Vec::with_capacity(events.len());
    let mut slugs = Slugs::new(id_prefix);
    // Per open link or image: whether its markup was kept (a refused URL keeps only the text).
    let mut links: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < events.len() {
        let event = events[i].clone();
        i += 1;
        match event {
            Event::Html(raw) | Event::InlineHtml(raw) => out.push(Event::Text(raw)),
            Event::Start(Tag::HtmlBlock) => out.push(Event::Html("<p class=\"raw-html\">".into())),
            Event::End(pulldown_cmark::TagEnd::HtmlBlock) => out.push(Event::Html("</p>\n".into())),
            Event::Start(Tag::Heading { level, .. }) => {
                let text = heading_text(&events[i..]);
                out.push(Event::Start(Tag::Heading {
                    level: demote(level),
                    id: Some(slugs.next(&text).into()),
                    classes: Vec::new(),
                    attrs: Vec::new(),
                }));
            }
            Event::End(pulldown_cmark::TagEnd::Heading(level)) => {
                out.push(Event::End(pulldown_cmark::TagEnd::Heading(demote(level))));
            }
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                ..
            }) => {
                let url = match link_type {
                    LinkType::Email => format!("mailto:{dest_url}"),
                    _ => dest_url.to_string(),
                };
                let safe = is_safe_url(&url);
                links.push(safe);
                if safe {
                    out.push(Event::Html(anchor(&url, &title, "").into()));
                }
            }
            Event::Start(Tag::Image {
                dest_url, title, ..
            }) => {
                // Inside a kept link an image is its text (no link in a link).
                let safe = is_safe_url(&dest_url) && !links.contains(&true);
                links.push(safe);
                if safe {
                    out.push(Event::Html(anchor(&dest_url, &title, "image-link").into()));
                    out.push(Event::Text("🖼 ".into()));
                }
            }
            Event::End(pulldown_cmark::TagEnd::Link | pulldown_cmark::TagEnd::Image) => {
                if links.pop().unwrap_or(false) {
                    out.push(Event::Html("</a>".into()));
                }
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                let mut code = String::new();
                while i < events.len() {
                    let next = &events[i];
                    i += 1;
                    match next {
                        Event::Text(text) => code.push_str(text),
                        Event::End(pulldown_cmark::TagEnd::CodeBlock) => break,
                        _ => {}
                    }
                }
                let language = match &kind {
                    CodeBlockKind::Fenced(info) => language_of(info),
                    CodeBlockKind::Indented => String::new(),
                };
                out.push(Event::Html(code_block(&code, &language).into()));
            }
            other => out.push(other),
        }
    }
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, out.into_iter());
    align_by_class(html)
}

/// Table cell alignment as classes (`align-center`…): the page's Content-Security-Policy refuses
/// `style` attributes. Only the renderer writes `<td style=`: text is escaped.
fn align_by_class(html: String) -> String {
    if !html.contains(" style=\"text-align: ") {
        return html;
    }
    let mut html = html;
    for align in ["left", "center", "right"] {
        html = html.replace(
            &format!(" style=\"text-align: {align}\""),
            &format!(" class=\"align-{align}\""),
        );
    }
    html
}

/// One heading level down (h1 → h2), h6 stays h6.
fn demote(level: HeadingLevel) -> HeadingLevel {
    match level {
        HeadingLevel::H1 => HeadingLevel::H2,
        HeadingLevel::H2 => HeadingLevel::H3,
        HeadingLevel::H3 => HeadingLevel::H4,
        HeadingLevel::H4 => HeadingLevel::H5,
        HeadingLevel::H5 | HeadingLevel::H6 => HeadingLevel::H6,
    }
}

/// The plain text of the heading whose content starts `events`.
fn heading_text(events: &[Event<'_>]) -> String {
    let mut text = String::new();
    for event in events {
        match event {
            Event::End(pulldown_cmark::TagEnd::Heading(_)) => break,
            Event::Text(t) | Event::Code(t) | Event::Html(t) | Event::InlineHtml(t) => {
                text.push_str(t)
            }
            _ => {}
        }
    }
    text
}

/// Unique heading ids: `{prefix}-{slug}`, then `-2`, `-3`… for repeats.
struct Slugs {
    prefix: String,
    seen: HashMap<String, usize>,
}

impl Slugs {
    fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            seen: HashMap::new(),
        }
    }

    fn next(&mut self, text: &str) -> String {
        let base = format!("{}-{}", self.prefix, slug(text));
        let count = self.seen.entry(base.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            base
        } else {
            format!("{base}-{count}")
        }
    }
}

/// Lower-case letters and digits of `text`, other runs as one dash; `section` when nothing is
/// left.
pub fn slug(text: &str) -> String {
    let mut slug = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= 80 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        "section".to_owned()
    } else {
        slug.to_owned()
    }
}

/// Whether a link may point at `url`: relative URLs, fragments and `http`, `https` and `mailto`.
/// The scheme is read as a browser would, ignoring whitespace and control characters anywhere
/// (`java\tscript:` is `javascript:`).
pub fn is_safe_url(url: &str) -> bool {
    let cleaned: String = url
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect::<String>()
        .to_ascii_lowercase();
    match cleaned.find([':', '/', '?', '#']) {
        Some(at) if cleaned[at..].starts_with(':') => {
            matches!(&cleaned[..at], "http" | "https" | "mailto")
        }
        _ => true,
    }
}

/// An opening `<a>` to a checked URL, for content written by someone else.
fn anchor(url: &str, title: &str, class: &str) -> String {
    let mut html = format!(
        "<a href=\"{}\" rel=\"noopener noreferrer nofollow\"",
        escape(url)
    );
    if !title.is_empty() {
        html.push_str(&format!(" title=\"{}\"", escape(title)));
    }
    if !class.is_empty() {
        html.push_str(&format!(" class=\"{class}\""));
    }
    html.push('>');
    html
}

/// The language of a fenced block's info string (`rust,ignore` → `rust`), letters, digits and
/// `+#-_.` only.
fn language_of(info: &CowStr<'_>) -> String {
    info.split(|c: char| c.is_whitespace() || c == ',' || c == '{')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+#-_.".contains(*c))
        .take(32)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// A code block: highlighted when the language is known and the block not too large, escaped
/// text otherwise.
fn code_block(code: &str, language: &str) -> String {
    let class = if language.is_empty() {
        String::new()
    } else {
        format!(" class=\"language-{}\"", escape(language))
    };
    let body = highlight(code, language).unwrap_or_else(|| escape(code));
    format!("<pre class=\"code\"><code{class}>{body}</code></pre>\n")
}

/// `code` highlighted as `language`, or `None` (unknown language, too large, highlighter error).
pub fn highlight(code: &str, language: &str) -> Option<String> {
    if language.is_empty() || code.len() > MAX_HIGHLIGHT_BYTES {
        return None;
    }
    let syntaxes = &*SYNTAXES;
    let syntax = syntaxes.find_syntax_by_token(match language {
        "ts" | "typescript" | "tsx" | "jsx" => "js",
        "shell" | "console" | "zsh" => "sh",
        "toml" | "ini" | "cfg" => "ini",
        "jsonc" | "json5" => "json",
        "golang" => "go",
        other => other,
    })?;
    let mut generator = ClassedHTMLGenerator::new_with_class_style(syntax, syntaxes, CLASS_STYLE);
    for line in LinesWithEndings::from(code) {
        if generator
            .parse_html_for_line_which_includes_newline(line)
            .is_err()
        {
            return None;
        }
    }
    Some(generator.finalize())
}

/// HTML-escapes text for an element body or a double-quoted attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests;
