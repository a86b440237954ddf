// Small DOM helpers. Text is always set as text (never parsed as HTML), and no style
// attribute is ever written: the Content-Security-Policy forbids inline styles.

/** Create an element: h('a', {href: '#/x', class: 'y', onclick: fn}, 'text', child, ...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'style') {
      throw new Error('inline styles are not allowed');
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

/** Append children (nodes, strings, numbers, nested arrays; null and false are skipped). */
export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** A table: headers (strings) and rows (arrays of cells: nodes or text). */
export function table(caption, headers, rows, cls = 'data') {
  return h('div', {class: 'table-wrap'},
    h('table', {class: cls},
      caption ? h('caption', null, caption) : null,
      h('thead', null, h('tr', null, headers.map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', null, rows)));
}

/** A definition list from [term, value] pairs. */
export function dl(pairs, cls = 'meta') {
  return h('dl', {class: cls}, pairs.map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}

/** Offer bytes or a Blob as a download named `name`. */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h('a', {href: url, download: name, hidden: true});
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

/** A shortened hex string with the full value in a title. */
export function shortHex(hex, n = 12) {
  if (!hex) return '—';
  return h('code', {title: hex, class: 'hex'}, hex.length > n ? hex.slice(0, n) + '…' : hex);
}

/** Run `fn` over `items` with at most `limit` at a time. */
export async function eachLimited(items, limit, fn) {
  const queue = [...items];
  const workers = Array.from({length: Math.min(limit, queue.length)}, async () => {
    while (queue.length) await fn(queue.shift());
  });
  await Promise.all(workers);
}
