// Coverage of a case's enforcement steps by its footage (POST /v1/cases/{id}/coverage).

import {api} from './api.js';
import {clear, h, table} from './dom.js';
import {duration, span, t, tv, when} from './i18n.js';

// The step types come from the service's configuration (GET /v1/review/step-types, the list
// the coverage report uses), so a typo cannot silently make a step "not required": the form
// offers them in a select, and "other" (a type that does not require recording) takes text.
const OTHER = '__other';
let serial = 0;
let typesPromise = null;

function stepTypes() {
  if (typesPromise === null) {
    typesPromise = api('/v1/review/step-types').then((r) => r.recording_required, (err) => {
      typesPromise = null;
      throw err;
    });
  }
  return typesPromise;
}

function stepRow(list, types) {
  serial += 1;
  const n = serial;
  const field = (name, labelKey, input) => h('div', {class: 'field'}, h('label', {for: `${name}-${n}`}, t(labelKey)), input);
  const type = h('select', {id: `type-${n}`, name: 'type', required: true},
    h('option', {value: ''}, t('coverage.choose')),
    types.map((x) => h('option', {value: x}, x)),
    h('option', {value: OTHER}, t('coverage.other')));
  const other = h('input', {id: `other-${n}`, name: 'other', autocomplete: 'off', hidden: true,
    'aria-label': t('coverage.other.aria')});
  type.addEventListener('change', () => {
    other.hidden = type.value !== OTHER;
    if (!other.hidden) other.focus();
  });
  const start = h('input', {id: `start-${n}`, name: 'start', type: 'datetime-local', step: '1', required: true});
  const end = h('input', {id: `end-${n}`, name: 'end', type: 'datetime-local', step: '1', required: true});
  const officer = h('input', {id: `officer-${n}`, name: 'officer', autocomplete: 'off'});
  const remove = h('button', {type: 'button', class: 'secondary small'}, t('coverage.remove'));
  const row = h('fieldset', {class: 'step'}, h('legend', null, t('coverage.step')),
    h('div', {class: 'field'}, h('label', {for: `type-${n}`}, t('coverage.type')), type, other),
    field('start', 'coverage.start', start),
    field('end', 'coverage.end', end), field('officer', 'coverage.officer', officer), remove);
  remove.addEventListener('click', () => {
    if (list.children.length > 1) row.remove();
    renumber(list);
  });
  return row;
}

function renumber(list) {
  [...list.children].forEach((row, i) => {
    row.querySelector('legend').textContent = t('coverage.stepn', {n: i + 1});
  });
}

function readSteps(list) {
  const steps = [];
  for (const row of list.children) {
    const get = (name) => row.querySelector(`[name=${name}]`).value.trim();
    const start = new Date(get('start'));
    const end = new Date(get('end'));
    const type = get('type') === OTHER ? get('other') : get('type');
    if (!type || Number.isNaN(start.getTime()) || Number.isNaN(end.getTime())) return null;
    const step = {type, start: start.toISOString(), end: end.toISOString()};
    if (get('officer')) step.officer = get('officer');
    steps.push(step);
  }
  return steps;
}

export function coverageSection(caseId, ctx) {
  const list = h('div', {class: 'steps'});
  let types = null;
  const add = h('button', {type: 'button', class: 'secondary', id: 'add-step', disabled: true}, t('coverage.add'));
  add.addEventListener('click', () => {
    list.append(stepRow(list, types));
    renumber(list);
    list.lastChild.querySelector('select').focus();
  });
  const match = h('input', {type: 'checkbox', id: 'match-officer'});
  const submit = h('button', {type: 'submit', class: 'primary', id: 'run-coverage'}, t('coverage.run'));
  const error = h('p', {class: 'error', role: 'alert'});
  const out = h('div', {id: 'coverage-out', 'aria-live': 'polite'});
  stepTypes().then((configured) => {
    if (!ctx.alive()) return;
    types = configured;
    list.append(stepRow(list, types));
    renumber(list);
    add.disabled = false;
  }, (err) => {
    if (ctx.alive()) error.textContent = t('error.generic', {status: err.status ?? '?', detail: err.message});
  });
  const form = h('form', {class: 'coverage-form', novalidate: true},
    list,
    h('p', {class: 'actions'}, add),
    h('p', null, match, ' ', h('label', {for: 'match-officer'}, t('coverage.match'))),
    h('p', {class: 'actions'}, submit), error);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    const steps = readSteps(list);
    if (!steps) {
      error.textContent = t('coverage.incomplete');
      return;
    }
    submit.disabled = true;
    try {
      const body = await api(`/v1/cases/${encodeURIComponent(caseId)}/coverage`, {
        method: 'POST', json: {steps, match_officer: match.checked},
      });
      if (ctx.alive()) clear(out).append(coverageView(body));
    } catch (err) {
      if (ctx.alive()) error.textContent = t('error.generic', {status: err.status ?? '?', detail: err.message});
    } finally {
      submit.disabled = false;
    }
  });
  return h('section', {'aria-labelledby': 'coverage-h'},
    h('h2', {id: 'coverage-h'}, t('coverage.title')), h('p', {class: 'help'}, t('coverage.help')), form, out);
}

function spans(list) {
  if (!list.length) return '—';
  return h('ul', {class: 'spans'}, list.map((s) => h('li', null, span(s.start, s.end))));
}

function coverageView(r) {
  const cls = {covered: 'ok', partial: 'warn', uncovered: 'bad'};
  const rows = r.steps.map((s) => h('tr', {'data-step': s.index},
    h('td', {class: 'num'}, String(s.index + 1)),
    h('td', null, s.type),
    h('td', null, when(s.start)),
    h('td', null, when(s.end)),
    h('td', null, s.officer || '—'),
    h('td', null, s.requires_recording ? t('yes') : t('no')),
    h('td', null, h('span', {class: `badge ${cls[s.status] || 'warn'}`}, tv('coverage.status', s.status))),
    h('td', {class: 'num'}, `${duration(s.covered_ms)} / ${duration(s.duration_ms)}`),
    h('td', null, spans(s.gaps)),
    h('td', null, s.footage.length ? h('ul', {class: 'spans'}, s.footage.map((f) => h('li', null,
      h('a', {href: `#/evidence/${f.evidence_id}`}, h('code', null, f.evidence_id.slice(0, 8))), ' ', span(f.start, f.end)))) : '—')));
  const lacking = r.lacking_footage.map((i) => i + 1);
  const incomplete = r.incomplete.map((i) => i + 1);
  return h('div', {class: 'coverage'},
    h('p', {class: `verdict ${lacking.length ? 'bad' : incomplete.length ? 'warn' : 'ok'}`, id: 'coverage-verdict'},
      lacking.length ? t('coverage.lacking', {steps: lacking.join(', ')})
        : incomplete.length ? t('coverage.partial', {steps: incomplete.join(', ')}) : t('coverage.allcovered')),
    table(t('coverage.caption'), [t('coverage.n'), t('coverage.type'), t('coverage.start'), t('coverage.end'),
      t('coverage.officer'), t('coverage.required'), t('coverage.statuscol'), t('coverage.covered'),
      t('coverage.gaps'), t('coverage.footage')], rows),
    r.unplaced_evidence.length ? [h('h3', null, t('coverage.unplaced')), h('ul', null, r.unplaced_evidence.map((u) => h('li', null,
      h('a', {href: `#/evidence/${u.evidence_id}`}, h('code', null, u.evidence_id.slice(0, 8))), ': ', u.reason)))] : null);
}
