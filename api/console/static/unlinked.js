// Footage linked to no case the principal may see (GET /v1/evidence?unlinked=true): without
// this view such an item could not be reached from the case list at all.

import {api} from './api.js';
import {h, table} from './dom.js';
import {labelBadge, t, when} from './i18n.js';
import {mediaStatus} from './media.js';

const PAGE = 100;

export async function renderUnlinked(main, _params, ctx) {
  main.append(h('h1', null, t('unlinked.title')), h('p', {class: 'help'}, t('unlinked.help')));
  const rows = [];
  const body = h('tbody');
  const count = h('p', {class: 'count', 'aria-live': 'polite', id: 'unlinked-count'});
  const more = h('button', {type: 'button', class: 'secondary', id: 'unlinked-more', hidden: true}, t('unlinked.more'));
  let cursor = null;
  const load = async () => {
    const q = new URLSearchParams({unlinked: 'true', limit: String(PAGE)});
    if (cursor) q.set('cursor', cursor);
    const page = await api(`/v1/evidence?${q}`);
    if (!ctx.alive()) return;
    for (const e of page.items) {
      const what = `${e.device_id || '—'} · ${e.officer_id || '—'}`;
      const row = h('tr', {'data-evidence': e.id},
        h('td', null, h('code', null, e.id.slice(0, 8))),
        h('td', null, e.file_name || '—'),
        h('td', null, e.device_id || '—'),
        h('td', null, e.officer_id || '—'),
        h('td', null, when(e.recorded_at)),
        h('td', null, when(e.acquired_at)),
        h('td', null, labelBadge(e.label)),
        h('td', null, mediaStatus(e.media_status)),
        h('td', {class: 'row-actions'}, h('a', {href: `#/evidence/${e.id}`, class: 'button small',
          'aria-label': t('case.open.aria', {what})}, t('case.open'))));
      rows.push(row);
      body.append(row);
    }
    cursor = page.next_cursor;
    more.hidden = cursor === null;
    count.textContent = t('unlinked.count', {count: rows.length});
  };
  more.addEventListener('click', async () => {
    more.disabled = true;
    try {
      await load();
    } finally {
      more.disabled = false;
    }
  });
  await load();
  if (!ctx.alive()) return;
  if (!rows.length) {
    main.append(h('p', {class: 'notice', id: 'unlinked-none'}, t('unlinked.none')));
    return;
  }
  const tbl = table(t('unlinked.caption'), [t('evidence.id'), t('field.file'), t('field.device'),
    t('field.officer'), t('field.recorded'), t('field.acquired'), t('field.label'), t('field.media'),
    t('field.actions')], []);
  tbl.querySelector('table').id = 'unlinked-table';
  tbl.querySelector('tbody').replaceWith(body);
  main.append(count, tbl, h('p', {class: 'actions'}, more));
}
