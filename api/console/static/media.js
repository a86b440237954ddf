// Evidence details shared by the case and evidence pages: status texts, posters, proxies.

import {apiBlob} from './api.js';
import {h} from './dom.js';
import {t, tv, when} from './i18n.js';

export function rendition(detail, kind) {
  return (detail?.renditions || []).find((r) => r.kind === kind) || null;
}

export function mediaStatus(status) {
  const cls = status === 'ready' ? 'ok' : status === 'unprocessable' ? 'bad' : 'warn';
  return h('span', {class: `badge ${cls}`}, tv('media', status));
}

/** The stored-content check: the last scrub's result, or that none was made yet. */
export function integrityStatus(detail) {
  if (!detail) return '…';
  if (detail.disposed_at) return h('span', {class: 'badge warn'}, t('integrity.disposed'));
  const ok = detail.integrity === 'ok';
  const badge = h('span', {class: `badge ${ok ? 'ok' : 'bad'}`}, tv('integrity', detail.integrity));
  const note = detail.last_scrub_at
    ? h('span', {class: 'sub'}, t('integrity.scrubbed'), ' ', when(detail.last_scrub_at))
    : h('span', {class: 'sub'}, t('integrity.unscrubbed'));
  return h('span', {class: 'stack'}, badge, note);
}

export function durationMs(detail) {
  const ms = detail?.probe?.duration_ms;
  return typeof ms === 'number' ? ms : null;
}

/** The poster as an <img> from a blob fetched with the token (null when there is none). */
export async function posterImage(detail, ctx, alt, cls = 'thumb') {
  const poster = rendition(detail, 'poster');
  if (!poster) return null;
  const url = ctx.track(URL.createObjectURL(await apiBlob(poster.content)));
  return h('img', {src: url, alt, class: cls, width: 160, height: 90, decoding: 'async'});
}
