// One case: its evidence (with posters, durations, media and integrity status) and, per item,
// its custody timeline from the ledger.

import {api, me} from './api.js';
import {clear, dl, eachLimited, h, table} from './dom.js';
import {duration, labelBadge, t, when} from './i18n.js';
import {durationMs, integrityStatus, mediaStatus, posterImage} from './media.js';
import {timelineSource, timelineTable} from './timeline.js';

export async function renderCase(main, [caseId], ctx) {
  const heading = h('h1', null, t('case.title', {id: caseId}));
  main.append(heading);
  const [c, who] = await Promise.all([api(`/v1/cases/${encodeURIComponent(caseId)}`), me()]);
  if (!ctx.alive()) return;
  const posters = who.may.includes('stream'); // a poster is a rendition: streamed content
  heading.textContent = c.title || c.id;
  const integrityHref = `#/cases/${encodeURIComponent(c.id)}/integrity`;
  main.append(
    dl([
      [t('case.id'), h('code', null, c.id)],
      [t('field.label'), labelBadge(c.label)],
      [t('case.count'), String(c.evidence_count)],
      [t('cases.updated'), when(c.updated_at)],
    ]),
    h('p', {class: 'actions'}, h('a', {class: 'button', href: integrityHref}, t('case.integrity'))));
  if (c.evidence_count > c.evidence.length) {
    main.append(h('p', {class: 'notice'}, t('case.more', {shown: c.evidence.length, total: c.evidence_count})));
  }
  main.append(h('h2', {id: 'evidence-heading'}, t('case.evidence')));
  if (!c.evidence.length) {
    main.append(h('p', {class: 'notice'}, t('case.noevidence')));
    return;
  }
  const timelines = timelineSource(c.id);
  const rows = [];
  const cells = new Map();
  for (const e of c.evidence) {
    const thumb = h('td', {class: 'thumbcell'}, '—');
    const dur = h('td', {class: 'num'}, '…');
    const integ = h('td', null, '…');
    const tlRow = h('tr', {class: 'timeline-row', hidden: true, id: `tl-${e.id}`},
      h('td', {colspan: 9}, h('div', {class: 'tl-holder'})));
    const toggle = h('button', {type: 'button', class: 'secondary small', 'aria-expanded': 'false',
      'aria-controls': `tl-${e.id}`, 'data-timeline': e.id}, t('case.timeline'));
    toggle.addEventListener('click', () => showTimeline(e.id, toggle, tlRow, timelines, ctx));
    const label = `${e.device_id || '—'} · ${e.officer_id || '—'}`;
    rows.push(h('tr', {'data-evidence': e.id},
      thumb,
      h('td', null, e.device_id || '—'),
      h('td', null, e.officer_id || '—'),
      h('td', null, when(e.recorded_at)),
      dur,
      h('td', null, labelBadge(e.label)),
      h('td', null, mediaStatus(e.media_status)),
      integ,
      h('td', {class: 'row-actions'},
        h('a', {href: `#/evidence/${e.id}`, class: 'button small', 'aria-label': t('case.open.aria', {what: label})}, t('case.open')),
        toggle)), tlRow);
    cells.set(e.id, {thumb, dur, integ, label});
  }
  main.append(table(t('case.evidence.caption', {count: c.evidence.length}), [
    t('field.poster'), t('field.device'), t('field.officer'), t('field.recorded'),
    t('field.duration'), t('field.label'), t('field.media'), t('field.integrity'), t('field.actions'),
  ], rows, 'data evidence'));
  await eachLimited(c.evidence, 4, async (e) => {
    if (!ctx.alive()) return;
    const cell = cells.get(e.id);
    let detail;
    try {
      detail = await api(`/v1/evidence/${e.id}`);
    } catch (err) {
      cell.integ.textContent = '—';
      cell.dur.textContent = '—';
      return;
    }
    if (!ctx.alive()) return;
    cell.dur.textContent = duration(durationMs(detail));
    clear(cell.integ).append(integrityStatus(detail));
    if (!posters) return;
    try {
      const img = await posterImage(detail, ctx, t('case.poster.alt', {what: cell.label}));
      if (img && ctx.alive()) clear(cell.thumb).append(img);
    } catch (err) {
      cell.thumb.textContent = '—';
    }
  });
}

async function showTimeline(id, toggle, row, timelines, ctx) {
  const open = toggle.getAttribute('aria-expanded') === 'true';
  toggle.setAttribute('aria-expanded', String(!open));
  row.hidden = open;
  if (open) return;
  const holder = row.querySelector('.tl-holder');
  if (holder.dataset.loaded) return;
  clear(holder).append(h('p', {class: 'help'}, t('loading')));
  try {
    const map = await timelines();
    if (!ctx.alive()) return;
    clear(holder).append(timelineTable(map.get(id) || [], t('case.timeline.caption')));
    holder.dataset.loaded = '1';
  } catch (err) {
    clear(holder).append(h('p', {class: 'error'}, t('error.generic', {status: err.status ?? '?', detail: err.message})));
  }
}
