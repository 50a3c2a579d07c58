// The ops-repl web console. It speaks PROTOCOL.md over a WebSocket to the
// endpoint that served it. Everything the server sends is shown as text
// (textContent, never HTML). The token lives in this script's memory only.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const utf8 = new TextEncoder();
  const fromUTF8 = new TextDecoder();
  const FINAL = new Set(['result', 'error', 'incomplete', 'completions']);

  // wsURL is the console's endpoint: this page's URL without the trailing
  // slash, over ws: or wss:.
  function wsURL() {
    const u = new URL(location.href);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    u.pathname = u.pathname.replace(/\/+$/, '') || '/';
    u.search = '';
    u.hash = '';
    return u.href;
  }

  // Session is one WebSocket session: requests by id, each with a
  // handler; the binary frames of a file belong to the open transfer.
  class Session {
    constructor(token) {
      this.token = token;
      this.nextID = 1;
      this.reqs = new Map();
      this.file = null;
      this.onclose = null;
      this.onnotice = null;
    }

    open() {
      return new Promise((resolve, reject) => {
        const protocols = ['ops-repl.v1'];
        if (this.token) protocols.push('ops-repl.bearer.' + this.token);
        let ws;
        try {
          ws = new WebSocket(wsURL(), protocols);
        } catch (e) {
          reject(e);
          return;
        }
        ws.binaryType = 'arraybuffer';
        this.ws = ws;
        let hello = null;
        ws.onmessage = (m) => {
          if (typeof m.data !== 'string') {
            this.chunk(m.data);
            return;
          }
          let ev;
          try {
            ev = JSON.parse(m.data);
          } catch (e) {
            return;
          }
          if (!hello) {
            if (ev.type === 'hello') {
              hello = ev;
              this.token = null; // the page keeps one copy, for the chart session
              resolve(ev);
            }
            return;
          }
          this.dispatch(ev);
        };
        ws.onclose = (e) => {
          if (!hello) {
            reject(new Error(refusal(e)));
          }
          const pending = [...this.reqs.values()];
          this.reqs.clear();
          if (this.file) this.file.h.fileAbort && this.file.h.fileAbort(this.file);
          this.file = null;
          for (const h of pending) h.closed && h.closed(e);
          if (hello && this.onclose) this.onclose(e);
        };
      });
    }

    dispatch(ev) {
      const h = this.reqs.get(ev.id);
      if (!h) {
        if (this.onnotice) this.onnotice(ev);
        return;
      }
      if (ev.type === 'file') {
        this.file = { ev, h, parts: [], got: 0 };
        h.fileStart && h.fileStart(this.file);
        return;
      }
      if (ev.type === 'file_end') {
        const f = this.file;
        this.file = null;
        if (f && f.h === h && !f.dropped) h.fileEnd && h.fileEnd(f);
        return;
      }
      const final = FINAL.has(ev.type);
      if (final) {
        this.reqs.delete(ev.id);
        if (this.file && this.file.h === h) {
          h.fileAbort && h.fileAbort(this.file);
          this.file = null;
        }
      }
      h.event(ev, final);
    }

    chunk(buf) {
      const f = this.file;
      if (!f || f.dropped) return;
      f.got += buf.byteLength;
      if (f.got > f.ev.size) {
        f.dropped = true;
        f.parts = [];
        f.h.fileAbort && f.h.fileAbort(f, 'more bytes arrived than announced; nothing kept');
        return;
      }
      f.parts.push(buf);
      f.h.fileProgress && f.h.fileProgress(f);
    }

    send(req, handler) {
      req.id = this.nextID++;
      this.reqs.set(req.id, handler);
      this.ws.send(JSON.stringify(req));
      return req.id;
    }

    run(line, handler) { return this.send({ type: 'run', line }, handler); }

    complete(line, pos, handler) { return this.send({ type: 'complete', line, pos }, handler); }

    cancel(target) {
      if (this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(JSON.stringify({ type: 'cancel', id: this.nextID++, target }));
      }
    }

    close() {
      if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, 'session ended');
    }
  }

  // refusal explains a connection that closed before its hello.
  function refusal(e) {
    if (e.reason) return 'The console closed the connection: ' + e.reason;
    return 'The console refused the connection. The token may be wrong or revoked, your ' +
      'subject may be throttled or have too many sessions open, or the page may come from ' +
      'another origin. The server\'s audit log records why.';
  }

  function closeText(e) {
    const why = e.reason ? ': ' + e.reason : '';
    switch (e.code) {
      case 1000: return 'Session ended' + why;
      case 1001: return 'The server is going away' + why;
      case 1006: return 'The connection was lost';
      case 1008: return 'The server ended the session (policy)' + why;
      case 1009: return 'A message was too big' + why;
      default: return 'The session closed (' + e.code + ')' + why;
    }
  }

  // ---- state -------------------------------------------------------------

  let token = null; // in memory only, for the chart session
  let main = null; // the REPL's session
  let charts = null; // the chart session, while charts run
  let running = 0; // the run in flight
  let pending = ''; // unfinished Go source (after "incomplete")
  const history = [];
  let historyPos = 0;
  let prompt = '> ';

  const out = $('output');
  const input = $('input');

  // ---- output ------------------------------------------------------------

  function atBottom() { return out.scrollHeight - out.scrollTop - out.clientHeight < 40; }

  function show(text, cls) {
    const stick = atBottom();
    const pre = document.createElement('pre');
    if (cls) pre.className = cls;
    pre.textContent = text;
    out.appendChild(pre);
    if (stick) out.scrollTop = out.scrollHeight;
    return pre;
  }

  // stream appends output text to a request's block.
  function stream(block, text) {
    const stick = atBottom();
    block.appendChild(document.createTextNode(text));
    if (stick) out.scrollTop = out.scrollHeight;
  }

  // ---- sign-in -----------------------------------------------------------

  async function connect(tok) {
    $('signin-error').textContent = '';
    $('connect').disabled = true;
    const s = new Session(tok);
    try {
      const hello = await s.open();
      token = tok;
      main = s;
      started(hello);
    } catch (e) {
      $('signin-error').textContent = e.message;
    } finally {
      $('connect').disabled = false;
    }
  }

  function started(hello) {
    prompt = hello.subject + '> ';
    $('prompt').textContent = prompt;
    $('who').textContent = hello.subject + ' · ' + (hello.roles || []).join(', ') + ' · session ' + hello.session;
    $('signin').hidden = true;
    $('console').hidden = false;
    $('disconnect').hidden = false;
    out.textContent = '';
    show('Connected as ' + hello.subject + ' (session ' + hello.session + '). Type help for your commands.', 'notice');
    main.onclose = (e) => ended(closeText(e));
    main.onnotice = (ev) => {
      if (ev.type === 'error') show(ev.code + ': ' + ev.message, 'error');
      else if (ev.message) show(ev.message, 'notice');
    };
    input.focus();
  }

  function ended(why) {
    stopCharts();
    main = null;
    token = null;
    running = 0;
    pending = '';
    $('who').textContent = 'Not connected';
    $('disconnect').hidden = true;
    $('console').hidden = true;
    $('signin').hidden = false;
    $('signin-error').textContent = why;
    $('token').focus();
  }

  // A token is HTTP token characters (it travels as a subprotocol name);
  // "Bearer TOKEN", as pasted from a header, is taken too.
  function signIn() {
    const tok = $('token').value.trim().replace(/^bearer\s+/i, '');
    $('token').value = '';
    if (!tok) {
      $('signin-error').textContent = 'Paste a token, or use a client certificate.';
    } else if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(tok)) {
      $('signin-error').textContent = 'That is not a token: a token is letters, digits and a few signs such as - _ . ~, with no spaces.';
    } else {
      connect(tok);
    }
  }
  $('connect').addEventListener('click', signIn);
  $('token').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.isComposing) {
      e.preventDefault();
      signIn();
    }
  });
  if (location.protocol === 'https:') {
    $('cert').hidden = false;
    $('cert').addEventListener('click', () => connect(null));
  }
  $('disconnect').addEventListener('click', () => {
    if (main) main.close();
  });
  window.addEventListener('pagehide', () => {
    if (charts) charts.close();
    if (main) main.close();
  });

  // ---- the REPL ----------------------------------------------------------

  function busy(on) {
    $('cancel').disabled = !on;
    $('run').disabled = on;
  }

  function submit() {
    if (!main || running) return;
    const line = input.value;
    const src = pending ? pending + '\n' + line : line;
    show((pending ? '… ' : prompt) + line, 'echo');
    if (line.trim()) history.push(line);
    historyPos = history.length;
    input.value = '';
    resize();
    closeCompletions();
    const block = show('', '');
    busy(true);
    running = main.run(src, {
      event(ev) {
        switch (ev.type) {
          case 'output':
            stream(block, ev.data || '');
            return;
          case 'notice':
            show(ev.message || '', 'notice');
            return;
          case 'result':
            pending = '';
            if (ev.value) show(ev.value, 'value');
            break;
          case 'error':
            pending = '';
            show(ev.code + ': ' + (ev.message || ''), 'error');
            break;
          case 'incomplete':
            pending = src;
            break;
        }
        running = 0;
        busy(false);
        $('prompt').textContent = pending ? '… ' : prompt;
      },
      fileStart(f) { f.view = fileView(f); },
      fileProgress(f) { f.view.progress(f.got); },
      fileEnd(f) { f.view.finish(f); },
      fileAbort(f, why) { f.view.fail(why || 'the transfer ended before the file was complete; nothing kept'); },
      closed() {
        running = 0;
        busy(false);
      },
    });
  }

  function cancelRun() {
    if (main && running) {
      main.cancel(running);
      show('^C', 'notice');
    }
  }

  function resize() {
    input.style.height = 'auto';
    input.style.height = Math.min(input.scrollHeight + 2, 200) + 'px';
  }

  $('prompt-form').addEventListener('submit', (e) => {
    e.preventDefault();
    submit();
  });
  $('cancel').addEventListener('click', () => {
    cancelRun();
    input.focus();
  });
  input.addEventListener('input', resize);
  // Enter runs (keydown); only Shift+Enter may put a line break in the
  // prompt, whatever sends it (an on-screen keyboard, a synthetic event).
  let shiftDown = false;
  input.addEventListener('keyup', (e) => { shiftDown = e.shiftKey; });
  input.addEventListener('beforeinput', (e) => {
    if ((e.inputType === 'insertLineBreak' || e.inputType === 'insertParagraph') && !shiftDown) e.preventDefault();
  });

  input.addEventListener('keydown', (e) => {
    shiftDown = e.shiftKey;
    const list = $('completions');
    if (!list.hidden) {
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        moveSelection(e.key === 'ArrowDown' ? 1 : -1);
        return;
      }
      if (e.key === 'Enter' || e.key === 'Tab') {
        e.preventDefault();
        pickSelected();
        return;
      }
      if (e.key === 'Escape') {
        e.preventDefault();
        closeCompletions();
        return;
      }
      closeCompletions();
    }
    if (e.isComposing) return; // an input method is composing: its Enter is its own
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      submit();
    } else if (e.key === 'Tab' && !e.shiftKey && input.value.trim() !== '') {
      e.preventDefault();
      complete();
    } else if (e.key.toLowerCase() === 'c' && e.ctrlKey && !e.altKey && !e.metaKey && input.selectionStart === input.selectionEnd) {
      e.preventDefault();
      if (running) cancelRun();
      else {
        if (input.value || pending) show((pending ? '… ' : prompt) + input.value + '^C', 'echo');
        input.value = '';
        pending = '';
        $('prompt').textContent = prompt;
      }
    } else if (e.key === 'ArrowUp' && !input.value.slice(0, input.selectionStart).includes('\n')) {
      if (historyPos > 0) {
        e.preventDefault();
        historyPos--;
        input.value = history[historyPos];
        resize();
      }
    } else if (e.key === 'ArrowDown' && !input.value.slice(input.selectionEnd).includes('\n')) {
      if (historyPos < history.length) {
        e.preventDefault();
        historyPos++;
        input.value = historyPos < history.length ? history[historyPos] : '';
        resize();
      }
    }
  });

  // ---- completion --------------------------------------------------------

  let completion = null; // { items, start, end, selected }

  // byteOffset converts a position in input.value (UTF-16) to a UTF-8
  // byte offset, as the protocol counts; charOffset converts back.
  function byteOffset(s, i) { return utf8.encode(s.slice(0, i)).length; }
  function charOffset(s, bytes) { return fromUTF8.decode(utf8.encode(s).slice(0, bytes)).length; }

  // complete asks the server about the source so far: the unfinished
  // lines before this one, then this one up to the caret.
  function complete() {
    if (!main) return;
    const line = input.value;
    const caret = input.selectionStart;
    const before = pending ? pending + '\n' : '';
    const skip = utf8.encode(before).length;
    main.complete(before + line, skip + byteOffset(line, caret), {
      event(ev) {
        if (ev.type !== 'completions' || input.value !== line || (ev.start || 0) < skip) return;
        const items = ev.items || [];
        const start = charOffset(line, (ev.start || 0) - skip);
        if (items.length === 0) return;
        if (items.length === 1) {
          replace(start, caret, items[0]);
          return;
        }
        const common = commonPrefix(items);
        if (common.length > caret - start) replace(start, caret, common);
        openCompletions(items, start, input.selectionStart);
      },
    });
  }

  function replace(start, end, text) {
    input.setRangeText(text, start, end, 'end');
    resize();
  }

  function commonPrefix(items) {
    let p = items[0];
    for (const s of items) {
      while (!s.startsWith(p)) p = p.slice(0, -1);
    }
    return p;
  }

  function openCompletions(items, start, end) {
    const list = $('completions');
    list.textContent = '';
    items.forEach((item, i) => {
      const li = document.createElement('li');
      li.id = 'completion-' + i;
      li.setAttribute('role', 'option');
      li.setAttribute('aria-selected', 'false');
      li.textContent = item;
      li.addEventListener('mousedown', (e) => {
        e.preventDefault();
        completion.selected = i;
        pickSelected();
      });
      list.appendChild(li);
    });
    completion = { items, start, end, selected: -1 };
    list.hidden = false;
    input.setAttribute('aria-expanded', 'true');
    moveSelection(1);
  }

  function moveSelection(step) {
    const n = completion.items.length;
    completion.selected = (completion.selected + step + n) % n;
    const list = $('completions');
    [...list.children].forEach((li, i) => li.setAttribute('aria-selected', String(i === completion.selected)));
    const li = list.children[completion.selected];
    input.setAttribute('aria-activedescendant', li.id);
    li.scrollIntoView({ block: 'nearest' });
  }

  function pickSelected() {
    const c = completion;
    closeCompletions();
    if (c && c.selected >= 0) replace(c.start, input.selectionStart, c.items[c.selected]);
  }

  function closeCompletions() {
    completion = null;
    $('completions').hidden = true;
    input.removeAttribute('aria-activedescendant');
    input.setAttribute('aria-expanded', 'false');
  }

  // ---- files -------------------------------------------------------------

  // safeName keeps a server-suggested file name to plain characters.
  function safeName(name) {
    const s = String(name || 'download').replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '');
    return s.slice(0, 120) || 'download';
  }

  function hex(buf) {
    return [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
  }

  // MAX_DOWNLOAD bounds what the page holds: a file is kept in memory
  // until it is saved.
  const MAX_DOWNLOAD = 1 << 30;
  let lastURL = null; // the one finished file the page still holds

  function fileView(f) {
    const name = safeName(f.ev.name);
    const size = Number(f.ev.size) || 0;
    const box = show('', 'file');
    if (size > MAX_DOWNLOAD) {
      f.dropped = true;
      if (main) main.cancel(f.ev.id);
      box.className = 'file error';
      box.textContent = name + ': ' + formatBytes(size) + ' is more than this page holds (' +
        formatBytes(MAX_DOWNLOAD) + '); the request is cancelled. Use the CLI for this file.';
      return { progress() {}, fail() {}, finish() {} };
    }
    const label = document.createElement('span');
    label.textContent = 'Receiving ' + name + ' (' + formatBytes(size) + ') ';
    const bar = document.createElement('progress');
    bar.max = Math.max(size, 1);
    bar.value = 0;
    bar.setAttribute('aria-label', 'Download of ' + name);
    box.append(label, bar);
    return {
      progress(got) { bar.value = got; },
      fail(why) {
        bar.remove();
        label.textContent = name + ': ' + why;
        box.className = 'file error';
      },
      async finish(done) {
        bar.remove();
        const parts = done.parts;
        done.parts = [];
        if (done.got !== size) {
          this.fail('received ' + done.got + ' bytes, expected ' + size + '; nothing kept');
          return;
        }
        if (!(window.crypto && crypto.subtle)) {
          this.fail('this page cannot check the SHA-256 here (it needs https or localhost); use the CLI');
          return;
        }
        label.textContent = 'Checking ' + name + '…';
        const blob = new Blob(parts, { type: 'application/octet-stream' });
        parts.length = 0;
        const sum = hex(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()));
        if (sum !== String(f.ev.sha256).toLowerCase()) {
          this.fail('SHA-256 mismatch (got ' + sum + '); nothing kept');
          return;
        }
        const a = document.createElement('a');
        if (lastURL) {
          URL.revokeObjectURL(lastURL.href); // one file at a time: the earlier one's link goes
          lastURL.removeAttribute('href');
          lastURL.textContent = '(no longer held: run the command again)';
        }
        a.href = URL.createObjectURL(blob);
        lastURL = a;
        a.download = name;
        a.dataset.sha256 = sum;
        a.textContent = 'Save ' + name;
        label.textContent = name + ' (' + formatBytes(size) + ', SHA-256 ' + sum.slice(0, 16) + '… verified) ';
        box.append(a);
        a.click();
      },
    };
  }

  function formatBytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
  }

  // ---- charts ------------------------------------------------------------

  const WINDOW = 5 * 60 * 1000; // what the charts show
  let points = []; // { t, live, goal, goroutines, cycles, pause }
  let watchID = 0;

  async function startCharts() {
    if (charts || !main) return;
    const s = new Session(token);
    charts = s;
    setChartsButton(true);
    $('charts-status').textContent = 'Connecting…';
    try {
      await s.open();
    } catch (e) {
      if (charts === s) charts = null;
      setChartsButton(false);
      $('charts-status').textContent = e.message;
      return;
    }
    if (charts !== s) {
      s.close();
      return;
    }
    s.onclose = (e) => {
      if (charts === s) {
        charts = null;
        setChartsButton(false);
        $('charts-status').textContent = 'Stopped: ' + closeText(e) + '.';
      }
    };
    $('charts-status').textContent = 'Live, every 2 s.';
    let buf = '';
    watchID = s.run('memstats --watch 2s --json', {
      event(ev, final) {
        if (ev.type === 'output') {
          buf += ev.data || '';
          let nl;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            sample(line);
          }
        } else if (final) {
          if (ev.type === 'error' && ev.code !== 'canceled') {
            $('charts-status').textContent = ev.code + ': ' + (ev.message || '');
          }
          stopCharts();
        }
      },
    });
  }

  function stopCharts() {
    const s = charts;
    charts = null;
    setChartsButton(false);
    if (s) {
      if (watchID) s.cancel(watchID);
      s.close();
    }
    watchID = 0;
  }

  function setChartsButton(on) {
    const b = $('charts-toggle');
    b.textContent = on ? 'Stop' : 'Start';
    b.setAttribute('aria-pressed', String(on));
  }

  function sample(line) {
    let m;
    try {
      m = JSON.parse(line);
    } catch (e) {
      return;
    }
    const by = {};
    for (const st of m.stats || []) by[st.metric] = Number(st.value);
    const t = Date.parse(m.time) || Date.now();
    points.push({
      t,
      live: by['/gc/heap/live:bytes'] || 0,
      goal: by['/gc/heap/goal:bytes'] || 0,
      goroutines: by['/sched/goroutines:goroutines'] || 0,
      cycles: by['/gc/cycles/total:gc-cycles'] || 0,
      pause: by['/sched/pauses/total/gc:seconds'] || 0,
    });
    points = points.filter((p) => p.t >= t - WINDOW);
    draw();
  }

  const SVG = 'http://www.w3.org/2000/svg';

  function el(name, attrs, text) {
    const e = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // chart draws series of points into svg, scaled to the largest value.
  function chart(svg, series, format) {
    const W = 320, H = 120, L = 46, R = 6, T = 8, B = 16;
    svg.textContent = '';
    if (points.length === 0) return;
    // The time axis spans the points seen, from 20 s up to WINDOW.
    const t1 = points[points.length - 1].t;
    const span = Math.min(Math.max(t1 - points[0].t, 20000), WINDOW);
    const t0 = t1 - span;
    let top = 1;
    for (const s of series) for (const p of points) top = Math.max(top, p[s.key]);
    top *= 1.1;
    for (let i = 0; i <= 2; i++) {
      const y = T + (H - T - B) * i / 2;
      svg.appendChild(el('line', { class: 'grid', x1: L, x2: W - R, y1: y, y2: y }));
      svg.appendChild(el('text', { class: 'axis', x: L - 4, y: y + 3, 'text-anchor': 'end' }, format(top * (1 - i / 2))));
    }
    const ago = span >= 120000 ? Math.round(span / 60000) + ' min' : Math.round(span / 1000) + ' s';
    svg.appendChild(el('text', { class: 'axis', x: L, y: H - 3 }, '−' + ago));
    svg.appendChild(el('text', { class: 'axis', x: W - R, y: H - 3, 'text-anchor': 'end' }, 'now'));
    for (const s of series) {
      const pts = points.map((p) => {
        const x = L + (W - R - L) * Math.max(p.t - t0, 0) / span;
        const y = T + (H - T - B) * (1 - p[s.key] / top);
        return x.toFixed(1) + ',' + y.toFixed(1);
      });
      if (pts.length === 1) pts.push(pts[0]);
      svg.appendChild(el('polyline', { class: s.cls + ' series', points: pts.join(' '), 'data-points': String(points.length) }));
    }
  }

  function formatPause(s) {
    if (s <= 0) return 'none yet';
    if (s < 1e-3) return (s * 1e6).toFixed(0) + ' µs';
    if (s < 1) return (s * 1e3).toFixed(1) + ' ms';
    return s.toFixed(2) + ' s';
  }

  function draw() {
    const last = points[points.length - 1];
    chart($('chart-heap'), [{ key: 'goal', cls: 'goal' }, { key: 'live', cls: 'live' }], formatBytes);
    chart($('chart-goroutines'), [{ key: 'goroutines', cls: 'gor' }], (v) => String(Math.round(v)));
    $('heap-now').textContent = formatBytes(last.live) + ' of ' + formatBytes(last.goal);
    $('gor-now').textContent = String(last.goroutines);
    $('gc-cycles').textContent = String(last.cycles);
    const minuteAgo = points.find((p) => p.t >= last.t - 60000) || points[0];
    $('gc-rate').textContent = String(last.cycles - minuteAgo.cycles);
    $('gc-pause').textContent = formatPause(last.pause) + ' (since start)';
    $('chart-heap').setAttribute('aria-label', 'Heap live ' + formatBytes(last.live) + ', goal ' + formatBytes(last.goal));
    $('chart-goroutines').setAttribute('aria-label', last.goroutines + ' goroutines');
  }

  $('charts-toggle').addEventListener('click', () => {
    if (charts) stopCharts();
    else startCharts();
  });

  // ---- goroutines --------------------------------------------------------

  let groups = [];
  let sortKey = 'count';
  let sortDir = -1;

  // parseGoroutines reads the groups the goroutines command prints:
  // "N goroutines with this stack:", then each frame as an indented
  // function line and a further indented file:line.
  function parseGoroutines(text) {
    const out = [];
    let g = null;
    for (const line of text.split('\n')) {
      const head = /^(\d+) goroutines? with this stack:/.exec(line);
      if (head) {
        g = { count: Number(head[1]), frames: [] };
        out.push(g);
      } else if (g && /^ {4}\S/.test(line)) {
        g.frames.push({ fn: line.trim(), where: '' });
      } else if (g && /^ {8}\S/.test(line) && g.frames.length > 0) {
        g.frames[g.frames.length - 1].where = line.trim();
      } else if (line.trim() === '') {
        g = null;
      }
    }
    for (const x of out) {
      const top = x.frames[0] || { fn: '?', where: '' };
      const own = x.frames.find((f) => !/^(runtime|internal|sync|syscall|net|os)[./]/.test(f.fn)) || top;
      x.top = top.fn;
      x.fn = own.fn;
      x.where = own.where;
    }
    return out;
  }

  function renderGoroutines() {
    const body = $('goroutines-table').tBodies[0];
    body.textContent = '';
    const rows = [...groups].sort((a, b) => {
      const x = a[sortKey], y = b[sortKey];
      return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
    });
    for (const g of rows) {
      const tr = document.createElement('tr');
      const count = document.createElement('td');
      count.className = 'count';
      count.textContent = String(g.count);
      const fn = document.createElement('td');
      fn.textContent = g.fn;
      fn.title = g.where;
      const top = document.createElement('td');
      top.textContent = g.top;
      tr.append(count, fn, top);
      body.appendChild(tr);
    }
    for (const th of $('goroutines-table').tHead.rows[0].cells) {
      const key = th.querySelector('button').dataset.sort;
      th.setAttribute('aria-sort', key === sortKey ? (sortDir < 0 ? 'descending' : 'ascending') : 'none');
    }
  }

  $('goroutines-refresh').addEventListener('click', () => {
    if (!main) return;
    const status = $('goroutines-status');
    status.textContent = 'Asking…';
    let text = '';
    main.run('goroutines', {
      event(ev, final) {
        if (ev.type === 'output') text += ev.data || '';
        if (!final) return;
        if (ev.type === 'error') {
          status.textContent = ev.code + ': ' + (ev.message || '');
          return;
        }
        groups = parseGoroutines(text);
        const total = groups.reduce((n, g) => n + g.count, 0);
        status.textContent = total + ' goroutines in ' + groups.length + ' groups, at ' + new Date().toLocaleTimeString() + '.';
        renderGoroutines();
      },
    });
  });

  $('goroutines-table').tHead.addEventListener('click', (e) => {
    const b = e.target.closest('button');
    if (!b) return;
    const key = b.dataset.sort;
    if (key === sortKey) sortDir = -sortDir;
    else {
      sortKey = key;
      sortDir = key === 'count' ? -1 : 1;
    }
    renderGoroutines();
  });
})();
