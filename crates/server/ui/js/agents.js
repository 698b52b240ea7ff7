// The agents page: the configured profiles, the built-in agents found on PATH, and a check that
// runs the ACP initialize handshake.

import { h, replace } from './dom.js';
import './shell.js';

replace(document.getElementById('main'), h('h1', {}, 'Agents'), h('p', { class: 'empty' }, 'Not built yet.'));
document.body.dataset.ready = 'true';
