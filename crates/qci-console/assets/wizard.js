// Creating a group: the four-step wizard (containers, storage, network, basic information),
// each step checked by the server as you go (a dry run; its field errors shown at the field),
// then the spec as YAML (editable) with the equivalent `qci create` command, its size and
// price; and "create from YAML".
import { api, h, fill, field, showErrors, size, price, toast } from '/console/ui.js';

// ---- YAML out (the server parses what comes back) ----
const RESERVED = /^(true|false|yes|no|on|off|null|~|y|n)$/i;
function scalar(s) {
  if (typeof s !== 'string') return JSON.stringify(s);
  if (/^[A-Za-z_/.][A-Za-z0-9_./@+-]*$/.test(s) && !RESERVED.test(s)) return s;
  return JSON.stringify(s);
}
/** A JSON value as block YAML: empty lists, empty objects and nulls left out. */
export function toYaml(v, indent = '') {
  const lines = [];
  const emit = (key, val, ind) => {
    if (val === null || val === undefined || (Array.isArray(val) && !val.length) || (typeof val === 'object' && !Array.isArray(val) && !Object.keys(val).length)) return;
    const head = `${ind}${key}:`;
    if (typeof val === 'string' && val.includes('\n') && !/^\s/.test(val) && !/[ \t]\n/.test(val)) {
      lines.push(`${head} |${val.endsWith('\n') ? '' : '-'}`);
      for (const l of val.replace(/\n$/, '').split('\n')) lines.push(l ? `${ind}  ${l}` : '');
    } else if (Array.isArray(val)) {
      lines.push(head);
      for (const item of val) {
        if (item && typeof item === 'object') {
          const sub = toYaml(item, `${ind}  `).split('\n');
          lines.push(`${ind}- ${sub[0].slice(ind.length + 2)}`, ...sub.slice(1));
        } else lines.push(`${ind}- ${scalar(item)}`);
      }
    } else if (typeof val === 'object') {
      lines.push(head, toYaml(val, `${ind}  `));
    } else lines.push(`${head} ${scalar(val)}`);
  };
  for (const [k, val] of Object.entries(v)) emit(k, val, indent);
  return lines.filter((l) => l !== undefined).join('\n');
}

// ---- the model behind the form, and the spec made from it ----
function newContainer(n) {
  const probe = () => ({ kind: 'none', command: '', path: '/', port: '' });
  return { kind: 'work', name: n === 1 ? 'main' : `c${n}`, image: '', pull: '', command: '', args: '', working_dir: '', env: '', ports: '', cpu: '', memory: '', max_log_size: '', probes: { liveness_probe: probe(), readiness_probe: probe(), startup_probe: probe() }, mounts: [] };
}
function newVolume(n) { return { name: `vol${n}`, kind: 'config', files: [{ path: 'app.conf', content: '' }], medium: '', size_limit: '', disk: '' }; }

const lines = (t) => t.split('\n').map((l) => l.trim()).filter(Boolean);
function portsOf(t) {
  return t.split(/[\s,]+/).filter(Boolean).map((p) => {
    const [n, proto] = p.split('/');
    return { port: /^\d+$/.test(n) ? Number(n) : n, protocol: (proto || 'TCP').toUpperCase() };
  });
}
function envOf(t) {
  return lines(t).map((l) => { const i = l.indexOf('='); return i < 0 ? { name: l, value: '' } : { name: l.slice(0, i), value: l.slice(i + 1) }; });
}
function probeOf(p) {
  if (p.kind === 'exec') return { exec: { command: lines(p.command) } };
  if (p.kind === 'http') return { http_get: { path: p.path || '/', port: Number(p.port) || p.port } };
  if (p.kind === 'tcp') return { tcp_socket: { port: Number(p.port) || p.port } };
  return undefined;
}
function containerSpec(c) {
  const o = { name: c.name, image: c.image };
  if (c.pull) o.image_pull_policy = c.pull;
  if (c.command.trim()) o.command = lines(c.command);
  if (c.args.trim()) o.args = lines(c.args);
  if (c.working_dir.trim()) o.working_dir = c.working_dir.trim();
  if (c.env.trim()) o.env = envOf(c.env);
  if (c.ports.trim()) o.ports = portsOf(c.ports);
  for (const k of ['cpu', 'memory', 'max_log_size']) if (c[k].trim()) o[k] = c[k].trim();
  if (c.kind === 'work') for (const [k, p] of Object.entries(c.probes)) if (probeOf(p)) o[k] = probeOf(p);
  const mounts = c.mounts.filter((m) => m.volume && m.mount_path).map((m) => (m.sub_path ? { name: m.volume, mount_path: m.mount_path, sub_path: m.sub_path } : { name: m.volume, mount_path: m.mount_path }));
  if (mounts.length) o.volume_mounts = mounts;
  return o;
}
export function specOf(m) {
  const s = { name: m.name };
  if (m.restart_policy) s.restart_policy = m.restart_policy;
  const init = m.containers.filter((c) => c.kind === 'init').map(containerSpec);
  if (init.length) s.init_containers = init;
  s.containers = m.containers.filter((c) => c.kind === 'work').map(containerSpec);
  const creds = m.creds.filter((c) => c.server || c.username || c.password);
  if (creds.length) s.registry_credentials = creds;
  const vols = m.volumes.map((v) => {
    if (v.kind === 'config') return { name: v.name, config_file: { files: v.files.filter((f) => f.path).map((f) => ({ path: f.path, content: f.content })) } };
    if (v.kind === 'disk') return { name: v.name, disk: { id: v.disk } };
    const e = {};
    if (v.medium) e.medium = v.medium;
    if (v.size_limit) e.size_limit = v.size_limit;
    return { name: v.name, empty_dir: e };
  });
  if (vols.length) s.volumes = vols;
  const net = {};
  if (m.net.mode === 'vpc') { net.vpc = m.net.vpc; } else if (m.net.mode === 'none') net.mode = 'none';
  if (m.net.eip === 'auto') net.eip = 'auto'; else if (m.net.eip === 'existing' && m.net.eip_name) net.eip = m.net.eip_name;
  if (m.net.firewall) net.firewall = m.net.firewall;
  if (Object.keys(net).length) s.network = net;
  if (m.shm_size) s.shm_size = m.shm_size;
  if (m.image_cache) s.image_cache = m.image_cache;
  if (m.instance_type) s.instance_type = m.instance_type;
  if (m.runtime) s.runtime = m.runtime;
  return s;
}

// Which step a field path belongs to.
function stepOf(path) {
  if (/^(init_)?containers\[\d+\]\.volume_mounts/.test(path) || path.startsWith('volumes')) return 1;
  if (path.startsWith('containers') || path.startsWith('init_containers') || path.startsWith('registry_credentials')) return 0;
  if (path.startsWith('network')) return 2;
  return 3;
}

const STEPS = ['Containers', 'Storage', 'Network', 'Basic information', 'Review'];

export function wizardView(main, _p, { navigate }) {
  const m = {
    name: `group-${Math.random().toString(36).slice(2, 7)}`, restart_policy: 'Always', shm_size: '', image_cache: '', instance_type: '', runtime: '',
    containers: [newContainer(1)], creds: [], volumes: [], net: { mode: 'basic', vpc: '', eip: 'none', eip_name: '', firewall: '' },
  };
  let step = 0;
  let counter = 1;
  let vcounter = 0;
  const stepsEl = h('ol', { class: 'steps', 'aria-label': 'Steps' });
  const body = h('div');
  const errors = h('div');
  const back = h('button', { type: 'button', onclick: () => go(step - 1) }, 'Back');
  const next = h('button', { type: 'submit', class: 'primary' }, 'Next');
  const form = h('form', { novalidate: true }, body, errors, h('div', { class: 'row', style: 'margin-top:12px' }, back, next));
  fill(main, h('h1', {}, 'Create a container group'), stepsEl, form);
  // Lists (env, ports, resources) are loaded once for the pickers.
  const lists = {};
  for (const [k, path] of [['disks', '/v1/disks'], ['vpcs', '/v1/vpcs'], ['eips', '/v1/eips'], ['firewalls', '/v1/firewalls'], ['caches', '/v1/image-caches']]) {
    lists[k] = [];
    api('GET', path).then((r) => { lists[k] = r.items || []; if (step === 1 || step === 2 || step === 3) render(); }).catch(() => {});
  }

  const bind = (obj, key, input) => {
    const read = () => { obj[key] = input.type === 'checkbox' ? input.checked : input.value; };
    input.addEventListener('input', read);
    input.addEventListener('change', read);
    return input;
  };
  const text = (obj, key, attrs = {}) => bind(obj, key, h('input', { value: obj[key], ...attrs }));
  const area = (obj, key, attrs = {}) => bind(obj, key, h('textarea', { rows: 3, spellcheck: 'false', ...attrs }, obj[key]));
  const select = (obj, key, options, attrs = {}, rerender = false) => {
    const s = h('select', attrs, options.map(([v, l]) => h('option', { value: v, selected: obj[key] === v }, l)));
    bind(obj, key, s);
    if (rerender) s.addEventListener('change', render);
    return s;
  };
  const pathOf = (c) => { const same = m.containers.filter((x) => x.kind === c.kind); return `${c.kind === 'init' ? 'init_containers' : 'containers'}[${same.indexOf(c)}]`; };

  function stepContainers() {
    const cards = m.containers.map((c, i) => {
      const p = pathOf(c);
      const PROBES = [['liveness_probe', 'Liveness probe (restart when it fails)'], ['readiness_probe', 'Readiness probe (ready only when it passes)'], ['startup_probe', 'Startup probe (the others wait for it)']];
      const probe = c.kind === 'work' ? h('div', { class: 'grid' }, PROBES.map(([key, legend]) => {
        const pr = c.probes[key];
        const fp = `${p}.${key}`;
        return h('fieldset', {}, h('legend', {}, legend),
          field('Kind', select(pr, 'kind', [['none', 'none'], ['exec', 'exec'], ['http', 'HTTP GET'], ['tcp', 'TCP']], { 'data-field': fp }, true)),
          pr.kind === 'exec' ? field('Command (one word per line)', area(pr, 'command', { 'data-field': `${fp}.exec` })) : null,
          pr.kind === 'http' ? field('Path', text(pr, 'path', { 'data-field': `${fp}.http_get.path` })) : null,
          (pr.kind === 'http' || pr.kind === 'tcp') ? field('Port', text(pr, 'port', { inputmode: 'numeric', 'data-field': `${fp}.${pr.kind === 'http' ? 'http_get' : 'tcp_socket'}.port` })) : null);
      })) : null;
      return h('section', { class: 'container-card', 'aria-label': `Container ${i + 1}` },
        h('div', { class: 'row spread' }, h('h2', { style: 'margin:0' }, `Container ${i + 1}`),
          m.containers.length > 1 ? h('button', { type: 'button', onclick: () => { m.containers.splice(i, 1); render(); } }, `Remove container ${i + 1}`) : null),
        h('div', { class: 'grid' },
          field('Kind', select(c, 'kind', [['work', 'work container'], ['init', 'init container (runs first, to completion)']], { 'data-field': `${p}` }, true)),
          field('Name', text(c, 'name', { name: `c${i}-name`, 'data-field': `${p}.name`, required: true })),
          field('Image', text(c, 'image', { name: `c${i}-image`, 'data-field': `${p}.image`, placeholder: 'registry/repo:tag', required: true })),
          field('Pull policy', select(c, 'pull', [['', 'default'], ['IfNotPresent', 'IfNotPresent'], ['Always', 'Always'], ['Never', 'Never']], { 'data-field': `${p}.image_pull_policy` })),
          field('CPU (cores)', text(c, 'cpu', { 'data-field': `${p}.cpu`, placeholder: '0.5' })),
          field('Memory', text(c, 'memory', { 'data-field': `${p}.memory`, placeholder: '512Mi' })),
          field('Working directory', text(c, 'working_dir', { 'data-field': `${p}.working_dir` })),
          field('Max log size', text(c, 'max_log_size', { 'data-field': `${p}.max_log_size`, placeholder: '10Mi' })),
          field('Ports', text(c, 'ports', { name: `c${i}-ports`, 'data-field': `${p}.ports`, placeholder: '80, 53/UDP' }))),
        h('div', { class: 'grid' },
          field('Command (one word per line)', area(c, 'command', { name: `c${i}-command`, 'data-field': `${p}.command` }), 'Replaces the image\'s entrypoint.'),
          field('Arguments (one per line)', area(c, 'args', { name: `c${i}-args`, 'data-field': `${p}.args` })),
          field('Environment (NAME=value per line)', area(c, 'env', { name: `c${i}-env`, 'data-field': `${p}.env` }))),
        probe);
    });
    const creds = m.creds.map((c, i) => h('div', { class: 'grid' },
      field('Registry', text(c, 'server', { 'data-field': `registry_credentials[${i}].server`, placeholder: 'registry.example.com' })),
      field('User name', text(c, 'username', { 'data-field': `registry_credentials[${i}].username`, autocomplete: 'off' })),
      field('Password', text(c, 'password', { type: 'password', 'data-field': `registry_credentials[${i}].password`, autocomplete: 'new-password' })),
      h('div', {}, h('button', { type: 'button', onclick: () => { m.creds.splice(i, 1); render(); } }, 'Remove credential'))));
    return [cards, h('button', { type: 'button', onclick: () => { m.containers.push(newContainer(++counter)); render(); } }, 'Add container'),
      h('h2', {}, 'Registry credentials'), creds.length ? creds : h('p', { class: 'muted' }, 'None: images are pulled anonymously.'),
      h('button', { type: 'button', onclick: () => { m.creds.push({ server: '', username: '', password: '' }); render(); } }, 'Add credential')];
  }

  function stepStorage() {
    const vols = m.volumes.map((v, i) => {
      const p = `volumes[${i}]`;
      let detail;
      if (v.kind === 'config') {
        detail = v.files.map((f, j) => h('div', { class: 'container-card' },
          field('File path (in the volume)', text(f, 'path', { name: `v${i}-f${j}-path`, 'data-field': `${p}.config_file.files[${j}].path` })),
          field('Content', area(f, 'content', { rows: 6, class: 'mono', name: `v${i}-f${j}-content`, 'data-field': `${p}.config_file.files[${j}].content` })),
          v.files.length > 1 ? h('button', { type: 'button', onclick: () => { v.files.splice(j, 1); render(); } }, 'Remove file') : null));
        detail.push(h('button', { type: 'button', onclick: () => { v.files.push({ path: '', content: '' }); render(); } }, 'Add file'));
      } else if (v.kind === 'disk') {
        detail = field('Disk', select(v, 'disk', [['', 'choose a disk'], ...lists.disks.map((d) => [d.name, `${d.name} (${d.phase}${d.group_id ? ', in use' : ''})`])], { 'data-field': `${p}.disk.id` }),
          lists.disks.length ? 'A disk attaches to one group at a time; its data outlives the group.' : 'No disks yet: create one under Disks.');
      } else {
        detail = h('div', { class: 'grid' }, field('Medium', select(v, 'medium', [['', 'disk'], ['Memory', 'memory (tmpfs)']], { 'data-field': `${p}.empty_dir.medium` })),
          field('Size limit', text(v, 'size_limit', { 'data-field': `${p}.empty_dir.size_limit`, placeholder: '1Gi' })));
      }
      return h('section', { class: 'container-card', 'aria-label': `Volume ${v.name}` },
        h('div', { class: 'grid' }, field('Volume name', text(v, 'name', { name: `v${i}-name`, 'data-field': `${p}.name` })),
          field('Kind', select(v, 'kind', [['config', 'config files'], ['empty', 'empty dir'], ['disk', 'existing disk']], { name: `v${i}-kind`, 'data-field': p }, true))),
        detail, h('button', { type: 'button', onclick: () => { m.volumes.splice(i, 1); render(); } }, `Remove volume ${v.name}`));
    });
    const mounts = m.containers.map((c) => {
      const p = pathOf(c);
      return h('section', { class: 'container-card', 'aria-label': `Mounts of ${c.name}` }, h('h2', { style: 'margin-top:0' }, `Mounts of ${c.name}`),
        c.mounts.map((mt, j) => h('div', { class: 'grid' },
          field('Volume', select(mt, 'volume', [['', 'choose'], ...m.volumes.map((v) => [v.name, v.name])], { name: `${c.name}-m${j}-volume`, 'data-field': `${p}.volume_mounts[${j}].name` })),
          field('Mount path', text(mt, 'mount_path', { name: `${c.name}-m${j}-path`, 'data-field': `${p}.volume_mounts[${j}].mount_path`, placeholder: '/etc/app' })),
          field('Sub path (optional)', text(mt, 'sub_path', { 'data-field': `${p}.volume_mounts[${j}].sub_path` })),
          h('div', {}, h('button', { type: 'button', onclick: () => { c.mounts.splice(j, 1); render(); } }, 'Remove mount')))),
        h('button', { type: 'button', disabled: !m.volumes.length, onclick: () => { c.mounts.push({ volume: m.volumes[0]?.name || '', mount_path: '', sub_path: '' }); render(); } }, `Add mount to ${c.name}`));
    });
    return [h('h2', {}, 'Volumes'), vols.length ? vols : h('p', { class: 'muted' }, 'No volumes.'),
      h('button', { type: 'button', onclick: () => { m.volumes.push(newVolume(++vcounter)); render(); } }, 'Add volume'),
      h('h2', {}, 'Mounts'), mounts];
  }

  function stepNetwork() {
    const n = m.net;
    return h('div', { class: 'grid' },
      field('Network', select(n, 'mode', [['basic', 'basic (this host\'s shared network)'], ['vpc', 'a VPC'], ['none', 'none (loopback only)']], { 'data-field': 'network.mode', name: 'net-mode' }, true)),
      n.mode === 'vpc' ? field('VPC', select(n, 'vpc', [['', 'choose a VPC'], ...lists.vpcs.map((v) => [v.name, `${v.name} (${v.spec?.cidr || v.cidr || ''})`])], { 'data-field': 'network.vpc' })) : null,
      field('EIP', select(n, 'eip', [['none', 'none'], ['auto', 'a new one (released with the group)'], ['existing', 'an existing EIP']], { 'data-field': 'network.eip' }, true),
        'An EIP publishes the group\'s ports and gives it outbound access.'),
      n.eip === 'existing' ? field('Existing EIP', select(n, 'eip_name', [['', 'choose'], ...lists.eips.map((e) => [e.name, `${e.name} (${e.address || ''})`])], { 'data-field': 'network.eip' })) : null,
      field('Firewall', select(n, 'firewall', [['', 'none'], ...lists.firewalls.map((f) => [f.name, f.name])], { 'data-field': 'network.firewall' })));
  }

  function stepBasics() {
    return h('div', { class: 'grid' },
      field('Name', text(m, 'name', { name: 'group-name', 'data-field': 'name', required: true }), 'Lower-case letters, digits and -; unique in your tenant.'),
      field('Restart policy', select(m, 'restart_policy', [['Always', 'Always'], ['OnFailure', 'OnFailure'], ['Never', 'Never']], { 'data-field': 'restart_policy' })),
      field('Shared memory (/dev/shm)', text(m, 'shm_size', { 'data-field': 'shm_size', placeholder: '64Mi' })),
      field('Image cache', select(m, 'image_cache', [['', 'none'], ['auto', 'auto'], ...lists.caches.map((c) => [c.name, c.name])], { 'data-field': 'image_cache' })),
      field('Instance type', text(m, 'instance_type', { 'data-field': 'instance_type', placeholder: 'standard' })),
      field('Runtime', select(m, 'runtime', [['', 'the server\'s default'], ['runc', 'runc (namespaces)'], ['gvisor', 'gVisor (a kernel of its own)']], { 'data-field': 'runtime' }),
        'What the containers run on; the server says which it offers.'));
  }

  let preview = null;
  function stepReview() {
    const yamlText = h('textarea', { rows: 20, spellcheck: 'false', class: 'mono', 'aria-label': 'Spec (YAML)', id: 'spec-yaml' }, toYaml(specOf(m)));
    const cmd = h('pre', { class: 'card mono', style: 'white-space:pre-wrap', id: 'create-command' });
    const sz = h('p', { id: 'review-size' });
    // Registry passwords are not shown in the command (anyone behind you can read a screen).
    const masked = () => yamlText.value.replace(/^(\s*password:\s*).+$/gm, '$1"<the password>"');
    const showCmd = () => fill(cmd, `qci create --wait -f - <<'EOF'\n${masked()}\nEOF`);
    yamlText.addEventListener('input', showCmd);
    showCmd();
    preview = { yamlText, sz };
    return [h('p', {}, 'The spec the wizard made. Edit it here if you like: what is created is what this box says.'), yamlText,
      h('h2', {}, 'The same from the command line'), cmd, h('h2', {}, 'Size and price'), sz];
  }

  function render() {
    // Steps already passed can be gone back to from here.
    fill(stepsEl, STEPS.map((s, i) => h('li', { 'aria-current': i === step ? 'step' : null },
      i < step ? h('button', { type: 'button', class: 'link', onclick: () => go(i) }, `${i + 1}. ${s}`) : `${i + 1}. ${s}`)));
    const views = [stepContainers, stepStorage, stepNetwork, stepBasics, stepReview];
    fill(body, views[step]());
    back.disabled = step === 0;
    next.textContent = step === STEPS.length - 1 ? 'Create' : 'Next';
    fill(errors);
  }

  async function check(upTo) {
    try {
      const d = await api('POST', '/v1/container-groups?dry_run=true', specOf(m));
      return d;
    } catch (e) {
      // A name already taken is the name field's error.
      if (e.code === 'AlreadyExists' && !e.fields.length) e.fields = [{ field: 'name', message: e.message }];
      const mine = e.fields.filter((f) => stepOf(f.field) <= upTo);
      if (e.fields.length && !mine.length) return null;
      const first = e.fields.length ? Math.min(...mine.map((f) => stepOf(f.field))) : upTo;
      if (first !== step) { step = first; render(); }
      showErrors(form, errors, { ...e, fields: mine, message: e.message });
      e.shown = true;
      throw e;
    }
  }

  async function go(to) {
    if (to < step) { step = to; render(); return; }
    next.disabled = true;
    try {
      if (step < STEPS.length - 1) {
        await check(step);
        step = to;
        render();
        if (step === STEPS.length - 1) {
          try {
            const d = await api('POST', '/v1/container-groups?dry_run=true', preview.yamlText.value, { type: 'application/yaml' });
            fill(preview.sz, `${size(d.group.resources)}, ${price(d.group.resources)}${d.group.resources.requested_cpu ? ` (asked ${d.group.resources.requested_cpu} vCPU)` : ''}`);
          } catch (e) { showErrors(form, errors, e); }
        }
      } else {
        const g = await api('POST', '/v1/container-groups', preview.yamlText.value, { type: 'application/yaml' });
        toast(`Created ${g.name}`);
        navigate('/groups');
      }
    } catch (e) {
      // (The step's own errors are already at their fields; anything else, such as the
      // edited YAML's, is shown here.)
      if (!e.shown) showErrors(form, errors, e);
    } finally { next.disabled = false; }
  }
  form.addEventListener('submit', (e) => { e.preventDefault(); go(step + 1); });
  render();
}

export function yamlView(main, _p, { navigate }) {
  const text = h('textarea', { rows: 24, spellcheck: 'false', class: 'mono', id: 'yaml-spec', 'aria-label': 'Spec (YAML or JSON)', placeholder: 'name: web\ncontainers:\n- name: main\n  image: registry/repo:tag' });
  const errors = h('div');
  const out = h('p', { 'aria-live': 'polite' });
  const run = async (dry) => {
    fill(errors); fill(out);
    try {
      const type = text.value.trim().startsWith('{') ? 'application/json' : 'application/yaml';
      const r = await api('POST', `/v1/container-groups${dry ? '?dry_run=true' : ''}`, text.value, { type });
      if (dry) fill(out, `Valid: ${size(r.group.resources)}, ${price(r.group.resources)}`);
      else { toast(`Created ${r.name}`); navigate('/groups'); }
    } catch (e) {
      fill(errors, h('div', { class: 'error', role: 'alert' }, e.fields.length ? e.fields.map((f) => `${f.field}: ${f.message}`).join('\n') : e.message));
    }
  };
  fill(main, h('h1', {}, 'Create from YAML'), h('p', { class: 'muted' }, 'A qci spec in YAML or JSON, as qci create -f takes.'),
    text, errors, h('div', { class: 'row', style: 'margin-top:8px' }, h('button', { onclick: () => run(true) }, 'Check'), h('button', { class: 'primary', onclick: () => run(false) }, 'Create')), out);
}
