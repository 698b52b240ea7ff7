// The login page: the API token (printed by `spectask serve`, or the data directory's
// `api-token` file) is exchanged for an HttpOnly session cookie, then back to where the user was.

import * as api from './api.js';
import { h, replace } from './dom.js';
import { boot } from './shell.js';

function next() {
  const target = new URLSearchParams(location.search).get('next') || '/';
  // Only a path on this server: never `//other.host` or `https://…`.
  return target.startsWith('/') && !target.startsWith('//') && !target.startsWith('/\\') ? target : '/';
}

const main = document.getElementById('main');
const error = h('p', { class: 'form-error', role: 'alert', id: 'login-error' });
const form = h('form', { class: 'stack login' },
  h('h1', {}, 'Sign in to spectask'),
  h('p', {}, boot.token_required
    ? ['This server requires its API token: the one given with ', h('code', {}, '--api-token'),
      ', or the file ', h('code', {}, 'api-token'), ' in its data directory (', h('code', {}, 'spectask serve'),
      ' logs where).']
    : 'This server does not require a token from this address; you can go straight to the board.'),
  h('label', {}, 'API token', h('input', { type: 'password', name: 'token', required: true, autocomplete: 'current-password', 'aria-describedby': 'login-error' })),
  error,
  h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Sign in'),
    boot.token_required ? null : h('a', { href: '/' }, 'Go to the board')));
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  error.textContent = '';
  try {
    await api.post('/ui/login', { token: new FormData(form).get('token') });
    location.assign(next());
  } catch (err) {
    error.textContent = err.status === 401 ? 'That token is not this server\'s.' : err.message;
  }
});
replace(main, form);
form.querySelector('input').focus();
document.body.dataset.ready = 'true';
