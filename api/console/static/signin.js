// Sign-in: the API token is checked against the API and then kept in memory only.

import {api, signIn, signOut} from './api.js';
import {h} from './dom.js';
import {t} from './i18n.js';

export function renderSignIn(main, {onSignedIn}) {
  const input = h('input', {
    id: 'token', name: 'token', type: 'password', autocomplete: 'off',
    spellcheck: 'false', required: true, 'aria-describedby': 'token-help',
  });
  const error = h('p', {class: 'error', role: 'alert', id: 'signin-error'});
  const button = h('button', {type: 'submit', class: 'primary'}, t('signin.submit'));
  const form = h('form', {class: 'card signin', novalidate: true},
    h('h1', null, t('signin.title')),
    h('p', {id: 'token-help', class: 'help'}, t('signin.help')),
    h('label', {for: 'token'}, t('signin.token')),
    input,
    button,
    error);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const value = input.value.trim();
    error.textContent = '';
    if (!value) {
      error.textContent = t('signin.empty');
      input.focus();
      return;
    }
    button.disabled = true;
    signIn(value);
    try {
      await api('/v1/cases', {probe: true});
      input.value = '';
      onSignedIn();
    } catch (err) {
      signOut();
      error.textContent = err?.status === 401 ? t('signin.invalid') : t('signin.failed', {detail: err.message});
      button.disabled = false;
      input.focus();
    }
  });
  main.append(form);
}
