// Everything else a tenant holds: disks, image caches, VPCs, EIPs, firewalls (a rules
// editor), usage and cost; and for admins the image store, tenants and keys. Each page is a
// table from the list API, a create form whose field errors come from the server, and the
// actions the API offers for one row.
import { api, h, fill, field, showErrors, age, bytes, phase, toast, confirmDialog, canWrite, time } from '/console/ui.js';

const enc = encodeURIComponent;
const del = (path) => ({ label: 'Delete', danger: true, run: async (x) => {
  if (!await confirmDialog(`Delete ${x.name || x.reference || x.id}?`, h('p', {}, 'This cannot be undone.'))) return false;
  await api('DELETE', path(x));
  return true;
} });
const quota = (q, u, k, fmt = String) => `${fmt(u?.[k] ?? 0)} / ${q?.[k] == null ? '∞' : fmt(q[k])}`;

const KINDS = {
  disks: {
    title: 'Disks', path: '/v1/disks', hint: 'Disks are made beforehand and attached to one group at a time (volumes[].disk.id); their data outlives the group.',
    columns: [['Name', (d) => d.name], ['Phase', (d) => phase(d.phase)], ['Size', (d) => bytes(d.size)], ['Type', (d) => d.disk_type], ['Used by', (d, names) => (d.group_id ? h('a', { href: `/groups/${enc(names.get(d.group_id) || d.group_id)}` }, names.get(d.group_id) || d.group_id) : '—')], ['Age', (d) => age(d.created_at)]],
    names: '/v1/container-groups',
    create: [['name', 'Name'], ['size', 'Size', '10Gi'], ['disk_type', 'Type', 'standard']],
    actions: [{ label: 'Resize', run: (d, reload, area) => {
      inlineForm(area, `Resize ${d.name} (now ${bytes(d.size)}; only larger)`, [['size', 'New size', '20Gi']],
        (v) => api('POST', `/v1/disks/${enc(d.id)}/resize`, v), reload);
      return false;
    } }, del((d) => `/v1/disks/${enc(d.id)}`)],
  },
  'image-caches': {
    title: 'Image caches', path: '/v1/image-caches', hint: 'Images pulled ahead of time and pinned, so groups that name the cache (image_cache) start without downloading.',
    columns: [['Name', (c) => c.name], ['Phase', (c) => phase(c.status.phase)], ['Images', (c) => c.spec.images.join(', ')], ['Size', (c) => bytes(c.status.total_size)], ['Message', (c) => c.status.message || ''], ['Age', (c) => age(c.created_at)]],
    create: [['name', 'Name'], ['images', 'Images (one per line)', '', 'textarea'], ['server', 'Registry (for credentials)'], ['username', 'User name'], ['password', 'Password', '', 'password']],
    body: (v) => ({ name: v.name, images: v.images.split('\n').map((s) => s.trim()).filter(Boolean),
      registry_credentials: v.server ? [{ server: v.server, username: v.username, password: v.password }] : [] }),
    actions: [del((c) => `/v1/image-caches/${enc(c.id)}`)],
  },
  vpcs: {
    title: 'VPCs', path: '/v1/vpcs', hint: 'A private address block of your own; groups join it with network.vpc.',
    columns: [['Name', (v) => v.name], ['Block', (v) => v.cidr], ['Firewall', (v, names) => (v.firewall ? names.get(v.firewall) || v.firewall : '—')], ['Age', (v) => age(v.created_at)]],
    names: '/v1/firewalls',
    create: [['name', 'Name'], ['cidr', 'Block (CIDR)', '10.10.0.0/24'], ['firewall', 'Firewall (optional)']],
    actions: [del((v) => `/v1/vpcs/${enc(v.id)}`)],
  },
  eips: {
    title: 'EIPs', path: '/v1/eips', hint: 'Public addresses from the operator\'s pool: bound to a group (network.eip) they publish its ports; bound to a VPC they give its groups outbound access.',
    columns: [['Name', (e) => e.name], ['Address', (e) => e.address], ['Bound to', (e) => e.bound_to ? `${e.bound_to.kind} ${e.bound_to.name}` : '—'], ['Auto', (e) => (e.auto ? 'yes' : '')], ['Age', (e) => age(e.created_at)]],
    create: [['name', 'Name (optional)'], ['address', 'Address (optional: any free one)']],
    actions: [{ label: 'Bind to VPC', run: (e, reload, area) => {
      inlineForm(area, `Bind ${e.name} to a VPC (its groups get outbound access through it)`, [['vpc', 'VPC (name or id)']],
        (v) => api('POST', `/v1/eips/${enc(e.id)}/bind`, v), reload);
      return false;
    } }, { label: 'Unbind', run: async (e) => { await api('POST', `/v1/eips/${enc(e.id)}/unbind`); return true; } }, del((e) => `/v1/eips/${enc(e.id)}`)],
  },
  firewalls: {
    title: 'Firewalls', path: '/v1/firewalls', hint: 'Rules tried by priority (lowest first): ingress that no rule accepts is dropped; egress that no rule drops passes.',
    columns: [['Name', (f) => f.name], ['Rules', (f) => String(f.rules.length)], ['Age', (f) => age(f.created_at)]],
    create: [['name', 'Name']],
    rules: true,
    actions: [{ label: 'Edit rules', run: (f, reload, area) => { rulesEditor(area, f, reload); return false; } }, del((f) => `/v1/firewalls/${enc(f.id)}`)],
  },
  images: {
    title: 'Images', path: '/v1/images', admin: true, hint: 'The machine\'s image store (admin): what groups and caches pulled.',
    columns: [['Reference', (i) => i.reference], ['Digest', (i) => i.digest.slice(0, 19)], ['Size', (i) => bytes(i.size)], ['Layers', (i) => String(i.layers)], ['Last used', (i) => (i.last_used ? `${age(i.last_used)} ago` : '—')]],
    create: [['image', 'Pull an image', 'registry/repo:tag']],
    createPath: '/v1/images/pull',
    actions: [{ label: 'Remove', danger: true, run: async (i) => {
      if (!await confirmDialog(`Remove ${i.reference}?`, h('p', {}, 'Groups using it keep running; it is pulled again when needed.'))) return false;
      await api('DELETE', `/v1/images?reference=${enc(i.reference)}`);
      return true;
    } }],
  },
  tenants: {
    title: 'Tenants', path: '/v1/tenants', admin: true, hint: 'Each tenant sees only its own groups and resources; quotas bound what it may hold.',
    columns: [['Name', (t) => t.name], ['Groups', (t) => quota(t.quota, t.used, 'groups')], ['Cores', (t) => quota(t.quota, t.used, 'cores')], ['Memory', (t) => quota(t.quota, t.used, 'memory', bytes)], ['Disk', (t) => quota(t.quota, t.used, 'disk', bytes)], ['EIPs', (t) => quota(t.quota, t.used, 'eips')], ['Exec sessions', (t) => quota(t.quota, t.used, 'exec_sessions')], ['Age', (t) => age(t.created_at)]],
    create: [['name', 'Name'], ['groups', 'Quota: groups'], ['cores', 'Quota: cores'], ['memory', 'Quota: memory', '64Gi'], ['disk', 'Quota: disk', '500Gi'], ['eips', 'Quota: EIPs'], ['vpcs', 'Quota: VPCs'], ['exec_sessions', 'Quota: exec sessions']],
    body: (v) => {
      const q = {};
      for (const k of ['groups', 'cores', 'memory', 'disk', 'eips', 'vpcs', 'exec_sessions']) if (v[k]) q[k] = v[k];
      return { name: v.name, quota: q };
    },
    actions: [{ label: 'Edit quota', run: (t, reload, area) => {
      const keys = ['groups', 'cores', 'memory', 'disk', 'eips', 'vpcs', 'exec_sessions'];
      inlineForm(area, `Quota of ${t.name} (empty: unlimited)`, keys.map((k) => [k, k.replace('_', ' '), t.quota?.[k] != null ? String(t.quota[k]) : 'unlimited']),
        (v) => api('PUT', `/v1/tenants/${enc(t.name)}`, { quota: Object.fromEntries(keys.filter((k) => v[k]).map((k) => [k, v[k]])) }), reload);
      return false;
    } }, del((t) => `/v1/tenants/${enc(t.name)}`)],
  },
  keys: {
    title: 'API keys', path: '/v1/keys?all_tenants=true', createPath: '/v1/keys', admin: true, hint: 'A key acts in its tenant with its role: admin, member (create and change), viewer (read), metrics (/metrics).',
    columns: [['Name', (k) => k.name], ['Id', (k) => k.id], ['Tenant', (k) => k.tenant], ['Role', (k) => k.role], ['Expires', (k) => (k.expires_at ? time(k.expires_at) : 'never')], ['Last used', (k) => (k.last_used_at ? `${age(k.last_used_at)} ago` : '—')], ['State', (k) => (k.revoked_at ? phase('Failed', 'revoked') : phase('Running', 'active'))]],
    create: [['tenant', 'Tenant', 'default'], ['role', 'Role', '', ['member', 'viewer', 'admin', 'metrics']], ['name', 'Name (optional)'], ['expires_in', 'Expires in (optional)', '30d']],
    shown: (r) => h('div', { class: 'card', role: 'alert' }, h('strong', {}, 'The new key (shown once; keep it now): '), h('code', { id: 'new-key' }, r.secret)),
    actions: [{ label: 'Revoke', danger: true, run: async (k) => {
      if (k.revoked_at || !await confirmDialog(`Revoke ${k.name}?`, h('p', {}, 'It stops working at once, with every console session opened with it.'), 'Revoke')) return false;
      await api('DELETE', `/v1/keys/${enc(k.id)}`);
      return true;
    } }],
  },
};

export function resourceView(main, { kind }, { me }) {
  if (kind === 'usage') return usageView(main);
  const k = KINDS[kind];
  if (!k) { fill(main, h('h1', {}, 'Not found')); return null; }
  if (k.admin && me.role !== 'admin') { fill(main, h('h1', {}, k.title), h('p', { class: 'error' }, 'This needs an admin key.')); return null; }
  const write = canWrite(me) && (!k.admin || me.role === 'admin');
  const body = h('tbody');
  const status = h('div', { 'aria-live': 'polite' });
  const area = h('div');
  const table = h('div', { class: 'table-wrap' }, h('table', { 'aria-label': k.title },
    h('thead', {}, h('tr', {}, k.columns.map(([c]) => h('th', {}, c)), write ? h('th', {}, h('span', { class: 'muted' }, 'Actions')) : null)), body));
  async function reload() {
    try {
      const { items } = await api('GET', k.path);
      // Objects a column names by id (a VPC's firewall), shown by name.
      const names = new Map(k.names ? (await api('GET', k.names)).items.map((o) => [o.id, o.name]) : []);
      fill(body, items.map((x) => h('tr', {}, k.columns.map(([, f]) => h('td', {}, f(x, names))), write ? h('td', {}, h('div', { class: 'row' }, k.actions.map((a) => h('button', {
        class: a.danger ? 'danger' : null, 'aria-label': `${a.label} ${x.name || x.reference || x.id}`,
        onclick: async () => { try { if (await a.run(x, reload, area)) { toast(`${a.label}: ${x.name || x.reference || x.id}`); reload(); } } catch (e) { toast(e.message, true); } },
      }, a.label)))) : null)));
      if (!items.length) fill(body, h('tr', {}, h('td', { colspan: k.columns.length + 1, class: 'muted' }, 'None yet.')));
    } catch (e) { fill(status, h('p', { class: 'error' }, e.message)); }
  }
  fill(main, h('h1', {}, k.title), h('p', { class: 'muted' }, k.hint), write && k.create ? createForm(k, reload, status) : null, status, area, table);
  reload();
  const t = setInterval(reload, 5000);
  return () => clearInterval(t);
}

function createForm(k, reload, status) {
  const v = {};
  const inputs = k.create.map(([name, label, placeholder, type]) => {
    let input;
    if (Array.isArray(type)) input = h('select', { 'data-field': name }, type.map((o) => h('option', { value: o }, o)));
    else if (type === 'textarea') input = h('textarea', { rows: 3, 'data-field': name, placeholder });
    else input = h('input', { 'data-field': name, placeholder: placeholder || null, type: type === 'password' ? 'password' : 'text', autocomplete: 'off' });
    input.addEventListener('input', () => { v[name] = input.value; });
    input.addEventListener('change', () => { v[name] = input.value; });
    if (Array.isArray(type)) v[name] = type[0];
    return field(label, input);
  });
  const errors = h('div');
  const form = h('form', { class: 'card' }, h('h2', { style: 'margin-top:0' }, `New ${k.title.replace(/s$/, '').toLowerCase()}`), h('div', { class: 'grid' }, inputs), errors,
    h('button', { class: 'primary', type: 'submit' }, 'Create'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = k.body ? k.body(v) : Object.fromEntries(Object.entries(v).filter(([, x]) => x !== ''));
    if (k.rules) body.rules = body.rules || [];
    try {
      const r = await api('POST', k.createPath || k.path, body);
      showErrors(form, errors, null);
      form.reset();
      for (const key of Object.keys(v)) delete v[key];
      fill(status, k.shown ? k.shown(r) : null);
      toast(`Created ${body.name || body.image || ''}`.trim());
      reload();
    } catch (err) { showErrors(form, errors, err); }
  });
  return form;
}

/** A small form in `area` for one action on one row; the server's field errors at the fields. */
function inlineForm(area, title, fields, submit, reload) {
  const v = {};
  const errors = h('div');
  const form = h('form', { class: 'card', 'aria-label': title }, h('h2', { style: 'margin-top:0' }, title),
    h('div', { class: 'grid' }, fields.map(([name, label, placeholder]) => {
      const input = h('input', { 'data-field': name, name, placeholder: placeholder || null, autocomplete: 'off' });
      input.addEventListener('input', () => { v[name] = input.value; });
      return field(label, input);
    })), errors,
    h('div', { class: 'row' }, h('button', { class: 'primary', type: 'submit' }, 'Apply'), h('button', { type: 'button', onclick: () => area.replaceChildren() }, 'Cancel')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try { await submit(v); toast(title.split(' (')[0]); area.replaceChildren(); reload(); } catch (err) { showErrors(form, errors, err); }
  });
  fill(area, form);
  form.querySelector('input')?.focus();
}

function rulesEditor(area, f, reload) {
  const rules = f.rules.map((r) => ({ ...r }));
  const errors = h('div');
  const rows = h('tbody');
  const sel = (r, key, opts) => { const s = h('select', { 'aria-label': key }, opts.map((o) => h('option', { value: o, selected: r[key] === o }, o))); s.addEventListener('change', () => { r[key] = s.value; }); return s; };
  const inp = (r, key, i, ph) => { const x = h('input', { value: r[key] ?? '', 'aria-label': key, placeholder: ph, 'data-field': `rules[${i}].${key}`, size: 14 }); x.addEventListener('input', () => { r[key] = x.value; }); return h('div', { class: 'field' }, x); };
  function draw() {
    fill(rows, rules.map((r, i) => h('tr', {}, h('td', {}, sel(r, 'direction', ['ingress', 'egress'])), h('td', {}, sel(r, 'protocol', ['tcp', 'udp', 'icmp', 'all'])),
      h('td', {}, inp(r, 'ports', i, '80 or 8000-8100')), h('td', {}, inp(r, 'cidr', i, '0.0.0.0/0')), h('td', {}, sel(r, 'action', ['accept', 'drop'])),
      h('td', {}, inp(r, 'priority', i, '100')), h('td', {}, h('button', { onclick: () => { rules.splice(i, 1); draw(); } }, 'Remove')))));
  }
  const save = async () => {
    const body = { name: f.name, rules: rules.map((r) => {
      const o = { direction: r.direction, protocol: r.protocol, cidr: r.cidr, action: r.action };
      if (r.ports) o.ports = String(r.ports);
      if (r.priority !== '' && r.priority != null) o.priority = Number(r.priority);
      return o;
    }) };
    try { await api('PUT', `/v1/firewalls/${enc(f.id)}`, body); toast(`Saved ${f.name}`); area.replaceChildren(); reload(); } catch (e) { showErrors(area, errors, e); }
  };
  fill(area, h('section', { class: 'card', 'aria-label': `Rules of ${f.name}` }, h('h2', { style: 'margin-top:0' }, `Rules of ${f.name}`),
    h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, ['Direction', 'Protocol', 'Ports', 'Peer (CIDR)', 'Action', 'Priority', ''].map((t) => h('th', {}, t)))), rows)),
    errors, h('div', { class: 'row', style: 'margin-top:8px' },
      h('button', { onclick: () => { rules.push({ direction: 'ingress', protocol: 'tcp', ports: '', cidr: '0.0.0.0/0', action: 'accept', priority: 100 }); draw(); } }, 'Add rule'),
      h('button', { class: 'primary', onclick: save }, 'Save rules'), h('button', { onclick: () => area.replaceChildren() }, 'Cancel'))));
  draw();
}

function usageView(main) {
  const from = h('input', { type: 'date', 'aria-label': 'From' });
  const to = h('input', { type: 'date', 'aria-label': 'To' });
  const body = h('tbody');
  const total = h('p');
  const d = new Date();
  from.value = new Date(d.getFullYear(), d.getMonth(), 1).toISOString().slice(0, 10);
  async function load() {
    const q = new URLSearchParams();
    if (from.value) q.set('from', new Date(`${from.value}T00:00:00`).toISOString());
    if (to.value) q.set('to', new Date(`${to.value}T23:59:59`).toISOString());
    try {
      const { items } = await api('GET', `/v1/usage?${q}`);
      fill(body, items.map((u) => h('tr', {}, h('td', {}, u.name), h('td', { class: 'num' }, (u.core_seconds / 3600).toFixed(3)),
        h('td', { class: 'num' }, (u.gib_seconds / 3600).toFixed(3)), h('td', { class: 'num' }, u.cost == null ? '—' : u.cost.toFixed(4)))));
      const cost = items.reduce((n, u) => n + (u.cost || 0), 0);
      fill(total, `${items.length} groups; total cost ${cost.toFixed(4)}`);
    } catch (e) { fill(total, h('span', { class: 'error' }, e.message)); }
  }
  from.addEventListener('change', load);
  to.addEventListener('change', load);
  fill(main, h('h1', {}, 'Usage and cost'), h('p', { class: 'muted' }, 'Normalised sizes metered while a group is Pending, Running or Restarting.'),
    h('div', { class: 'row' }, field('From', from), field('To', to)), total,
    h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'Usage' }, h('thead', {}, h('tr', {}, h('th', {}, 'Group'), h('th', { class: 'num' }, 'Core-hours'), h('th', { class: 'num' }, 'GiB-hours'), h('th', { class: 'num' }, 'Cost'))), body)));
  load();
  return null;
}
