// The implementation plan as a dependency graph of work sessions, drawn as inline SVG.
//
// A node is one implementation work session (it owns a top-level task of the plan and its
// sub-tasks). An edge A → B means B waits for A: B owns a task that depends on a task A owns
// (the engine's SessionGraph, derived the same way from the implementation tasks). A spawned
// session hangs off the session that spawned it (dashed edge). Nodes are laid out in layers by
// longest path: columns left → right, or rows top → bottom when the graph is drawn narrow.
//
// Each node is a focusable `<a>` with `data-work-session-id` and `data-status`; its fill comes
// from the status (CSS, `--s-*` variables) and the status is written in the node too.

import { h, label } from './dom.js';

/** A status's mark, so status never rests on colour alone. */
export const STATUS_MARK = {
  pending: '◷', active: '▶', completed: '✓', failed: '✗', cancelled: '⊘', blocked: '⛔',
};

/** The session's title as people read it. */
export function sessionTitle(ws) {
  return ws.name || ws.implementation_task_title || ws.id;
}

/**
 * Nodes and edges from the work sessions (implementation phase only) and the plan's tasks:
 * `{nodes: [{ws, keys, requirements}], edges: [{from, to, kind: 'depends'|'spawned'}]}`.
 */
export function buildGraph(sessions, tasks) {
  const nodes = sessions.filter((ws) => ws.phase === 'implementation');
  const ids = new Set(nodes.map((ws) => ws.id));
  const parents = new Map(tasks.filter((t) => t.parent_key).map((t) => [t.key, t.parent_key]));
  const topOf = (key) => {
    let current = key;
    for (let i = 0; i <= parents.size && parents.has(current); i += 1) current = parents.get(current);
    return current;
  };
  const ownerOfTop = new Map(tasks.filter((t) => !t.parent_key && t.assigned_work_session_id)
    .map((t) => [t.key, t.assigned_work_session_id]));
  const edges = new Map();
  for (const task of tasks) {
    const top = topOf(task.key);
    const owner = ownerOfTop.get(top);
    if (!owner || !ids.has(owner)) continue;
    for (const dependency of task.dependencies || []) {
      const dependencyTop = topOf(dependency);
      if (dependencyTop === top) continue;
      const other = ownerOfTop.get(dependencyTop);
      if (other && other !== owner && ids.has(other)) {
        edges.set(`${other}>${owner}`, { from: other, to: owner, kind: 'depends' });
      }
    }
  }
  for (const ws of nodes) {
    const parent = ws.spawned_by_session_id || ws.parent_work_session_id;
    if (parent && ids.has(parent) && !edges.has(`${parent}>${ws.id}`)) {
      edges.set(`${parent}>${ws.id}`, { from: parent, to: ws.id, kind: 'spawned' });
    }
  }
  const owned = new Map(nodes.map((ws) => [ws.id, { keys: [], requirements: new Set() }]));
  for (const task of tasks) {
    const mine = owned.get(task.assigned_work_session_id);
    if (!mine) continue;
    mine.keys.push(task.key);
    for (const ref of task.requirement_refs || []) mine.requirements.add(ref);
  }
  return {
    nodes: nodes.map((ws) => ({
      ws, keys: owned.get(ws.id).keys, requirements: [...owned.get(ws.id).requirements],
    })),
    edges: [...edges.values()],
  };
}

/** Layer (longest path from a source) and position within the layer of every node. */
export function layout(graph) {
  const incoming = new Map(graph.nodes.map((n) => [n.ws.id, []]));
  const outgoing = new Map(graph.nodes.map((n) => [n.ws.id, []]));
  for (const edge of graph.edges) {
    incoming.get(edge.to).push(edge.from);
    outgoing.get(edge.from).push(edge.to);
  }
  const layer = new Map();
  const remaining = new Map([...incoming].map(([id, from]) => [id, from.length]));
  let ready = graph.nodes.filter((n) => remaining.get(n.ws.id) === 0).map((n) => n.ws.id);
  while (ready.length) {
    const next = [];
    for (const id of ready) {
      const from = incoming.get(id);
      layer.set(id, from.length ? Math.max(...from.map((f) => layer.get(f) ?? 0)) + 1 : 0);
      for (const to of outgoing.get(id)) {
        remaining.set(to, remaining.get(to) - 1);
        if (remaining.get(to) === 0) next.push(to);
      }
    }
    ready = next;
  }
  // A cycle (a malformed plan) leaves nodes unplaced: they go after everything else.
  const last = Math.max(-1, ...layer.values()) + 1;
  for (const node of graph.nodes) if (!layer.has(node.ws.id)) layer.set(node.ws.id, last);

  const layers = [];
  const order = (ws) => [ws.implementation_task_index ?? 1e9, ws.created_at];
  const sorted = [...graph.nodes].sort((a, b) => {
    const [ia, ca] = order(a.ws);
    const [ib, cb] = order(b.ws);
    return ia - ib || String(ca).localeCompare(String(cb));
  });
  for (const node of sorted) {
    const l = layer.get(node.ws.id);
    (layers[l] ||= []).push(node.ws.id);
  }
  // An edge over more than one layer runs through a dummy slot in each layer between, so it
  // never crosses a node; `chains` lists each edge's slots from source to target.
  const chains = graph.edges.map((edge, index) => {
    const chain = [edge.from];
    for (let l = layer.get(edge.from) + 1; l < layer.get(edge.to); l += 1) {
      const dummy = `dummy:${index}:${l}`;
      layer.set(dummy, l);
      incoming.set(dummy, [chain[chain.length - 1]]);
      (layers[l] ||= []).push(dummy);
      chain.push(dummy);
    }
    chain.push(edge.to);
    return chain;
  });
  for (const [index, chain] of chains.entries()) {
    const edge = graph.edges[index];
    if (chain.length > 2) {
      const from = incoming.get(edge.to);
      from[from.indexOf(edge.from)] = chain[chain.length - 2];
    }
  }
  // One barycentre sweep: a node sits near the mean position of what it waits for.
  const position = new Map();
  layers.forEach((ids) => {
    if (!ids) return;
    const score = (id, fallback) => {
      const from = incoming.get(id).filter((f) => position.has(f));
      return from.length ? from.reduce((sum, f) => sum + position.get(f), 0) / from.length : fallback;
    };
    const scored = ids.map((id, i) => [id, score(id, i), i]);
    scored.sort((a, b) => a[1] - b[1] || a[2] - b[2]);
    scored.forEach(([id], i) => position.set(id, i));
  });
  return { layer, position, chains, layers: layers.map((ids) => ids || []) };
}

const NODE = { wide: { w: 240, h: 96, gapMain: 70, gapCross: 22 }, narrow: { w: 176, h: 96, gapMain: 40, gapCross: 12 } };

/** Text cut to fit `width` pixels (an estimate: SVG text does not wrap). */
function fit(text, width, charWidth = 7.2) {
  const max = Math.max(4, Math.floor(width / charWidth));
  const value = String(text ?? '');
  return value.length > max ? value.slice(0, max - 1) + '…' : value;
}

/** A smooth path through an edge's slots: out of the source, straight through each dummy slot,
 * into the target (arrowhead just before it). */
function edgePath(chain, at, vertical, size) {
  const points = [];
  chain.forEach((id, i) => {
    const p = at.get(id);
    const [main, cross] = vertical ? [p.y, p.x + size.w / 2] : [p.x, p.y + size.h / 2];
    const length = vertical ? size.h : size.w;
    if (i > 0) points.push([main - (i === chain.length - 1 ? 4 : 0), cross]);
    if (i < chain.length - 1) points.push([main + length, cross]);
  });
  const xy = ([main, cross]) => (vertical ? `${cross},${main}` : `${main},${cross}`);
  let d = `M${xy(points[0])}`;
  for (let i = 1; i < points.length; i += 1) {
    const [a, b] = [points[i - 1], points[i]];
    if (i % 2 === 0) { d += ` L${xy(b)}`; continue; } // through a dummy slot
    const bend = Math.max(20, (b[0] - a[0]) / 2);
    d += ` C${xy([a[0] + bend, a[1]])} ${xy([b[0] - bend, b[1]])} ${xy(b)}`;
  }
  return d;
}

/**
 * Draws the graph into `svg` (replacing its content). `vertical` stacks layers as rows.
 * `onSelect(id, event)` is called when a node is activated; `selected` marks one node.
 */
export function renderGraph(svg, graph, { vertical = false, selected = null, onSelect, hrefOf }) {
  svg.replaceChildren();
  const size = vertical ? NODE.narrow : NODE.wide;
  if (!graph.nodes.length) {
    svg.setAttribute('viewBox', '0 0 300 40');
    svg.setAttribute('width', '300');
    svg.setAttribute('height', '40');
    svg.append(h('svg:text', { x: 8, y: 24, class: 'graph-empty' }, 'No implementation work sessions yet.'));
    return;
  }
  const { layer, position, layers, chains } = layout(graph);
  const widest = Math.max(...layers.map((ids) => ids.length));
  const at = new Map();
  for (const id of layer.keys()) {
    const main = layer.get(id) * ((vertical ? size.h : size.w) + size.gapMain);
    // Centre each layer on the widest one.
    const offset = (widest - layers[layer.get(id)].length) / 2;
    const cross = (position.get(id) + offset) * ((vertical ? size.w : size.h) + size.gapCross);
    at.set(id, vertical ? { x: cross + 6, y: main + 6 } : { x: main + 6, y: cross + 6 });
  }
  const width = Math.max(...[...at.values()].map((p) => p.x)) + size.w + 12;
  const height = Math.max(...[...at.values()].map((p) => p.y)) + size.h + 12;
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height));
  svg.append(h('svg:defs', {},
    h('svg:marker', { id: 'graph-arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto-start-reverse' },
      h('svg:path', { d: 'M0,0 L10,5 L0,10 z', class: 'graph-arrowhead' }))));
  const edges = h('svg:g', { class: 'graph-edges' });
  for (const [index, edge] of graph.edges.entries()) {
    edges.append(h('svg:path', {
      class: `graph-edge graph-edge-${edge.kind}`, d: edgePath(chains[index], at, vertical, size),
      'marker-end': 'url(#graph-arrow)', dataset: { from: edge.from, to: edge.to, kind: edge.kind },
    }));
  }
  svg.append(edges);
  const nodes = h('svg:g', { class: 'graph-nodes' });
  const titleOf = (id) => sessionTitle(graph.nodes.find((n) => n.ws.id === id)?.ws || { id });
  for (const node of graph.nodes) {
    const { ws, keys, requirements } = node;
    const { x, y } = at.get(ws.id);
    const inner = size.w - 20;
    const waitsFor = graph.edges.filter((e) => e.to === ws.id && e.kind === 'depends').map((e) => titleOf(e.from));
    const spawnedBy = graph.edges.find((e) => e.to === ws.id && e.kind === 'spawned');
    const tasksLine = [keys.length ? `Task ${keys.join(', ')}` : (spawnedBy ? 'spawned' : null),
      requirements.length ? `Req ${requirements.join(', ')}` : null].filter(Boolean).join(' · ');
    const statusLine = `${STATUS_MARK[ws.status] || '•'} ${label(ws.status)}`;
    const reason = ws.queue_reason || ws.error || '';
    const description = [sessionTitle(ws), `status ${label(ws.status)}`, tasksLine,
      waitsFor.length ? `waits for ${waitsFor.join(', ')}` : null,
      spawnedBy ? `spawned by ${titleOf(spawnedBy.from)}` : null, reason].filter(Boolean).join('; ');
    const link = h('svg:a', {
      class: 'graph-node' + (ws.id === selected ? ' selected' : ''),
      href: hrefOf(ws.id),
      // The <title> child names the node for assistive technology (SVG's naming rules), with the
      // whole description; an aria-label would hide that the visible text is cut to fit.
      'aria-current': ws.id === selected ? 'true' : null,
      dataset: { workSessionId: ws.id, status: ws.status },
      onclick: (event) => {
        if (event.ctrlKey || event.metaKey || event.shiftKey) return;
        event.preventDefault();
        onSelect(ws.id);
      },
    },
    h('svg:title', {}, description),
    h('svg:rect', { class: 'node-box', x, y, width: size.w, height: size.h, rx: 8, ry: 8 }),
    h('svg:text', { class: 'node-title', x: x + 10, y: y + 21 }, fit(sessionTitle(ws), inner, 8)),
    h('svg:text', { class: 'node-meta', x: x + 10, y: y + 41 }, fit(tasksLine || ' ', inner, 6.8)),
    h('svg:text', { class: 'node-status', x: x + 10, y: y + 62 }, fit(statusLine, inner)),
    reason ? h('svg:text', { class: 'node-reason', x: x + 10, y: y + 82 }, fit(reason, inner, 6.4)) : null);
    nodes.append(link);
  }
  svg.append(nodes);
}
