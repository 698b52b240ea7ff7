// The task's review view: mount(container, ctx) renders it (see task.js for ctx).

import { h, replace } from './dom.js';

export async function mount(container, ctx) {
  replace(container, h('p', { class: 'empty' }, 'The review view is not built yet (task ' + ctx.taskId + ').'));
}
