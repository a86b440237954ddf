// Legal review of one case: the signed integrity report and the coverage of enforcement steps
// by footage, as tables, the report downloadable exactly as signed; and how to export.

import {api, apiText} from './api.js';
import {clear, dl, h, saveBlob, shortHex, table} from './dom.js';
import {bytes, t, tv, when} from './i18n.js';
import {coverageSection} from './coverage.js';

export async function renderIntegrity(main, [caseId], ctx) {
  const enc = encodeURIComponent(caseId);
  main.append(h('h1', null, t('review.title', {id: caseId})));
  const c = await api(`/v1/cases/${enc}`);
  if (!ctx.alive()) return;
  main.append(
    h('p', {class: 'crumbs'}, h('a', {href: `#/cases/${enc}`}, t('review.back', {title: c.title || c.id}))),
    integritySection(c.id, ctx),
    coverageSection(c.id, ctx),
    exportSection(c.id));
}

function integritySection(caseId, ctx) {
  const out = h('div', {id: 'report-out', 'aria-live': 'polite'});
  const mode = h('select', {id: 'report-mode'},
    h('option', {value: 'now'}, t('report.mode.now')),
    h('option', {value: 'scrub'}, t('report.mode.scrub')));
  const run = h('button', {type: 'submit', class: 'primary', id: 'run-report'}, t('report.run'));
  const form = h('form', {class: 'toolbar'}, h('label', {for: 'report-mode'}, t('report.mode')), mode, run);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    run.disabled = true;
    clear(out).append(h('p', {class: 'help'}, t('report.running')));
    try {
      const text = await apiText(`/v1/cases/${encodeURIComponent(caseId)}/integrity-report?mode=${mode.value}`);
      if (!ctx.alive()) return;
      clear(out).append(reportView(caseId, text));
    } catch (err) {
      if (ctx.alive()) clear(out).append(h('p', {class: 'error'}, t('error.generic', {status: err.status ?? '?', detail: err.message})));
    } finally {
      run.disabled = false;
    }
  });
  return h('section', {'aria-labelledby': 'report-h'},
    h('h2', {id: 'report-h'}, t('report.title')), h('p', {class: 'help'}, t('report.help')), form, out);
}

function checkpointSize(note) {
  const lines = (note || '').split('\n');
  return lines.length > 1 ? lines[1] : '—';
}

/** The report as tables; `text` is the API's response, kept byte for byte for the download. */
function reportView(caseId, text) {
  const body = JSON.parse(text);
  const r = body.report;
  const ok = r.verdict === 'ok';
  const download = h('button', {type: 'button', class: 'primary', id: 'download-report'}, t('report.download'));
  download.addEventListener('click', () => {
    const stamp = (r.generated_at || '').replace(/[^0-9TZ]/g, '');
    saveBlob(new Blob([text], {type: 'application/json'}), `integrity-report-${caseId}-${stamp}.json`);
  });
  const note = h('button', {type: 'button', class: 'secondary', id: 'download-note'}, t('report.note'));
  note.addEventListener('click', () => saveBlob(new Blob([body.signature], {type: 'text/plain'}), `integrity-report-${caseId}.note`));
  const rows = r.evidence.map((e) => h('tr', {'data-evidence': e.evidence_id},
    h('td', null, h('a', {href: `#/evidence/${e.evidence_id}`}, h('code', null, e.evidence_id.slice(0, 8)))),
    h('td', null, shortHex(e.sha256)),
    h('td', {class: 'num'}, bytes(e.size)),
    h('td', null, when(e.recorded_at)),
    h('td', null, when(e.acquired_at)),
    h('td', null, badge(e.content.status === 'ok', tv('content', e.content.status)), ' ',
      h('span', {class: 'sub'}, tv('report.source', e.content.source), ' ', when(e.content.checked_at))),
    h('td', {class: 'num'}, String(e.ledger.index)),
    h('td', null, badge(e.ledger.status === 'ok', tv('inclusion', e.ledger.status))),
    h('td', null, badge(e.verdict === 'ok', tv('verdict', e.verdict)))));
  const exports = r.exports || [];
  return h('div', {class: 'report'},
    h('p', {class: `verdict ${ok ? 'ok' : 'bad'}`, id: 'verdict'}, t(ok ? 'report.ok' : 'report.failed')),
    r.reasons.length ? h('ul', {class: 'reasons'}, r.reasons.map((x) => h('li', null, x))) : null,
    dl([
      [t('report.generated'), when(r.generated_at)],
      [t('report.by'), r.requested_by || '—'],
      [t('report.mode'), tv('report.source', r.mode)],
      [t('report.origin'), h('code', null, r.log?.origin || '—')],
      [t('report.treesize'), checkpointSize(r.log?.checkpoint)],
      [t('report.audit'), String(r.audit_index)],
    ]),
    h('p', {class: 'actions'}, download, note),
    h('p', {class: 'help'}, t('report.verifyhint')),
    r.evidence.length ? table(t('report.caption', {count: r.evidence.length}), [
      t('field.evidence'), 'SHA-256', t('field.size'), t('field.recorded'), t('field.acquired'),
      t('report.content'), t('field.ledger'), t('report.inclusion'), t('report.verdict'),
    ], rows) : h('p', {class: 'notice'}, t('case.noevidence')),
    h('h3', null, t('report.exports')),
    exports.length ? table(null, [t('tl.index'), t('tl.time'), t('tl.by')], exports.map((x) => h('tr', null,
      h('td', {class: 'num'}, String(x.index)), h('td', null, when(x.time)), h('td', null, x.by || '—'))))
      : h('p', {class: 'help'}, t('report.noexports')));
}

function badge(ok, text) {
  return h('span', {class: `badge ${ok ? 'ok' : 'bad'}`}, text);
}

function exportSection(caseId) {
  const msg = h('p', {class: 'help', 'aria-live': 'polite', id: 'export-status'});
  const progress = h('progress', {max: '1', value: '0', hidden: ''});
  const proxies = h('input', {type: 'checkbox', id: 'export-proxy'});
  const start = h('button', {type: 'button', id: 'export-start'}, t('export.start'));
  const actions = h('p', {class: 'actions'});
  start.addEventListener('click', async () => {
    start.disabled = true;
    clear(actions);
    progress.hidden = false;
    progress.removeAttribute('value');
    msg.textContent = t('export.queued');
    try {
      const renditions = proxies.checked ? ['proxy'] : [];
      let job = await api(`/v1/cases/${encodeURIComponent(caseId)}/exports`, {method: 'POST', json: {renditions}});
      while (job.status === 'queued' || job.status === 'running') {
        msg.textContent = t(job.status === 'queued' ? 'export.queued' : 'export.running');
        await new Promise((resolve) => setTimeout(resolve, 1000));
        job = await api(`/v1/exports/${job.id}`);
      }
      progress.hidden = true;
      if (job.status !== 'done') {
        msg.textContent = `${t('export.failed')} ${job.error || ''}`;
        return;
      }
      msg.replaceChildren(`${t('export.done')} ${bytes(job.size)} · manifest `, shortHex(job.manifest_sha256));
      const save = h('button', {type: 'button', id: 'export-download'}, t('export.download'));
      save.addEventListener('click', async () => {
        const response = await api(job.package, {accept: 'application/zip', raw: true});
        saveBlob(await response.blob(), `${caseId}-export-${job.id}.zip`);
      });
      actions.append(save);
    } catch (err) {
      progress.hidden = true;
      msg.textContent = `${t('export.failed')} ${err.message || ''}`;
    } finally {
      start.disabled = false;
    }
  });
  return h('section', {'aria-labelledby': 'export-h'},
    h('h2', {id: 'export-h'}, t('export.title')), h('p', {class: 'help'}, t('export.help')),
    h('p', null, h('label', {for: 'export-proxy'}, proxies, ' ', t('export.proxies'))),
    h('p', {class: 'actions'}, start), progress, msg, actions,
    h('p', {class: 'help'}, t('export.verify')));
}
