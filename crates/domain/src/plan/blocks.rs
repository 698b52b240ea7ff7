//! The block outline of a Markdown document, built from pulldown-cmark's offset iterator: headings,
//! paragraphs, lists, items and opaque blocks (code, tables, HTML), each with its source byte
//! range, plus the inline text of headings and paragraphs split by source line.
//!
//! Inline text keeps code spans in backticks, drops links' targets and HTML, and marks every
//! emphasis boundary with [`EMPH`] so callers can tell `_Requirements: 1.1_` noise from prose.
//! Nesting deeper than [`MAX_DEPTH`] is not materialised: its text stays inside the ancestor's
//! range, so descriptions keep it, but nothing in it can become a task.

use std::ops::Range;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// Deepest container nesting turned into nodes. Real plans nest three or four levels.
pub(crate) const MAX_DEPTH: usize = 32;

/// Marks an emphasis or strong boundary in inline text (a private-use character).
pub(crate) const EMPH: char = '\u{E000}';
const EMPH_STR: &str = "\u{E000}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Heading(u8),
    Para,
    List {
        ordered: bool,
    },
    Item,
    Quote,
    /// A thematic break (`---`): a separator, never content.
    Rule,
    /// Code, tables, HTML, rules, footnotes: kept verbatim, never searched for tasks.
    Opaque,
}

/// The inline text of one source line of a heading or paragraph.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// 0-based source line.
    pub line: usize,
    /// Where the text sits in [`Doc::text`]: all inline text shares one buffer, so a large plan
    /// costs a few allocations instead of one per line.
    span: Range<usize>,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: Kind,
    pub range: Range<usize>,
    /// The enclosing node, if any.
    parent: Option<usize>,
    /// The node's children in [`Doc::child_ids`], filled once parsing ends.
    children: Range<usize>,
    /// The node's lines in [`Doc::lines`] (contiguous: a node's text arrives in one run).
    lines: Range<usize>,
}

#[derive(Debug)]
pub(crate) struct Doc<'a> {
    pub src: &'a str,
    pub nodes: Vec<Node>,
    pub roots: Vec<usize>,
    line_starts: Vec<usize>,
    all_lines: Vec<Line>,
    text: String,
    /// Every node's children, grouped by parent (one allocation instead of one per node).
    child_ids: Vec<usize>,
}

impl<'a> Doc<'a> {
    pub(crate) fn parse(src: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        let mut b = Builder {
            doc: Doc {
                src,
                nodes: Vec::new(),
                roots: Vec::new(),
                line_starts,
                all_lines: Vec::new(),
                text: String::with_capacity(src.len()),
                child_ids: Vec::new(),
            },
            stack: Vec::new(),
            opaque: 0,
            opaque_pushed: false,
            implicit: None,
            newline: false,
        };
        // Task-list syntax is left off on purpose: pulldown-cmark only knows `[ ]`/`[x]`, and
        // plans also use `[~]`, `[-]` and `[/]`, so checkboxes are read from the source instead.
        let parser = Parser::new_ext(src, Options::ENABLE_TABLES).into_offset_iter();
        for (event, range) in parser {
            b.event(event, range);
        }
        let mut doc = b.doc;
        doc.link_children();
        doc
    }

    /// Groups children by parent, keeping document order (nodes are created in pre-order).
    fn link_children(&mut self) {
        let n = self.nodes.len();
        let mut counts = vec![0usize; n + 1];
        for node in &self.nodes {
            if let Some(c) = node.parent.and_then(|p| counts.get_mut(p + 1)) {
                *c += 1;
            }
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let mut next = counts.clone();
        self.child_ids = vec![0; counts.last().copied().unwrap_or(0)];
        for (id, node) in self.nodes.iter().enumerate() {
            if let Some(p) = node.parent
                && let Some(slot) = next.get_mut(p)
                && let Some(dst) = self.child_ids.get_mut(*slot)
            {
                *dst = id;
                *slot += 1;
            }
        }
        for (id, node) in self.nodes.iter_mut().enumerate() {
            node.children =
                counts.get(id).copied().unwrap_or(0)..next.get(id).copied().unwrap_or(0);
        }
    }

    /// 0-based line holding byte `offset`.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.line_starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1)
    }

    /// Byte range of line `line` without its line break.
    pub(crate) fn line_range(&self, line: usize) -> Range<usize> {
        let start = self
            .line_starts
            .get(line)
            .copied()
            .unwrap_or(self.src.len());
        let next = self
            .line_starts
            .get(line + 1)
            .copied()
            .unwrap_or(self.src.len());
        let mut end = next;
        let bytes = self.src.as_bytes();
        while end > start && matches!(bytes.get(end - 1), Some(b'\n' | b'\r')) {
            end -= 1;
        }
        start..end
    }

    /// Start of the line holding `offset`, when only indentation precedes `offset` on it;
    /// otherwise `offset` itself. Used to keep a block's indentation so it can be dedented.
    pub(crate) fn block_start(&self, offset: usize) -> usize {
        let ls = self.line_range(self.line_of(offset)).start;
        match self.src.get(ls..offset) {
            Some(prefix) if prefix.bytes().all(|b| b == b' ' || b == b'\t') => ls,
            _ => offset,
        }
    }

    pub(crate) fn kind(&self, id: usize) -> Option<Kind> {
        self.nodes.get(id).map(|n| n.kind)
    }

    pub(crate) fn lines(&self, id: usize) -> &[Line] {
        self.nodes
            .get(id)
            .and_then(|n| self.all_lines.get(n.lines.clone()))
            .unwrap_or(&[])
    }

    /// The inline text of a line (emphasis marked with [`EMPH`]).
    pub(crate) fn text(&self, line: &Line) -> &str {
        self.text.get(line.span.clone()).unwrap_or("")
    }

    pub(crate) fn children(&self, id: usize) -> &[usize] {
        self.nodes
            .get(id)
            .and_then(|n| self.child_ids.get(n.children.clone()))
            .unwrap_or(&[])
    }

    pub(crate) fn range(&self, id: usize) -> Range<usize> {
        self.nodes.get(id).map_or(0..0, |n| n.range.clone())
    }

    /// A heading's inline text on one line.
    pub(crate) fn heading_text(&self, id: usize) -> String {
        let mut s = String::new();
        for l in self.lines(id) {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(self.text(l).trim());
        }
        s
    }
}

struct Builder<'a> {
    doc: Doc<'a>,
    /// Open nodes, innermost last.
    stack: Vec<usize>,
    /// Nesting count while inside a block whose events are skipped.
    opaque: usize,
    /// Whether the skipped block has a node on `stack` to pop when it ends.
    opaque_pushed: bool,
    /// The paragraph-less text of a tight list item, while it is still being written.
    implicit: Option<usize>,
    /// A line break was seen: the next text starts a new [`Line`].
    newline: bool,
}

impl Builder<'_> {
    fn event(&mut self, event: Event<'_>, range: Range<usize>) {
        if self.opaque > 0 {
            match event {
                Event::Start(_) => self.opaque += 1,
                Event::End(_) => {
                    self.opaque -= 1;
                    if self.opaque == 0 && self.opaque_pushed {
                        self.stack.pop();
                    }
                }
                _ => {}
            }
            return;
        }
        match event {
            Event::Start(tag) => self.start(&tag, range),
            Event::End(end) => self.end(&end),
            Event::Text(t) => self.text(&t, range),
            Event::Code(c) => self.text(&format!("`{c}`"), range),
            Event::InlineMath(m) => self.text(&format!("${m}$"), range),
            Event::SoftBreak | Event::HardBreak => self.newline = true,
            Event::Rule => {
                self.implicit = None;
                self.leaf(Kind::Rule, range);
            }
            Event::DisplayMath(_) | Event::Html(_) => {
                self.implicit = None;
                self.leaf(Kind::Opaque, range);
            }
            _ => {}
        }
    }

    fn start(&mut self, tag: &Tag<'_>, range: Range<usize>) {
        let kind = match tag {
            Tag::Emphasis | Tag::Strong => {
                self.text(EMPH_STR, range);
                return;
            }
            Tag::Strikethrough
            | Tag::Superscript
            | Tag::Subscript
            | Tag::Link { .. }
            | Tag::Image { .. } => return,
            Tag::Paragraph => Kind::Para,
            Tag::Heading { level, .. } => Kind::Heading(*level as u8),
            Tag::List(first) => Kind::List {
                ordered: first.is_some(),
            },
            Tag::Item => Kind::Item,
            Tag::BlockQuote(_) => Kind::Quote,
            _ => Kind::Opaque,
        };
        self.implicit = None;
        self.newline = false;
        if self.stack.len() >= MAX_DEPTH {
            self.opaque = 1;
            self.opaque_pushed = false;
            return;
        }
        let id = self.leaf(kind, range);
        self.stack.push(id);
        if kind == Kind::Opaque {
            self.opaque = 1;
            self.opaque_pushed = true;
        }
    }

    fn end(&mut self, end: &TagEnd) {
        match end {
            TagEnd::Emphasis | TagEnd::Strong => self.text(EMPH_STR, 0..0),
            TagEnd::Strikethrough
            | TagEnd::Superscript
            | TagEnd::Subscript
            | TagEnd::Link
            | TagEnd::Image => {}
            _ => {
                self.implicit = None;
                self.newline = false;
                self.stack.pop();
            }
        }
    }

    /// Adds a childless node under the innermost open node.
    fn leaf(&mut self, kind: Kind, range: Range<usize>) -> usize {
        let id = self.doc.nodes.len();
        let parent = self.stack.last().copied();
        self.doc.nodes.push(Node {
            kind,
            range,
            parent,
            children: 0..0,
            lines: 0..0,
        });
        if parent.is_none() {
            self.doc.roots.push(id);
        }
        id
    }

    fn text(&mut self, text: &str, range: Range<usize>) {
        let Some(&top) = self.stack.last() else {
            return;
        };
        let target = match self.doc.nodes.get(top).map(|n| n.kind) {
            Some(Kind::Heading(_) | Kind::Para) => top,
            Some(Kind::Item) => match self.implicit {
                Some(id) => id,
                None => {
                    // A tight list item's text has no paragraph event: make one so items look
                    // alike whatever their spacing.
                    let id = self.doc.nodes.len();
                    self.doc.nodes.push(Node {
                        kind: Kind::Para,
                        range: range.clone(),
                        parent: Some(top),
                        children: 0..0,
                        lines: 0..0,
                    });
                    self.implicit = Some(id);
                    self.newline = false;
                    id
                }
            },
            _ => return,
        };
        // Emphasis ends carry no range; they belong to the line of the text before them.
        let line = if range.is_empty() && range.start == 0 {
            None
        } else {
            Some(self.doc.line_of(range.start))
        };
        let doc = &mut self.doc;
        let Some(node) = doc.nodes.get_mut(target) else {
            return;
        };
        if !range.is_empty() && range.end > node.range.end {
            node.range.end = range.end;
        }
        let total = doc.all_lines.len();
        if node.lines.is_empty() {
            node.lines = total..total;
        } else if node.lines.end != total {
            // Another node's text came in between: cannot happen for a paragraph or heading,
            // whose inline content is one run of events. Dropping is safer than mixing.
            return;
        }
        let new_line = node.lines.is_empty() || (self.newline && line.is_some());
        let start = doc.text.len();
        doc.text.push_str(text);
        let end = doc.text.len();
        match (new_line, doc.all_lines.last_mut()) {
            (false, Some(last)) => last.span.end = end,
            (_, last) => {
                let line = line.unwrap_or_else(|| last.map_or(0, |l| l.line));
                doc.all_lines.push(Line {
                    line,
                    span: start..end,
                });
                node.lines.end = doc.all_lines.len();
            }
        }
        if line.is_some() {
            self.newline = false;
        }
    }
}
