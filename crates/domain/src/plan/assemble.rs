//! Turning extracted raw tasks into the [`ParsedPlan`]: final keys (as written, qualified for
//! locally numbered sub-tasks, or generated), parents from numbering, duplicate keys, the
//! format, descriptions rendered from source pieces, and the one-task fallback.

use std::collections::HashMap;

use super::blocks::Doc;
use super::deps::{dependencies, norm_key};
use super::extract::{Piece, RawTask, extract};
use super::model::{
    ParsedPlan, PlanError, PlanErrorKind, PlanFormat, PlanPhase, PlanSection, PlanTask,
    PlanTaskStatus,
};
use super::refs::scan_requirement_tokens;
use super::text::KeyKind;

/// A parsed plan and, per task, the byte offset of its checkbox's state character.
#[derive(Debug)]
pub(crate) struct Analysis {
    pub plan: ParsedPlan,
    pub checkboxes: Vec<Option<usize>>,
}

pub(crate) fn analyse(src: &str) -> Analysis {
    let doc = Doc::parse(src);
    let ex = extract(&doc);
    if ex.tasks.is_empty() {
        return fallback(src, ex.title);
    }
    let mut errors = Vec::new();
    let (keys, generated, parents) = settle_keys(&ex.tasks, &mut errors);
    let format = format_of(&ex.tasks);
    let deps = dependencies(&ex, &keys, &parents, format, &mut errors);
    let phases: Vec<PlanPhase> = ex
        .phases
        .iter()
        .enumerate()
        .map(|(index, p)| PlanPhase {
            index,
            title: p.title.clone(),
            line: p.line + 1,
            ordered: p.ordered,
            description: render(src, &p.pieces),
        })
        .collect();
    let context = ex
        .sections
        .iter()
        .filter(|s| s.phase.is_none())
        .filter_map(|s| {
            Some(PlanSection {
                heading: s.heading.clone(),
                line: s.line + 1,
                body: render(src, &s.pieces)?,
            })
        })
        .collect();
    let checkboxes = ex.tasks.iter().map(|t| t.checkbox).collect();
    let key_of = |i: usize| keys.get(i).cloned().unwrap_or_default();
    let tasks = ex
        .tasks
        .into_iter()
        .enumerate()
        .map(|(index, t)| {
            let mut description = render(src, &t.pieces);
            if let Some(full) = &t.title_overflow {
                description = Some(match description {
                    Some(d) => format!("{full}\n\n{d}"),
                    None => full.clone(),
                });
            }
            let mut refs = t.reqs;
            scan_requirement_tokens(&t.title, &mut refs);
            if let Some(d) = &description {
                scan_requirement_tokens(d, &mut refs);
            }
            dedup(&mut refs);
            let mut checks = t.checks;
            dedup(&mut checks);
            PlanTask {
                key: key_of(index),
                key_generated: generated.get(index).copied().unwrap_or(true),
                index,
                line: t.line + 1,
                title: t.title,
                description,
                acceptance_criteria: t.criteria,
                requirement_refs: refs,
                checks,
                depends_on: deps
                    .get(index)
                    .into_iter()
                    .flatten()
                    .map(|&d| key_of(d))
                    .collect(),
                parallel: t.parallel,
                optional: t.optional,
                checkpoint: t.checkpoint,
                phase: t.phase.and_then(|p| phases.get(p)).map(|p| p.title.clone()),
                parent: parents.get(index).copied().flatten().map(key_of),
                status: t.status,
                estimated_effort: t.effort,
            }
        })
        .collect();
    Analysis {
        plan: ParsedPlan {
            title: ex.title,
            format,
            phases,
            tasks,
            context,
            errors,
        },
        checkboxes,
    }
}

/// Removes repeats, keeping first occurrences in order. Lists are usually a handful long, where
/// a scan beats hashing; long ones (pathological input) use a set to stay linear.
pub(crate) fn dedup<T: Clone + Eq + std::hash::Hash>(v: &mut Vec<T>) {
    if v.len() > 16 {
        let mut seen = std::collections::HashSet::with_capacity(v.len());
        v.retain(|x| seen.insert(x.clone()));
        return;
    }
    let mut kept: Vec<T> = Vec::with_capacity(v.len());
    for x in v.drain(..) {
        if !kept.contains(&x) {
            kept.push(x);
        }
    }
    *v = kept;
}

/// A plan with no recognisable task is one task holding the whole plan.
fn fallback(src: &str, title: Option<String>) -> Analysis {
    let body = src.trim();
    if body.is_empty() {
        return Analysis {
            plan: ParsedPlan {
                title,
                format: PlanFormat::Unstructured,
                phases: Vec::new(),
                tasks: Vec::new(),
                context: Vec::new(),
                errors: vec![PlanError {
                    kind: PlanErrorKind::EmptyPlan,
                    message: "the plan is empty".to_owned(),
                    keys: Vec::new(),
                    lines: Vec::new(),
                    reference: None,
                }],
            },
            checkboxes: Vec::new(),
        };
    }
    let first_line = body
        .lines()
        .map(|l| {
            l.trim()
                .trim_start_matches(['#', '>', '-', '*', '+', ' '])
                .trim()
        })
        .find(|l| !l.is_empty());
    // The first sentence of the first line names the task.
    let first_sentence = first_line.map(|l| match l.find(". ") {
        Some(i) => l.get(..i).unwrap_or(l),
        None => l,
    });
    let name = title
        .clone()
        .filter(|t| !t.is_empty())
        .or_else(|| first_sentence.map(str::to_owned))
        .unwrap_or_else(|| "Implementation".to_owned());
    let name: String = name.chars().take(crate::limits::MAX_NAME_CHARS).collect();
    let line = src.lines().position(|l| !l.trim().is_empty()).unwrap_or(0) + 1;
    Analysis {
        plan: ParsedPlan {
            title,
            format: PlanFormat::Unstructured,
            phases: Vec::new(),
            tasks: vec![PlanTask {
                key: "1".to_owned(),
                key_generated: true,
                index: 0,
                line,
                title: name,
                description: Some(body.to_owned()),
                acceptance_criteria: Vec::new(),
                requirement_refs: Vec::new(),
                checks: Vec::new(),
                depends_on: Vec::new(),
                parallel: false,
                optional: false,
                checkpoint: false,
                phase: None,
                parent: None,
                status: PlanTaskStatus::NoCheckbox,
                estimated_effort: None,
            }],
            context: Vec::new(),
            errors: Vec::new(),
        },
        checkboxes: vec![None],
    }
}

/// The convention most tasks follow.
fn format_of(tasks: &[RawTask]) -> PlanFormat {
    let count = |f: &dyn Fn(&RawTask) -> bool| tasks.iter().filter(|t| f(t)).count();
    let boxed = |t: &RawTask| t.status != PlanTaskStatus::NoCheckbox && !t.from_heading;
    let candidates = [
        (
            PlanFormat::SpecKit,
            count(&|t| t.key_kind == Some(KeyKind::TKey)),
        ),
        (
            PlanFormat::Kiro,
            count(&|t| boxed(t) && matches!(t.key_kind, Some(KeyKind::Numeric | KeyKind::Word))),
        ),
        (PlanFormat::Headings, count(&|t| t.from_heading)),
        (
            PlanFormat::Checklist,
            count(&|t| boxed(t) && t.raw_key.is_none()),
        ),
        (PlanFormat::Numbered, count(&|t| t.numbered_item)),
    ];
    let mut best = (PlanFormat::Unstructured, 0);
    for (f, n) in candidates {
        if n > best.1 {
            best = (f, n);
        }
    }
    best.0
}

/// Final keys, whether each was generated, and parents.
///
/// - A single-number key under another task is local numbering when that parent's first such
///   child is `1` (`## Task 3` → `- [ ] 1. ...` is `3.1`); otherwise it is a mis-indented
///   sibling (`- [ ] 1.` → `  - [ ] 2.` stays `2`, beside `1`).
/// - A dotted key's parent is the nearest earlier task keyed by one of its prefixes, whatever
///   the indentation; other tasks keep their enclosing task.
/// - Tasks without a key get `<parent key>.<n>` or `<n>` by position, avoiding written keys.
/// - A key written twice is a [`PlanErrorKind::DuplicateKey`]; later copies get `~2`, `~3`.
fn settle_keys(
    tasks: &[RawTask],
    errors: &mut Vec<PlanError>,
) -> (Vec<String>, Vec<bool>, Vec<Option<usize>>) {
    let n = tasks.len();
    let mut parents: Vec<Option<usize>> = tasks.iter().map(|t| t.parent).collect();
    let mut local: Vec<Option<bool>> = vec![None; n];
    let mut keys: Vec<String> = vec![String::new(); n];
    let mut generated = vec![false; n];
    let is_local_candidate = |t: &RawTask| {
        t.parent.is_some()
            && matches!(t.key_kind, Some(KeyKind::Numeric | KeyKind::Word))
            && t.raw_key.as_deref().is_some_and(|k| !k.contains('.'))
    };
    // Keys written as such, reserved before any key is generated.
    let reserved: std::collections::HashSet<String> = tasks
        .iter()
        .filter(|t| !is_local_candidate(t))
        .filter_map(|t| t.raw_key.as_deref().map(|k| norm_key(k).into_owned()))
        .collect();
    let mut used: HashMap<String, usize> = HashMap::with_capacity(n);
    let mut dup_lines: Vec<(String, Vec<usize>)> = Vec::new();
    let mut children: HashMap<Option<usize>, usize> = HashMap::new();
    for i in 0..n {
        let Some(t) = tasks.get(i) else { continue };
        let mut key = match &t.raw_key {
            Some(raw) if is_local_candidate(t) => {
                let p = t.parent.unwrap_or(i);
                let is_local = match local.get_mut(p) {
                    Some(l) => *l.get_or_insert(raw == "1"),
                    None => false,
                };
                if is_local {
                    Some(format!("{}.{raw}", keys.get(p).map_or("", String::as_str)))
                } else {
                    parents[i] = parents.get(p).copied().flatten();
                    Some(raw.clone())
                }
            }
            Some(raw) => Some(raw.clone()),
            None => None,
        };
        if let Some(k) = &key
            && k.contains('.')
        {
            let mut prefix = k.as_str();
            while let Some((head, _)) = prefix.rsplit_once('.') {
                if let Some(&p) = used.get(norm_key(head).as_ref())
                    && p < i
                {
                    parents[i] = Some(p);
                    break;
                }
                prefix = head;
            }
        }
        let parent = parents.get(i).copied().flatten();
        let ordinal = {
            let c = children.entry(parent).or_insert(0);
            *c += 1;
            *c
        };
        if key.is_none() {
            let base = match parent {
                Some(p) => format!("{}.{ordinal}", keys.get(p).map_or("", String::as_str)),
                None => ordinal.to_string(),
            };
            key = Some(free_key(&base, 2 * n + 2, |k| {
                reserved.contains(norm_key(k).as_ref()) || used.contains_key(norm_key(k).as_ref())
            }));
            generated[i] = true;
        }
        let mut k = key.unwrap_or_default();
        if let Some(&first) = used.get(norm_key(&k).as_ref()) {
            let first_line = tasks.get(first).map_or(0, |t| t.line + 1);
            match dup_lines
                .iter_mut()
                .find(|(d, _)| norm_key(d) == norm_key(&k))
            {
                Some((_, lines)) => lines.push(t.line + 1),
                None => dup_lines.push((k.clone(), vec![first_line, t.line + 1])),
            }
            k = free_key(&k, 2 * n + 2, |c| {
                reserved.contains(norm_key(c).as_ref()) || used.contains_key(norm_key(c).as_ref())
            });
        }
        used.insert(norm_key(&k).into_owned(), i);
        if let Some(slot) = keys.get_mut(i) {
            *slot = k;
        }
    }
    for (key, lines) in dup_lines {
        errors.push(PlanError {
            kind: PlanErrorKind::DuplicateKey,
            message: format!(
                "key {key} is written for {} tasks (lines {})",
                lines.len(),
                lines
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            keys: vec![key],
            lines,
            reference: None,
        });
    }
    (keys, generated, parents)
}

/// `base`, or `base~2`, `base~3`... whichever is free first. `taken` holds fewer than `bound`
/// keys, so one of the first `bound` candidates is free.
fn free_key(base: &str, bound: usize, taken: impl Fn(&str) -> bool) -> String {
    if !taken(base) {
        return base.to_owned();
    }
    (2..=bound.saturating_add(2))
        .map(|n| format!("{base}~{n}"))
        .find(|c| !taken(c))
        .unwrap_or_else(|| format!("{base}~{bound}"))
}

/// A description from source pieces: each dedented, joined by a line break when tight, by a
/// blank line otherwise.
fn render(src: &str, pieces: &[Piece]) -> Option<String> {
    let mut out = String::new();
    for p in pieces {
        let Some(text) = src.get(p.range.clone()) else {
            continue;
        };
        let text = dedent(text);
        let text = text.trim_end();
        let text = text.trim_start_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push_str(if p.tight { "\n" } else { "\n\n" });
        }
        out.push_str(text);
    }
    (!out.is_empty()).then_some(out)
}

/// Removes the indentation all non-blank lines share (a list item's nesting), keeping relative
/// indentation, so code blocks and nested bullets come out intact.
fn dedent(s: &str) -> String {
    let indent = |l: &str| l.len() - l.trim_start_matches([' ', '\t']).len();
    let min = s
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(indent)
        .min()
        .unwrap_or(0);
    if min == 0 {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    for line in s.split_inclusive('\n') {
        let cut = indent(line).min(min);
        out.push_str(line.get(cut..).unwrap_or(line));
    }
    out
}
