// The page of `skiff dashboard`: the service graph (cytoscape.js), per-service golden
// metrics, the proxies' sync state and the configuration's findings, all read from
// the dashboard's JSON API and refreshed every few seconds.
import cytoscape from 'cytoscape';

const LOCK_SVG =
  '<svg viewBox="0 0 14 16" width="14" height="16" aria-label="mutual TLS"><path d="M3.5 7V5a3.5 3.5 0 0 1 7 0v2" fill="none" stroke="#1b7f3b" stroke-width="2"/><rect x="1" y="7" width="12" height="9" rx="2" fill="#1b7f3b"/></svg>';

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** `12.3`, `0.57`, `1234`: about three digits. */
function figure(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return '-';
  if (x === 0) return '0';
  if (x >= 100) return x.toFixed(0);
  if (x >= 10) return x.toFixed(1);
  return x.toFixed(2);
}
const pct = (x) => (x === null || x === undefined ? '-' : `${(x * 100).toFixed(x === 1 || x === 0 ? 0 : 1)}%`);
const ms = (x) => (x === null || x === undefined ? '-' : `${figure(x)}ms`);

function edgeLabel(e) {
  if (!e.requests) return 'idle';
  return `${figure(e.rps)} rps · ${pct(e.error_rate)} err · p99 ${ms(e.p99_ms)}`;
}

function edgeColor(e) {
  if (!e.requests) return '#b8c1cc';
  if (e.error_rate > 0.05) return '#c0262d';
  if (e.error_rate > 0) return '#e09a00';
  return '#1b7f3b';
}

const cy = cytoscape({
  container: $('graph'),
  wheelSensitivity: 0.3,
  minZoom: 0.2,
  maxZoom: 3,
  style: [
    {
      selector: 'node',
      style: {
        label: 'data(label)',
        'font-size': 12,
        'text-valign': 'bottom',
        'text-margin-y': 6,
        color: '#1d2733',
        'text-background-color': '#fff',
        'text-background-opacity': 0.85,
        'text-background-padding': 2,
        width: 34,
        height: 34,
      },
    },
    { selector: 'node[kind = "workload"]', style: { shape: 'round-rectangle', 'background-color': '#2f6fb0' } },
    { selector: 'node[kind = "service"]', style: { shape: 'ellipse', 'background-color': '#8a96a3', width: 26, height: 26 } },
    { selector: 'node[proxy = "gateway"]', style: { shape: 'diamond', 'background-color': '#6a3fa0', width: 40, height: 40 } },
    { selector: 'node[?unmeshed]', style: { 'background-color': '#fff', 'border-width': 2, 'border-color': '#8a96a3' } },
    {
      selector: 'edge',
      style: {
        width: 2.5,
        'curve-style': 'bezier',
        'target-arrow-shape': 'triangle',
        'line-color': 'data(color)',
        'target-arrow-color': 'data(color)',
        label: 'data(text)',
        'font-size': 10,
        'text-rotation': 'autorotate',
        'text-margin-y': 12,
        color: '#333',
        'text-background-color': '#fff',
        'text-background-opacity': 0.9,
        'text-background-padding': 1,
      },
    },
    { selector: 'edge[!secure]', style: { 'line-style': 'dashed' } },
  ],
});

// What the page shows, for people reading the console and for the browser test.
window.skiff = {
  cy,
  graph: null,
  state: () => ({
    nodes: cy.nodes().map((n) => n.data()),
    edges: cy.edges().map((e) => e.data()),
  }),
};

let shape = '';

function drawLocks() {
  const pan = cy.pan();
  const zoom = cy.zoom();
  const html = cy
    .edges('[?secure]')
    .map((e) => {
      const m = e.midpoint();
      return `<span class="lock" style="left:${m.x * zoom + pan.x}px;top:${m.y * zoom + pan.y}px">${LOCK_SVG}</span>`;
    })
    .join('');
  $('locks').innerHTML = html;
}
cy.on('render', drawLocks);

async function getJson(path) {
  const r = await fetch(path, { cache: 'no-store' });
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

async function refreshGraph() {
  const windowSeconds = $('window').value;
  const g = await getJson(`/api/graph?window=${windowSeconds}`);
  window.skiff.graph = g;
  const elements = [];
  for (const n of g.nodes) {
    elements.push({
      group: 'nodes',
      data: { ...n, unmeshed: n.kind === 'workload' && !n.proxy },
    });
  }
  for (const e of g.edges) {
    elements.push({
      group: 'edges',
      data: { ...e, text: edgeLabel(e), color: edgeColor(e), secure: e.mtls_share === 1 },
    });
  }
  const ids = new Set(elements.map((x) => x.data.id));
  cy.batch(() => {
    cy.elements().forEach((el) => {
      if (!ids.has(el.id())) el.remove();
    });
    for (const x of elements) {
      const have = cy.getElementById(x.data.id);
      if (have.nonempty()) have.data(x.data);
      else cy.add(x);
    }
  });
  const newShape = [...ids].sort().join('|');
  if (newShape !== shape) {
    shape = newShape;
    // Callers on the left, callees to the right: edges run across, their labels read
    // along them.
    cy.layout({
      name: 'breadthfirst',
      directed: true,
      spacingFactor: 1.1,
      padding: 50,
      animate: false,
      transform: (_node, p) => ({ x: p.y * 1.9, y: p.x }),
    }).run();
  }
  drawLocks();
  const moving = g.edges.filter((e) => e.requests > 0).length;
  $('status').textContent = g.error
    ? `cannot scrape: ${g.error}`
    : `${g.nodes.length} nodes, ${moving} edges with traffic over the last ${Math.round(g.window_seconds)} s · ${g.scrapes} scrapes`;
  document.body.dataset.ready = g.window_seconds > 0 ? 'yes' : 'no';
}

function sparkline(points) {
  if (!points.length) return '';
  const max = Math.max(...points.map((p) => p.rps), 1e-9);
  const n = points.length;
  const xy = points.map((p, i) => `${((i / Math.max(n - 1, 1)) * 100).toFixed(1)},${(28 - (p.rps / max) * 26).toFixed(1)}`);
  return `<svg class="spark" viewBox="0 0 100 30" preserveAspectRatio="none"><polyline fill="none" stroke="#2f6fb0" stroke-width="2" points="${xy.join(' ')}"/></svg>`;
}

async function refreshServices() {
  const s = await getJson('/api/services?span=300');
  const rows = s.services.map((svc) => {
    const m = svc.last_minute;
    const sr = m ? m.success_rate : null;
    const cls = sr === null ? '' : sr >= 0.99 ? 'ok' : sr >= 0.95 ? 'warn' : 'bad';
    return `<tr><td class="name" title="${esc(svc.service)}">${esc(svc.service)}</td><td>${m ? figure(m.rps) : '-'}</td><td class="${cls}">${pct(sr)}</td><td>${m ? ms(m.p99_ms) : '-'}</td><td>${m ? pct(m.mtls_share) : '-'}</td><td>${sparkline(svc.points)}</td></tr>`;
  });
  $('services').tBodies[0].innerHTML = rows.join('') || '<tr><td colspan="6" class="muted">no traffic yet</td></tr>';
}

async function refreshProxies() {
  const p = await getJson('/api/proxies');
  const rows = p.proxies.map((r) => {
    const cls = r.status === 'SYNCED' ? 'ok' : r.status.startsWith('NACK') ? 'bad' : 'warn';
    const fine = r.metrics === 'scraped' || r.metrics === 'via Prometheus';
    return `<tr><td class="name">${esc(r.proxy)}</td><td class="${cls}">${esc(r.status)}</td><td class="${fine ? 'ok' : 'bad'}" title="${esc(r.metrics)}">${fine ? esc(r.metrics) : 'not scraped'}</td></tr>`;
  });
  $('proxies').tBodies[0].innerHTML =
    rows.join('') || `<tr><td colspan="3" class="muted">${esc(p.error || 'no proxies')}</td></tr>`;
}

async function refreshFindings() {
  const f = await getJson('/api/findings');
  const items = [];
  for (const e of f.errors || []) items.push(`<li class="Error"><b>error</b> ${esc(e)}</li>`);
  for (const m of f.analyze || []) {
    items.push(
      `<li class="${esc(m.level)}">${esc(m.line)}${m.fix ? `<br><span class="muted">fix: ${esc(m.fix)}</span>` : ''}</li>`,
    );
  }
  if (f.error) items.push(`<li class="Error">${esc(f.error)}</li>`);
  if (f.analyze_error) items.push(`<li class="Error">${esc(f.analyze_error)}</li>`);
  $('findings').innerHTML = items.join('') || '<li class="Info">No problems found in the configuration.</li>';
}

function every(ms, f) {
  const run = () =>
    f().catch((e) => {
      $('status').textContent = `the dashboard does not answer: ${e.message}`;
    });
  run();
  setInterval(run, ms);
}

every(2000, refreshGraph);
every(2000, refreshServices);
every(5000, refreshProxies);
every(10000, refreshFindings);
$('window').addEventListener('change', () => refreshGraph());
