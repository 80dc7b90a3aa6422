// The console's shell: who is signed in, the header, and the router (one page, addresses kept
// in the history so reloads and shared links work). Views live in their own modules, loaded
// when first needed, so the group list stays small.
import { api, h, fill, whenSignedOut, showErrors, canWrite, toast } from '/console/ui.js';

const main = document.getElementById('main');
const top = document.getElementById('top');
let me = null;
let cleanup = null;

const views = {
  groups: () => import('/console/list.js'),
  group: () => import('/console/detail.js'),
  create: () => import('/console/wizard.js'),
  resources: () => import('/console/resources.js'),
};

// Address → [view module, export, params].
function route(path) {
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0 || parts[0] === 'groups') {
    if (parts.length >= 2) return ['group', 'groupView', { name: parts[1], tab: parts[2] || 'overview' }];
    return ['groups', 'listView', {}];
  }
  if (parts[0] === 'create') return ['create', parts[1] === 'yaml' ? 'yamlView' : 'wizardView', {}];
  const kinds = ['disks', 'image-caches', 'vpcs', 'eips', 'firewalls', 'images', 'usage', 'tenants', 'keys', 'audit'];
  if (kinds.includes(parts[0])) return ['resources', 'resourceView', { kind: parts[0], name: parts[1] }];
  return null;
}

export function navigate(path, replace = false) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  render();
}

function applyTheme() {
  const t = localStorage.getItem('qci-theme');
  if (t === 'light' || t === 'dark') document.documentElement.dataset.theme = t;
  else delete document.documentElement.dataset.theme;
}

function header() {
  if (!me) { fill(top, h('span', { class: 'brand' }, 'qci')); return; }
  const admin = me.role === 'admin';
  const links = [
    ['/groups', 'Container groups'],
    canWrite(me) ? ['/create', 'Create'] : null,
    ['/disks', 'Disks'],
    ['/image-caches', 'Image caches'],
    ['/vpcs', 'VPCs'],
    ['/eips', 'EIPs'],
    ['/firewalls', 'Firewalls'],
    admin ? ['/images', 'Images'] : null,
    ['/usage', 'Usage'],
    admin ? ['/tenants', 'Tenants'] : null,
    admin ? ['/keys', 'Keys'] : null,
  ].filter(Boolean);
  const here = location.pathname;
  const theme = h('select', { 'aria-label': 'Theme', onchange: (e) => {
    if (e.target.value === 'auto') localStorage.removeItem('qci-theme'); else localStorage.setItem('qci-theme', e.target.value);
    applyTheme();
  } }, ['auto', 'light', 'dark'].map((t) => h('option', { value: t, selected: (localStorage.getItem('qci-theme') || 'auto') === t }, `Theme: ${t}`)));
  fill(top,
    h('a', { class: 'brand', href: '/groups' }, 'qci'),
    h('nav', { 'aria-label': 'Main' }, links.map(([href, label]) => h('a', {
      href, 'aria-current': (here === href || (href === '/groups' && (here === '/' || here.startsWith('/groups/')))) ? 'page' : null,
    }, label))),
    h('div', { class: 'who' },
      h('span', { id: 'whoami' }, `${me.tenant} · ${me.role}`),
      theme,
      h('button', { onclick: signOut }, 'Sign out')));
}

async function signOut() {
  try { await api('DELETE', '/v1/sessions/current'); } catch { /* signed out anyway */ }
  me = null;
  navigate('/login');
}

function loginView() {
  const key = h('input', { type: 'password', name: 'key', autocomplete: 'off', required: true, 'data-field': 'key', spellcheck: 'false' });
  const errors = h('div');
  const form = h('form', { class: 'card login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Sign in to qci'),
    h('div', { class: 'field' }, h('label', { for: 'login-key' }, 'API key'), key,
      h('div', { class: 'hint' }, 'An API key (qci_…) from your administrator, or qci key create. It is exchanged for a session cookie and not kept in the page.')),
    errors,
    h('button', { class: 'primary', type: 'submit' }, 'Sign in'));
  key.id = 'login-key';
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await api('POST', '/v1/sessions', { key: key.value.trim() });
      key.value = '';
      me = await api('GET', '/v1/whoami');
      const next = new URLSearchParams(location.search).get('next');
      navigate(next && next.startsWith('/') && !next.startsWith('//') ? next : '/groups', true);
    } catch (err) {
      showErrors(form, errors, err);
    }
  });
  fill(main, form);
  key.focus();
}

let renders = 0;
async function render() {
  // A newer navigation wins: a render still waiting for the API when another starts stops.
  const mine = ++renders;
  if (cleanup) { try { cleanup(); } catch { /* view already gone */ } cleanup = null; }
  applyTheme();
  if (location.pathname === '/login') { me = null; header(); loginView(); return; }
  const r = route(location.pathname);
  // The view's module loads while who is signed in is asked, not after.
  const loading = r ? views[r[0]]() : null;
  if (!me) {
    try { me = await api('GET', '/v1/whoami', undefined, { quiet: true }); } catch {
      if (mine === renders) navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, true);
      return;
    }
  }
  if (mine !== renders) return;
  header();
  if (!r) { fill(main, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '/groups' }, 'Container groups'))); return; }
  const [, fn, params] = r;
  const m = await loading;
  if (mine !== renders) return;
  fill(main);
  cleanup = m[fn](main, params, { me, navigate }) || null;
  main.focus({ preventScroll: true });
}

whenSignedOut(() => {
  if (location.pathname !== '/login') navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, true);
});

// Links inside the console change the view without a page load.
document.addEventListener('click', (e) => {
  const a = e.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download') || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/v1/') || url.pathname.startsWith('/console/')) return;
  e.preventDefault();
  if (url.pathname + url.search !== location.pathname + location.search) navigate(url.pathname + url.search);
});
window.addEventListener('popstate', render);
// Nothing fails silently: an error no view caught is shown to the person who met it.
window.addEventListener('error', (e) => toast(`Console error: ${e.message}`, true));
window.addEventListener('unhandledrejection', (e) => toast(`Console error: ${e.reason?.message || e.reason}`, true));
render();
