// Outpost's web UI: a small single-page app over the admin API (/api/v1). No framework and no
// build step; every element is built with h(), which sets text, never HTML, so names and
// hostnames that devices report cannot inject markup.
'use strict';

const API = '/api/v1';
const view = document.getElementById('view');

// ---- helpers --------------------------------------------------------------------------------

/** Builds an element: h('a', {href: '#'}, 'text', child, ...). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function token() { return sessionStorage.getItem('outpost.token'); }

/** An API error with the server's code and message. */
class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code;
    this.details = error.details;
  }
}

/** Calls the API; JSON in and out. A 401 sends the user back to the login page. */
async function api(method, path, body, contentType) {
  const headers = {};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = contentType || 'application/json';
    payload = contentType ? body : JSON.stringify(body);
  }
  const response = await fetch(API + path, { method, headers, body: payload });
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (response.status === 401 && path !== '/auth/login') {
    sessionStorage.removeItem('outpost.token');
    location.hash = '#/login';
  }
  if (!response.ok) throw new ApiError(response.status, json);
  return json === null ? text : json;
}

/** Downloads an API file (the browser cannot send the token on a plain link). */
async function download(path, name) {
    const response = await fetch(API + path, { headers: { Authorization: `Bearer ${token()}` } });
  if (response.status === 401) {
    sessionStorage.removeItem('outpost.token');
    location.hash = '#/login';
  }
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  const url = URL.createObjectURL(await response.blob());
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function toast(message, kind) {
  const el = document.getElementById('toast');
  el.textContent = message;
  el.className = kind || 'ok';
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 6000);
}

/** Runs an action and shows its error, if any, where the user looks. */
async function attempt(action, errorBox) {
  try {
    return await action();
  } catch (e) {
    if (errorBox) {
      errorBox.replaceChildren(h('p', { class: 'error', role: 'alert' }, e.message));
    } else {
      toast(e.message, 'error');
    }
    return undefined;
  }
}

function when(value) {
  return value ? new Date(value).toLocaleString() : 'never';
}

function udi(pi) {
  return pi.udi_pid ? `${pi.udi_pid} / ${pi.udi_serial_number}` : '(not yet known)';
}

// ---- pages ----------------------------------------------------------------------------------

function loginPage() {
  document.getElementById('nav').hidden = true;
  const errors = h('div');
  const form = h('form', { class: 'card narrow', id: 'login' },
    h('h1', {}, 'Sign in'),
    h('label', {}, 'User name', h('input', { name: 'username', autocomplete: 'username', required: true })),
    h('label', {}, 'Password', h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
    errors,
    h('button', { type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const answer = await attempt(() => api('POST', '/auth/login',
      { username: data.get('username'), password: data.get('password') }), errors);
    if (answer) {
      sessionStorage.setItem('outpost.token', answer.access_token);
      location.hash = '#/accounts';
    }
  });
  view.replaceChildren(form);
}

async function accountsPage() {
  const list = await api('GET', '/accounts');
  const errors = h('div');
  const rows = list.items.map((a) => h('tr', {},
    h('td', {}, h('a', { href: `#/accounts/${a.id}` }, a.name)),
    h('td', {}, a.smart_account), h('td', {}, a.virtual_account),
    h('td', {}, h('span', { class: `status ${a.status}` }, a.status),
      a.status_reason ? ` (${a.status_reason})` : ''),
    h('td', {}, lifecycleButtons(a, errors))));
  const form = h('form', { class: 'inline', id: 'request-account' },
    h('input', { name: 'name', placeholder: 'Name', required: true }),
    h('input', { name: 'smart_account', placeholder: 'Smart Account', required: true }),
    h('input', { name: 'virtual_account', placeholder: 'Virtual Account', required: true }),
    h('input', { name: 'email', placeholder: 'Notification email', type: 'email' }),
    h('button', { type: 'submit' }, 'Request account'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = Object.fromEntries(new FormData(form));
    if (await attempt(() => api('POST', '/accounts', body), errors)) {
      toast(`Requested '${body.name}'; a system admin approves it.`);
      route();
    }
  });
  view.replaceChildren(
    h('h1', {}, 'Local accounts'),
    errors,
    rows.length
      ? h('table', { id: 'accounts' },
        h('thead', {}, h('tr', {}, ['Name', 'Smart Account', 'Virtual Account', 'Status', ''].map((t) => h('th', {}, t)))),
        h('tbody', {}, rows))
      : h('p', {}, 'No local account yet: request one below.'),
    h('h2', {}, 'Request a local account'), form);
}

/** Waits for a job to finish (up to a minute) and returns it. */
async function waitForJob(id) {
  for (let i = 0; i < 60; i++) {
    const job = await api('GET', `/jobs/${id}`);
    if (job.state === 'succeeded' || job.state === 'failed' || job.state === 'cancelled') return job;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  return api('GET', `/jobs/${id}`);
}

/** Approve / Register / Deactivate / Reactivate, as the account's state allows. */
function lifecycleButtons(account, errors) {
  const act = (label, path, body) => h('button', {
    type: 'button', class: 'small',
    onclick: async () => {
      const payload = body ? body() : undefined;
      if (payload === null) return; // the user cancelled
      const done = await attempt(() => api('POST', `/accounts/${account.id}/${path}`, payload), errors);
      if (!done) return;
      if (done.job_id) {
        toast(`${label}: queued; waiting for the worker…`);
        const job = await attempt(() => waitForJob(done.job_id), errors);
        if (job && job.state !== 'succeeded') {
          errors.replaceChildren(h('p', { class: 'error', role: 'alert' }, `${label} failed: ${job.last_error || job.state}`));
          return;
        }
      }
      toast(`${label}: done`);
      route();
    },
  }, label);
  const deactivate = () => act('Deactivate', 'deactivate', () => {
    const reason = prompt('Reason for deactivating (devices are told)');
    return reason ? { reason } : null;
  });
  switch (account.status) {
    case 'requested': return act('Approve', 'approve');
    case 'approved': return [act('Register with CSSM', 'register'), ' ', deactivate()];
    case 'active': return deactivate();
    default: return act('Reactivate', 'reactivate');
  }
}

async function accountPage(id, tab) {
  const account = await api('GET', `/accounts/${id}`);
  const tabs = [['inventory', 'Inventory'], ['virtual-accounts', 'Virtual accounts'], ['licenses', 'Licenses'],
    ['sync', 'Synchronisation'], ['alerts', 'Alerts & webhooks'], ['events', 'Events']];
  const body = h('section', { id: 'tab-body' });
  view.replaceChildren(
    h('p', { class: 'crumbs' }, h('a', { href: '#/accounts' }, 'Local accounts'), ' / ', account.name),
    h('h1', {}, account.name, ' ', h('span', { class: `status ${account.status}` }, account.status)),
    h('p', { class: 'muted' }, `${account.smart_account} / ${account.virtual_account} · ${account.product_instances} product instances`,
      account.former_names.length ? ` · former names: ${account.former_names.join(', ')}` : ''),
    h('nav', { class: 'tabs' }, tabs.map(([key, label]) =>
      h('a', { href: `#/accounts/${id}/${key}`, class: key === tab ? 'active' : '' }, label))),
    body);
  const pages = { inventory: inventoryTab, 'virtual-accounts': lvaTab, licenses: licensesTab, sync: syncTab, alerts: alertsTab, events: eventsTab };
  await (pages[tab] || inventoryTab)(account, body);
}

// The inventory keeps its filters and page while the user works in it.
const inventoryState = { account: null, query: {}, cursors: [] };

async function inventoryTab(account, body) {
  if (inventoryState.account !== account.id) {
    Object.assign(inventoryState, { account: account.id, query: {}, cursors: [] });
  }
  const lvas = (await api('GET', `/accounts/${account.id}/virtual-accounts`)).items;
  const q = inventoryState.query;
  const errors = h('div', { id: 'inventory-errors' });
  const select = (name, options) => h('select', { name },
    options.map(([value, label]) => h('option', { value, selected: (q[name] || '') === value }, label)));
  const filters = h('form', { class: 'inline', id: 'filters' },
    h('input', { name: 'q', type: 'search', placeholder: 'Search UDI, hostname, host', value: q.q || '' }),
    select('lva', [['', 'All virtual accounts'], ...lvas.map((l) => [String(l.number), `${l.number}: ${l.name}`])]),
    select('connect_method', [['', 'Any method'], ['push', 'push'], ['rest', 'rest'], ['restconf', 'restconf'], ['netconf', 'netconf']]),
    select('alert', [['', 'Alerts: any state'], ['any', 'With alerts'], ['none', 'Without alerts']]),
    h('input', { name: 'last_contact_older_than_days', type: 'number', min: 0, placeholder: 'No contact for N days', value: q.last_contact_older_than_days || '' }),
    select('sort', [['udi', 'Sort by UDI'], ['hostname', 'Sort by hostname'], ['last_contact', 'Sort by last contact']]),
    select('order', [['asc', 'Ascending'], ['desc', 'Descending']]),
    h('button', { type: 'submit' }, 'Apply'));
  filters.addEventListener('submit', (event) => {
    event.preventDefault();
    inventoryState.query = Object.fromEntries([...new FormData(filters)].filter(([, v]) => v !== ''));
    inventoryState.cursors = [];
    route();
  });

  const params = new URLSearchParams({ ...q, per_page: '50' });
  const cursor = inventoryState.cursors[inventoryState.cursors.length - 1];
  if (cursor) params.set('cursor', cursor);
  const page = await attempt(() => api('GET', `/accounts/${account.id}/product-instances?${params}`), errors);
  const items = page ? page.items : [];
  const first = inventoryState.cursors.length * 50 + 1;
  const totalText = page && page.total !== null
    ? (page.total_exceeds ? `more than ${page.total.toLocaleString()}` : page.total.toLocaleString())
    : '';
  const summary = items.length
    ? `${first}–${first + items.length - 1} of ${totalText}`
    : 'No product instance matches.';

  const rows = items.map((pi) => h('tr', { dataset: { id: pi.id } },
    h('td', {}, h('input', { type: 'checkbox', class: 'pick', value: pi.id, 'aria-label': `select ${udi(pi)}` })),
    h('td', {}, h('a', { href: `#/accounts/${account.id}/pi/${pi.id}` }, udi(pi))),
    h('td', {}, pi.hostname || ''), h('td', {}, pi.host ? `${pi.host}${pi.port ? `:${pi.port}` : ''}` : ''),
    h('td', {}, pi.connect_method + (pi.behind_nat ? ' (NAT)' : '')),
    h('td', {}, String(pi.lva_number)), h('td', {}, when(pi.last_contact_at)),
    h('td', {}, pi.open_alerts ? h('span', { class: 'badge' }, String(pi.open_alerts)) : '')));
  const table = h('table', { id: 'inventory' },
    h('thead', {}, h('tr', {}, ['', 'UDI', 'Hostname', 'Host', 'Method', 'LVA', 'Last contact', 'Alerts'].map((t) => h('th', {}, t)))),
    h('tbody', {}, rows));

  const pager = h('div', { class: 'pager' },
    h('button', { type: 'button', disabled: inventoryState.cursors.length === 0, onclick: () => { inventoryState.cursors.pop(); route(); } }, '‹ Previous'),
    h('span', { id: 'summary' }, summary),
    h('button', { type: 'button', disabled: !(page && page.next_cursor), onclick: () => { inventoryState.cursors.push(page.next_cursor); route(); } }, 'Next ›'));

  const moveTo = h('select', { name: 'to_lva', 'aria-label': 'target virtual account' },
    lvas.map((l) => h('option', { value: l.number }, `${l.number}: ${l.name}`)));
  const bulk = h('div', { class: 'inline' },
    'Selected: ', moveTo,
    h('button', { type: 'button', id: 'move', onclick: async () => {
      const ids = [...table.querySelectorAll('.pick:checked')].map((c) => c.value);
      if (!ids.length) return toast('Select product instances first.', 'error');
      const done = await attempt(() => api('POST', `/accounts/${account.id}/product-instances/transfer`,
        { product_instance_ids: ids, to_lva: Number(moveTo.value) }), errors);
      if (done) { toast(`Moved ${done.moved} to virtual account ${done.to_lva}.`); route(); }
    } }, 'Move'));

  const file = h('input', { type: 'file', accept: '.csv,text/csv', id: 'import-file' });
  const importBox = h('div', { class: 'inline' },
    h('button', { type: 'button', onclick: () => attempt(() => download(`/accounts/${account.id}/product-instances/template.csv`, 'product-instances-template.csv'), errors) }, 'CSV template'),
    h('button', { type: 'button', onclick: () => attempt(() => download(`/accounts/${account.id}/product-instances/export.csv`, `${account.name}-product-instances.csv`), errors) }, 'Export CSV'),
    h('label', { class: 'file' }, 'Import CSV: ', file));
  file.addEventListener('change', async () => {
    const text = await file.files[0].text();
    file.value = '';
    try {
      const done = await api('POST', `/accounts/${account.id}/product-instances/import`, text, 'text/csv');
      toast(`Imported: ${done.created} created, ${done.updated} updated.`);
      route();
    } catch (e) {
      const rows = (e.details && e.details.rows) || [];
      errors.replaceChildren(h('div', { class: 'error', role: 'alert', id: 'import-errors' },
        h('p', {}, rows.length ? `Nothing was imported: ${e.details.row_error_count} row(s) need fixing.` : e.message),
        rows.length ? h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Line'), h('th', {}, 'Reason'))),
          h('tbody', {}, rows.map((r) => h('tr', {}, h('td', {}, String(r.line)), h('td', {}, r.reason))))) : ''));
    }
  });

  body.replaceChildren(filters, errors, importBox, table, pager, bulk);
}

// How Outpost reaches a device it pulls from, and what it pinned on first contact.
function pullFacts(pi, fact) {
  if (pi.connect_method === 'push') return [];
  const transport = pi.connect_method === 'netconf' ? 'SSH (port 830 unless set)'
    : (pi.plain_http ? 'plain HTTP (credentials in clear)' : 'HTTPS');
  const pinned = pi.pinned_peer
    ? `${pi.connect_method === 'netconf' ? 'host key' : 'certificate'} ${pi.pinned_peer.fingerprint} (since ${when(pi.pinned_peer.pinned_at)})`
    : (pi.plain_http ? 'nothing to pin over HTTP' : 'not yet: pinned on the first pull');
  return [...fact('Pulled over', transport), ...fact('Pinned identity', pinned), ...fact('Last pull', when(pi.last_pull_at))];
}

async function piPage(accountId, piId) {
  const [account, pi] = await Promise.all([api('GET', `/accounts/${accountId}`), api('GET', `/accounts/${accountId}/product-instances/${piId}`)]);
  const fact = (label, value) => [h('dt', {}, label), h('dd', {}, value === null || value === undefined || value === '' ? '—' : String(value))];
  view.replaceChildren(
    h('p', { class: 'crumbs' }, h('a', { href: '#/accounts' }, 'Local accounts'), ' / ',
      h('a', { href: `#/accounts/${accountId}/inventory` }, account.name), ' / ', udi(pi)),
    h('h1', {}, pi.hostname || udi(pi)),
    h('dl', { class: 'facts', id: 'pi-facts' },
      fact('UDI', udi(pi)), fact('Virtual account', pi.lva && `${pi.lva.number}: ${pi.lva.name}`),
      fact('Connect method', pi.connect_method), fact('Host', pi.host), fact('Credentials stored', pi.has_credentials ? 'yes' : 'no'),
      fact('Behind NAT', pi.behind_nat ? 'yes' : 'no'), ...pullFacts(pi, fact), fact('Software', pi.software_version),
      fact('Last contact', when(pi.last_contact_at)), fact('From', pi.source_address),
      fact('SA / VA', pi.smart_account && `${pi.smart_account} / ${pi.virtual_account}`)),
    h('h2', {}, 'Alerts'),
    pi.alerts.length ? h('ul', { id: 'pi-alerts' }, pi.alerts.map((a) => h('li', { class: a.severity }, `${a.message} (${when(a.updated_at)})`))) : h('p', {}, 'None.'),
    h('h2', {}, 'Usage'),
    pi.usage.length ? h('table', {}, h('tbody', {}, pi.usage.map((u) => h('tr', {}, h('td', {}, u.entitlement_tag), h('td', {}, String(u.count)))))) : h('p', {}, 'No usage reported.'),
    h('h2', {}, 'Latest reports'),
    pi.reports.length ? h('table', { id: 'pi-reports' },
      h('thead', {}, h('tr', {}, ['Report id', 'Received', 'Sent to CSSM', 'Acknowledged'].map((t) => h('th', {}, t)))),
      h('tbody', {}, pi.reports.map((r) => h('tr', {}, h('td', {}, String(r.report_id)), h('td', {}, when(r.received_at)),
        h('td', {}, r.uploaded_at ? when(r.uploaded_at) : (r.exported_at ? `exported ${when(r.exported_at)}` : 'not yet')),
        h('td', {}, r.acked_at ? when(r.acked_at) : 'not yet'))))) : h('p', {}, 'No report yet.'),
    ...deadlineSection(pi), ...haSection(accountId, pi), ...trustSection(pi), ...authorizationSection(pi));
}

const REASONS = { first_report: 'first report', ongoing: 'ongoing reporting', usage_change: 'usage changed' };

/** When the device must report and be acknowledged next, under the policy in force. */
function deadlineSection(pi) {
  const d = pi.deadlines || {};
  const due = d.report_due;
  return [h('h2', {}, 'Reporting deadlines'),
    h('dl', { class: 'facts', id: 'pi-deadlines' },
      h('dt', {}, 'Policy'), h('dd', {}, d.policy || 'Cisco default'),
      h('dt', {}, 'Next report due'), h('dd', {}, due ? `${when(due.at)} (${REASONS[due.reason] || due.reason})` : (d.owes || 'no requirement')),
      h('dt', {}, 'ACK due'), h('dd', {}, d.ack_due ? when(d.ack_due) : 'nothing awaits an ACK'),
      h('dt', {}, 'Account reporting interval'), h('dd', {}, d.reporting_interval_days ? `every ${d.reporting_interval_days} days` : 'as the policy says'))];
}

/** The HA set: its members, and which PI reports for it. */
function haSection(accountId, pi) {
  if (!pi.ha_members.length && !pi.ha_reporting_pi) return [];
  return [h('h2', {}, 'High availability set'),
    pi.ha_reporting_pi
      ? h('p', { id: 'pi-ha-role' }, 'A member of a set that reports through ',
        h('a', { href: `#/accounts/${accountId}/pi/${pi.ha_reporting_pi}` }, 'its active'), '; its own usage is not counted.')
      : h('p', { id: 'pi-ha-role' }, 'Reports for its set.'),
    h('ul', { id: 'pi-ha-members' }, pi.ha_members.map((m) => h('li', {}, `${m.role}: ${m.udi_pid} / ${m.udi_serial_number}`)))];
}

function trustSection(pi) {
  if (!pi.trust_codes.length) return [];
  return [h('h2', {}, 'Trust code'),
    h('p', { id: 'pi-trust' }, pi.trust_code_installed_at
      ? `Trust code installed ${when(pi.trust_code_installed_at)}.`
      : 'Trust code received from CSSM; not installed on the device yet.'),
    h('table', {}, h('thead', {}, h('tr', {}, ['Device', 'Received', 'Handed over', 'Installed'].map((t) => h('th', {}, t)))),
      h('tbody', {}, pi.trust_codes.map((t) => h('tr', {}, h('td', {}, t.sudi ? `${t.sudi.udi_pid} / ${t.sudi.udi_serial_number}` : ''),
        h('td', {}, when(t.received_at)), h('td', {}, when(t.delivered_at)), h('td', {}, when(t.installed_at))))))];
}

function authorizationSection(pi) {
  if (!pi.authorizations.length) return [];
  return [h('h2', {}, 'Authorization codes (SLAC)'),
    h('table', { id: 'pi-authorizations' },
      h('thead', {}, h('tr', {}, ['Device', 'Entitlement', 'Count', 'State', 'Issued', 'Installed', 'Returned'].map((t) => h('th', {}, t)))),
      h('tbody', {}, pi.authorizations.map((a) => h('tr', {},
        h('td', {}, `${a.udi_pid} / ${a.udi_serial_number}`), h('td', {}, a.entitlement_tag), h('td', {}, String(a.count)),
        h('td', { title: a.error || '' }, a.state), h('td', {}, when(a.issued_at)), h('td', {}, when(a.confirmed_at)),
        h('td', {}, a.returned_at ? when(a.returned_at) : '')))))];
}

/** A schedule form ("every N days at HH:MM, time zone") for `/schedules/{kind}`. */
function scheduleForm(account, kind, schedule, errors) {
  const form = h('form', { class: 'inline', id: `schedule-${kind}` },
    h('label', {}, h('input', { type: 'checkbox', name: 'enabled', checked: schedule.enabled }), ' Enabled'),
    h('label', {}, ' every ', h('input', { name: 'every_days', type: 'number', min: 1, max: 365, value: schedule.every_days || 1, required: true }), ' days at '),
    h('input', { name: 'hour', type: 'number', min: 0, max: 23, value: schedule.hour ?? 2, required: true, 'aria-label': 'hour' }), ':',
    h('input', { name: 'minute', type: 'number', min: 0, max: 59, value: schedule.minute ?? 0, required: true, 'aria-label': 'minute' }),
    h('input', { name: 'time_zone', value: schedule.time_zone || 'UTC', required: true, 'aria-label': 'time zone', size: 16 }),
    h('button', { type: 'submit' }, 'Save'),
    h('span', { class: 'muted' }, schedule.enabled && schedule.next_run_at ? ` next run ${when(schedule.next_run_at)}` : ''));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const d = new FormData(form);
    const saved = await attempt(() => api('PUT', `/accounts/${account.id}/schedules/${kind}`, {
      enabled: d.get('enabled') === 'on', every_days: Number(d.get('every_days')), hour: Number(d.get('hour')),
      minute: Number(d.get('minute')), time_zone: d.get('time_zone') }), errors);
    if (saved) { toast(saved.enabled ? `Next run ${when(saved.next_run_at)}.` : 'Schedule off.'); route(); }
  });
  return form;
}

/** Follows a job, showing its progress, until it ends; returns it. */
async function followJob(id, line) {
  for (;;) {
    const job = await api('GET', `/jobs/${id}`);
    const p = job.progress;
    if (job.state === 'queued') line.textContent = `Starts ${when(job.run_at)}.`;
    else if (job.state === 'running') line.textContent = p ? `${p.message}: ${p.done}${p.total ? ` of ${p.total}` : ''}` : 'Running…';
    else {
      line.textContent = job.state === 'succeeded' ? ((job.result && job.result.message) || 'Done.') : `Failed: ${job.last_error || job.state}`;
      return job;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/** Synchronisation with Cisco and with the devices: now, on a schedule, and the ledger. */
async function syncTab(account, body) {
  const [cssm, pull, runs] = await Promise.all([
    api('GET', `/accounts/${account.id}/schedules/cssm-sync`).catch(() => ({})),
    api('GET', `/accounts/${account.id}/schedules/device-pull`),
    api('GET', `/accounts/${account.id}/sync-runs?limit=20`)]);
  const errors = h('div');
  const cssmLine = h('p', { id: 'cssm-sync-status', class: 'muted' });
  const pullLine = h('p', { id: 'device-pull-status', class: 'muted' });
  const now = h('label', {}, h('input', { type: 'checkbox', id: 'pull-now' }), ' start at once (else in a minute)');
  body.replaceChildren(errors,
    h('h2', {}, 'With Cisco (CSSM)'),
    h('button', { type: 'button', id: 'sync-now', onclick: async () => {
      const started = await attempt(() => api('POST', `/accounts/${account.id}/sync`), errors);
      if (started) await attempt(() => followJob(started.job_id, cssmLine), errors);
    } }, 'Synchronize now with Cisco'), cssmLine,
    scheduleForm(account, 'cssm-sync', cssm, errors),
    h('h2', {}, 'With the devices (pulled over REST or RESTCONF)'),
    h('button', { type: 'button', id: 'pull-devices', onclick: async () => {
      const body = now.querySelector('input').checked ? { delay_secs: 0 } : {};
      const started = await attempt(() => api('POST', `/accounts/${account.id}/pull`, body), errors);
      if (started) await attempt(() => followJob(started.job_id, pullLine), errors);
    } }, 'Synchronise now with the devices'), ' ', now, pullLine,
    scheduleForm(account, 'device-pull', pull, errors),
    h('h2', {}, 'Ledger'),
    runs.items.length ? h('table', { id: 'sync-runs' },
      h('thead', {}, h('tr', {}, ['Started', 'Channel', 'Direction', 'State', 'Reports sent', 'ACKs', 'Message'].map((t) => h('th', {}, t)))),
      h('tbody', {}, runs.items.map((r) => h('tr', {}, h('td', {}, when(r.started_at)), h('td', {}, r.channel), h('td', {}, r.direction),
        h('td', {}, r.state), h('td', {}, String(r.reports_sent)), h('td', {}, String(r.acks_received)), h('td', {}, r.message || '')))))
      : h('p', {}, 'No synchronisation yet.'));
}

/** Open alerts, the reporting interval, and the webhooks that receive new alerts. */
async function alertsTab(account, body) {
  const [alerts, settings, hooks] = await Promise.all([
    api('GET', `/accounts/${account.id}/alerts`),
    api('GET', `/accounts/${account.id}/settings`),
    api('GET', `/accounts/${account.id}/webhooks`)]);
  const errors = h('div');
  const interval = h('form', { class: 'inline', id: 'reporting-interval' },
    h('label', {}, 'Devices report at least every ',
      h('input', { name: 'days', type: 'number', min: 1, max: 365, value: settings.reporting_interval_days || '', placeholder: 'policy' }), ' days'),
    h('button', { type: 'submit' }, 'Save'));
  interval.addEventListener('submit', async (event) => {
    event.preventDefault();
    const days = new FormData(interval).get('days');
    const done = await attempt(() => api('PUT', `/accounts/${account.id}/settings`,
      { reporting_interval_days: days === '' ? null : Number(days) }), errors);
    if (done) toast(done.reporting_interval_days ? `Reporting every ${done.reporting_interval_days} days at most.` : 'The policy sets the reporting interval.');
  });
  const form = h('form', { class: 'inline', id: 'create-webhook' },
    h('input', { name: 'url', type: 'url', placeholder: 'https://hooks.example.com/outpost', required: true, size: 40 }),
    h('input', { name: 'kinds', placeholder: 'Alert kinds (comma-separated; empty: all)', size: 36 }),
    h('button', { type: 'submit' }, 'Add webhook'));
  const secretBox = h('div', { id: 'webhook-secret' });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const d = Object.fromEntries(new FormData(form));
    const kinds = d.kinds.split(',').map((k) => k.trim()).filter(Boolean);
    const created = await attempt(() => api('POST', `/accounts/${account.id}/webhooks`, { url: d.url, kinds }), errors);
    if (created) {
      await route();
      document.getElementById('webhook-secret').replaceChildren(h('p', { class: 'notice' },
        'Signing secret (shown once; the X-Outpost-Signature header is HMAC-SHA256 of "<t>.<body>" with it): ',
        h('code', {}, created.secret)));
    }
  });
  const log = h('div', { id: 'webhook-log' });
  const showLog = async (hook) => {
    const deliveries = await attempt(() => api('GET', `/accounts/${account.id}/webhooks/${hook.id}/deliveries?limit=50`), errors);
    if (!deliveries) return;
    log.replaceChildren(h('h3', {}, `Deliveries to ${hook.url}`),
      deliveries.items.length ? h('table', { id: 'deliveries' },
        h('thead', {}, h('tr', {}, ['Created', 'Event', 'Alert', 'State', 'Attempts'].map((t) => h('th', {}, t)))),
        h('tbody', {}, deliveries.items.map((d) => h('tr', {},
          h('td', {}, when(d.created_at)), h('td', {}, d.event), h('td', {}, (d.body.alert && d.body.alert.message) || ''),
          h('td', {}, d.state),
          h('td', {}, d.attempts.map((a) => `${a.attempt}: ${a.status_code || a.error} (${when(a.at)})`).join('; '))))))
        : h('p', {}, 'Nothing sent yet.'));
  };
  body.replaceChildren(errors,
    h('h2', {}, 'Open alerts'),
    alerts.items.length ? h('ul', { id: 'account-alerts' }, alerts.items.map((a) => h('li', { class: a.severity }, `${a.message} (${when(a.updated_at)})`)))
      : h('p', {}, 'None.'),
    h('h2', {}, 'Reporting interval'), interval,
    h('h2', {}, 'Webhooks'),
    hooks.items.length ? h('table', { id: 'webhooks' },
      h('thead', {}, h('tr', {}, ['Endpoint', 'Alert kinds', 'Since', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, hooks.items.map((w) => h('tr', {},
        h('td', {}, w.url), h('td', {}, w.kinds.join(', ') || 'all'), h('td', {}, when(w.created_at)),
        h('td', {}, h('button', { type: 'button', class: 'small', onclick: () => showLog(w) }, 'Delivery log'), ' ',
          h('button', { type: 'button', class: 'small', onclick: async () => {
            if (!confirm(`Remove the webhook ${w.url}?`)) return;
            if (await attempt(() => api('DELETE', `/accounts/${account.id}/webhooks/${w.id}`), errors) !== undefined) { toast('Webhook removed.'); route(); }
          } }, 'Remove'))))))
      : h('p', {}, 'No webhook: alerts are only shown here.'),
    secretBox, form, log);
}

async function lvaTab(account, body) {
  const lvas = (await api('GET', `/accounts/${account.id}/virtual-accounts`)).items;
  const errors = h('div');
  const form = h('form', { class: 'inline', id: 'create-lva' },
    h('input', { name: 'name', placeholder: 'New virtual account name', required: true }),
    h('button', { type: 'submit' }, 'Create'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const created = await attempt(() => api('POST', `/accounts/${account.id}/virtual-accounts`, Object.fromEntries(new FormData(form))), errors);
    if (created) { toast(`Created virtual account ${created.number}.`); route(); }
  });
  body.replaceChildren(errors,
    ...lvas.map((l) => h('article', { class: 'card lva', dataset: { number: l.number } },
      h('h3', {}, `${l.number}: ${l.name}`),
      h('p', {}, 'Usage goes to ', h('strong', {}, `${l.smart_account} / ${l.virtual_account}`)),
      h('p', {}, 'Transport URL: ', h('code', { class: 'transport-url' }, l.transport_url)),
      h('p', {}, 'Device configuration:'),
      h('pre', {}, l.device_configuration.join('\n')))),
    h('h2', {}, 'Create a virtual account'), form);
}

async function licensesTab(account, body) {
  const items = (await api('GET', `/accounts/${account.id}/licenses`)).items;
  const errors = h('div');
  const form = h('form', { class: 'inline', id: 'license-transfer' },
    h('select', { name: 'entitlement_tag', 'aria-label': 'license' },
      [...new Map(items.filter((i) => i.purchased > 0).map((i) => [i.entitlement_tag, i.name || i.entitlement_tag]))]
        .map(([tag, name]) => h('option', { value: tag, title: tag }, name))),
    h('input', { name: 'from_lva', type: 'number', min: 1, placeholder: 'From LVA', required: true }),
    h('input', { name: 'to_lva', type: 'number', min: 1, placeholder: 'To LVA', required: true }),
    h('input', { name: 'quantity', type: 'number', min: 1, placeholder: 'Quantity', required: true }),
    h('button', { type: 'submit' }, 'Transfer'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const d = Object.fromEntries(new FormData(form));
    const done = await attempt(() => api('POST', `/accounts/${account.id}/licenses/transfer`,
      { entitlement_tag: d.entitlement_tag, from_lva: Number(d.from_lva), to_lva: Number(d.to_lva), quantity: Number(d.quantity) }), errors);
    if (done) { toast(`Transferred ${done.transferred}.`); route(); }
  });
  const slacFile = h('input', { type: 'file', accept: '.csv,text/csv', id: 'slac-file' });
  const slacImport = h('label', { class: 'file' }, 'SLAC CSV: ', slacFile);
  slacFile.addEventListener('change', async () => {
    const text = await slacFile.files[0].text();
    slacFile.value = '';
    try {
      const done = await api('POST', `/accounts/${account.id}/slac-import`, text, 'text/csv');
      toast(`Imported ${done.imported} authorization code(s)${done.already_imported ? `; ${done.already_imported} were already here` : ''}.`);
      route();
    } catch (e) {
      const rows = (e.details && e.details.rows) || [];
      errors.replaceChildren(h('div', { class: 'error', role: 'alert', id: 'slac-errors' },
        h('p', {}, rows.length ? 'Nothing was imported:' : e.message),
        rows.length ? h('ul', {}, rows.map((r) => h('li', {}, `line ${r.line}: ${r.reason}`))) : ''));
    }
  });
  body.replaceChildren(errors,
    items.length ? h('table', { id: 'licenses' },
      h('thead', {}, h('tr', {}, ['LVA', 'License', 'Type', 'Purchased', 'In use', 'Shortfall', 'Authorized (SLAC)', 'Free to authorize'].map((t) => h('th', {}, t)))),
      h('tbody', {}, items.map((l) => {
        const enforced = l.enforcement && l.enforcement !== 'unenforced';
        return h('tr', { class: l.shortfall > 0 ? 'short' : '' },
          h('td', {}, String(l.lva_number)), h('td', { title: l.entitlement_tag }, l.name || l.entitlement_tag),
          h('td', {}, [l.enforcement, l.term].filter(Boolean).join(', ')),
          h('td', {}, String(l.purchased)), h('td', {}, String(l.in_use)), h('td', {}, String(l.shortfall)),
          h('td', {}, enforced ? String(l.authorized) : '—'), h('td', {}, enforced ? String(l.authorizable) : '—'));
      })))
      : h('p', {}, 'No license synchronised yet: synchronise with Cisco first.'),
    h('h2', {}, 'Transfer licenses between virtual accounts'), form,
    h('h2', {}, 'Import authorization codes (SLAC CSV from CSSM)'), slacImport);
}

async function eventsTab(account, body) {
  const items = (await api('GET', `/accounts/${account.id}/events?limit=200`)).items;
  body.replaceChildren(h('table', { id: 'events' },
    h('thead', {}, h('tr', {}, ['When', 'Who', 'What', 'Result'].map((t) => h('th', {}, t)))),
    h('tbody', {}, items.map((e) => h('tr', {}, h('td', {}, when(e.created_at)), h('td', {}, e.actor), h('td', {}, e.action), h('td', {}, e.result))))));
}

async function usersPage() {
  const [users, accounts] = await Promise.all([api('GET', '/users'), api('GET', '/accounts')]);
  const names = new Map(accounts.items.map((a) => [a.id, a.name]));
  const errors = h('div');
  const roleOptions = [['', 'No system role'], ['system_admin', 'System admin'], ['system_operator', 'System operator'], ['system_user', 'System user (read-only)']];
  const accountOptions = [['', 'No account role'], ...accounts.items.map((a) => [a.id, a.name])];
  const rows = users.items.map((u) => h('tr', { dataset: { user: u.username } },
    h('td', {}, u.username), h('td', {}, u.system_role || '—'),
    h('td', {}, u.account_roles.map((g) => `${names.get(g.account_id) || g.account_id}: ${g.role}`).join(', ') || '—'),
    h('td', {}, u.disabled ? 'disabled' : 'active'),
    h('td', {}, h('button', { type: 'button', class: 'small', onclick: async () => {
      const done = await attempt(() => api('PUT', `/users/${u.id}/roles`, { disabled: !u.disabled }), errors);
      if (done) { toast(`${u.username} ${done.disabled ? 'disabled' : 'enabled'}.`); route(); }
    } }, u.disabled ? 'Enable' : 'Disable'))));
  const select = (name, options) => h('select', { name }, options.map(([v, l]) => h('option', { value: v }, l)));
  const form = h('form', { class: 'inline', id: 'create-user' },
    h('input', { name: 'username', placeholder: 'User name', required: true, autocomplete: 'off' }),
    h('input', { name: 'password', type: 'password', placeholder: 'Password (12+ characters)', required: true, autocomplete: 'new-password' }),
    select('system_role', roleOptions),
    select('account_id', accountOptions),
    select('account_role', [['account_admin', 'as account admin'], ['account_user', 'as account user (read-only)']]),
    h('button', { type: 'submit' }, 'Create user'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const d = Object.fromEntries(new FormData(form));
    const body = {
      username: d.username, password: d.password, system_role: d.system_role || null,
      account_roles: d.account_id ? [{ account_id: d.account_id, role: d.account_role }] : [],
    };
    if (await attempt(() => api('POST', '/users', body), errors)) { toast(`Created ${d.username}.`); route(); }
  });
  view.replaceChildren(h('h1', {}, 'Users'), errors,
    h('table', { id: 'users' }, h('thead', {}, h('tr', {}, ['User', 'System role', 'Account roles', 'State', ''].map((t) => h('th', {}, t)))), h('tbody', {}, rows)),
    h('h2', {}, 'Create a user'), form);
}

// ---- routing --------------------------------------------------------------------------------

async function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  if (!token() || parts[0] === 'login') return loginPage();
  document.getElementById('nav').hidden = false;
  try {
    if (parts[0] === 'accounts' && parts[1] && parts[2] === 'pi') await piPage(parts[1], parts[3]);
        else if (parts[0] === 'accounts' && parts[1]) await accountPage(parts[1], parts[2] || 'inventory');
    else if (parts[0] === 'users') await usersPage();
    else await accountsPage();
  } catch (e) {
    if (e.status !== 401) view.replaceChildren(h('p', { class: 'error', role: 'alert' }, e.message));
  }
}

document.getElementById('sign-out').addEventListener('click', () => {
  sessionStorage.removeItem('outpost.token');
  location.hash = '#/login';
});
window.addEventListener('hashchange', route);
route();
