// The group list: live (server-sent events, one row changed in place), filtered by name and
// phase, with bulk delete.
import { norm, api, h, fill, age, size, price, phase, toast, confirmDialog, canWrite } from '/console/ui.js';

const PHASES = ['Pending', 'Running', 'Updating', 'Restarting', 'Succeeded', 'Failed', 'Deleting'];

function counts(g) {
  const cs = g.status.containers || [];
  const ready = cs.filter((c) => c.state === 'running' && c.ready !== false).length;
  const restarts = [...cs, ...(g.status.init_containers || [])].reduce((n, c) => n + (c.restart_count || 0), 0);
  return { ready, total: g.spec.containers.length, restarts };
}

export function listView(main, _params, { me }) {
  const groups = new Map();
  const rows = new Map();
  const write = canWrite(me);
  const filter = h('input', { type: 'search', placeholder: 'Filter by name', 'aria-label': 'Filter by name' });
  const phaseSel = h('select', { 'aria-label': 'Filter by phase' }, h('option', { value: '' }, 'Every phase'), PHASES.map((p) => h('option', { value: p }, p)));
  const del = h('button', { class: 'danger', disabled: true, onclick: deleteSelected }, 'Delete selected');
  const live = h('span', { class: 'muted', 'aria-live': 'polite' }, 'connecting…');
  const body = h('tbody');
  const empty = h('p', { class: 'muted', hidden: true }, 'No container groups yet.', write ? [' ', h('a', { href: '/create' }, 'Create one')] : null);
  const all = h('input', { type: 'checkbox', 'aria-label': 'Select every shown group', onchange: (e) => {
    for (const [id, r] of rows) if (!r.tr.hidden) { r.check.checked = e.target.checked; }
    selectionChanged();
  } });
  fill(main,
    h('div', { class: 'row spread' }, h('h1', {}, 'Container groups'),
      h('div', { class: 'row' }, write ? h('a', { class: 'button primary', href: '/create' }, 'Create group') : null,
        write ? h('a', { class: 'button', href: '/create/yaml' }, 'Create from YAML') : null)),
    h('div', { class: 'row', style: 'margin-bottom:8px' }, filter, phaseSel, write ? del : null, live),
    h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'Container groups' },
      h('thead', {}, h('tr', {},
        write ? h('th', {}, all) : null,
        h('th', {}, 'Name'), h('th', {}, 'Phase'), h('th', { class: 'hide-narrow' }, 'Health'), h('th', { class: 'num' }, 'Ready'),
        h('th', { class: 'hide-narrow' }, 'IP / EIP'), h('th', { class: 'hide-narrow' }, 'Size'), h('th', { class: 'num hide-narrow' }, 'Price'),
        h('th', { class: 'num hide-narrow' }, 'Restarts'), h('th', { class: 'num' }, 'Age'))),
      body)),
    empty);

  function cell(cls) { return h('td', cls ? { class: cls } : {}); }
  function row(g) {
    let r = rows.get(g.id);
    if (!r) {
      r = { tr: h('tr', { dataset: { id: g.id } }), check: h('input', { type: 'checkbox', 'aria-label': `Select ${g.name}`, onchange: selectionChanged }),
        name: cell(), phase: cell(), health: cell('hide-narrow'), ready: cell('num'), ip: cell('hide-narrow'), size: cell('hide-narrow'), price: cell('num hide-narrow'), restarts: cell('num hide-narrow'), age: cell('num') };
      r.tr.append(...[write ? h('td', {}, r.check) : null, r.name, r.phase, r.health, r.ready, r.ip, r.size, r.price, r.restarts, r.age].filter(Boolean));
      rows.set(g.id, r);
      // Oldest first, as the API lists them.
      const after = [...rows.values()].map((x) => x.tr).find((tr) => groups.get(tr.dataset.id) && groups.get(tr.dataset.id).created_at > g.created_at);
      body.insertBefore(r.tr, after || null);
    }
    const c = counts(g);
    fill(r.name, h('a', { href: `/groups/${encodeURIComponent(g.name)}` }, g.name));
    fill(r.phase, phase(g.status.phase));
    r.phase.title = g.status.message || '';
    fill(r.health, g.status.phase === 'Running' ? phase(g.status.health || 'checking') : h('span', { class: 'muted' }, '—'));
    fill(r.ready, `${c.ready}/${c.total}`);
    fill(r.ip, [g.status.ip || '—', g.status.eip ? ` / ${g.status.eip}` : ''].join(''));
    fill(r.size, size(g.resources));
    fill(r.price, price(g.resources));
    fill(r.restarts, String(c.restarts));
    fill(r.age, age(g.created_at));
    r.tr.dataset.phase = g.status.phase;
    r.tr.dataset.name = g.name;
  }
  function applyFilter() {
    const q = filter.value.trim().toLowerCase();
    const p = phaseSel.value;
    let shown = 0;
    for (const r of rows.values()) {
      r.tr.hidden = !((!q || r.tr.dataset.name.toLowerCase().includes(q)) && (!p || r.tr.dataset.phase === p));
      if (!r.tr.hidden) shown++;
    }
    empty.hidden = rows.size > 0;
    live.dataset.shown = shown;
  }
  function selected() { return [...rows.entries()].filter(([, r]) => r.check.checked && !r.tr.hidden).map(([id]) => groups.get(id)).filter(Boolean); }
  function selectionChanged() { del.disabled = selected().length === 0; }
  async function deleteSelected() {
    const gs = selected();
    if (!gs.length) return;
    const ok = await confirmDialog(`Delete ${gs.length} container group${gs.length > 1 ? 's' : ''}?`,
      [h('p', {}, 'Their containers are stopped and everything made for them is removed. Disks are kept.'), h('ul', {}, gs.map((g) => h('li', {}, g.name)))]);
    if (!ok) return;
    for (const g of gs) {
      try { await api('DELETE', `/v1/container-groups/${encodeURIComponent(g.id)}`); } catch (e) { toast(`${g.name}: ${e.message}`, true); }
    }
    for (const r of rows.values()) r.check.checked = false;
    all.checked = false;
    selectionChanged();
  }
  filter.addEventListener('input', applyFilter);
  phaseSel.addEventListener('change', applyFilter);

  performance.mark('qci:list-connect');
  const es = new EventSource('/v1/container-groups?watch=true');
  // Each (re)connection starts with a snapshot of every group: rows not in it are gone.
  es.onopen = () => { performance.mark('qci:list-open'); };
  es.addEventListener('snapshot', (e) => {
    const items = JSON.parse(e.data).items.map(norm);
    const ids = new Set(items.map((g) => g.id));
    for (const [id, r] of rows) if (!ids.has(id)) { r.tr.remove(); rows.delete(id); groups.delete(id); }
    for (const g of items) { groups.set(g.id, g); row(g); }
    live.textContent = 'live';
    applyFilter();
    selectionChanged();
    // For the benchmark (and any profiler): when the list first showed every group.
    if (!performance.getEntriesByName('qci:list-rendered').length) performance.mark('qci:list-rendered');
  });
  es.addEventListener('upsert', (e) => { const g = norm(JSON.parse(e.data)); groups.set(g.id, g); row(g); applyFilter(); });
  es.addEventListener('delete', (e) => {
    const { id } = JSON.parse(e.data);
    groups.delete(id);
    const r = rows.get(id);
    if (r) { r.tr.remove(); rows.delete(id); }
    applyFilter();
    selectionChanged();
  });
  es.onerror = async () => {
    live.textContent = 'reconnecting…';
    // Why the stream broke: a closed session (api() then signs out), a key that may not list
    // groups (say why and stop), or the server away (the browser keeps trying).
    try { await api('GET', '/v1/container-groups'); } catch (e) {
      if (e.status) { es.close(); live.textContent = ''; fill(empty, h('span', { class: 'error' }, e.message)); empty.hidden = false; }
    }
  };
  const ticker = setInterval(() => { for (const [id, r] of rows) { const g = groups.get(id); if (g) fill(r.age, age(g.created_at)); } }, 10000);
  return () => { es.close(); clearInterval(ticker); };
}
