// A group's page: overview and actions, events (live), logs (follow, previous, download),
// a terminal (xterm.js over the exec WebSocket), monitoring charts (uPlot), and its spec as
// YAML with a reviewed update.
import { norm, api, h, fill, age, size, price, phase, time, bytes, toast, confirmDialog, canWrite, download } from '/console/ui.js';
import { toYaml } from '/console/wizard.js';

const TABS = [['overview', 'Overview'], ['events', 'Events'], ['logs', 'Logs'], ['terminal', 'Terminal'], ['monitoring', 'Monitoring'], ['yaml', 'YAML']];

export function groupView(main, { name, tab }, { me, navigate }) {
  const write = canWrite(me);
  const tabs = TABS.filter(([t]) => write || t !== 'terminal');
  const current = tabs.some(([t]) => t === tab) ? tab : 'overview';
  const title = h('h1', {}, name, ' ');
  const badge = h('span');
  const panel = h('div', { role: 'tabpanel', id: 'panel', 'aria-labelledby': `tab-${current}` });
  const tablist = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Group views' }, tabs.map(([t, label]) => h('button', {
    role: 'tab', id: `tab-${t}`, 'aria-selected': t === current ? 'true' : 'false', 'aria-controls': 'panel', tabindex: t === current ? '0' : '-1',
    onclick: () => navigate(`/groups/${encodeURIComponent(name)}/${t}`, true),
    onkeydown: (e) => {
      const i = tabs.findIndex(([x]) => x === t);
      const next = e.key === 'ArrowRight' ? tabs[(i + 1) % tabs.length] : e.key === 'ArrowLeft' ? tabs[(i + tabs.length - 1) % tabs.length] : null;
      if (next) { navigate(`/groups/${encodeURIComponent(name)}/${next[0]}`, true); document.getElementById(`tab-${next[0]}`)?.focus(); }
    },
  }, label)));
  fill(main, h('p', {}, h('a', { href: '/groups' }, '← Container groups')), h('div', { class: 'row' }, title, badge), tablist, panel);

  let g = null;
  let stop = [];
  let onGroup = () => {};
  // The group, kept current by its own live stream.
  const es = new EventSource(`/v1/container-groups/${encodeURIComponent(name)}?watch=true`);
  const seen = (x) => {
    if (x.name !== name) return;
    const first = !g;
    g = x;
    fill(badge, phase(g.status.phase));
    if (first) start(); else onGroup(g);
  };
  es.addEventListener('upsert', (e) => seen(norm(JSON.parse(e.data))));
  es.onerror = async () => {
    // Gone, never there, or not ours to see: the API's own words (a closed session signs out).
    try { await api('GET', `/v1/container-groups/${encodeURIComponent(name)}`); } catch (err) {
      if (err.status) { es.close(); if (!g) fill(panel, h('p', { class: 'error', role: 'alert' }, err.message)); }
    }
  };
  es.addEventListener('delete', () => {
    es.close();
    fill(badge, phase('Deleting', 'Deleted'));
    toast(`${name} was deleted`);
  });

  function start() {
    const views = { overview, events, logs, terminal, monitoring, yaml };
    const r = views[current](panel, g, { write, navigate, name });
    if (r && r.update) onGroup = r.update;
    if (r && r.stop) stop.push(r.stop);
  }
  return () => { es.close(); stop.forEach((f) => f()); };
}

function containerRows(g) {
  const st = new Map([...(g.status.init_containers || []), ...(g.status.containers || [])].map((c) => [c.name, c]));
  return [...g.spec.init_containers.map((c) => [c, 'init']), ...g.spec.containers.map((c) => [c, 'work'])].map(([c, kind]) => {
    const s = st.get(c.name) || {};
    const last = s.last_state ? `${s.last_state.reason || ''}${s.last_state.exit_code != null ? ` (exit ${s.last_state.exit_code})` : ''} ${s.last_state.finished_at ? age(s.last_state.finished_at) + ' ago' : ''}` : '';
    return h('tr', { dataset: { container: c.name } },
      h('td', {}, c.name, kind === 'init' ? h('span', { class: 'muted' }, ' (init)') : null),
      h('td', { class: 'mono' }, c.image),
      h('td', {}, phase(s.state || 'waiting')),
      h('td', {}, s.ready === true ? 'yes' : s.ready === false ? 'no' : '—'),
      h('td', { class: 'num' }, String(s.restart_count || 0)),
      h('td', {}, [s.reason, s.exit_code != null ? `exit ${s.exit_code}` : null, s.message].filter(Boolean).join(' · ')),
      h('td', {}, last.trim()),
      h('td', { class: 'num' }, s.started_at ? age(s.started_at) : ''));
  });
}

function overview(panel, g0, { write, navigate, name }) {
  const info = h('dl', { class: 'kv' });
  const body = h('tbody');
  const actions = write ? h('div', { class: 'row' },
    h('button', { onclick: async () => {
      try { await api('POST', `/v1/container-groups/${encodeURIComponent(name)}/restart`); toast(`Restarting ${name}`); } catch (e) { toast(e.message, true); }
    } }, 'Restart'),
    h('a', { class: 'button', href: `/groups/${encodeURIComponent(name)}/yaml` }, 'Update'),
    h('button', { class: 'danger', onclick: async () => {
      if (!await confirmDialog(`Delete ${name}?`, h('p', {}, 'Its containers are stopped and everything made for it is removed. Disks are kept.'))) return;
      try { await api('DELETE', `/v1/container-groups/${encodeURIComponent(name)}`); toast(`Deleting ${name}`); navigate('/groups'); } catch (e) { toast(e.message, true); }
    } }, 'Delete')) : null;
  fill(panel, actions, h('div', { class: 'card' }, info),
    h('h2', {}, 'Containers'),
    h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'Containers' }, h('thead', {}, h('tr', {},
      ['Name', 'Image', 'State', 'Ready', 'Restarts', 'Reason', 'Last state', 'Up'].map((t) => h('th', {}, t)))), body)),
    h('h2', {}, 'Volumes'), volumes(g0));
  function update(g) {
    const r = g.resources || {};
    const net = g.spec.network || {};
    const kv = [
      ['Phase', phase(g.status.phase)], ['Message', g.status.message || '—'],
      ['Health', g.status.phase === 'Running' ? phase(g.status.health || 'checking') : '—'],
      ['Size', `${size(r)}${r.requested_cpu ? ` (asked ${r.requested_cpu} vCPU · ${bytes(r.requested_memory_bytes)})` : ' (the smallest size: the spec asks for none)'}`], ['Price', price(r)],
      ['IP', g.status.ip || '—'], ['EIP', g.status.eip || '—'],
      ['Network', net.vpc ? `VPC ${net.vpc}` : (net.mode || 'basic')], ['Firewall', net.firewall || '—'],
      ['Restart policy', g.spec.restart_policy || 'Always'], ['Shared memory', g.spec.shm_size || 'default'],
      ['Image cache', g.spec.image_cache || '—'], ['Instance type', g.spec.instance_type || '—'], ['Runtime', g.spec.runtime || 'runc'],
      ['Id', g.id], ['Created', `${time(g.created_at)} (${age(g.created_at)} ago)`],
    ];
    fill(info, kv.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    fill(body, containerRows(g));
  }
  update(g0);
  return { update };
}

function volumes(g) {
  if (!g.spec.volumes.length) return h('p', { class: 'muted' }, 'None.');
  return h('ul', {}, g.spec.volumes.map((v) => {
    const kind = v.config_file ? `config files: ${v.config_file.files.map((f) => f.path).join(', ')}` : v.disk ? `disk ${v.disk.id}` : 'empty dir';
    const mounts = g.spec.containers.concat(g.spec.init_containers).flatMap((c) => (c.volume_mounts || []).filter((m) => m.name === v.name).map((m) => `${c.name}:${m.mount_path}${m.sub_path ? ` (${m.sub_path})` : ''}`));
    return h('li', {}, h('strong', {}, v.name), ` — ${kind}; mounted at ${mounts.join(', ') || 'nowhere'}`);
  }));
}

function events(panel, g) {
  const body = h('tbody');
  const rows = new Map();
  fill(panel, h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'Events' },
    h('thead', {}, h('tr', {}, ['Type', 'Reason', 'Container', 'Message', 'Count', 'Last seen'].map((t) => h('th', {}, t)))), body)));
  const es = new EventSource(`/v1/container-groups/${encodeURIComponent(g.id)}/events?watch=true`);
  es.onmessage = (e) => {
    const ev = JSON.parse(e.data);
    const tr = h('tr', {}, h('td', {}, ev.type || ev.event_type || ''), h('td', {}, ev.reason), h('td', {}, ev.container || ''),
      h('td', { style: 'white-space:normal' }, ev.message), h('td', { class: 'num' }, String(ev.count)), h('td', { title: time(ev.time) }, `${age(ev.time)} ago`));
    const old = rows.get(ev.id);
    if (old) old.remove();
    rows.set(ev.id, tr);
    body.prepend(tr);
  };
  return { stop: () => es.close() };
}

function containerSelect(g, running) {
  const names = [...g.spec.init_containers, ...g.spec.containers].map((c) => c.name);
  const st = new Map([...(g.status.init_containers || []), ...(g.status.containers || [])].map((c) => [c.name, c.state]));
  const choice = names.find((n) => !running || st.get(n) === 'running') || names[0];
  return h('select', { 'aria-label': 'Container' }, names.map((n) => h('option', { value: n, selected: n === choice }, n)));
}

function logs(panel, g) {
  const sel = containerSelect(g, false);
  const follow = h('input', { type: 'checkbox', checked: true });
  const previous = h('input', { type: 'checkbox' });
  const stamps = h('input', { type: 'checkbox' });
  const out = h('pre', { class: 'logs', tabindex: '0', 'aria-label': 'Log output', 'aria-live': 'off' });
  let ctl = null;
  const lbl = (i, t) => h('label', { class: 'row', style: 'gap:4px' }, i, t);
  fill(panel, h('div', { class: 'row' }, sel, lbl(follow, 'Follow'), lbl(previous, 'Previous run'), lbl(stamps, 'Timestamps'),
    h('button', { onclick: () => download(`${g.name}-${sel.value}${previous.checked ? '-previous' : ''}.log`, out.textContent) }, 'Download')), out);
  async function load() {
    if (ctl) ctl.abort();
    ctl = new AbortController();
    out.textContent = '';
    const q = new URLSearchParams({ container: sel.value, tail: '1000' });
    if (follow.checked && !previous.checked) q.set('follow', 'true');
    if (previous.checked) q.set('previous', 'true');
    if (stamps.checked) q.set('timestamps', 'true');
    try {
      const resp = await fetch(`/v1/container-groups/${encodeURIComponent(g.id)}/logs?${q}`, { credentials: 'same-origin', signal: ctl.signal });
      if (!resp.ok) { const e = await resp.json().catch(() => ({})); out.textContent = e.message || `HTTP ${resp.status}`; return; }
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
        out.append(dec.decode(value, { stream: true }));
        if (atEnd) out.scrollTop = out.scrollHeight;
      }
    } catch (e) { if (e.name !== 'AbortError') out.append(`\n[${e.message}]`); }
  }
  [sel, follow, previous, stamps].forEach((x) => x.addEventListener('change', load));
  load();
  return { stop: () => ctl && ctl.abort() };
}

function css(href) {
  if (!document.querySelector(`link[href="${href}"]`)) document.head.append(h('link', { rel: 'stylesheet', href }));
}

function terminal(panel, g) {
  const sel = containerSelect(g, true);
  const cmd = h('input', { value: 'sh', 'aria-label': 'Command', size: 24 });
  const connect = h('button', { class: 'primary' }, 'Connect');
  const state = h('span', { class: 'muted', 'aria-live': 'polite' });
  const box = h('div', { class: 'term', id: 'terminal' });
  fill(panel, h('div', { class: 'row' }, sel, cmd, connect, state), h('p', { class: 'muted' }, 'A command in the running container, with a terminal (like qci exec -it). Words are split on spaces.'), box);
  let ws = null;
  let term = null;
  let fit = null;
  const onResize = () => fit && fit.fit();
  async function open() {
    // A browser is not told why a WebSocket was refused: the reasons the API would give are
    // checked here first, in its words.
    let now;
    try { now = norm(await api('GET', `/v1/container-groups/${encodeURIComponent(g.id)}`)); } catch (e) { state.textContent = e.message; return; }
    const st = [...now.status.init_containers, ...now.status.containers].find((c) => c.name === sel.value);
    if (!st || st.state !== 'running') {
      state.textContent = `container ${JSON.stringify(sel.value)} is ${st ? st.state : 'not started'}, not running: only running containers can be connected to`;
      return;
    }
    css('/console/vendor/xterm/xterm.css');
    const [{ Terminal }, { FitAddon }] = await Promise.all([import('/console/vendor/xterm/xterm.mjs'), import('/console/vendor/xterm/addon-fit.mjs')]);
    if (ws) ws.close();
    if (term) term.dispose();
    term = new Terminal({ convertEol: false, cursorBlink: true, fontSize: 13, scrollback: 5000 });
    fit = new FitAddon();
    term.loadAddon(fit);
    box.replaceChildren();
    term.open(box);
    fit.fit();
    const argv = cmd.value.trim().split(/\s+/).filter(Boolean);
    const q = new URLSearchParams({ command: JSON.stringify(argv.length ? argv : ['sh']), tty: 'true', rows: String(term.rows), cols: String(term.cols) });
    ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/container-groups/${encodeURIComponent(g.id)}/containers/${encodeURIComponent(sel.value)}/exec?${q}`);
    ws.binaryType = 'arraybuffer';
    const enc = new TextEncoder();
    const send = (ch, bytes) => { if (ws.readyState === 1) { const b = new Uint8Array(bytes.length + 1); b[0] = ch; b.set(bytes, 1); ws.send(b); } };
    ws.onopen = () => { state.textContent = `connected to ${sel.value}`; term.focus(); };
    ws.onmessage = (e) => {
      const b = new Uint8Array(e.data);
      if (b[0] === 1 || b[0] === 2) term.write(b.subarray(1));
      else if (b[0] === 3) {
        const st = JSON.parse(new TextDecoder().decode(b.subarray(1)));
        state.textContent = st.error ? `error: ${st.error}` : `exited with ${st.exit_code}${st.message ? `: ${st.message}` : ''}`;
      }
    };
    ws.onclose = (e) => { if (!state.textContent.startsWith('exited') && !state.textContent.startsWith('error')) state.textContent = e.reason ? `closed: ${e.reason}` : 'closed'; };
    ws.onerror = () => { state.textContent = 'could not connect: the server refused the session (signed out, or the exec_sessions quota is used up?)'; };
    term.onData((d) => send(0, enc.encode(d)));
    term.onResize(({ cols, rows }) => send(4, enc.encode(JSON.stringify({ cols, rows }))));
  }
  connect.addEventListener('click', open);
  window.addEventListener('resize', onResize);
  if (g.status.phase === 'Running') open();
  return { stop: () => { window.removeEventListener('resize', onResize); if (ws) ws.close(); if (term) term.dispose(); } };
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    if (window.uPlot) { resolve(); return; }
    const s = h('script', { src });
    s.onload = resolve; s.onerror = reject;
    document.head.append(s);
  });
}

function monitoring(panel, g) {
  const range = h('select', { 'aria-label': 'Time range' }, h('option', { value: '1h' }, 'Last hour'), h('option', { value: '24h' }, 'Last 24 hours'));
  const charts = h('div');
  fill(panel, h('div', { class: 'row' }, range, h('span', { class: 'muted' }, 'Readings every few seconds for the first hour, then one a minute; kept 24 h.')), charts);
  let plots = [];
  let timer = null;
  async function draw() {
    css('/console/vendor/uplot/uPlot.min.css');
    await loadScript('/console/vendor/uplot/uPlot.iife.min.js');
    const { items } = await api('GET', `/v1/container-groups/${encodeURIComponent(g.id)}/metrics?since=${range.value}`);
    const now = Date.now() / 1000;
    const span = range.value === '24h' ? 86400 : 3600;
    const names = [...new Set(items.map((s) => s.container))];
    const times = [...new Set(items.map((s) => Math.floor(new Date(s.time).getTime() / 1000)))].sort((a, b) => a - b);
    const at = new Map(times.map((t, i) => [t, i]));
    const series = (f) => names.map((n) => {
      const ys = new Array(times.length).fill(null);
      for (const s of items) if (s.container === n) ys[at.get(Math.floor(new Date(s.time).getTime() / 1000))] = f(s);
      return ys;
    });
    const net = (f) => {
      const ys = new Array(times.length).fill(null);
      for (const s of items) if (s.container === names[0]) ys[at.get(Math.floor(new Date(s.time).getTime() / 1000))] = f(s);
      return ys;
    };
    plots.forEach((p) => p.destroy());
    plots = [];
    charts.replaceChildren();
    // The theme's own colours for axes and grid (light or dark).
    const style = getComputedStyle(document.documentElement);
    const ink = style.getPropertyValue('--muted').trim();
    const rule = style.getPropertyValue('--line').trim();
    const colors = ['#1f6feb', '#1a7f37', '#bf3989', '#9a6700', '#cf222e', '#8250df'];
    const width = Math.max(280, Math.min(charts.clientWidth || panel.clientWidth || 800, 1200));
    const chart = (id, title, ys, labels, fmt) => {
      const points = ys.reduce((n, y) => n + y.filter((v) => v != null).length, 0);
      const last = ys.map((y, i) => `${labels[i]} ${fmt(y.filter((v) => v != null).at(-1))}`).join(', ');
      const box = h('figure', { class: 'card chart', id, dataset: { points: String(points) }, 'aria-label': `${title}: ${points} readings; latest ${last}` },
        h('figcaption', {}, h('strong', {}, title), h('span', { class: 'muted' }, ` — latest: ${last}`)));
      charts.append(box);
      if (!times.length) { box.append(h('p', { class: 'muted' }, 'No readings yet.')); return; }
      plots.push(new window.uPlot({
        width: width - 40, height: 180,
        // The whole window asked for, so a few readings are not stretched across it.
        scales: { x: { time: true, range: () => [now - span, now] } },
        series: [{}, ...labels.map((l, i) => ({ label: l, stroke: colors[i % colors.length], width: 2, value: (u, v) => fmt(v), spanGaps: true }))],
        axes: [{ stroke: ink, grid: { stroke: rule }, ticks: { stroke: rule } }, { values: (u, vs) => vs.map(fmt), size: 70, stroke: ink, grid: { stroke: rule }, ticks: { stroke: rule } }],
      }, [times, ...ys], box));
    };
    const fmtCores = (v) => (v == null ? '—' : `${v.toFixed(3)} cores`);
    chart('chart-cpu', 'CPU', series((s) => s.cpu_cores), names, fmtCores);
    chart('chart-memory', 'Memory', series((s) => s.memory_bytes), names, (v) => (v == null ? '—' : bytes(v)));
    chart('chart-network', 'Network (group)', [net((s) => s.rx_bytes), net((s) => s.tx_bytes)], ['received', 'sent'], (v) => (v == null ? '—' : bytes(v)));
  }
  const safeDraw = () => draw().catch((e) => fill(charts, h('p', { class: 'error' }, e.message)));
  range.addEventListener('change', safeDraw);
  safeDraw();
  timer = setInterval(safeDraw, 15000);
  return { stop: () => { clearInterval(timer); plots.forEach((p) => p.destroy()); } };
}

function yaml(panel, g, { write, name }) {
  const text = h('textarea', { rows: 24, spellcheck: 'false', 'aria-label': 'Spec (YAML)', readonly: !write }, toYaml(g.spec));
  const errors = h('div');
  const plan = h('div', { 'aria-live': 'polite' });
  const review = h('button', { class: 'primary' }, 'Review update');
  fill(panel, h('p', { class: 'muted' }, 'The group\'s spec. Edit and review: the update recreates only the containers whose spec changed; the others keep running.'),
    text, errors, write ? h('div', { class: 'row', style: 'margin-top:8px' }, review,
      h('button', { onclick: () => download(`${name}.yaml`, text.value) }, 'Download')) : null, plan);
  const put = (dry) => api('PUT', `/v1/container-groups/${encodeURIComponent(g.id)}${dry ? '?dry_run=true' : ''}`, text.value, { type: 'application/yaml' });
  review.addEventListener('click', async () => {
    fill(errors); fill(plan);
    let d;
    try { d = await put(true); } catch (e) { fill(errors, h('div', { class: 'error', role: 'alert' }, e.fields.length ? e.fields.map((f) => `${f.field}: ${f.message}`).join('\n') : e.message)); return; }
    const u = d.update;
    const li = (label, xs) => (xs.length ? h('li', {}, `${label}: ${xs.join(', ')}`) : null);
    const nothing = !u.recreated.length && !u.added.length && !u.removed.length;
    const apply = h('button', { class: 'primary', onclick: async () => {
      try { await put(false); toast(`Updating ${name}`); fill(plan, h('p', {}, 'Update applied; the overview shows its progress.')); } catch (e) { fill(errors, h('div', { class: 'error', role: 'alert' }, e.message)); }
    } }, 'Apply update');
    fill(plan, h('div', { class: 'card', id: 'update-plan' }, h('h2', {}, 'What the update does'),
      h('ul', { class: 'plan' }, li('Recreated', u.recreated), li('Added', u.added), li('Removed', u.removed), li('Kept running', u.kept),
        nothing ? h('li', {}, 'No container changes.') : null),
      h('p', {}, `Size: ${size(d.group.resources)}, ${price(d.group.resources)}`), apply));
  });
}
