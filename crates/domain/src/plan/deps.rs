//! Dependencies between tasks: resolving written references (by key, `Task N`, range, phase or
//! title), the implicit order of phases and checkpoints, and cycle detection. Unknown
//! references and cycles become [`PlanError`]s with keys and lines, never silently dropped.
//!
//! Implicit rules, applied only to top-level tasks that wrote no dependency of their own
//! (explicit references win):
//! - an ordered phase (`## Phase N`) waits for the previous ordered phase to finish, i.e. its
//!   first tasks depend on the tasks of that phase nothing else in it depends on;
//! - a checkpoint task waits for everything since the previous barrier, and later tasks wait
//!   for the checkpoint;
//! - in spec-kit plans, a non-`[P]` task waits for the previous non-`[P]` task of its phase;
//! - otherwise top-level tasks are independent, and sub-tasks run in their parent's thread.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::extract::{Extracted, RawTask};
use super::model::{PlanError, PlanErrorKind, PlanFormat};
use super::refs::{Ref, numeric_span};
use super::text::norm_title;

/// Title references tested by substring at most, to keep pathological plans linear-ish.
const MAX_SUBSTRING_PROBES: usize = 2_000_000;

/// A key as compared: trimmed, no trailing dot, upper case (`t014` is `T014`). Borrows when
/// nothing changes, which is almost always.
pub(crate) fn norm_key(k: &str) -> Cow<'_, str> {
    let k = k.trim().trim_end_matches('.');
    if k.bytes().any(|b| b.is_ascii_lowercase()) {
        Cow::Owned(k.to_ascii_uppercase())
    } else {
        Cow::Borrowed(k)
    }
}

struct Resolver<'x> {
    ex: &'x Extracted,
    parents: &'x [Option<usize>],
    by_key: HashMap<String, usize>,
    /// Normalised titles and their index, built on the first reference by title (most plans
    /// have none).
    titles: Option<(Vec<String>, HashMap<String, usize>)>,
    /// Top-level tasks of each phase, built on the first reference to a phase.
    phase_tasks: Option<Vec<Vec<usize>>>,
    probes: usize,
}

impl Resolver<'_> {
    fn key(&self, k: &str) -> Option<usize> {
        self.by_key.get(norm_key(k).as_ref()).copied()
    }

    fn title(&mut self, t: &str) -> Option<usize> {
        let n = norm_title(t);
        if n.is_empty() {
            return None;
        }
        let ex = self.ex;
        let (titles, by_title) = self.titles.get_or_insert_with(|| {
            let titles: Vec<String> = ex.tasks.iter().map(|t| norm_title(&t.title)).collect();
            let mut by_title = HashMap::with_capacity(titles.len());
            for (i, t) in titles.iter().enumerate() {
                by_title.entry(t.clone()).or_insert(i);
            }
            (titles, by_title)
        });
        if let Some(&first) = by_title.get(&n) {
            return Some(first);
        }
        // A unique title containing the reference ("the schema task" is too vague to guess).
        if n.chars().count() < 4 || self.probes > MAX_SUBSTRING_PROBES {
            return None;
        }
        self.probes += titles.len();
        let mut found = titles
            .iter()
            .enumerate()
            .filter(|(_, title)| title.contains(&n));
        match (found.next(), found.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        }
    }

    /// The tasks a reference names; `Err` holds the part that names nothing.
    fn resolve(&mut self, r: &Ref) -> Result<Vec<usize>, String> {
        match r {
            Ref::Key(k) => self.key(k).map(|i| vec![i]).ok_or_else(|| k.clone()),
            Ref::Range(a, b) => self.range(a, b),
            Ref::Phase(n) => {
                let (ex, parents) = (self.ex, self.parents);
                let members = self.phase_tasks.get_or_insert_with(|| {
                    let mut m = vec![Vec::new(); ex.phases.len()];
                    for (i, t) in ex.tasks.iter().enumerate() {
                        if parents.get(i).copied().flatten().is_none()
                            && let Some(list) = t.phase.and_then(|p| m.get_mut(p))
                        {
                            list.push(i);
                        }
                    }
                    m
                });
                let mut found = None;
                for (p, phase) in ex.phases.iter().enumerate() {
                    if phase.number.as_deref() == Some(n.as_str()) {
                        found
                            .get_or_insert_with(Vec::new)
                            .extend(members.get(p).into_iter().flatten().copied());
                    }
                }
                found.ok_or_else(|| format!("Phase {n}"))
            }
            Ref::Title(t) => self.title(t).map(|i| vec![i]).ok_or_else(|| t.clone()),
        }
    }

    /// `T012-T015` or `1.1-1.3`: the existing keys between both ends, which must exist.
    fn range(&self, a: &str, b: &str) -> Result<Vec<usize>, String> {
        let (ia, ib) = (self.key(a), self.key(b));
        let (Some(ia), Some(ib)) = (ia, ib) else {
            let missing = if ia.is_none() { a } else { b };
            return Err(missing.to_owned());
        };
        let span = match (a.strip_prefix(['T', 't']), b.strip_prefix(['T', 't'])) {
            (Some(x), Some(y)) if x.len() == y.len() => {
                let width = x.len();
                numeric_span(x, y).map(|v| {
                    v.into_iter()
                        .map(|n| format!("T{n:0>width$}"))
                        .collect::<Vec<_>>()
                })
            }
            _ => numeric_span(a, b),
        };
        let mut out = vec![ia];
        for k in span.unwrap_or_default() {
            if let Some(i) = self.key(&k)
                && !out.contains(&i)
            {
                out.push(i);
            }
        }
        if !out.contains(&ib) {
            out.push(ib);
        }
        Ok(out)
    }
}

/// Resolves and completes every task's dependencies (as task indices), reporting unknown
/// references and cycles into `errors`.
pub(crate) fn dependencies(
    ex: &Extracted,
    keys: &[String],
    parents: &[Option<usize>],
    format: PlanFormat,
    errors: &mut Vec<PlanError>,
) -> Vec<Vec<usize>> {
    let n = ex.tasks.len();
    let mut by_key = HashMap::with_capacity(n);
    for (i, k) in keys.iter().enumerate() {
        by_key.entry(norm_key(k).into_owned()).or_insert(i);
    }
    let mut r = Resolver {
        ex,
        parents,
        by_key,
        titles: None,
        phase_tasks: None,
        probes: 0,
    };
    let mut edges = Edges {
        lists: vec![Vec::new(); n],
        left: MAX_EDGES,
        over: false,
    };
    let mut explicit = vec![false; n];
    for (i, task) in ex.tasks.iter().enumerate() {
        for (refs, line) in &task.deps {
            explicit[i] = true;
            let mut found = Vec::new();
            let mut unknown = Vec::new();
            for reference in &refs.refs {
                match r.resolve(reference) {
                    Ok(f) => found.extend(f),
                    Err(what) => unknown.push(what),
                }
            }
            // "Depends on: Build and test the API" was split on "and"; try it whole.
            let titles_only = refs.refs.iter().all(|x| matches!(x, Ref::Title(_)));
            if !unknown.is_empty()
                && titles_only
                && refs.refs.len() > 1
                && let Some(whole) = r.title(&refs.whole)
            {
                found = vec![whole];
                unknown.clear();
            }
            edges.add(i, found);
            for what in unknown {
                errors.push(unknown_reference(keys, i, *line, &what));
            }
        }
    }
    for stmt in &ex.prose_deps {
        let mut side = |refs: &[Ref], errors: &mut Vec<PlanError>| {
            let mut out = Vec::new();
            for reference in refs {
                match r.resolve(reference) {
                    Ok(found) => out.extend(found),
                    Err(what) => errors.push(PlanError {
                        kind: PlanErrorKind::UnknownReference,
                        message: format!(
                            "line {} says \"{}\", but `{what}` is no task of this plan",
                            stmt.line + 1,
                            stmt.text
                        ),
                        keys: Vec::new(),
                        lines: vec![stmt.line + 1],
                        reference: Some(what),
                    }),
                }
            }
            out
        };
        let dependents = side(&stmt.dependents, errors);
        let prereqs = side(&stmt.prereqs, errors);
        for &d in &dependents {
            edges.add(d, prereqs.iter().copied());
            if let Some(e) = explicit.get_mut(d) {
                *e = true;
            }
        }
    }
    implicit(&ex.tasks, ex, parents, format, &explicit, &mut edges);
    if edges.over {
        errors.push(PlanError {
            kind: PlanErrorKind::TooManyDependencies,
            message: format!(
                "the plan implies more than {MAX_EDGES} dependencies; split its largest phases or \
                 write the dependencies out"
            ),
            keys: Vec::new(),
            lines: Vec::new(),
            reference: None,
        });
    }
    let mut deps = edges.lists;
    for list in &mut deps {
        super::assemble::dedup(list);
    }
    cycles(&deps, &ex.tasks, keys, errors);
    deps
}

/// Most dependencies a plan may have in all. Phase barriers multiply (every task of a phase
/// waits for the previous phase's last tasks), so a hostile plan could otherwise ask for
/// billions; real plans have a few hundred.
const MAX_EDGES: usize = 250_000;

/// Every task's dependency list, with the cap on their total length.
struct Edges {
    lists: Vec<Vec<usize>>,
    left: usize,
    over: bool,
}

impl Edges {
    fn add(&mut self, task: usize, from: impl IntoIterator<Item = usize>) {
        let Some(list) = self.lists.get_mut(task) else {
            return;
        };
        for d in from {
            if self.left == 0 {
                self.over = true;
                return;
            }
            self.left -= 1;
            list.push(d);
        }
    }
}

fn unknown_reference(keys: &[String], task: usize, line: usize, what: &str) -> PlanError {
    let key = keys.get(task).cloned().unwrap_or_default();
    PlanError {
        kind: PlanErrorKind::UnknownReference,
        message: format!(
            "task {key} (line {}) depends on `{what}`, which is no task of this plan",
            line + 1
        ),
        keys: vec![key],
        lines: vec![line + 1],
        reference: Some(what.to_owned()),
    }
}

/// Top-level tasks with no dependency that the others' do not already cover.
fn sinks(segment: &[usize], deps: &[Vec<usize>]) -> Vec<usize> {
    let used: HashSet<usize> = segment
        .iter()
        .flat_map(|&t| deps.get(t).into_iter().flatten().copied())
        .collect();
    segment
        .iter()
        .copied()
        .filter(|t| !used.contains(t))
        .collect()
}

fn implicit(
    tasks: &[RawTask],
    ex: &Extracted,
    parents: &[Option<usize>],
    format: PlanFormat,
    explicit: &[bool],
    edges: &mut Edges,
) {
    let ordered = |p: Option<usize>| {
        p.and_then(|p| ex.phases.get(p))
            .is_some_and(|ph| ph.ordered)
    };
    let chain = format == PlanFormat::SpecKit;
    let mut prev_sinks: Vec<usize> = Vec::new();
    let mut segment: Vec<usize> = Vec::new();
    let mut last_serial: Option<usize> = None;
    let mut current: Option<Option<usize>> = None;
    for (i, task) in tasks.iter().enumerate() {
        if parents.get(i).copied().flatten().is_some() {
            continue;
        }
        if let Some(cur) = current
            && cur != task.phase
        {
            if ordered(cur) && ordered(task.phase) {
                if !segment.is_empty() {
                    prev_sinks = sinks(&segment, &edges.lists);
                }
            } else {
                prev_sinks.clear();
            }
            segment.clear();
            last_serial = None;
        }
        current = Some(task.phase);
        let own = explicit.get(i).copied().unwrap_or(false);
        if task.checkpoint {
            if !own {
                let before = if segment.is_empty() {
                    prev_sinks.clone()
                } else {
                    sinks(&segment, &edges.lists)
                };
                edges.add(i, before);
            }
            prev_sinks = vec![i];
            segment.clear();
            last_serial = None;
            continue;
        }
        if !own {
            match last_serial {
                Some(prev) if chain && !task.parallel => edges.add(i, [prev]),
                _ => edges.add(i, prev_sinks.iter().copied()),
            }
        }
        if chain && !task.parallel {
            last_serial = Some(i);
        }
        segment.push(i);
    }
}

/// Reports every strongly connected component with more than one task, or a task depending on
/// itself (iterative Tarjan: no recursion, so no stack overflow on long chains).
fn cycles(deps: &[Vec<usize>], tasks: &[RawTask], keys: &[String], errors: &mut Vec<PlanError>) {
    let n = deps.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0usize;
    let mut components: Vec<Vec<usize>> = Vec::new();
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut call: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(top) = call.last_mut() {
            let (v, edge) = *top;
            top.1 += 1;
            let succ = deps.get(v).and_then(|d| d.get(edge)).copied();
            match succ {
                Some(w) if w < n => {
                    if index[w] == usize::MAX {
                        index[w] = next;
                        low[w] = next;
                        next += 1;
                        stack.push(w);
                        on_stack[w] = true;
                        call.push((w, 0));
                    } else if on_stack[w] {
                        low[v] = low[v].min(index[w]);
                    }
                }
                Some(_) => {}
                None => {
                    call.pop();
                    if let Some(&(parent, _)) = call.last() {
                        low[parent] = low[parent].min(low[v]);
                    }
                    if low[v] == index[v] {
                        let mut comp = Vec::new();
                        while let Some(w) = stack.pop() {
                            on_stack[w] = false;
                            comp.push(w);
                            if w == v {
                                break;
                            }
                        }
                        let self_loop = deps.get(v).is_some_and(|d| d.contains(&v));
                        if comp.len() > 1 || self_loop {
                            comp.sort_unstable();
                            components.push(comp);
                        }
                    }
                }
            }
        }
    }
    components.sort();
    for comp in components {
        let ks: Vec<String> = comp.iter().filter_map(|&i| keys.get(i).cloned()).collect();
        let lines: Vec<usize> = comp
            .iter()
            .filter_map(|&i| tasks.get(i).map(|t| t.line + 1))
            .collect();
        let message = if ks.len() == 1 {
            format!("task {} depends on itself", ks.join(""))
        } else {
            format!("tasks {} depend on each other in a cycle", ks.join(", "))
        };
        errors.push(PlanError {
            kind: PlanErrorKind::DependencyCycle,
            message,
            keys: ks,
            lines,
            reference: None,
        });
    }
}
