// The cases the reviewer may see, with a client-side filter.

import {api} from './api.js';
import {h, table} from './dom.js';
import {labelBadge, t, tv, when} from './i18n.js';

export async function renderCases(main, _params, ctx) {
  main.append(h('h1', null, t('cases.title')), h('p', {class: 'help'}, t('cases.help')));
  const body = await api('/v1/cases');
  if (!ctx.alive()) return;
  const items = body.items;
  const search = h('input', {id: 'case-search', type: 'search', autocomplete: 'off', 'aria-controls': 'case-table'});
  const count = h('p', {class: 'count', 'aria-live': 'polite', id: 'case-count'});
  const rows = items.map((c) => {
    const row = h('tr', {'data-case': c.id},
      h('td', null, h('a', {href: `#/cases/${encodeURIComponent(c.id)}`}, c.id)),
      h('td', {class: 'case-title'}, c.title || '—'),
      h('td', null, labelBadge(c.label)),
      h('td', null, when(c.created_at)),
      h('td', null, when(c.updated_at)));
    const words = [c.id, c.title || '', tv('level', c.label.level), c.label.level, ...c.label.caveats,
      ...c.label.caveats.map((x) => tv('caveat', x))];
    row.dataset.search = words.join(' ').toLowerCase();
    return row;
  });
  const update = () => {
    const q = search.value.trim().toLowerCase();
    let shown = 0;
    for (const row of rows) {
      row.hidden = q !== '' && !row.dataset.search.includes(q);
      if (!row.hidden) shown += 1;
    }
    count.textContent = t('cases.count', {shown, total: rows.length});
  };
  search.addEventListener('input', update);
  main.append(h('div', {class: 'toolbar'},
    h('label', {for: 'case-search'}, t('cases.search')), search));
  if (!items.length) {
    main.append(h('p', {class: 'notice'}, t('cases.none')));
    return;
  }
  const tbl = table(t('cases.caption'),
    [t('cases.id'), t('cases.name'), t('field.label'), t('cases.created'), t('cases.updated')], rows);
  tbl.querySelector('table').id = 'case-table';
  main.append(count, tbl);
  update();
}
