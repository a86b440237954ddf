// One evidence item: the proxy in a player, its metadata, proofs and its custody timeline.
//
// Playback: <video src> cannot send an Authorization header and the token is never put in a
// cookie or a URL, so the proxy is fetched with the token (one audited `stream` read) into a
// Blob and played from an object URL. Proxies are small (re-encoded for the browser); one
// over AUTO_LOAD_BYTES is loaded only when the reviewer asks for it.
//
// The player and the buttons are offered only when the principal's roles grant what they need
// (GET /v1/me `may`: stream, download, verify): an admin sees the metadata and why there is no
// player, not an empty player and a button that cannot work. Each request is still decided.

import {ApiError, api, apiBlob, apiText, me} from './api.js';
import {clear, dl, h, saveBlob, shortHex} from './dom.js';
import {bytes, duration, labelBadge, t, tv, when} from './i18n.js';
import {durationMs, integrityStatus, mediaStatus, posterImage, rendition} from './media.js';
import {raisedNotices, timelineSource, timelineTable} from './timeline.js';

const AUTO_LOAD_BYTES = 256 * 1024 * 1024;

export async function renderEvidence(main, [id], ctx) {
  const heading = h('h1', null, t('evidence.title', {id: id.slice(0, 8)}));
  main.append(heading);
  const [d, who] = await Promise.all([api(`/v1/evidence/${encodeURIComponent(id)}`), me()]);
  if (!ctx.alive()) return;
  const may = new Set(who.may);
  const back = d.cases.map((c) => h('a', {href: `#/cases/${encodeURIComponent(c)}`}, c));
  main.append(
    h('p', {class: 'crumbs'}, back.length ? [t('evidence.cases'), ' ', back.flatMap((a, i) => (i ? [', ', a] : [a]))] : null),
    h('div', {class: 'evidence-layout'}, player(d, ctx, may), h('section', {'aria-labelledby': 'meta-h'},
      h('h2', {id: 'meta-h'}, t('evidence.meta')), metadata(d), downloads(d, may))),
    h('section', {'aria-labelledby': 'tl-h', id: 'timeline'},
      h('h2', {id: 'tl-h'}, t('evidence.timeline')), timeline(d, ctx)));
}

function metadata(d) {
  return dl([
    [t('evidence.id'), h('code', null, d.id)],
    ['SHA-256', shortHex(d.sha256, 64)],
    [t('field.size'), bytes(d.size)],
    [t('field.file'), d.file_name || '—'],
    [t('field.device'), d.device_id || '—'],
    [t('field.officer'), d.officer_id || '—'],
    [t('field.dock'), d.dock_id || '—'],
    [t('field.recorded'), when(d.recorded_at)],
    [t('field.acquired'), when(d.acquired_at)],
    [t('field.duration'), duration(durationMs(d))],
    [t('field.label'), labelBadge(d.label)],
    [t('field.media'), [mediaStatus(d.media_status), d.media_reason ? h('span', {class: 'sub'}, d.media_reason) : null]],
    [t('field.integrity'), integrityStatus(d)],
    [t('field.ledger'), String(d.ledger_index)],
  ]);
}

function player(d, ctx, may) {
  const section = h('section', {'aria-labelledby': 'player-h', class: 'player'}, h('h2', {id: 'player-h'}, t('evidence.player')));
  const proxy = rendition(d, 'proxy');
  const note = h('p', {class: 'help', 'aria-live': 'polite'});
  section.append(note);
  if (!may.has('stream')) {
    note.id = 'no-player';
    note.textContent = t('evidence.nostream');
    return section;
  }
  if (!proxy) {
    note.textContent = d.media_status === 'ready' ? t('evidence.noproxy') : t('evidence.notready', {status: tv('media', d.media_status)});
    posterImage(d, ctx, t('evidence.poster.alt'), 'poster').then((img) => img && section.append(img), () => {});
    return section;
  }
  const video = h('video', {controls: true, preload: 'auto', playsinline: true, id: 'proxy-video',
    'aria-label': t('evidence.video.aria', {id: d.id.slice(0, 8)})});
  section.append(video);
  posterImage(d, ctx, '', 'poster').then((img) => {
    if (img && !video.src) video.poster = img.src;
  }, () => {});
  const load = async () => {
    note.textContent = t('evidence.loading', {size: bytes(proxy.size)});
    try {
      const blob = await apiBlob(proxy.content);
      if (!ctx.alive()) return;
      video.src = ctx.track(URL.createObjectURL(blob));
      video.dataset.loaded = '1';
      note.textContent = t('evidence.loaded', {size: bytes(proxy.size)});
    } catch (err) {
      note.textContent = t('evidence.loadfailed', {detail: err.message});
    }
  };
  if (proxy.size <= AUTO_LOAD_BYTES) {
    load();
  } else {
    const button = h('button', {type: 'button', class: 'primary'}, t('evidence.loadbig', {size: bytes(proxy.size)}));
    button.addEventListener('click', () => {
      button.remove();
      load();
    });
    section.append(button);
  }
  return section;
}

function downloads(d, may) {
  const msg = h('p', {class: 'help', 'aria-live': 'polite'});
  const run = async (button, fn) => {
    button.disabled = true;
    msg.textContent = '';
    try {
      await fn();
    } catch (err) {
      msg.textContent = err instanceof ApiError && err.status === 403 ? `${t('evidence.denied')} ${err.message}` : t('error.generic', {status: err.status ?? '?', detail: err.message});
    } finally {
      button.disabled = false;
    }
  };
  const proof = h('button', {type: 'button', class: 'secondary', id: 'download-proof'}, t('evidence.proof'));
  proof.addEventListener('click', () => run(proof, async () => {
    const text = await apiText(`/v1/evidence/${d.id}/proof`, {accept: 'text/plain'});
    saveBlob(new Blob([text], {type: 'text/plain'}), `${d.id}.tlog-proof`);
  }));
  const original = h('button', {type: 'button', class: 'secondary', id: 'download-original'}, t('evidence.original'));
  original.addEventListener('click', () => run(original, async () => {
    const blob = await apiBlob(`/v1/evidence/${d.id}/content?download=true`);
    saveBlob(blob, d.extension ? `${d.sha256}.${d.extension}` : d.sha256);
  }));
  const redact = h('a', {href: `#/evidence/${encodeURIComponent(d.id)}/redact`, class: 'button secondary', id: 'redact-link'}, t('evidence.redact'));
  const offered = [may.has('verify') ? proof : null, may.has('download') ? original : null, may.has('stream') ? redact : null].filter(Boolean);
  if (!offered.length) msg.textContent = t('evidence.nodownload');
  return h('div', {class: 'downloads'}, offered.length ? h('p', {class: 'actions'}, offered) : null, msg);
}

function timeline(d, ctx) {
  const holder = h('div', {class: 'tl-holder'});
  if (!d.cases.length) {
    holder.append(h('p', {class: 'notice'}, t('evidence.nocase')), h('pre', {class: 'cmd'}, `evault audit --evidence ${d.id}`));
    return holder;
  }
  holder.append(h('p', {class: 'help'}, t('loading')));
  timelineSource(d.cases[0])().then((map) => {
    if (!ctx.alive()) return;
    const entries = map.get(d.id) || [];
    clear(holder).append(...raisedNotices(entries), timelineTable(entries, t('evidence.timeline.caption', {case: d.cases[0]})));
  }, (err) => {
    if (ctx.alive()) clear(holder).append(h('p', {class: 'error'}, t('error.generic', {status: err.status ?? '?', detail: err.message})));
  });
  return holder;
}
