// The reviewer console: a hash router over a few views, all reading the /v1 API.

import {signOut, signedIn, whenUnauthenticated} from './api.js';
import {clear, h} from './dom.js';
import {applyStatic, getLang, loadLanguages, setLang, t, zoneName} from './i18n.js';
import {renderCase} from './case.js';
import {renderCases} from './cases.js';
import {renderEvidence} from './evidence.js';
import {renderRedact} from './redact.js';
import {renderIntegrity} from './integrity.js';
import {renderSignIn} from './signin.js';
import {renderUnlinked} from './unlinked.js';
import {renderVerify} from './verify.js';

const main = document.getElementById('main');
const statusBox = document.getElementById('status');
let generation = 0;
let objectUrls = [];
let expired = false;

const ROUTES = [
  [/^#?\/?$/, 'cases', () => renderCases],
  [/^#\/cases$/, 'cases', () => renderCases],
  [/^#\/cases\/([^/]+)$/, 'cases', () => renderCase],
  [/^#\/cases\/([^/]+)\/integrity$/, 'cases', () => renderIntegrity],
  [/^#\/evidence\/([^/]+)$/, 'cases', () => renderEvidence],
  [/^#\/evidence\/([^/]+)\/redact$/, 'cases', () => renderRedact],
  [/^#\/unlinked$/, 'unlinked', () => renderUnlinked],
  [/^#\/verify$/, 'verify', () => renderVerify],
];

function match(hash) {
  for (const [re, nav, view] of ROUTES) {
    const m = re.exec(hash);
    if (m) return {nav, view: view(), params: m.slice(1).map(decodeURIComponent)};
  }
  return null;
}

export function status(message, kind = 'info') {
  clear(statusBox);
  statusBox.className = `status ${kind}`;
  if (message) statusBox.append(h('p', null, message));
}

export function notFound(into) {
  clear(into);
  into.append(
    h('h1', {tabindex: '-1'}, t('notfound.title')),
    h('p', {class: 'notice', 'data-testid': 'not-found'}, t('notfound.text')),
    h('p', null, h('a', {href: '#/cases'}, t('notfound.back'))));
}

/** The message for an API error, in the current language. */
export function errorText(err) {
  if (err?.status === 403) return t('error.forbidden', {detail: err.message});
  if (err?.status === 0) return t('error.network');
  return t('error.generic', {status: err?.status ?? '?', detail: err?.message ?? String(err)});
}

function chrome() {
  const on = signedIn();
  document.getElementById('nav').hidden = !on;
  document.getElementById('signout').hidden = !on;
  document.getElementById('lang').textContent = getLang() === 'zh' ? 'English' : '中文';
  document.getElementById('lang').lang = getLang() === 'zh' ? 'en' : 'zh-CN';
  document.getElementById('zone').textContent = t('zone', {zone: zoneName()});
}

async function route() {
  generation += 1;
  const mine = generation;
  for (const url of objectUrls) URL.revokeObjectURL(url);
  objectUrls = [];
  chrome();
  clear(main);
  if (!signedIn()) {
    status(expired ? t('signin.expired') : '', expired ? 'error' : 'info');
    renderSignIn(main, {onSignedIn: () => {
      expired = false;
      route();
    }});
    focusHeading();
    return;
  }
  const found = match(window.location.hash);
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (found && a.dataset.nav === found.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  status('');
  const ctx = {
    alive: () => mine === generation,
    track: (url) => {
      if (mine === generation) objectUrls.push(url);
      else URL.revokeObjectURL(url);
      return url;
    },
    status,
  };
  if (!found) {
    notFound(main);
  } else {
    const pending = found.view(main, found.params, ctx);
    focusHeading();
    try {
      await pending;
    } catch (err) {
      if (!ctx.alive()) return;
      if (err?.status === 404) notFound(main);
      else if (err?.status !== 401) status(errorText(err), 'error');
    }
  }
  if (ctx.alive()) {
    const h1 = main.querySelector('h1');
    document.title = `${h1 ? h1.textContent + ' · ' : ''}${t('brand')}`;
  }
}

function focusHeading() {
  const h1 = main.querySelector('h1');
  if (h1) {
    h1.setAttribute('tabindex', '-1');
    h1.focus({preventScroll: true});
  } else {
    main.focus({preventScroll: true});
  }
}

async function start() {
  await loadLanguages();
  applyStatic();
  whenUnauthenticated(() => {
    expired = true;
    route();
  });
  document.getElementById('lang').addEventListener('click', () => {
    setLang(getLang() === 'zh' ? 'en' : 'zh');
    applyStatic();
    route();
  });
  document.getElementById('signout').addEventListener('click', () => {
    signOut();
    expired = false;
    window.location.hash = '#/cases';
    route();
    status(t('signout.done'));
  });
  document.getElementById('skip-link').addEventListener('click', (e) => {
    e.preventDefault();
    main.focus();
  });
  window.addEventListener('hashchange', route);
  await route();
}

start();
