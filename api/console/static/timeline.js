// A custody timeline: the ledger entries about one evidence item, oldest first, as a table.
// Entries come from the case's integrity report (GET /v1/cases/{id}/integrity-report), which
// leaves out every entry that also names something the reviewer may not see.

import {api} from './api.js';
import {h, shortHex, table} from './dom.js';
import {labelBadge, reason, t, tv, when} from './i18n.js';

const DETAIL_KEYS = ['action', 'rendition', 'target_kind', 'reason', 'dock', 'status', 'level', 'cause'];
const ORDER = ['public', 'internal', 'confidential', 'secret', 'top_secret'];
const HASH_KEYS = ['sha256', 'output_sha256'];

function details(entry) {
  const f = entry.fields || {};
  const out = [];
  for (const key of DETAIL_KEYS) {
    const v = f[key];
    if (typeof v === 'string' || typeof v === 'number') {
      const text = key === 'reason' ? reason(String(v)) : tv(`tl.${key}`, v);
      out.push(h('span', {class: 'kv'}, `${tv('tl.key', key)}: ${text}`));
    }
  }
  if (typeof f.session_seconds === 'number') {  // one access for a whole playback session
    out.push(h('span', {class: 'kv session'}, t('tl.session', {seconds: f.session_seconds})));
  }
  if (f.label && typeof f.label === 'object') {  // a label change: previous → new
    const change = [`${tv('tl.key', 'label')}: `];
    if (f.previous && typeof f.previous === 'object') change.push(labelBadge(f.previous), ' → ');
    change.push(labelBadge(f.label));
    out.push(h('span', {class: 'kv'}, ...change));
  }
  if (entry.kind === 'unserved' && typeof f.entry === 'number') {  // names an earlier entry
    out.push(h('span', {class: 'kv'}, t('tl.unserved', {index: f.entry, kind: tv('kind', f.entry_kind)})));
  }
  for (const key of HASH_KEYS) {
    if (typeof f[key] === 'string') out.push(h('span', {class: 'kv'}, `${tv('tl.key', key)}: `, shortHex(f[key])));
  }
  return out.length ? out : '—';
}

export function timelineTable(entries, caption) {
  if (!entries || !entries.length) return h('p', {class: 'notice'}, t('tl.none'));
  const rows = entries.map((e) => h('tr', {class: `tl-${e.kind}`},
    h('td', {class: 'num'}, String(e.index)),
    h('td', null, when(e.time)),
    h('td', null, h('span', {class: `badge kind-${e.kind}`}, tv('kind', e.kind))),
    h('td', null, e.opened?.principal || e.opened?.by || '—'),
    h('td', null, e.opened?.case || '—'),
    h('td', {class: 'details'}, details(e))));
  return table(caption, [t('tl.index'), t('tl.time'), t('tl.event'), t('tl.by'), t('tl.case'),
    t('tl.details')], rows, 'data timeline');
}

/** The custody timelines of a case's items, by evidence id (one report per case, cached). */
export function timelineSource(caseId) {
  let pending = null;
  return () => {
    if (pending === null) {
      pending = api(`/v1/cases/${encodeURIComponent(caseId)}/integrity-report?mode=scrub`).then((body) => {
        const map = new Map();
        for (const item of body.report.evidence) map.set(item.evidence_id, item.timeline || []);
        return map;
      });
      pending.catch(() => {
        pending = null;
      });
    }
    return pending;
  };
}

/** Whether label `to` is above `from` (level up, or caveats added). */
function above(to, from) {
  const level = ORDER.indexOf(to.level) - ORDER.indexOf(from.level);
  const added = (to.caveats || []).some((c) => !(from.caveats || []).includes(c));
  return level > 0 || (level === 0 && added);
}

/** Notices for the links that raised the item's effective label (`labelled` entries with
 * `effective` and cause `linked`): readers below the new label lost the item in every case. */
export function raisedNotices(entries) {
  const out = [];
  for (const e of entries || []) {
    const f = e.fields || {};
    if (e.kind !== 'labelled' || !f.effective || f.cause !== 'linked') continue;
    if (!f.label || !f.previous || !above(f.label, f.previous)) continue;
    out.push(h('p', {class: 'notice label-raised', role: 'status'},
      t('tl.raised.before', {case: e.opened?.case || '—', index: e.index}), ' ', labelBadge(f.previous),
      ' → ', labelBadge(f.label), ' ', t('tl.raised.after')));
  }
  return out;
}
