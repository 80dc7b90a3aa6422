// Shared pieces: the API client, DOM building (text only, never HTML from data), formatting,
// toasts, confirmation, and field errors shown at their fields.

/** An error the API answered: its status, code, message and field errors. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
    this.fields = (body && body.fields) || [];
  }
}

let onSignedOut = () => {};
/** What to do when the session is gone (a 401): set by app.js. */
export function whenSignedOut(f) { onSignedOut = f; }

/** Calls the API with the session cookie; JSON in and out; throws ApiError. */
export async function api(method, path, body, { raw = false, type, quiet = false } = {}) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = type || 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (!resp.ok) {
    let err = null;
    try { err = await resp.json(); } catch { /* not JSON */ }
    const e = new ApiError(resp.status, err);
    if (resp.status === 401 && !quiet && path !== '/v1/sessions') onSignedOut(e);
    throw e;
  }
  if (raw) return resp;
  if (resp.status === 204) return null;
  const ct = resp.headers.get('Content-Type') || '';
  return ct.includes('json') ? resp.json() : resp.text();
}

/** Builds an element: h('a', {href: '/x', class: 'y', onclick: f}, 'text', child, ...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function toast(message, bad = false) {
  const t = h('div', { class: bad ? 'toast bad' : 'toast' }, message);
  document.getElementById('toasts').append(t);
  setTimeout(() => t.remove(), bad ? 9000 : 4000);
}

/** A modal question; resolves true when confirmed. */
export function confirmDialog(title, body, action = 'Delete') {
  return new Promise((resolve) => {
    const d = h('dialog', { 'aria-labelledby': 'dlg-title' },
      h('h2', { id: 'dlg-title' }, title),
      h('div', {}, body),
      h('div', { class: 'row', style: 'justify-content:flex-end;margin-top:12px' },
        h('button', { onclick: () => d.close('no') }, 'Cancel'),
        h('button', { class: 'danger', onclick: () => d.close('yes') }, action)));
    d.addEventListener('close', () => { d.remove(); resolve(d.returnValue === 'yes'); });
    document.body.append(d);
    d.showModal();
  });
}

/** Shows an API error: each field error at its field (inputs carry data-field), the rest in `box`. */
export function showErrors(root, box, e) {
  root.querySelectorAll('.field.invalid').forEach((f) => f.classList.remove('invalid'));
  root.querySelectorAll('.field-error').forEach((f) => f.remove());
  const rest = [];
  const fields = (e && e.fields) || [];
  for (const f of fields) {
    const target = findField(root, f.field);
    if (target) {
      const wrap = target.closest('.field') || target.parentElement;
      wrap.classList.add('invalid');
      const msg = h('div', { class: 'error field-error', role: 'alert' }, `${f.field}: ${f.message}`);
      wrap.append(msg);
      target.setAttribute('aria-invalid', 'true');
    } else {
      rest.push(`${f.field}: ${f.message}`);
    }
  }
  if (!fields.length && e) rest.push(e.message || String(e));
  if (box) fill(box, rest.length ? h('div', { class: 'error', role: 'alert' }, rest.join('\n')) : null);
  const first = root.querySelector('.field.invalid input, .field.invalid textarea, .field.invalid select');
  if (first) first.focus();
}

/** The input for a field path: exact, else the closest parent path (`containers[0].env[1].name` → `containers[0].env[1]` → …). */
function findField(root, path) {
  let p = path;
  while (p) {
    const el = root.querySelector(`[data-field="${CSS.escape(p)}"]`);
    if (el) return el;
    const cut = Math.max(p.lastIndexOf('.'), p.lastIndexOf('['));
    if (cut <= 0) break;
    p = p.slice(0, cut);
  }
  return null;
}

export function age(t) {
  if (!t) return '';
  const s = Math.max(0, (Date.now() - new Date(t).getTime()) / 1000);
  if (s < 60) return `${Math.floor(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60) ? `${Math.floor((s % 3600) / 60)}m` : ''}`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}

export function bytes(n) {
  if (n === undefined || n === null) return '';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return `${v >= 10 || i === 0 ? Math.round(v) : v.toFixed(1)} ${u[i]}`;
}

export function size(r) {
  if (!r || !r.cpu) return '';
  return `${r.cpu} vCPU · ${bytes(r.memory_bytes)}`;
}

export function price(r) {
  return r && r.price_per_hour != null ? `${r.price_per_hour.toFixed(4)}/h` : '—';
}

export function phase(p, label) {
  return h('span', { class: `phase ${p}` }, label || p);
}

export function time(t) {
  return t ? new Date(t).toLocaleString() : '';
}

/** A labelled input: field(label, input, hint). The input gets an id and the label points at it. */
let ids = 0;
export function field(label, input, hint) {
  const id = input.id || `f${++ids}`;
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('div', { class: 'hint' }, hint) : null);
}

/** Whether the signed-in key may change things. */
export function canWrite(me) { return me && (me.role === 'admin' || me.role === 'member'); }

export function download(name, text) {
  const a = h('a', { href: URL.createObjectURL(new Blob([text], { type: 'text/plain' })), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

/** A group as the API sends it, with the lists it leaves out when empty filled in. */
export function norm(g) {
  const sp = g.spec;
  for (const k of ['init_containers', 'containers', 'volumes', 'registry_credentials']) sp[k] = sp[k] || [];
  for (const c of [...sp.init_containers, ...sp.containers]) for (const k of ['env', 'ports', 'volume_mounts']) c[k] = c[k] || [];
  g.status.containers = g.status.containers || [];
  g.status.init_containers = g.status.init_containers || [];
  return g;
}
