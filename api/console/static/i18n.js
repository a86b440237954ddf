// Translations (zh by default, en by the switch), and times in the reviewer's local zone.

const dicts = {};
const KEY = 'evault.console.lang';
let lang = 'zh';

export async function loadLanguages() {
  for (const l of ['zh', 'en']) {
    const r = await fetch(`/console/static/i18n/${l}.json`, {cache: 'no-cache'});
    dicts[l] = await r.json();
  }
  let saved = null;
  try {
    saved = window.localStorage.getItem(KEY);
  } catch (e) {
    saved = null; // storage may be disabled: Chinese by default
  }
  lang = saved === 'en' ? 'en' : 'zh';
}

export function getLang() {
  return lang;
}

export function setLang(l) {
  lang = l === 'en' ? 'en' : 'zh';
  try {
    window.localStorage.setItem(KEY, lang);
  } catch (e) {
    // not kept across visits; fine
  }
}

/** The text for `key` in the current language, with {name} placeholders filled. */
export function t(key, params = {}) {
  const s = dicts[lang]?.[key] ?? dicts.zh?.[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (m, k) => (k in params ? String(params[k]) : m));
}

/** Whether `key` has a translation (for values such as ledger kinds that may be new). */
export function has(key) {
  return key in (dicts[lang] || {}) || key in (dicts.zh || {});
}

/** Translate `prefix.value` when known, else show the value itself. */
export function tv(prefix, value) {
  if (value === null || value === undefined || value === '') return '—';
  return has(`${prefix}.${value}`) ? t(`${prefix}.${value}`) : String(value);
}

// The service's denial reasons and hints (vault/access.py), English on the wire: each known
// form becomes a `reason.*` text in the current language; anything else is shown as sent.
const REASONS = [
  [/^role ([a-z_]+(?: or [a-z_]+)*) required for ([a-z_]+)$/, (m) => t('reason.role', {
    roles: m[1].split(' or ').map((r) => tv('role', r)).join(t('reason.or')), action: tv('action', m[2])})],
  [/^([a-z_]+) is limited to the recording officer$/, (m) => t('reason.own', {action: tv('action', m[1])})],
  [/^([a-z_]+) requires need-to-know: assignment to one of its cases$/, (m) => t('reason.ntk', {action: tv('action', m[1])})],
  [/^([a-z_]+) does not apply to a ([a-z_]+)$/, (m) => t('reason.kind', {action: tv('action', m[1]), kind: tv('target', m[2])})],
  [/^principal is inactive$/, () => t('reason.inactive')],
  [/^reading ledger entries requires role .+$/, () => t('reason.entries')],
  [/^Not found: no such (.+)$/, (m) => t('reason.notfound', {what: tv('target', m[1])})],
  // the real reasons of `denied` ledger entries (vault/policy/decide.py hidden_reason, absent)
  [/^clearance ([a-z_]+) below label ([a-z_+]+)$/, (m) => t('reason.below', {clearance: tv('level', m[1]), label: labelText(m[2])})],
  [/^caveat ([a-z_+]+) not held \(label ([a-z_+]+)\)$/, (m) => t('reason.caveat', {caveat: m[1].split('+').map((c) => tv('caveat', c)).join('、'), label: labelText(m[2])})],
  [/^not assigned to any of its cases, nor its recording officer$/, () => t('reason.unassigned.recording')],
  [/^not assigned to any of its cases$/, () => t('reason.unassigned')],
  [/^no role grants list$/, () => t('reason.norole')],
  [/^no such (.+)$/, (m) => t('reason.nosuch', {what: tv('target', m[1])})],
  [/^Not found$/, () => t('reason.notfound.any')],
];
const HINTS = [
  [/^admin manages principals and does not view footage: /, () => t('reason.hint.admin')],
  [/^ask an administrator for a principal with that role$/, () => t('reason.hint.role')],
  [/^ask an administrator to assign you \((`[^`]+`)\)$/, (m) => t('reason.hint.assign', {command: m[1]})],
];

function known(list, text) {
  for (const [re, fn] of list) {
    const m = re.exec(text);
    if (m) return fn(m);
  }
  return null;
}

/** A problem's detail in the current language when it is a known denial reason (and hint). */
export function reason(detail) {
  if (typeof detail !== 'string' || lang === 'en') return detail;
  const whole = known(REASONS, detail);
  if (whole !== null) return whole;
  for (let i = detail.indexOf(': '); i > 0; i = detail.indexOf(': ', i + 1)) {
    const head = known(REASONS, detail.slice(0, i));
    if (head === null) continue;
    const hint = known(HINTS, detail.slice(i + 2));
    return hint === null ? `${head}：${detail.slice(i + 2)}` : `${head}${t('reason.sep')}${hint}`;
  }
  return detail;
}

export function locale() {
  return lang === 'zh' ? 'zh-CN' : 'en-GB';
}

/** Fill every [data-i18n], [data-i18n-aria-label] and [data-i18n-placeholder] under root. */
export function applyStatic(root = document) {
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-aria-label]')) {
    el.setAttribute('aria-label', t(el.dataset.i18nAriaLabel));
  }
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) {
    el.setAttribute('placeholder', t(el.dataset.i18nPlaceholder));
  }
}

export function zoneName() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

const PARTS = {
  year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
  second: '2-digit', hourCycle: 'h23', timeZoneName: 'shortOffset',
};

/** Local date, time and zone of `d` as {date: 'YYYY-MM-DD', time: 'hh:mm:ss', zone: 'GMT+8'}. */
function local(d) {
  const p = {};
  for (const part of new Intl.DateTimeFormat('en-US', PARTS).formatToParts(d)) p[part.type] = part.value;
  return {date: `${p.year}-${p.month}-${p.day}`, time: `${p.hour}:${p.minute}:${p.second}`, zone: p.timeZoneName};
}

function timeElement(d, text) {
  const el = document.createElement('time');
  el.dateTime = d.toISOString();
  el.title = d.toISOString();
  el.textContent = text;
  return el;
}

/** An instant in the reviewer's local time, with the zone shown; a <time> element. */
export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const l = local(d);
  return timeElement(d, `${l.date} ${l.time} ${l.zone}`);
}

/** An interval in local time: the end's date is left out when it is the start's. */
export function span(startIso, endIso) {
  const a = new Date(startIso);
  const b = new Date(endIso);
  if (Number.isNaN(a.getTime()) || Number.isNaN(b.getTime())) return `${startIso} – ${endIso}`;
  const la = local(a);
  const lb = local(b);
  const end = la.date === lb.date && la.zone === lb.zone ? lb.time : `${lb.date} ${lb.time}`;
  const el = document.createElement('span');
  el.append(timeElement(a, `${la.date} ${la.time}`), ' – ', timeElement(b, end), ` ${lb.zone}`);
  return el;
}

/** A duration in milliseconds as h:mm:ss (or m:ss). */
export function duration(ms) {
  if (ms === null || ms === undefined) return '—';
  const total = Math.round(ms / 1000);
  const hh = Math.floor(total / 3600);
  const mm = Math.floor((total % 3600) / 60);
  const ss = String(total % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  const num = new Intl.NumberFormat(locale(), {maximumFractionDigits: i ? 1 : 0}).format(v);
  return `${num} ${units[i]}`;
}

/** A label in its short form (`secret+personal_privacy`) as text in the current language. */
export function labelText(short) {
  const [level, ...caveats] = String(short).split('+');
  return [tv('level', level), ...caveats.map((c) => tv('caveat', c))].join(' · ');
}

/** A label {level, caveats} as a badge. */
export function labelBadge(label) {
  const el = document.createElement('span');
  const level = label?.level || 'internal';
  el.className = `badge level-${level}`;
  const parts = [tv('level', level), ...(label?.caveats || []).map((c) => tv('caveat', c))];
  el.textContent = parts.join(' · ');
  return el;
}
