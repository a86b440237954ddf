// The redaction editor: draw and move boxes on the proxy at a time, set ranges, accept
// suggestions, preview, submit a spec (docs/redaction.md) and follow its job.
//
// The canvas over the player has the ORIGINAL's upright size as its pixel size (width/height
// attributes; CSS only stretches it over the video), so what is drawn is already in the spec's
// coordinates. Each drawn box is a keyframe of the selected track at the player's current time;
// between keyframes the preview moves boxes linearly, as the renderer does. Dragging inside a
// box shown at the current time moves it instead (Shift+drag always draws): the moved box is a
// keyframe of its track at that time. A track with one keyframe is submitted as a box standing
// still to the recording's end.

import {ApiError, api, apiBlob, me} from './api.js';
import {clear, h} from './dom.js';
import {t} from './i18n.js';
import {durationMs, rendition} from './media.js';

const REQUESTERS = ['reviewer', 'legal_reviewer'];
const EFFECTS = ['blur', 'pixelate', 'solid'];
const MIN_BOX = 8;

export async function renderRedact(main, [id], ctx) {
  main.append(h('h1', null, t('redact.title', {id: id.slice(0, 8)})));
  const [d, who] = await Promise.all([api(`/v1/evidence/${encodeURIComponent(id)}`), me()]);
  if (!ctx.alive()) return;
  const proxy = rendition(d, 'proxy');
  const size = uprightSize(d);
  if (!who.roles.some((r) => REQUESTERS.includes(r)) || !who.may.includes('stream') || !proxy || !size) {
    main.append(h('p', {class: 'notice', id: 'redact-unavailable'}, t('redact.unavailable')));
    return;
  }
  const state = {id, duration: durationMs(d) || 0, tracks: [], selected: -1, frame: [], mute: [], tone: [], marks: {}};
  const video = h('video', {controls: true, preload: 'auto', playsinline: true, id: 'redact-video', 'aria-label': t('redact.video.aria')});
  const canvas = h('canvas', {id: 'redact-canvas', width: size[0], height: size[1], 'aria-label': t('redact.canvas.aria')});
  const note = h('p', {class: 'help', 'aria-live': 'polite', id: 'redact-note'}, t('loading'));
  const lists = h('div', {class: 'redact-lists'});
  const result = h('div', {id: 'redact-result', 'aria-live': 'polite'});
  const effect = h('select', {id: 'redact-effect'}, EFFECTS.map((e) => h('option', {value: e}, t(`redact.effect.${e}`))));
  const redraw = () => draw(canvas, state, video.currentTime * 1000);
  const relist = () => {
    clear(lists).append(trackList(state, relist, redraw), rangeList(state, 'frame', relist), rangeList(state, 'mute', relist), rangeList(state, 'tone', relist));
    redraw();
  };
  main.append(
    h('p', {class: 'help'}, t('redact.help')),
    h('div', {class: 'redact-stage'}, video, canvas), note,
    h('p', {class: 'actions'},
      button('redact-new-track', t('redact.track.new'), () => {
        state.tracks.push({label: t('redact.track.name', {n: state.tracks.length + 1}), effect: 'blur', keyframes: []});
        state.selected = state.tracks.length - 1;
        relist();
      }),
      markButtons(state, video, 'frame', relist), markButtons(state, video, 'mute', relist), markButtons(state, video, 'tone', relist),
      button('redact-suggest', t('redact.suggest'), (b) => suggestions(state, b, note, relist))),
    lists,
    h('p', {class: 'actions'}, h('label', null, t('redact.effect'), ' ', effect),
      button('redact-submit', t('redact.submit'), (b) => submit(state, effect.value, b, result))),
    result);
  drawing(canvas, state, video, relist);
  video.addEventListener('timeupdate', redraw);
  video.addEventListener('seeked', redraw);
  relist();
  try {
    const blob = await apiBlob(proxy.content);
    if (!ctx.alive()) return;
    video.src = ctx.track(URL.createObjectURL(blob));
    video.dataset.loaded = '1';
    note.textContent = t('redact.ready');
  } catch (err) {
    note.textContent = t('evidence.loadfailed', {detail: err.message});
  }
}

function uprightSize(d) {
  const p = d.probe || {};
  if (!(p.width > 0 && p.height > 0)) return null;
  return p.rotation === 90 || p.rotation === 270 ? [p.height, p.width] : [p.width, p.height];
}

function button(id, text, fn) {
  const b = h('button', {type: 'button', class: 'secondary', id}, text);
  b.addEventListener('click', () => fn(b));
  return b;
}

function nowMs(video, state) {
  return Math.max(0, Math.min(state.duration || Infinity, Math.round(video.currentTime * 1000)));
}

function markButtons(state, video, kind, relist) {
  return [
    button(`redact-${kind}-start`, t(`redact.${kind}.start`), () => {
      state.marks[kind] = nowMs(video, state);
    }),
    button(`redact-${kind}-end`, t(`redact.${kind}.end`), () => {
      const start = state.marks[kind];
      const end = nowMs(video, state);
      if (start === undefined || end <= start) return;
      state[kind] = merge([...state[kind], {start_ms: start, end_ms: end}]);
      delete state.marks[kind];
      relist();
    }),
  ];
}

/** Sorted, disjoint ranges (the spec refuses overlapping ones): overlapping ones merged. */
function merge(ranges) {
  const out = [];
  for (const r of [...ranges].sort((a, b) => a.start_ms - b.start_ms)) {
    const last = out[out.length - 1];
    if (last && r.start_ms <= last.end_ms) last.end_ms = Math.max(last.end_ms, r.end_ms);
    else out.push({...r});
  }
  return out;
}

function drawing(canvas, state, video, relist) {
  let start = null;
  let moving = null; // {track, base}: dragging the box of a track shown at the current time
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return [Math.round((e.clientX - r.left) * canvas.width / r.width), Math.round((e.clientY - r.top) * canvas.height / r.height)];
  };
  const moved = (p) => {
    const b = moving.base;
    const x = Math.max(0, Math.min(canvas.width - b.w, b.x + p[0] - start[0]));
    const y = Math.max(0, Math.min(canvas.height - b.h, b.y + p[1] - start[1]));
    return {x, y, w: b.w, h: b.h};
  };
  canvas.addEventListener('pointerdown', (e) => {
    start = at(e);
    const i = e.shiftKey ? -1 : hit(state, video.currentTime * 1000, start);
    moving = null;
    if (i >= 0) {
      const b = boxAt(state.tracks[i], video.currentTime * 1000, state.duration);
      moving = {track: i, base: {x: Math.round(b.x), y: Math.round(b.y), w: Math.round(b.w), h: Math.round(b.h)}};
      state.selected = i;
    }
    canvas.setPointerCapture(e.pointerId);
    video.pause();
  });
  canvas.addEventListener('pointermove', (e) => {
    if (!start) return;
    draw(canvas, state, video.currentTime * 1000, moving ? moved(at(e)) : box(start, at(e), canvas), moving?.track);
  });
  canvas.addEventListener('pointerup', (e) => {
    if (!start) return;
    const end = at(e);
    const b = moving ? moved(end) : box(start, end, canvas);
    const wasMoving = moving;
    start = null;
    moving = null;
    if (wasMoving && b.x === wasMoving.base.x && b.y === wasMoving.base.y) return relist(); // a click selects
    if (!wasMoving && (b.w < MIN_BOX || b.h < MIN_BOX)) return relist();
    if (!wasMoving && state.selected < 0) {
      state.tracks.push({label: t('redact.track.name', {n: state.tracks.length + 1}), effect: 'blur', keyframes: []});
      state.selected = state.tracks.length - 1;
    }
    const track = state.tracks[wasMoving ? wasMoving.track : state.selected];
    const t_ms = nowMs(video, state);
    track.keyframes = [...track.keyframes.filter((k) => k.t_ms !== t_ms), {t_ms, ...b}].sort((a, c) => a.t_ms - c.t_ms);
    relist();
  });
}

/** The topmost track whose box at `ms` holds point `p` (-1 for none). */
function hit(state, ms, [x, y]) {
  for (let i = state.tracks.length - 1; i >= 0; i--) {
    const b = boxAt(state.tracks[i], ms, state.duration);
    if (b && x >= b.x && x <= b.x + b.w && y >= b.y && y <= b.y + b.h) return i;
  }
  return -1;
}

function box([x0, y0], [x1, y1], canvas) {
  const clamp = (v, hi) => Math.max(0, Math.min(hi, v));
  const x = clamp(Math.min(x0, x1), canvas.width), y = clamp(Math.min(y0, y1), canvas.height);
  return {x, y, w: clamp(Math.max(x0, x1), canvas.width) - x, h: clamp(Math.max(y0, y1), canvas.height) - y};
}

/** The box of a track at `ms`: linear between keyframes (still after a lone keyframe). */
function boxAt(track, ms, end) {
  const k = track.keyframes;
  if (!k.length || ms < k[0].t_ms) return null;
  if (k.length === 1) return ms <= end ? k[0] : null;
  for (let i = 1; i < k.length; i++) {
    const a = k[i - 1], b = k[i];
    if (ms <= b.t_ms) {
      const u = (ms - a.t_ms) / (b.t_ms - a.t_ms);
      return {x: a.x + (b.x - a.x) * u, y: a.y + (b.y - a.y) * u, w: a.w + (b.w - a.w) * u, h: a.h + (b.h - a.h) * u};
    }
  }
  return null;
}

function draw(canvas, state, ms, draft = null, hidden = -1) {
  const g = canvas.getContext('2d');
  g.clearRect(0, 0, canvas.width, canvas.height);
  g.lineWidth = Math.max(2, canvas.width / 320);
  const inRange = state.frame.some((r) => ms >= r.start_ms && ms <= r.end_ms);
  if (inRange) {
    g.fillStyle = 'rgba(0, 0, 0, 0.45)';
    g.fillRect(0, 0, canvas.width, canvas.height);
  }
  state.tracks.forEach((track, i) => {
    const b = i === hidden ? null : boxAt(track, ms, state.duration);
    if (!b) return;
    g.fillStyle = 'rgba(220, 40, 40, 0.35)';
    g.strokeStyle = i === state.selected ? '#ffd200' : '#ff3b3b';
    g.fillRect(b.x, b.y, b.w, b.h);
    g.strokeRect(b.x, b.y, b.w, b.h);
  });
  if (draft) {
    g.strokeStyle = '#ffd200';
    g.strokeRect(draft.x, draft.y, draft.w, draft.h);
  }
}

function trackList(state, relist, redraw) {
  const items = state.tracks.map((track, i) => h('li', {'data-track': String(i), class: i === state.selected ? 'selected' : null},
    h('label', null, h('input', {type: 'radio', name: 'redact-track', checked: i === state.selected, onchange: () => {
      state.selected = i;
      relist();
    }}), ' ', track.label),
    ' ', h('select', {'aria-label': t('redact.effect'), onchange: (e) => {
      track.effect = e.target.value;
      redraw();
    }}, EFFECTS.map((e) => h('option', {value: e, selected: e === track.effect}, t(`redact.effect.${e}`)))),
    ' ', h('span', {class: 'sub'}, t('redact.track.keyframes', {n: track.keyframes.length})),
    ' ', button(`redact-drop-${i}`, t('redact.drop'), () => {
      state.tracks.splice(i, 1);
      state.selected = Math.min(state.selected, state.tracks.length - 1);
      relist();
    })));
  return h('section', null, h('h2', null, t('redact.tracks')), items.length ? h('ol', {id: 'redact-tracks'}, items) : h('p', {class: 'help'}, t('redact.track.none')));
}

function rangeList(state, kind, relist) {
  const items = state[kind].map((r, i) => h('li', null, `${(r.start_ms / 1000).toFixed(2)} s – ${(r.end_ms / 1000).toFixed(2)} s `,
    button(`redact-${kind}-drop-${i}`, t('redact.drop'), () => {
      state[kind].splice(i, 1);
      relist();
    })));
  return h('section', null, h('h2', null, t(`redact.${kind}.title`)), h('ul', {id: `redact-${kind}-ranges`}, items));
}

function spec(state, effect) {
  const boxes = state.tracks.filter((tr) => tr.keyframes.length).map((tr) => {
    let keyframes = tr.keyframes;
    if (keyframes.length === 1) {
      const k = keyframes[0];
      const end = Math.max(state.duration, k.t_ms + 1);
      keyframes = [k, {...k, t_ms: end}];
    }
    return {label: tr.label, effect: tr.effect, keyframes: keyframes.map((k) => ({t_ms: k.t_ms, x: Math.round(k.x), y: Math.round(k.y), w: Math.round(k.w), h: Math.round(k.h)}))};
  });
  const out = {version: 1, effect, boxes, frame_ranges: state.frame, mute_ranges: state.mute};
  if (state.tone.length) out.tone_ranges = state.tone;
  return out;
}

async function poll(path, done) {
  for (;;) {
    const job = await api(path);
    if (job.status === 'done' || job.status === 'failed') return done(job);
    await new Promise((r) => setTimeout(r, 700));
  }
}

async function submit(state, effect, b, result) {
  b.disabled = true;
  clear(result).append(h('p', {class: 'help'}, t('redact.submitting')));
  try {
    const job = await api(`/v1/evidence/${encodeURIComponent(state.id)}/redactions`, {method: 'POST', json: spec(state, effect)});
    result.dataset.job = String(job.id);
    await poll(`/v1/redactions/${job.id}`, (j) => {
      result.dataset.state = j.status;
      clear(result).append(j.status === 'done'
        ? h('p', {class: 'notice'}, t('redact.done', {id: String(j.rendition_id).slice(0, 8)}), ' ', h('code', null, j.spec_sha256.slice(0, 16) + '…'))
        : h('p', {class: 'error'}, t('redact.failed', {detail: j.error || ''})));
    });
  } catch (err) {
    result.dataset.state = 'refused';
    const errors = err instanceof ApiError ? err.problem?.errors || [] : [];
    clear(result).append(h('p', {class: 'error'}, t('redact.refused', {detail: err.message})),
      errors.length ? h('ul', {id: 'redact-errors'}, errors.map((e) => h('li', null, h('code', null, e.field), ' ', e.detail))) : null);
  } finally {
    b.disabled = false;
  }
}

async function suggestions(state, b, note, relist) {
  b.disabled = true;
  note.textContent = t('redact.suggesting');
  try {
    const job = await api(`/v1/evidence/${encodeURIComponent(state.id)}/redaction-suggestions`, {method: 'POST'});
    await poll(`/v1/redaction-suggestions/${job.id}`, (j) => {
      for (const s of j.boxes || []) state.tracks.push({label: s.label, effect: s.effect, keyframes: s.keyframes});
      note.textContent = j.status === 'done' ? t('redact.suggested', {n: (j.boxes || []).length}) : t('redact.failed', {detail: j.error || ''});
      relist();
    });
  } catch (err) {
    note.textContent = t('redact.nosuggest', {detail: err.message});
  } finally {
    b.disabled = false;
  }
}
