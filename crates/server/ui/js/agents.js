// The agents page: the agent profiles (configured ones and the built-in presets), whether each
// program is on the server's PATH, the default agent (and whether it was detected on PATH), the
// planners; a "Check" button per agent runs the ACP initialize handshake on the server and shows
// the result in place.
//
// Stable hooks for tests:
//   #default-agent                  the sentence naming the default agent (data-source: configured|detected|none)
//   #agents                         the list of agent profiles
//   [data-agent="<name>"]           one profile (data-available: true|false, data-default: true|false)
//   button.check-agent              runs the check of its profile
//   .check-result                   the check's result (aria-live; data-ok: true|false once checked)
//   #planners, #default-planner     the planner profiles and the default planner

import * as api from './api.js';
import { h, replace } from './dom.js';
import { toast } from './shell.js';

const main = document.getElementById('main');

const POLICIES = {
  allow_workspace_edits: 'allow workspace edits',
  deny: 'deny',
  ask: 'ask a human',
};
const SANDBOXES = { required: 'required', best_effort: 'best effort', off: 'off' };

function field(term, ...value) {
  return [h('dt', {}, term), h('dd', {}, ...value)];
}

function defaultSentence(list) {
  if (!list.default_agent) {
    return h('p', { id: 'default-agent', class: 'default-agent', dataset: { source: 'none' } },
      'No default agent: tasks that name no agent wait until one is chosen. Set ',
      h('code', {}, 'default_agent'), ' in spectask.toml, or install exactly one built-in agent on the server\'s PATH.');
  }
  const detected = list.default_agent_source === 'detected';
  return h('p', { id: 'default-agent', class: 'default-agent', dataset: { source: list.default_agent_source || 'configured' } },
    'Default agent: ', h('strong', {}, list.default_agent),
    detected ? ' — detected on PATH (the only built-in agent found; set default_agent in spectask.toml to choose another).'
      : ' — configured (default_agent in spectask.toml).');
}

function yesNo(value) {
  return h('span', { class: `flag ${value ? 'yes' : 'no'}` }, value ? 'yes' : 'no');
}

function capabilitiesText(caps) {
  if (!caps) return '—';
  const on = [];
  if (caps.load_session) on.push('load session');
  const prompt = Object.entries(caps.prompt || {}).filter(([, v]) => v).map(([k]) => k.replaceAll('_', ' '));
  if (prompt.length) on.push('prompt: ' + prompt.join(', '));
  const mcp = Object.entries(caps.mcp || {}).filter(([, v]) => v).map(([k]) => k.toUpperCase());
  on.push('MCP: ' + (mcp.length ? mcp.join(', ') : 'none (no spectask tools)'));
  return on.join(' · ');
}

function renderCheck(box, check) {
  box.dataset.ok = String(check.ok);
  box.classList.toggle('ok', check.ok);
  box.classList.toggle('failed', !check.ok);
  const info = check.agent_info;
  const details = [];
  if (info) details.push(...field('Agent', `${info.title || info.name} ${info.version}`));
  if (check.protocol_version !== null && check.protocol_version !== undefined) {
    details.push(...field('Protocol version', String(check.protocol_version)));
  }
  if (check.capabilities) details.push(...field('Capabilities', capabilitiesText(check.capabilities)));
  if (check.auth_methods?.length) {
    details.push(...field('Auth methods', check.auth_methods.map((m) => m.id === m.name ? m.id : `${m.name} (${m.id})`).join(', ')));
  }
  details.push(...field('Took', `${check.duration_ms} ms`));
  replace(box,
    h('p', { class: 'check-status' }, check.ok ? '✓ Check passed' : '✗ Check failed'),
    check.error ? h('pre', { class: 'check-error' }, check.error) : null,
    h('dl', { class: 'facts' }, details));
}

function agentCard(agent, defaultSource) {
  const result = h('div', { class: 'check-result', id: `check-${agent.name}`, role: 'status', 'aria-live': 'polite' });
  const button = h('button', {
    type: 'button', class: 'check-agent', 'aria-label': `Check ${agent.name}`, 'aria-describedby': `check-${agent.name}`,
    onclick: async () => {
      button.disabled = true;
      delete result.dataset.ok;
      result.classList.remove('ok', 'failed');
      replace(result, h('p', { class: 'loading' }, `Starting ${agent.name} and running the handshake…`));
      try {
        renderCheck(result, await api.post(`/agents/${encodeURIComponent(agent.name)}/check`));
      } catch (err) {
        replace(result, h('p', { class: 'check-error' }, err.message));
        toast(err.message, 'error');
      } finally {
        button.disabled = false;
      }
    },
  }, 'Check');
  const command = [agent.command, ...agent.args].join(' ');
  return h('li', { class: 'agent', dataset: { agent: agent.name, available: String(agent.available), default: String(agent.default) } },
    h('div', { class: 'agent-head' },
      h('h3', {}, agent.name),
      h('span', { class: `chip source-${agent.source}` }, agent.source === 'preset' ? 'built-in' : 'configured'),
      agent.default ? h('span', { class: 'chip default' }, defaultSource === 'detected' ? 'default · detected on PATH' : 'default') : null,
      button),
    h('dl', { class: 'facts' },
      field('Command', h('code', {}, command)),
      field('Found on PATH', yesNo(agent.available), agent.path ? [' ', h('code', {}, agent.path)] : null),
      field('Permissions', POLICIES[agent.permission_policy] || agent.permission_policy),
      field('Sandbox', SANDBOXES[agent.sandbox] || agent.sandbox)),
    result);
}

function plannersSection(list) {
  const defaultPlanner = list.default_planner
    ? h('p', { id: 'default-planner' }, 'Default planner: ', h('code', {}, list.default_planner.model))
    : h('p', { id: 'default-planner', class: 'empty' }, 'No default planner (--llm-model): tasks must name a planner or an agent to plan.');
  return h('section', { 'aria-labelledby': 'planners-title' },
    h('h2', { id: 'planners-title' }, 'Planners'),
    defaultPlanner,
    list.planners.length
      ? h('ul', { id: 'planners', class: 'planners' }, list.planners.map((planner) =>
        h('li', { dataset: { planner: planner.name } }, h('strong', {}, planner.name), ' — model ', h('code', {}, planner.model))))
      : h('p', { id: 'planners', class: 'empty' }, 'No planner profiles in spectask.toml.'));
}

async function init() {
  const list = await api.get('/agents');
  const agents = [...list.agents].sort((a, b) => (b.default - a.default) || (b.available - a.available) || a.name.localeCompare(b.name));
  replace(main,
    h('h1', {}, 'Agents'),
    defaultSentence(list),
    h('section', { 'aria-labelledby': 'agents-title' },
      h('h2', { id: 'agents-title' }, 'Agent profiles'),
      h('p', { class: 'help' }, 'A check starts the agent on the server as a task would (sandboxed, in an empty directory), runs the ACP handshake and stops it.'),
      agents.length ? h('ul', { id: 'agents', class: 'agents' }, agents.map((agent) => agentCard(agent, list.default_agent_source)))
        : h('p', { id: 'agents', class: 'empty' }, 'This server runs no agent runtime.')),
    plannersSection(list));
  document.body.dataset.ready = 'true';
}

init().catch((err) => {
  replace(main, h('h1', {}, 'Agents'), h('p', { class: 'error-box', role: 'alert' }, err.message));
  document.body.dataset.ready = 'true';
});
