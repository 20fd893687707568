// slipway web UI: live refresh (SSE), action buttons, and the virtualised log viewer.
// No framework and no build step: this file is embedded in the binary as written.
'use strict';

const H = 20; // log row height in px (matches .log .row in app.css)

function esc(s) {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function localTimes(root) {
  for (const t of root.querySelectorAll('time[datetime]')) {
    const ms = Number(t.getAttribute('datetime'));
    if (!Number.isNaN(ms)) { t.title = t.textContent; t.textContent = new Date(ms).toLocaleString(); }
  }
}

// --- live refresh: refetch this page and swap #live when the server says something changed ---
let refreshing = false, again = false;
async function refresh() {
  if (refreshing) { again = true; return; }
  refreshing = true;
  try {
    // Keep showing the job whose log is open (without ?job= the server would pick another).
    const u = new URL(location.href), log = document.getElementById('log');
    if (log && !u.searchParams.has('job')) u.searchParams.set('job', log.dataset.job);
    const res = await fetch(u.href, { headers: { 'X-Slipway-UI': '1' } });
    if (res.ok) {
      const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
      const fresh = doc.getElementById('live'), old = document.getElementById('live');
      if (fresh && old) {
        const active = document.activeElement;
        const key = active && (active.dataset.jobKey || active.dataset.action || active.id);
        const values = {};
        for (const i of old.querySelectorAll('input[id]')) values[i.id] = i.value;
        const status = document.getElementById('action-status');
        const statusText = status ? status.textContent : '';
        old.replaceWith(fresh);
        localTimes(fresh);
        for (const [id, v] of Object.entries(values)) { const i = document.getElementById(id); if (i) i.value = v; }
        const st = document.getElementById('action-status'); if (st) st.textContent = statusText;
        if (key) {
          const el = fresh.querySelector(`[data-job-key="${CSS.escape(key)}"], [data-action="${CSS.escape(key)}"], #${CSS.escape(key)}`);
          if (el) el.focus();
        }
      }
    }
  } catch (e) { /* the next change retries */ }
  refreshing = false;
  if (again) { again = false; setTimeout(refresh, 200); }
}

function follow() {
  const live = document.getElementById('live');
  if (!live) return;
  const run = live.dataset.run;
  const es = new EventSource('/ui/events' + (run ? '?run=' + encodeURIComponent(run) : ''));
  let timer = null;
  es.addEventListener('change', () => { if (!timer) timer = setTimeout(() => { timer = null; refresh(); }, 150); });
}

// --- actions ---
async function act(btn) {
  const a = btn.dataset.action, run = btn.dataset.run;
  const status = document.getElementById('action-status');
  let url, body = null;
  if (a === 'cancel' || a === 'rerun') url = `/ui/api/runs/${run}/${a}`;
  else if (a === 'rerun-all') url = `/ui/api/runs/${run}/rerun?all=true`;
  else if (a === 'approve' || a === 'reject') {
    const box = btn.closest('.approval'), c = box && box.querySelector('input.comment');
    url = `/ui/api/runs/${run}/${a}`;
    body = { environment: btn.dataset.environment, comment: c && c.value ? c.value : null };
  } else if (a === 'rollback') {
    if (!confirm(`Roll ${btn.dataset.environment} back to deployment #${btn.dataset.to}?`)) return;
    url = '/ui/api/deployments/rollback';
    body = { environment: btn.dataset.environment, repository: btn.dataset.repository, to: Number(btn.dataset.to) };
  } else return;
  btn.disabled = true;
  if (status) status.textContent = 'Working…';
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'X-Slipway-UI': '1', 'Content-Type': 'application/json' },
      body: body ? JSON.stringify(body) : '{}',
    });
    let msg = `${a}: done`;
    if (!res.ok) {
      const text = await res.text();
      try { msg = `${a} refused: ${JSON.parse(text).error}`; } catch (e) { msg = `${a} refused: ${text}`; }
    }
    if (status) status.textContent = msg;
  } catch (e) {
    if (status) status.textContent = `${a} failed: ${e}`;
  }
  btn.disabled = false;
  refresh();
}

// --- ANSI SGR to HTML ---
const SGR = /\x1b\[([0-9;]*)m/g;
function ansi(line) {
  let out = '', last = 0, cls = [], m;
  const open = () => (cls.length ? `<span class="${cls.join(' ')}">` : '');
  const close = () => (cls.length ? '</span>' : '');
  SGR.lastIndex = 0;
  while ((m = SGR.exec(line))) {
    out += esc(line.slice(last, m.index));
    out += close();
    for (const p of (m[1] || '0').split(';').map(Number)) {
      if (p === 0) cls = [];
      else if (p === 1) cls.push('b');
      else if (p === 3) cls.push('i');
      else if (p === 4) cls.push('u');
      else if ((p >= 30 && p <= 37) || (p >= 90 && p <= 97)) { cls = cls.filter((c) => c[0] !== 'c'); cls.push('c' + (p >= 90 ? p - 60 : p)); }
      else if (p === 39) cls = cls.filter((c) => c[0] !== 'c');
    }
    out += open();
    last = SGR.lastIndex;
  }
  return out + esc(line.slice(last)) + close();
}
const plain = (s) => s.replace(SGR, '');

const ICONS = { success: '✓', failure: '✗', cancelled: '⊘', skipped: '↷', running: '●' };
// `::leg::NAME` / `::endleg::RESULT::NAME`: where a matrix leg starts and how it ended.
function legLine(p) {
  if (p.startsWith('::leg::')) return `<span class="s-running">${ICONS.running}</span> leg <strong>${esc(p.slice(7))}</strong> started`;
  const rest = p.slice(10), at = rest.indexOf('::');
  const result = at < 0 ? rest : rest.slice(0, at), name = at < 0 ? '' : rest.slice(at + 2);
  return `<span class="s-${esc(result)}">${ICONS[result] || '○'}</span> leg <strong>${esc(name)}</strong>: ${esc(result)}`;
}
// A line's time (unix ms) as local wall-clock time with milliseconds.
function clock(ms) {
  const d = new Date(ms), p = (n, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

// --- the log viewer: all lines in an array, only the visible window in the DOM ---
class LogView {
  constructor(el) {
    this.el = el;
    this.lines = []; // {text, kind: 'step'|'group'|'leg'|'line', head: index of the header that folds it, t: unix ms}
    this.folded = new Set();
    this.visible = [];
    this.step = -1; this.group = -1;
    this.hits = []; this.hit = -1; this.query = '';
    this.followTail = true;
    this.times = localStorage.getItem('slipway.timestamps') === '1';
    this.attempt = null; this.lastSeq = -1;
    this.spacer = document.createElement('div'); this.spacer.className = 'spacer';
    el.appendChild(this.spacer);
    this.dirty = false;
    el.addEventListener('scroll', () => {
      const atEnd = el.scrollTop + el.clientHeight >= el.scrollHeight - 2 * H;
      if (!atEnd && this.followTail && !this.programmatic) this.setFollow(false);
      this.programmatic = false;
      this.paint();
    });
    el.addEventListener('click', (e) => {
      const row = e.target.closest('.row');
      if (!row || e.target.closest('a')) return;
      const i = Number(row.dataset.i), l = this.lines[i];
      if (l.kind === 'step' || l.kind === 'group') this.toggle(i);
    });
    el.addEventListener('keydown', (e) => {
      if (e.key === 'End') { this.setFollow(true); }
    });
    window.addEventListener('resize', () => this.paint());
  }
  setFollow(on) {
    this.followTail = on;
    const b = document.getElementById('log-follow');
    if (b) b.setAttribute('aria-pressed', String(on));
    if (on) this.schedule();
  }
  reset() { this.lines = []; this.folded.clear(); this.step = -1; this.group = -1; this.schedule(); annotations.replaceChildren(); }
  add(chunk) {
    if (this.attempt !== null && chunk.attempt > this.attempt) { this.reset(); this.lastSeq = -1; }
    if (this.attempt !== null && (chunk.attempt < this.attempt || (chunk.attempt === this.attempt && chunk.seq <= this.lastSeq))) return; // a duplicate
    this.attempt = chunk.attempt; this.lastSeq = chunk.seq;
    let text = chunk.text;
    if (text.endsWith('\n')) text = text.slice(0, -1);
    const t = typeof chunk.time === 'number' ? chunk.time : null;
    for (const raw of text.split('\n')) this.push(raw, t);
    this.schedule();
  }
  push(text, t) {
    const i = this.lines.length, p = plain(text);
    // `::endgroup::` closes the open group and is not shown (nor numbered, like GitHub).
    if (p.startsWith('::endgroup::')) { this.group = -1; return; }
    let kind = 'line', head = this.group >= 0 ? this.group : this.step;
    if (p.startsWith('==> ')) { kind = 'step'; this.step = i; this.group = -1; head = -1; }
    else if (p.startsWith('▸ ') || p.startsWith('::group::')) { kind = 'group'; this.group = i; head = this.step; }
    else if (p.startsWith('::leg::') || p.startsWith('::endleg::')) kind = 'leg';
    else if (p.startsWith('<== ')) { this.group = -1; head = this.step; }
    this.lines.push({ text, kind, head, t });
    const a = /^(error|warning|notice):\s?(.*)$/.exec(p);
    if (a) {
      const li = document.createElement('li');
      li.className = 'a-' + a[1];
      li.innerHTML = `<a href="#L${i + 1}">${esc(a[1])}</a>: ${esc(a[2])}`;
      annotations.appendChild(li);
    }
    if (this.query && p.toLowerCase().includes(this.query)) this.hits.push(i);
  }
  hidden(i) {
    // Hidden when any header above it (its group, then its step) is folded.
    for (let h = this.lines[i].head; h >= 0; h = this.lines[h].head) if (this.folded.has(h)) return true;
    return false;
  }
  recompute() {
    const v = [];
    for (let i = 0; i < this.lines.length; i++) if (!this.hidden(i)) v.push(i);
    this.visible = v;
    this.spacer.style.height = v.length * H + 'px';
  }
  schedule() {
    if (this.dirty) return;
    this.dirty = true;
    requestAnimationFrame(() => {
      this.dirty = false;
      this.recompute();
      if (this.followTail) { this.programmatic = true; this.el.scrollTop = this.el.scrollHeight; }
      this.paint();
      const c = document.getElementById('log-count');
      if (c) c.textContent = `${this.lines.length} lines`;
      this.updateMatches();
    });
  }
  toggle(i) { if (this.folded.has(i)) this.folded.delete(i); else this.folded.add(i); this.schedule(); }
  paint() {
    const first = Math.max(0, Math.floor(this.el.scrollTop / H) - 10);
    const last = Math.min(this.visible.length, first + Math.ceil(this.el.clientHeight / H) + 20);
    let html = '';
    const hitSet = this.query ? new Set(this.hits) : null;
    const cur = this.hit >= 0 ? this.hits[this.hit] : -1;
    for (let k = first; k < last; k++) {
      const i = this.visible[k], l = this.lines[i];
      let cls = 'row';
      if (l.kind === 'step' || l.kind === 'group') cls += ' ' + l.kind;
      if (hitSet && hitSet.has(i)) cls += ' hit';
      if (i === cur) cls += ' current';
      if (i === this.target) cls += ' target';
      const mark = l.kind === 'step' || l.kind === 'group' ? (this.folded.has(i) ? '▸ ' : '▾ ') : '';
      let body;
      if (l.kind === 'group') body = ansi(l.text.replace(/^(▸ |::group::)/, ''));
      else if (l.kind === 'leg') { cls += ' leg'; body = legLine(plain(l.text)); }
      else body = ansi(l.text);
      const ts = this.times && l.t !== null && l.t !== undefined ? `<span class="ts">${clock(l.t)}</span>` : '';
      html += `<div class="${cls}" data-i="${i}" style="top:${k * H}px"><a class="ln" id="L${i + 1}" href="#L${i + 1}">${i + 1}</a>${ts}${mark}${body}</div>`;
    }
    this.spacer.innerHTML = html;
  }
  reveal(i) {
    for (let h = this.lines[i].head; h >= 0; h = this.lines[h].head) this.folded.delete(h);
    this.recompute();
    const k = this.visible.indexOf(i);
    this.setFollow(false);
    this.programmatic = true;
    this.el.scrollTop = Math.max(0, k * H - this.el.clientHeight / 2);
    this.paint();
  }
  search(q) {
    this.query = q.toLowerCase();
    this.hits = [];
    if (this.query) this.lines.forEach((l, i) => { if (plain(l.text).toLowerCase().includes(this.query)) this.hits.push(i); });
    this.hit = this.hits.length ? 0 : -1;
    if (this.hit >= 0) this.reveal(this.hits[0]); else this.paint();
    this.updateMatches();
  }
  next(d) {
    if (!this.hits.length) return;
    this.hit = (this.hit + d + this.hits.length) % this.hits.length;
    this.reveal(this.hits[this.hit]);
    this.updateMatches();
  }
  updateMatches() {
    const m = document.getElementById('log-matches');
    if (m) m.textContent = this.query ? `${this.hits.length ? this.hit + 1 : 0}/${this.hits.length}` : '';
  }
  goto(n) { if (n >= 1 && n <= this.lines.length) { this.target = n - 1; this.reveal(n - 1); } }
}

let annotations = null;
function logViewer() {
  const el = document.getElementById('log');
  if (!el) return;
  annotations = document.getElementById('annotations');
  const view = new LogView(el);
  window.slipwayLog = view; // for the browser tests and the console
  const es = new EventSource(`/ui/jobs/${el.dataset.job}/log?follow=1`);
  let jumped = false;
  es.addEventListener('log', (e) => view.add(JSON.parse(e.data)));
  es.addEventListener('end', () => {
    es.close();
    el.dataset.complete = 'true';
    if (!jumped && /^#L\d+$/.test(location.hash)) { jumped = true; setTimeout(() => view.goto(Number(location.hash.slice(2))), 50); }
  });
  window.addEventListener('hashchange', () => { if (/^#L\d+$/.test(location.hash)) view.goto(Number(location.hash.slice(2))); });
  const s = document.getElementById('log-search');
  s.addEventListener('input', () => view.search(s.value));
  s.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); view.next(e.shiftKey ? -1 : 1); } });
  document.getElementById('log-next').addEventListener('click', () => view.next(1));
  document.getElementById('log-prev').addEventListener('click', () => view.next(-1));
  document.getElementById('log-follow').addEventListener('click', () => view.setFollow(!view.followTail));
  const tb = document.getElementById('log-times');
  if (tb) {
    tb.setAttribute('aria-pressed', String(view.times));
    tb.addEventListener('click', () => {
      view.times = !view.times;
      localStorage.setItem('slipway.timestamps', view.times ? '1' : '0');
      tb.setAttribute('aria-pressed', String(view.times));
      el.classList.toggle('times', view.times);
      view.paint();
    });
    el.classList.toggle('times', view.times);
  }
  document.addEventListener('keydown', (e) => {
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
    if (e.key === '/' && !typing) { e.preventDefault(); s.focus(); }
  });
}

// --- "Run workflow": workflow_dispatch through the API as the signed-in user; the new run opens ---
async function dispatch(form) {
  const status = form.querySelector('.status'), button = form.querySelector('button[type=submit]');
  const inputs = {};
  for (const i of form.querySelectorAll('[data-input]')) inputs[i.dataset.input] = i.type === 'checkbox' ? String(i.checked) : i.value;
  const body = { repository: form.dataset.repository, workflow: form.dataset.workflow, ref: form.dataset.ref, inputs };
  if (button) button.disabled = true;
  if (status) status.textContent = 'Starting…';
  try {
    const res = await fetch('/ui/api/dispatch', {
      method: 'POST', headers: { 'X-Slipway-UI': '1', 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    });
    const text = await res.text();
    let reply = null;
    try { reply = JSON.parse(text); } catch (e) { /* not JSON */ }
    if (res.ok && reply && reply.runs && reply.runs.length) { location.href = `/runs/${reply.runs[0]}`; return; }
    if (status) status.textContent = `refused: ${reply && reply.error ? reply.error : text}`;
  } catch (e) {
    if (status) status.textContent = `failed: ${e}`;
  }
  if (button) button.disabled = false;
}
document.addEventListener('submit', (e) => {
  const f = e.target.closest('form.dispatch');
  if (f) { e.preventDefault(); dispatch(f); }
});

document.addEventListener('click', (e) => {
  const b = e.target.closest('button[data-action]');
  if (b) { e.preventDefault(); act(b); }
});
document.addEventListener('DOMContentLoaded', () => {
  localTimes(document);
  follow();
  logViewer();
});
