// Verify a file: it is streamed to POST /v1/verify (upload progress shown); the answer says
// whether it is held, as which evidence, since when, with a downloadable tlog-proof.

import {api, uploadFile} from './api.js';
import {clear, h, saveBlob, shortHex, table} from './dom.js';
import {bytes, t, when} from './i18n.js';

export async function renderVerify(main, _params, ctx) {
  const input = h('input', {type: 'file', id: 'verify-file', class: 'file-input'});
  const zone = h('label', {for: 'verify-file', class: 'dropzone', id: 'dropzone'},
    h('span', {class: 'big'}, t('verify.drop')), h('span', {class: 'help'}, t('verify.dropnote')));
  const progress = h('progress', {id: 'verify-progress', max: '100', value: '0', 'aria-labelledby': 'progress-label'});
  const progressLabel = h('span', {id: 'progress-label'}, t('verify.progress'));
  const progressText = h('span', {class: 'help', 'aria-live': 'off'});
  const cancel = h('button', {type: 'button', class: 'secondary', hidden: true}, t('verify.cancel'));
  const progressBox = h('div', {class: 'progress', hidden: true}, progressLabel, progress, progressText, cancel);
  const out = h('div', {id: 'verify-out', 'aria-live': 'polite'});
  let current = null;

  const show = (body, file) => {
    clear(out).append(resultView(body, file));
  };
  const fail = (err) => {
    clear(out).append(h('p', {class: 'error', role: 'alert'}, err.problem?.aborted ? t('verify.aborted')
      : err.status === 413 ? t('verify.toolarge') : t('error.generic', {status: err.status ?? '?', detail: err.message})));
  };
  const start = async (file) => {
    if (!file) return;
    if (current) current.abort();
    clear(out);
    progressBox.hidden = false;
    cancel.hidden = false;
    progress.value = 0;
    progressText.textContent = `${file.name} · 0 / ${bytes(file.size)}`;
    const up = uploadFile('/v1/verify', file, (sent, total) => {
      progress.value = total ? Math.round((100 * sent) / total) : 0;
      progressText.textContent = `${file.name} · ${bytes(sent)} / ${bytes(total)}`;
    });
    current = up;
    try {
      const body = await up.promise;
      if (!ctx.alive()) return;
      progress.value = 100;
      show(body, file.name);
    } catch (err) {
      if (ctx.alive()) fail(err);
    } finally {
      if (current === up) {
        current = null;
        cancel.hidden = true;
      }
      input.value = '';
    }
  };
  cancel.addEventListener('click', () => current && current.abort());
  input.addEventListener('change', () => start(input.files[0]));
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    start(e.dataTransfer.files[0]);
  });

  const hash = h('input', {id: 'verify-hash', autocomplete: 'off', spellcheck: 'false', pattern: '[0-9a-fA-F]{64}', size: '66'});
  const hashButton = h('button', {type: 'submit', class: 'secondary'}, t('verify.hash.run'));
  const hashForm = h('form', {class: 'toolbar'}, h('label', {for: 'verify-hash'}, t('verify.hash')), hash, hashButton);
  hashForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const value = hash.value.trim();
    if (!/^[0-9a-fA-F]{64}$/.test(value)) {
      clear(out).append(h('p', {class: 'error', role: 'alert'}, t('verify.hash.bad')));
      return;
    }
    try {
      const body = await api(`/v1/verify?sha256=${value}`, {method: 'POST'});
      if (ctx.alive()) show(body, null);
    } catch (err) {
      if (ctx.alive()) fail(err);
    }
  });

  main.append(
    h('h1', null, t('verify.title')),
    h('p', {class: 'help'}, t('verify.help')),
    h('div', {class: 'drop-wrap'}, input, zone),
    progressBox,
    hashForm,
    out);
}

function resultView(body, fileName) {
  const what = fileName ? h('p', null, t('verify.file'), ' ', h('strong', null, fileName)) : null;
  const digest = h('p', null, 'SHA-256 ', shortHex(body.sha256, 64));
  if (!body.held) {
    return h('div', {class: 'result not-held', id: 'verify-result', 'data-held': 'false'},
      h('h2', {class: 'verdict bad'}, t('verify.notheld')),
      what, digest,
      h('p', null, t('verify.notheld.text')),
      h('p', {class: 'help'}, t('verify.localize')),
      h('pre', {class: 'cmd'}, `evault localize ${fileName || 'FILE'} --evidence <ID>`));
  }
  const rows = body.matches.map((m) => {
    const proof = h('button', {type: 'button', class: 'secondary small', 'data-proof': m.evidence_id}, t('verify.proof'));
    proof.addEventListener('click', () => saveBlob(new Blob([m.tlog_proof], {type: 'text/plain'}), `${m.evidence_id}.tlog-proof`));
    return h('tr', {'data-evidence': m.evidence_id},
      h('td', null, h('a', {href: `#/evidence/${m.evidence_id}`}, h('code', null, m.evidence_id))),
      h('td', null, when(m.acquired_at)),
      h('td', {class: 'num'}, String(m.ledger_index)),
      h('td', null, proof));
  });
  return h('div', {class: 'result held', id: 'verify-result', 'data-held': 'true'},
    h('h2', {class: 'verdict ok'}, t('verify.held')),
    what, digest,
    h('p', null, t('verify.held.text', {count: body.matches.length})),
    table(t('verify.caption'), [t('field.evidence'), t('field.acquired'), t('field.ledger'), t('verify.proofcol')], rows),
    h('p', {class: 'help'}, t('verify.proofhint')));
}
