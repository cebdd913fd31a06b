// tornago.js: the browser client of the Tornago client protocol, version 1
// (proto/clientproto/PROTOCOL.md). One zero-dependency ES module:
//
//   <script type="module">
//     import {connect} from "/tornago.js";
//     const client = connect({token, getToken});
//     client.subscribe("chat:lobby", {onMessage: (data, pub) => show(data)});
//     await client.publish("chat:lobby", {text: "hi"});
//   </script>
//
// Loading it also sets globalThis.Tornago, so a plain
// <script type="module" src="/tornago.js"> exposes the same API.
//
// Structure. A Core holds one server connection (transport fallback
// WebSocket -> SSE -> long polling, reconnect with exponential backoff and
// full jitter, resubscription with positions, token refresh). A Client is
// what a page uses; it talks to a Core through messages, so that the Core
// can live in the page itself, in a SharedWorker (this same file, loaded as
// a module worker) or in a leader tab elected with Web Locks and reached
// over a BroadcastChannel: one connection per browser and origin, not one
// per tab. Pages keep their own positions (sessionStorage), so a reload or
// a new leader resumes where each page stopped.

export const VERSION = "1.0.0";

// Client-side error codes (below 100, as centrifuge-js numbers them);
// server errors keep the protocol's codes (100+, applications' 1000+).
export const ErrorCodes = Object.freeze({
  timeout: 1, // no reply in time
  transportClosed: 2, // the connection ended before the reply
  clientDisconnected: 3, // disconnect() was called
  badArgument: 4, // a call the client refuses before sending it
});

// Disconnect codes the client itself uses (the server's are in
// PROTOCOL.md): a transport that ended without a protocol code counts as
// 3000 (reconnect); a client-side disconnect() is 0.
const CLOSE_NO_PONG = 3002;
const CLOSE_TOKEN_EXPIRED = 3005;
const CLOSE_SESSION_EXPIRED = 3006;
const CLOSE_BAD_REQUEST = 3501;
const CLOSE_TOO_LARGE = 3505;

/** TornagoError is how a command fails: code, message, temporary. */
export class TornagoError extends Error {
  constructor(code, message, temporary = false) {
    super(message);
    this.name = "TornagoError";
    this.code = code;
    this.temporary = !!temporary;
  }
}

function toError(e) {
  if (e instanceof TornagoError) return e;
  if (e && typeof e === "object") return new TornagoError(e.code | 0, String(e.message || "error"), !!e.temporary);
  return new TornagoError(0, String(e));
}

function plainError(e) {
  e = toError(e);
  return {code: e.code, message: e.message, temporary: e.temporary};
}

// ---------------------------------------------------------------------------
// Pure helpers (exported for tests).

/**
 * backoffDelay is the wait before reconnect attempt `attempt` (0 first):
 * exponential with full jitter, uniformly random in
 * [0, min(max, min * 2^attempt)).
 */
export function backoffDelay(attempt, min = 500, max = 20000, rnd = Math.random) {
  const cap = Math.min(max, min * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.floor(rnd() * cap);
}

const POS_RE = /^(0|[1-9][0-9]*)-(0|[1-9][0-9]*)$/;

/**
 * parsePosition reads an "EPOCH-OFFSET" position (canonical decimal
 * integers) into {epoch, offset} as BigInts, or returns null.
 */
export function parsePosition(s) {
  if (typeof s !== "string") return null;
  const m = POS_RE.exec(s);
  if (!m) return null;
  return {epoch: BigInt(m[1]), offset: BigInt(m[2])};
}

/**
 * comparePositions orders two positions of one topic: -1, 0 or 1, or null
 * when they cannot be compared (other epochs, or not positions).
 */
export function comparePositions(a, b) {
  const pa = parsePosition(a), pb = parsePosition(b);
  if (!pa || !pb || pa.epoch !== pb.epoch) return null;
  return pa.offset < pb.offset ? -1 : pa.offset > pb.offset ? 1 : 0;
}

/** isZeroPosition: "" and "0-0" (and nothing) mean "from now". */
export function isZeroPosition(s) {
  return !s || s === "0-0";
}

/**
 * reconnectsAfter says whether a connection that ended with code
 * reconnects: 3000-3499 yes, 3500-3999 no; codes below 3000 (WebSocket's
 * own, a transport that broke) count as 3000.
 */
export function reconnectsAfter(code) {
  return code < 3500;
}

/**
 * parseFrame decodes one server frame (a JSON object), or throws a
 * TornagoError (bad request) for anything else.
 */
export function parseFrame(text) {
  let f;
  try {
    f = typeof text === "string" ? JSON.parse(text) : text;
  } catch (e) {
    throw new TornagoError(107, "malformed frame: " + e.message);
  }
  if (!f || typeof f !== "object" || Array.isArray(f)) throw new TornagoError(107, "frame is not an object");
  return f;
}

/**
 * endpoints derives the protocol's URLs from a base URL (http(s) or
 * ws(s), with an optional path prefix; "" is the page's origin).
 */
export function endpoints(base, origin) {
  let b = base || origin || "";
  b = b.replace(/\/+$/, "");
  let http = b, ws = b;
  if (/^wss?:/i.test(b)) http = b.replace(/^ws/i, "http");
  else if (/^https?:/i.test(b)) ws = b.replace(/^http/i, "ws");
  return {
    websocket: ws + "/connection/websocket",
    sse: http + "/connection/sse",
    poll: http + "/connection/poll",
    command: http + "/connection/command",
  };
}

/**
 * Positions keeps, per topic, the position of the last publication a page
 * handled, in sessionStorage when there is one (so a reload resumes) and
 * in memory otherwise.
 */
export class Positions {
  constructor(prefix, storage) {
    this.prefix = "tornago:" + prefix + ":";
    this.storage = storage === undefined ? safeSessionStorage() : storage;
    this.mem = new Map();
  }
  get(topic) {
    if (this.mem.has(topic)) return this.mem.get(topic);
    try {
      const v = this.storage && this.storage.getItem(this.prefix + topic);
      if (v && parsePosition(v)) return v;
    } catch (_) { /* storage refused */ }
    return "";
  }
  // advance records pos when it is newer than the kept one (or of another
  // epoch, which replaces it); it reports whether pos was news.
  advance(topic, pos) {
    if (!parsePosition(pos)) return true;
    const cur = this.get(topic);
    const c = comparePositions(pos, cur);
    if (c !== null && c <= 0) return false;
    this.set(topic, pos);
    return true;
  }
  set(topic, pos) {
    this.mem.set(topic, pos);
    try {
      if (this.storage) this.storage.setItem(this.prefix + topic, pos);
    } catch (_) { /* quota or privacy mode: memory still has it */ }
  }
  delete(topic) {
    this.mem.delete(topic);
    try {
      if (this.storage) this.storage.removeItem(this.prefix + topic);
    } catch (_) { /* ignore */ }
  }
}

function safeSessionStorage() {
  try {
    return typeof sessionStorage !== "undefined" ? sessionStorage : null;
  } catch (_) {
    return null;
  }
}

/** Emitter: on(event, fn) returns a function that removes fn. */
export class Emitter {
  constructor() {
    this._ls = new Map();
  }
  on(ev, fn) {
    if (!this._ls.has(ev)) this._ls.set(ev, new Set());
    this._ls.get(ev).add(fn);
    return () => this.off(ev, fn);
  }
  off(ev, fn) {
    const s = this._ls.get(ev);
    if (s) s.delete(fn);
  }
  once(ev, fn) {
    const off = this.on(ev, (...a) => {
      off();
      fn(...a);
    });
    return off;
  }
  emit(ev, ...args) {
    const s = this._ls.get(ev);
    if (!s) return;
    for (const fn of [...s]) {
      try {
        fn(...args);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Transports. open(connect command, handlers) starts one; it calls
// onFrame(obj) for every server frame, in order, and onClose(code, reason)
// once. It returns {name, send(cmd), close()}.

function openWebSocket(urls, connectCmd, h) {
  const ws = new WebSocket(urls.websocket);
  let done = false;
  const finish = (code, reason) => {
    if (done) return;
    done = true;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    h.onClose(code, reason);
  };
  ws.onopen = () => ws.send(JSON.stringify(connectCmd));
  ws.onmessage = (e) => {
    if (typeof e.data !== "string") {
      finish(CLOSE_BAD_REQUEST, "binary frame from server");
      try { ws.close(1000); } catch (_) { /* closing */ }
      return;
    }
    h.onFrame(e.data);
  };
  ws.onclose = (e) => finish(e.code || 1006, e.reason || "websocket closed");
  return {
    name: "websocket",
    send(cmd) {
      if (ws.readyState === 1) ws.send(JSON.stringify(cmd));
    },
    close() {
      done = true;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000); } catch (_) { /* already closed */ }
    },
  };
}

// commandPoster sends the emulated transports' commands: batched (one
// POST per turn of the event loop, one JSON object per line) and in order
// (one POST in flight at a time).
function commandPoster(urls, opts, getSession, fail) {
  let batch = [], busy = false, closed = false;
  const pump = async () => {
    if (busy || closed || batch.length === 0) return;
    busy = true;
    const body = batch.map((c) => JSON.stringify(c)).join("\n");
    batch = [];
    try {
      const r = await fetch(urls.command + "?session=" + encodeURIComponent(getSession()), {
        method: "POST",
        body,
        headers: {"Content-Type": "text/plain"},
        credentials: opts.withCredentials ? "include" : "same-origin",
        cache: "no-store",
      });
      if (!r.ok && !closed) {
        // As the WebSocket closes would: 404 the session is gone, 413 a
        // command too large, 400 not commands; 403 other credentials than
        // the session's (connect again with the current ones).
        if (r.status === 404) fail(CLOSE_SESSION_EXPIRED, "session expired");
        else if (r.status === 413) fail(CLOSE_TOO_LARGE, "command too large");
        else if (r.status === 400) fail(CLOSE_BAD_REQUEST, "bad request");
        else if (r.status === 403) fail(CLOSE_SESSION_EXPIRED, "credentials changed");
        else fail(1006, "command POST: HTTP " + r.status);
      }
    } catch (e) {
      if (!closed) fail(1006, "command POST failed");
    }
    busy = false;
    pump();
  };
  return {
    send(cmd) {
      if (closed) return;
      batch.push(cmd);
      if (batch.length === 1) queueMicrotask(pump);
    },
    close() {
      closed = true;
      batch = [];
    },
  };
}

function openSSE(urls, connectCmd, h, opts) {
  let session = "", done = false;
  const es = new EventSource(urls.sse + "?connect=" + encodeURIComponent(JSON.stringify(connectCmd)), {
    withCredentials: !!opts.withCredentials,
  });
  const finish = (code, reason) => {
    if (done) return;
    done = true;
    es.onmessage = es.onerror = null;
    es.close();
    poster.close();
    h.onClose(code, reason);
  };
  const poster = commandPoster(urls, opts, () => session, finish);
  es.onmessage = (e) => {
    if (done) return;
    let f;
    try {
      f = parseFrame(e.data);
    } catch (err) {
      finish(CLOSE_BAD_REQUEST, err.message);
      return;
    }
    if (!session && f.id === connectCmd.id && f.result && f.result.session) session = f.result.session;
    h.onFrame(f);
  };
  // EventSource would reconnect by itself, with a new connect and so a
  // new session: the Core decides instead.
  es.onerror = () => finish(1006, "event stream ended");
  return {
    name: "sse",
    send: (cmd) => poster.send(cmd),
    close() {
      done = true;
      es.onmessage = es.onerror = null;
      es.close();
      poster.close();
    },
  };
}

function openLongPoll(urls, connectCmd, h, opts) {
  let session = "", next = 0, done = false, ctl = null;
  const creds = opts.withCredentials ? "include" : "same-origin";
  const finish = (code, reason) => {
    if (done) return;
    done = true;
    poster.close();
    if (ctl) ctl.abort();
    h.onClose(code, reason);
  };
  const poster = commandPoster(urls, opts, () => session, finish);
  // deliver hands the frames of one answer over, in order; the first
  // answer's first frame is the connect reply (frame 0).
  const deliver = (body) => {
    let frames = [];
    if (body && Array.isArray(body.frames)) {
      frames = body.frames;
      if (typeof body.next === "number") next = body.next;
      else next += frames.length;
    } else if (body && typeof body === "object") {
      frames = [body];
      next += 1;
    }
    for (const raw of frames) {
      if (done) return;
      const f = parseFrame(raw);
      if (!session && f.id === connectCmd.id && f.result && f.result.session) session = f.result.session;
      h.onFrame(f);
    }
  };
  const request = async (url, init) => {
    ctl = new AbortController();
    // A poll waits up to 25 s on the server: past 40 s the path is dead.
    const timer = setTimeout(() => ctl.abort(), opts.pollTimeout || 40000);
    try {
      const r = await fetch(url, Object.assign({signal: ctl.signal, credentials: creds, cache: "no-store"}, init));
      if (r.status === 404) throw new TornagoError(CLOSE_SESSION_EXPIRED, "session expired");
      if (!r.ok) throw new TornagoError(1006, "poll: HTTP " + r.status);
      return await r.json();
    } finally {
      clearTimeout(timer);
    }
  };
  (async () => {
    try {
      deliver(await request(urls.poll, {method: "POST", body: JSON.stringify(connectCmd), headers: {"Content-Type": "text/plain"}}));
      while (!done) {
        if (!session) throw new TornagoError(CLOSE_BAD_REQUEST, "no session in the connect reply");
        deliver(await request(urls.poll + "?session=" + encodeURIComponent(session) + "&next=" + next, {method: "GET"}));
      }
    } catch (e) {
      if (e instanceof TornagoError) finish(e.code >= 1000 ? e.code : CLOSE_BAD_REQUEST, e.message);
      else finish(1006, "poll failed");
    }
  })();
  return {
    name: "longpoll",
    send: (cmd) => poster.send(cmd),
    close() {
      done = true;
      poster.close();
      if (ctl) ctl.abort();
    },
  };
}

// TRANSPORTS maps a transport's name to its opener; tests add their own.
export const TRANSPORTS = {websocket: openWebSocket, sse: openSSE, longpoll: openLongPoll};

function available(name) {
  if (name === "websocket") return typeof WebSocket !== "undefined";
  if (name === "sse") return typeof EventSource !== "undefined" && typeof fetch !== "undefined";
  if (name === "longpoll") return typeof fetch !== "undefined" && typeof AbortController !== "undefined";
  return typeof TRANSPORTS[name] === "function";
}

// ---------------------------------------------------------------------------
// Core: one server connection serving any number of members (pages).
// Members talk to it with plain messages (structured-cloneable), so that
// it can live in the page, in a SharedWorker or in a leader tab.
//
// member -> core: hello{opts, token, hasGetToken} sub{topic, since, token,
//   hasGetToken} unsub{topic} call{ref, kind, topic|method, data, timeout}
//   token{ref, token|error} bye
// core -> member: state{state, code, reason, client, transport}
//   subres{topic, result|error} pub{topic, pub, server} unsub{topic, code,
//   reason} res{ref, result|error} gettoken{ref, topic (a subscription
//   token's)}

const RECENT = 64; // publications a Core keeps per topic, for pages that join late

export class Core {
  constructor(opts) {
    this.opts = Object.assign(
      {
        url: "",
        transports: ["websocket", "sse", "longpoll"],
        minReconnectDelay: 500,
        maxReconnectDelay: 20000,
        connectTimeout: 5000,
        pongTimeout: 5000,
        pingInterval: 0, // 0: the server's ping (connect result)
        name: "tornago-js",
        data: undefined,
        withCredentials: false,
      },
      opts,
    );
    this.urls = endpoints(this.opts.url, typeof location !== "undefined" ? location.origin : "");
    this.token = this.opts.token || "";
    this.members = new Set();
    this.topics = new Map(); // topic -> {members: Map(member -> since), pos, recent, state, waiting}
    this.pending = new Map(); // id -> {cmd, resolve, reject, timer, sent}
    this.queue = []; // commands waiting for the connection
    this.nextID = 1;
    this.state = "disconnected";
    this.transport = null;
    this.opening = null; // a transport whose connect reply has not come yet
    this.transportName = "";
    this.client = "";
    this.attempt = 0;
    this.timers = {};
    this.lastRecv = 0;
    this.tokenRefs = new Map();
    this.running = false;
    this.lastClose = {code: 0, reason: ""};
  }

  // -- members --

  handle(m, msg) {
    switch (msg.t) {
      case "hello":
        this.members.add(m);
        m.hasGetToken = !!msg.hasGetToken;
        if (!this.token && msg.token) this.token = msg.token;
        m.post(this._stateMsg());
        if (!this.running) this.start();
        break;
      case "sub":
        this._join(m, msg.topic, msg.since || "", msg.token || "", !!msg.hasGetToken);
        break;
      case "unsub":
        this._leave(m, msg.topic);
        break;
      case "call": {
        // undefined has no JSON: it goes as null (publish's data is required).
        const data = msg.data === undefined ? null : msg.data;
        const cmd =
          msg.kind === "rpc" ? {rpc: {method: msg.method, data}}
          : msg.kind === "presence" || msg.kind === "presence_stats" ? {[msg.kind]: {topic: msg.topic}}
          : {publish: {topic: msg.topic, data}};
        if (msg.idem && cmd.publish) cmd.publish.idem = msg.idem;
        this.command(cmd, msg.timeout).then(
          (result) => m.post({t: "res", ref: msg.ref, result}),
          (e) => m.post({t: "res", ref: msg.ref, error: plainError(e)}),
        );
        break;
      }
      case "token": {
        const w = this.tokenRefs.get(msg.ref);
        if (w) {
          this.tokenRefs.delete(msg.ref);
          msg.error ? w.reject(toError(msg.error)) : w.resolve(msg.token || "");
        }
        break;
      }
      case "bye":
        this.detach(m);
        break;
    }
  }

  detach(m) {
    if (!this.members.delete(m)) return;
    for (const [topic, t] of this.topics) if (t.members.has(m)) this._leave(m, topic);
    for (const [ref, w] of this.tokenRefs) {
      if (w.member === m) {
        this.tokenRefs.delete(ref);
        w.reject(new TornagoError(ErrorCodes.transportClosed, "page left"));
      }
    }
    if (this.members.size === 0) this.stop(0, "no pages left");
  }

  _broadcast(msg) {
    for (const m of this.members) m.post(msg);
  }

  _stateMsg() {
    return {t: "state", state: this.state, code: this.lastClose.code, reason: this.lastClose.reason, client: this.client, transport: this.transportName};
  }

  _setState(state, code = 0, reason = "") {
    this.state = state;
    this.lastClose = {code, reason};
    this._broadcast(this._stateMsg());
  }

  // -- topics --

  _join(m, topic, since, token = "", hasGetToken = false) {
    let t = this.topics.get(topic);
    if (!t) {
      // token: the subscription token; getters: the pages whose
      // subscribe has a getToken(topic); refresh: the sub_refresh timer.
      t = {members: new Map(), pos: "", since, recent: [], state: "new", serverSide: false, token: "", getters: new Set(), refresh: 0, needToken: false, expired: 0};
      this.topics.set(topic, t);
    }
    if (token && !t.token) t.token = token;
    if (hasGetToken) t.getters.add(m);
    t.members.set(m, since);
    if (t.state === "subscribed") {
      m.post({t: "subres", topic, result: this._joinResult(m, t, since)});
      if (t.pos) t.members.set(m, t.pos);
      return;
    }
    // Not subscribed yet: start from the oldest position asked while the
    // subscribe is not sent (later ones are served from t.recent).
    if (t.state === "new") {
      if (isZeroPosition(since)) {
        /* keep t.since */
      } else if (isZeroPosition(t.since) || comparePositions(since, t.since) === -1) t.since = since;
      if (this.state === "connected") this._subscribe(topic, t);
    }
  }

  // _joinResult serves a page that joins a topic the connection already
  // has: the publications after its position from what the Core kept, or
  // gone when the Core kept too few to know.
  _joinResult(m, t, since) {
    if (isZeroPosition(since) || !t.pos || comparePositions(since, t.pos) !== -1) {
      return {head: t.pos, recovered: 0, gone: false, joined: true};
    }
    const i = t.recent.findIndex((p) => p.pos === since);
    if (i < 0) return {head: t.pos, recovered: 0, gone: true, joined: true};
    const after = t.recent.slice(i + 1);
    for (const pub of after) m.post({t: "pub", topic: t.name, pub, recovered: true});
    return {head: t.pos, recovered: after.length, gone: false, joined: true};
  }

  _leave(m, topic) {
    const t = this.topics.get(topic);
    if (!t || !t.members.delete(m)) return;
    t.getters.delete(m);
    if (t.members.size > 0) return;
    this.topics.delete(topic);
    clearTimeout(t.refresh);
    if (t.state === "subscribed" || t.state === "subscribing") {
      this.command({unsubscribe: {topic}}, 0, true).catch(() => {});
    }
  }

  _subscribe(topic, t) {
    t.name = topic;
    t.state = "subscribing";
    if (t.getters.size && (!t.token || t.needToken)) {
      // A (new) subscription token first, from a page's getToken(topic).
      this._getToken(t)
        .then((token) => {
          if (this.topics.get(topic) !== t || t.state !== "subscribing") return;
          if (!token) throw new TornagoError(0, "getToken gave no token for " + topic);
          t.token = token;
          t.needToken = false;
          if (this.state === "connected") this._subscribe(topic, t);
          else t.state = "new"; // on the next connect
        })
        .catch((e) => {
          if (this.topics.get(topic) !== t || t.state !== "subscribing") return;
          this.topics.delete(topic);
          for (const m of t.members.keys()) m.post({t: "subres", topic, error: plainError(e)});
        });
      return;
    }
    const since = t.pos || t.since || "";
    const sub = {topic};
    if (!isZeroPosition(since)) sub.since = since;
    if (t.token) sub.token = t.token;
    this.command({subscribe: sub}, this.opts.subscribeTimeout || 10000, true).then(
      (res) => {
        if (this.topics.get(topic) !== t) return;
        t.state = "subscribed";
        t.expired = 0;
        this._scheduleSubRefresh(topic, t, res || {});
        if (res && res.head && (!t.pos || res.gone || comparePositions(res.head, t.pos) === 1)) t.pos = res.head;
        const waiting = [...t.members.keys()];
        for (const m of waiting) {
          const s = t.members.get(m);
          // A page that asked for an older position than the Core's
          // (it joined after the subscribe was sent) is served from
          // t.recent; the others get the server's answer.
          if (!isZeroPosition(s) && !isZeroPosition(since) && comparePositions(s, since) === -1) {
            m.post({t: "subres", topic, result: this._joinResult(m, t, s)});
          } else m.post({t: "subres", topic, result: res || {}});
          if (t.pos) t.members.set(m, t.pos);
        }
      },
      (e) => {
        if (this.topics.get(topic) !== t) return;
        if (e.code === ErrorCodes.transportClosed || e.code === ErrorCodes.timeout) {
          t.state = "new"; // resubscribed on the next connect
          if (e.code === ErrorCodes.timeout && this.transport) this._close(CLOSE_NO_PONG, "subscribe timed out");
          return;
        }
        if (e.code === 109 && t.getters.size) {
          // The subscription token expired (while disconnected): a new
          // one, then again, after a backoff (a getToken that keeps
          // giving expired tokens must not spin).
          this._resubscribeExpired(topic, t);
          return;
        }
        this.topics.delete(topic);
        for (const m of t.members.keys()) m.post({t: "subres", topic, error: plainError(e)});
      },
    );
  }

  _onPub(topic, pub) {
    let t = this.topics.get(topic);
    if (!t) {
      // A server-side subscription nobody asked for here.
      this._broadcast({t: "pub", topic, pub, server: true});
      return;
    }
    if (pub.pos) {
      const c = t.pos ? comparePositions(pub.pos, t.pos) : 1;
      if (c !== null && c <= 0) return; // already delivered: repeat nothing
      t.pos = pub.pos;
      t.recent.push(pub);
      if (t.recent.length > RECENT) t.recent.shift();
    }
    for (const m of t.members.keys()) {
      // What a page received is where it would resume.
      if (pub.pos) t.members.set(m, pub.pos);
      m.post({t: "pub", topic, pub});
    }
  }

  // -- commands --

  // command sends cmd (without id) and resolves with its result. Commands
  // given while not connected wait for the connection (their timeout
  // runs); internal ones (subscribe) are not queued but redone on connect.
  command(cmd, timeout, internal = false) {
    return new Promise((resolve, reject) => {
      const id = this.nextID++;
      cmd = Object.assign({id}, cmd);
      const p = {cmd, resolve, reject, timer: 0, sent: false};
      const ms = timeout || this.opts.timeout || 10000;
      p.timer = setTimeout(() => {
        this.pending.delete(id);
        const i = this.queue.indexOf(p);
        if (i >= 0) this.queue.splice(i, 1);
        reject(new TornagoError(ErrorCodes.timeout, "timeout", true));
      }, ms);
      this.pending.set(id, p);
      if (this.state === "connected") {
        p.sent = true;
        this.transport.send(cmd);
      } else if (!internal) this.queue.push(p);
      else {
        clearTimeout(p.timer);
        this.pending.delete(id);
        reject(new TornagoError(ErrorCodes.transportClosed, "not connected", true));
      }
    });
  }

  _onReply(f) {
    const p = this.pending.get(f.id);
    if (!p) return;
    this.pending.delete(f.id);
    clearTimeout(p.timer);
    if (f.error) p.reject(toError(f.error));
    else p.resolve(f.result || {});
  }

  // -- connection --

  start() {
    if (this.running) return;
    this.running = true;
    this.attempt = 0;
    this._connect();
  }

  stop(code = 0, reason = "disconnected") {
    this.running = false;
    this._clearTimers();
    for (const k of ["transport", "opening"]) {
      if (this[k]) this[k].close();
      this[k] = null;
    }
    this._failPending(new TornagoError(ErrorCodes.clientDisconnected, reason));
    for (const p of this.queue) {
      clearTimeout(p.timer);
      p.reject(new TornagoError(ErrorCodes.clientDisconnected, reason));
    }
    this.queue = [];
    for (const t of this.topics.values()) {
      t.state = "new";
      clearTimeout(t.refresh);
    }
    for (const w of this.tokenRefs.values()) w.reject(new TornagoError(ErrorCodes.clientDisconnected, reason));
    this.tokenRefs.clear();
    this.client = "";
    this.transportName = "";
    this._setState("disconnected", code, reason);
  }

  _clearTimers() {
    for (const k of Object.keys(this.timers)) {
      clearTimeout(this.timers[k]);
      clearInterval(this.timers[k]);
    }
    this.timers = {};
  }

  // _failPending fails the commands sent on the connection that ended;
  // with requeue (the client reconnects), a publish with an idempotency
  // key is sent again, same key, on the next connection instead (its
  // timeout runs on): the server publishes it once.
  _failPending(err, requeue = false) {
    for (const [id, p] of this.pending) {
      if (!p.sent) continue;
      if (requeue && p.cmd.publish && p.cmd.publish.idem) {
        p.sent = false;
        this.queue.push(p);
        continue;
      }
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.reject(err);
    }
  }

  _connect(ti = 0) {
    if (!this.running) return;
    const names = this.opts.transports.filter((n) => TRANSPORTS[n] && available(n));
    if (ti >= names.length) {
      this._scheduleReconnect(this.lastClose.code || 3000, this.lastClose.reason || "no transport worked");
      return;
    }
    if (this.state !== "connecting") this._setState("connecting", this.lastClose.code, this.lastClose.reason);
    const name = names[ti];
    const id = this.nextID++;
    const connect = {name: this.opts.name, version: VERSION};
    if (this.token) connect.token = this.token;
    if (this.opts.data !== undefined) connect.data = this.opts.data;
    const cmd = {id, connect};
    let connected = false, disconnectFrame = null, tr = null;
    const handlers = {
      onFrame: (raw) => {
        if (!this.running || (this.transport !== tr && this.opening !== tr)) return;
        let f;
        try {
          f = parseFrame(raw);
        } catch (e) {
          this._close(CLOSE_BAD_REQUEST, e.message);
          return;
        }
        this.lastRecv = Date.now();
        if (!connected) {
          if (f.id === id) {
            clearTimeout(this.timers.connect);
            this.opening = null;
            if (f.error) {
              const e = toError(f.error);
              this.transport = tr;
              // 109: the token expired before we used it; a temporary
              // error: try again later; anything else: unauthorized.
              if (e.code === 109) this._close(CLOSE_TOKEN_EXPIRED, e.message);
              else if (e.temporary) this._close(3000, e.message);
              else this._close(3500, e.message);
              return;
            }
            connected = true;
            this.transport = tr;
            this._onConnected(name, f.result || {});
          } else if (f.disconnect) {
            disconnectFrame = f.disconnect;
          }
          return;
        }
        if (f.id) this._onReply(f);
        else if (f.push && f.push.topic) this._onPush(f.push);
        else if (f.disconnect) disconnectFrame = f.disconnect;
      },
      onClose: (code, reason) => {
        if (disconnectFrame) {
          code = disconnectFrame.code;
          reason = disconnectFrame.reason || reason;
        }
        if (!connected) {
          if (this.opening !== tr) {
            if (this.transport === tr) this._onClosed(code, reason, disconnectFrame);
            return;
          }
          this.opening = null;
          clearTimeout(this.timers.connect);
          // The server answered and refused: that is final for every
          // transport; otherwise try the next transport now.
          if (disconnectFrame || code >= 3000) {
            this.transport = tr;
            this._onClosed(code, reason, disconnectFrame);
            return;
          }
          this.lastClose = {code, reason};
          this._connect(ti + 1);
          return;
        }
        if (this.transport === tr) this._onClosed(code, reason, disconnectFrame);
      },
    };
    try {
      tr = TRANSPORTS[name](this.urls, cmd, handlers, this.opts);
    } catch (e) {
      // A transport this page may not open (a malformed URL, a CSP rule):
      // the next one.
      this.lastClose = {code: 1006, reason: name + ": " + (e && e.message)};
      this._connect(ti + 1);
      return;
    }
    this.opening = tr;
    // A transport that neither fails nor answers (a proxy that holds or
    // blackholes it) is given up after connectTimeout.
    this.timers.connect = setTimeout(() => {
      if (this.opening !== tr || connected) return;
      this.opening = null;
      tr.close();
      this.lastClose = {code: 3000, reason: name + ": no connect reply"};
      this._connect(ti + 1);
    }, this.opts.connectTimeout);
  }

  _onConnected(name, res) {
    this.attempt = 0;
    this.client = res.client || "";
    this.transportName = name;
    this.session = res.session || "";
    this.limits = res.limits || null;
    this._setState("connected");
    // Resubscribe every topic with its position, then send what waited.
    for (const [topic, t] of this.topics) if (t.state !== "subscribed") this._subscribe(topic, t);
    const q = this.queue;
    this.queue = [];
    for (const p of q) {
      if (!this.pending.has(p.cmd.id)) continue;
      p.sent = true;
      this.transport.send(p.cmd);
    }
    // Liveness: browsers hide WebSocket pings and SSE heartbeats, so an
    // idle connection is checked with a ping command.
    const every = this.opts.pingInterval || Math.max(1, res.ping || 25) * 1000;
    this.timers.ping = setInterval(() => {
      if (Date.now() - this.lastRecv < every || this.state !== "connected") return;
      this.command({ping: {}}, this.opts.pongTimeout, true).catch((e) => {
        if (e.code === ErrorCodes.timeout) this._close(CLOSE_NO_PONG, "no pong");
      });
    }, every);
    this._scheduleRefresh(res);
  }

  _scheduleRefresh(res) {
    clearTimeout(this.timers.refresh);
    if (!res.expires || !(res.ttl > 0)) return;
    const ms = res.ttl * 1000;
    const delay = Math.max(0, ms - Math.min(30000, ms * 0.2));
    this.timers.refresh = setTimeout(async () => {
      try {
        const token = await this._getToken();
        if (!token) return; // the server will end it with 3005
        this.token = token;
        const r = await this.command({refresh: {token}}, this.opts.timeout, true);
        this._scheduleRefresh(r);
      } catch (e) {
        if (e.code === 109 || e.code === 101) this._close(CLOSE_TOKEN_EXPIRED, e.message);
      }
    }, delay);
  }

  // _scheduleSubRefresh sends a subscription's sub_refresh at 80% of its
  // ttl (as refresh for the connection), with a token from a page's
  // getToken(topic). A refused one changes nothing here: the server ends
  // the subscription at its expiry (unsub 109), and it is subscribed
  // again with a new token.
  _scheduleSubRefresh(topic, t, res) {
    clearTimeout(t.refresh);
    t.refresh = 0;
    if (!res.expires || !t.getters.size) return;
    const ms = Math.max(0, res.ttl || 0) * 1000;
    const delay = Math.max(0, ms - Math.min(30000, ms * 0.2));
    t.refresh = setTimeout(async () => {
      t.refresh = 0;
      try {
        const token = await this._getToken(t);
        if (this.topics.get(topic) !== t || t.state !== "subscribed") return;
        t.token = token;
        const r = await this.command({sub_refresh: {topic, token}}, this.opts.timeout, true);
        if (this.topics.get(topic) === t && t.state === "subscribed") this._scheduleSubRefresh(topic, t, r || {});
      } catch (_) {
        /* the server ends it at the expiry: subscribed again then */
      }
    }, delay);
  }

  // _resubscribeExpired subscribes t again with a new token, from its
  // position, after a backoff.
  _resubscribeExpired(topic, t) {
    clearTimeout(t.refresh);
    t.state = "new";
    t.needToken = true;
    t.refresh = setTimeout(() => {
      t.refresh = 0;
      if (this.topics.get(topic) === t && t.state === "new" && this.state === "connected") this._subscribe(topic, t);
    }, backoffDelay(t.expired++, this.opts.minReconnectDelay, this.opts.maxReconnectDelay));
  }

  // _getToken asks a page that has getToken for a new token: the
  // connection's, or with t a subscription token for topic t.name.
  _getToken(t) {
    const m = t ? [...t.getters][0] : [...this.members].find((x) => x.hasGetToken);
    if (!m) return Promise.resolve("");
    return new Promise((resolve, reject) => {
      const ref = this.nextID++;
      const timer = setTimeout(() => {
        this.tokenRefs.delete(ref);
        reject(new TornagoError(ErrorCodes.timeout, "getToken timed out", true));
      }, this.opts.timeout || 10000);
      this.tokenRefs.set(ref, {
        member: m,
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      m.post(t ? {t: "gettoken", ref, topic: t.name} : {t: "gettoken", ref});
    });
  }

  _onPush(p) {
    if (p.pub) this._onPub(p.topic, p.pub);
    else if (p.sub) {
      // Subscribed by the server (server API): every page hears of it, and
      // of its publications while no page subscribes to the topic.
      this._broadcast({t: "subpush", topic: p.topic, head: p.sub.head || ""});
    } else if (p.unsub) {
      const t = this.topics.get(p.topic);
      if (t && p.unsub.code === 109 && t.getters.size) {
        // The subscription's token expired unrefreshed: a new token, and
        // again from the position (the pages hear subscribed again).
        t.expired = 0;
        this._resubscribeExpired(p.topic, t);
        return;
      }
      if (t) clearTimeout(t.refresh);
      this.topics.delete(p.topic);
      const msg = {t: "unsub", topic: p.topic, code: p.unsub.code, reason: p.unsub.reason || ""};
      if (t) for (const m of t.members.keys()) m.post(msg);
      else this._broadcast(msg);
    } else if (p.join || p.leave || p.counts) {
      // Join/leave of a topic (namespaces with join_leave): to its pages.
      const t = this.topics.get(p.topic);
      const msg = {t: "joinleave", topic: p.topic, ev: {join: p.join || [], leave: p.leave || [], counts: p.counts || null}};
      if (t) for (const m of t.members.keys()) m.post(msg);
    }
  }

  _close(code, reason) {
    const tr = this.transport;
    if (!tr) return;
    tr.close();
    this._onClosed(code, reason, null);
  }

  _onClosed(code, reason, frame) {
    if (!this.transport) return;
    this.transport = null;
    this._clearTimers();
    const again = frame ? !!frame.reconnect : reconnectsAfter(code);
    this._failPending(new TornagoError(ErrorCodes.transportClosed, "connection closed: " + reason, true), again && this.running);
    for (const t of this.topics.values()) {
      t.state = "new";
      clearTimeout(t.refresh); // the next subscribe's reply arms it
    }
    this.client = "";
    if (!again || !this.running) {
      this.running = false;
      for (const p of this.queue) {
        clearTimeout(p.timer);
        p.reject(new TornagoError(code, reason));
      }
      this.queue = [];
      this._setState("disconnected", code, reason);
      return;
    }
    this._scheduleReconnect(code, reason);
  }

  _scheduleReconnect(code, reason) {
    if (!this.running) return;
    this._setState("connecting", code, reason);
    // 3003 (server busy) and 3004 (too many requests) back off longer.
    let delay = backoffDelay(this.attempt++, this.opts.minReconnectDelay, this.opts.maxReconnectDelay);
    if (code === 3003 || code === 3004) delay += this.opts.maxReconnectDelay / 2;
    clearTimeout(this.timers.reconnect);
    this.timers.reconnect = setTimeout(async () => {
      if (!this.running) return;
      if (code === CLOSE_TOKEN_EXPIRED) {
        try {
          const token = await this._getToken();
          if (!token) {
            this.running = false;
            this._setState("disconnected", code, reason + " (no getToken)");
            return;
          }
          this.token = token;
        } catch (e) {
          this._scheduleReconnect(code, "getToken: " + e.message);
          return;
        }
      }
      this._connect(0);
    }, delay);
  }
}

// ---------------------------------------------------------------------------
// Links between a Client and a Core.

// localLink runs the Core in this page.
function localLink(client, core) {
  const member = {post: (msg) => queueMicrotask(() => client._onCore(msg))};
  return {
    kind: "local",
    core,
    post: (msg) => queueMicrotask(() => core.handle(member, msg)),
    close() {},
  };
}

// sharedWorkerLink runs the Core in a SharedWorker (this file as a module
// worker), one per origin, URL and base URL.
function sharedWorkerLink(client, workerURL, key) {
  const w = new SharedWorker(workerURL, {type: "module", name: "tornago:" + key});
  const port = w.port;
  // The worker answers hello at once. A worker that cannot start does not
  // always say so to every page (in Chromium a page attaching to a worker
  // whose script failed may hear nothing), so silence counts as failure.
  let heard = false;
  port.onmessage = (e) => {
    heard = true;
    client._onCore(e.data);
  };
  const fail = () => {
    if (heard) return;
    port.close();
    client._linkFailed("sharedworker");
  };
  w.onerror = fail;
  setTimeout(fail, client.opts.workerTimeout || 3000);
  port.start();
  return {
    kind: "sharedworker",
    post: (msg) => port.postMessage(msg),
    close() {
      port.close();
    },
  };
}

// Leader election: the tab holding the Web Lock "tornago:leader:<key>"
// holds the connection; the others reach it over the BroadcastChannel
// "tornago:<key>". When the leader goes, the lock passes to a waiting tab,
// which announces itself; every follower then says hello again and
// resubscribes with its positions.
function broadcastLink(client, key) {
  const bc = new BroadcastChannel("tornago:" + key);
  const me = client.tabID;
  let leader = "", core = null, local = null;
  const followers = new Map(); // tab id -> member
  const link = {
    kind: "broadcast",
    leader: () => leader,
    isLeader: () => leader === me,
    post(msg) {
      if (local) local.post(msg);
      else bc.postMessage({from: me, to: leader, msg});
    },
    close() {
      if (leader !== me) bc.postMessage({from: me, to: leader, msg: {t: "bye"}});
      bc.close();
      if (release) release();
    },
  };
  let release = null;
  bc.onmessage = (e) => {
    const d = e.data || {};
    if (d.leader) {
      if ((d.leader !== leader || d.rejoin === me) && !local) {
        leader = d.leader;
        client._rejoin();
      }
      return;
    }
    if (core && d.from && d.to === me && d.msg) {
      let m = followers.get(d.from);
      if (!m) {
        if (d.msg.t !== "hello") {
          // This tab does not know the sender (it was elected after the
          // sender last said hello): ask it for a fresh hello.
          if (d.msg.t !== "bye") bc.postMessage({leader: me, rejoin: d.from});
          return;
        }
        m = {post: (msg) => bc.postMessage({to: d.from, msg}), tab: d.from};
        followers.set(d.from, m);
        watchTab(d.from, () => {
          followers.delete(d.from);
          core.detach(m);
        });
      }
      if (d.msg.t === "bye") followers.delete(d.from);
      core.handle(m, d.msg);
      return;
    }
    if (core && d.msg && d.msg.t === "who") {
      bc.postMessage({leader: me});
      return;
    }
    if (!core && d.to === me && d.msg) client._onCore(d.msg);
  };
  navigator.locks.request("tornago:leader:" + key, () => {
    // Elected: run the Core here, move this page onto it, tell the others.
    core = new Core(client.opts);
    core.keepAlive = true;
    local = localLink(client, core);
    leader = me;
    client._rejoin();
    bc.postMessage({leader: me});
    return new Promise((r) => (release = r));
  });
  // A tab that arrives while a leader exists learns of it by asking.
  bc.postMessage({from: me, to: "", msg: {t: "who"}});
  return link;
}

// watchTab calls fn when the tab with id holds its life lock no more (it
// closed, crashed or navigated away). The tab takes its lock
// asynchronously: wait until it holds it before waiting for its release.
function watchTab(id, fn, tries = 0) {
  if (typeof navigator === "undefined" || !navigator.locks) return;
  const name = "tornago:tab:" + id;
  navigator.locks.query().then((s) => {
    if ((s.held || []).some((l) => l.name === name)) navigator.locks.request(name, () => fn());
    else if (tries < 100) setTimeout(() => watchTab(id, fn, tries + 1), 50);
  });
}

function holdTabLock(id) {
  if (typeof navigator === "undefined" || !navigator.locks) return;
  navigator.locks.request("tornago:tab:" + id, () => new Promise(() => {}));
}

// ---------------------------------------------------------------------------
// Client: what a page uses.

/** Subscription is one page's subscription to a topic. */
export class Subscription extends Emitter {
  constructor(client, topic, o) {
    super();
    this.client = client;
    this.topic = topic;
    this.state = "subscribing";
    this.onMessage = o.onMessage || null;
    this.onSubscribed = o.onSubscribed || null;
    this.onError = o.onError || null;
    this.onUnsubscribed = o.onUnsubscribed || null;
    this.onJoinLeave = o.onJoinLeave || null;
    // token: the subscription token (namespaces with subscribe_token);
    // getToken(topic): gives a new one before it expires.
    this.token = o.token || "";
    this.getToken = typeof o.getToken === "function" ? o.getToken : null;
    this.result = null;
    this._resolve = null;
    this._reject = null;
    this._newReady();
  }
  _newReady() {
    this.ready = new Promise((res, rej) => {
      this._resolve = res;
      this._reject = rej;
    });
    this.ready.catch(() => {});
  }
  /** position is the position of the last publication handled here. */
  get position() {
    return this.client.positions.get(this.topic);
  }
  unsubscribe() {
    this.client.unsubscribe(this.topic);
  }
}

let tabSeq = 0;

// newIdem returns a fresh idempotency key: 96 random bits, base64url.
function newIdem() {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return btoa(String.fromCharCode(...b)).replace(/\+/g, "-").replace(/\//g, "_");
}

/** Client is a page's handle on the shared connection. */
export class Client extends Emitter {
  constructor(opts = {}) {
    super();
    this.opts = Object.assign({url: "", shared: "auto"}, opts);
    if (typeof this.opts.getToken !== "function") delete this.opts.getToken;
    const origin = typeof location !== "undefined" ? location.origin : "";
    this.key = endpoints(this.opts.url, origin).websocket;
    this.positions = new Positions(this.key, opts.storage);
    this.subs = new Map();
    this.calls = new Map();
    this.ref = 1;
    this.state = "disconnected";
    this.clientID = "";
    this.transport = "";
    this.tabID = Date.now().toString(36) + "-" + Math.random().toString(36).slice(2) + "-" + tabSeq++;
    this.link = null;
    this.closed = true;
  }

  /** connect opens (or reopens after disconnect) the connection. */
  connect() {
    if (!this.closed) return this;
    this.closed = false;
    this.link = this._makeLink(this.opts.shared);
    if (this.link.kind !== "broadcast") this._rejoin();
    if (typeof addEventListener === "function" && !this._pagehide) {
      // Leave the shared connection when the page goes (a page restored
      // from the back/forward cache comes back).
      this._pagehide = () => this.disconnect();
      addEventListener("pagehide", this._pagehide);
      addEventListener("pageshow", (e) => e.persisted && this.connect());
    }
    return this;
  }

  _makeLink(mode) {
    const pick = mode === true ? "auto" : mode;
    const workerURL = this.opts.workerURL || import.meta.url;
    if ((pick === "auto" || pick === "sharedworker") && typeof SharedWorker === "function") {
      try {
        holdTabLock(this.tabID);
        return sharedWorkerLink(this, workerURL, this.key);
      } catch (_) { /* blocked: next choice */ }
    }
    if ((pick === "auto" || pick === "broadcast") && typeof BroadcastChannel === "function" && typeof navigator !== "undefined" && navigator.locks) {
      holdTabLock(this.tabID);
      return broadcastLink(this, this.key);
    }
    return localLink(this, new Core(this._coreOpts()));
  }

  _coreOpts() {
    const o = Object.assign({}, this.opts);
    delete o.getToken;
    delete o.storage;
    delete o.shared;
    return o;
  }

  // _linkFailed: the SharedWorker did not start (no module workers, a
  // CSP rule): a leader tab instead, or this page's own connection.
  _linkFailed(kind) {
    if (this.closed || !this.link || this.link.kind !== kind) return;
    this.link = this._makeLink(this.opts.shared === "sharedworker" ? false : "broadcast");
    if (this.link.kind !== "broadcast") this._rejoin();
  }

  // _rejoin (re)introduces this page to its Core: hello, then every
  // subscription from this page's positions. Calls in flight on a former
  // Core fail (transportClosed): they may or may not have been done.
  _rejoin() {
    if (this.closed) return;
    for (const [ref, c] of this.calls) {
      this.calls.delete(ref);
      c.reject(new TornagoError(ErrorCodes.transportClosed, "connection changed", true));
    }
    const hello = {t: "hello", tab: this.tabID, opts: this._coreOpts(), token: this.opts.token || "", hasGetToken: !!this.opts.getToken};
    this.link.post(hello);
    for (const [topic, s] of this.subs) {
      s.state = "subscribing";
      this.link.post(this._subMsg(topic, s));
    }
  }

  _subMsg(topic, s) {
    return {t: "sub", topic, since: this._since(topic, s), token: s.token, hasGetToken: !!s.getToken};
  }

  _since(topic, s) {
    return this.positions.get(topic) || s.since || "";
  }

  _onCore(msg) {
    if (this.closed) return; // disconnect() was called: nothing more to hear
    switch (msg.t) {
      case "state": {
        const prev = this.state;
        this.state = msg.state;
        this.clientID = msg.client || "";
        this.transport = msg.transport || "";
        const detail = {code: msg.code, reason: msg.reason, client: this.clientID, transport: this.transport};
        if (prev !== msg.state || msg.state === "connecting") {
          this.emit("state", msg.state, detail);
          this.emit(msg.state, detail);
        }
        break;
      }
      case "subres": {
        const s = this.subs.get(msg.topic);
        if (!s) break;
        if (msg.error) {
          this.subs.delete(msg.topic);
          s.state = "error";
          const e = toError(msg.error);
          s._reject(e);
          if (s.onError) s.onError(e);
          s.emit("error", e);
          break;
        }
        const r = msg.result || {};
        // After gone (or with nothing kept yet) the head is where this
        // page stands now; otherwise its own publications say it.
        if (r.head && (r.gone || !this.positions.get(msg.topic))) this.positions.set(msg.topic, r.head);
        s.state = "subscribed";
        s.result = r;
        s._resolve(r);
        if (s.onSubscribed) s.onSubscribed(r);
        s.emit("subscribed", r);
        break;
      }
      case "pub": {
        const s = this.subs.get(msg.topic);
        if (!s || msg.server) {
          this.emit("publication", msg.topic, msg.pub.data, msg.pub);
          break;
        }
        // Each page drops what it already handled (a new leader or a
        // reload may resume from an older position than this page's).
        if (msg.pub.pos && !this.positions.advance(msg.topic, msg.pub.pos)) break;
        if (s.onMessage) s.onMessage(msg.pub.data, msg.pub);
        s.emit("message", msg.pub.data, msg.pub);
        break;
      }
      case "subpush":
        this.emit("serverSubscribed", msg.topic, msg.head);
        break;
      case "joinleave": {
        const s = this.subs.get(msg.topic);
        if (!s) break;
        if (s.onJoinLeave) s.onJoinLeave(msg.ev);
        s.emit("joinleave", msg.ev);
        break;
      }
      case "unsub": {
        const s = this.subs.get(msg.topic);
        if (s) {
          this.subs.delete(msg.topic);
          s.state = "unsubscribed";
          const info = {code: msg.code, reason: msg.reason};
          if (s.onUnsubscribed) s.onUnsubscribed(info);
          s.emit("unsubscribed", info);
        } else this.emit("serverUnsubscribed", msg.topic, {code: msg.code, reason: msg.reason});
        break;
      }
      case "res": {
        const c = this.calls.get(msg.ref);
        if (!c) break;
        this.calls.delete(msg.ref);
        msg.error ? c.reject(toError(msg.error)) : c.resolve(msg.result);
        break;
      }
      case "gettoken": {
        const s = msg.topic ? this.subs.get(msg.topic) : null;
        Promise.resolve()
          .then(() => {
            if (!msg.topic) return this.opts.getToken();
            if (!s || !s.getToken) throw new Error("no getToken for " + msg.topic);
            return s.getToken(msg.topic);
          })
          .then(
            (token) => {
              if (s) s.token = token || "";
              else this.opts.token = token;
              this.link.post({t: "token", ref: msg.ref, token: token || ""});
            },
            (e) => this.link.post({t: "token", ref: msg.ref, error: plainError(new TornagoError(0, "getToken: " + (e && e.message), true))}),
          );
        break;
      }
    }
  }

  /**
   * subscribe to topic. opts.since: resume after this position (default:
   * the position kept in sessionStorage, else from now). opts.token: the
   * subscription token (namespaces with subscribe_token); opts.getToken(topic):
   * gives one (first, when opts.token is empty), a new one at 80% of its
   * ttl (sub_refresh), and after the server ended the subscription because
   * its token expired (then subscribed again from the position).
   */
  subscribe(topic, opts = {}) {
    if (typeof topic !== "string" || topic === "") throw new TornagoError(ErrorCodes.badArgument, "topic must be a non-empty string");
    if (this.subs.has(topic)) throw new TornagoError(105, "already subscribed to " + topic);
    const s = new Subscription(this, topic, opts);
    s.since = opts.since || "";
    if (opts.since) this.positions.set(topic, opts.since);
    this.subs.set(topic, s);
    if (!this.closed) this.link.post(this._subMsg(topic, s));
    return s;
  }

  /** unsubscribe from topic (its kept position is forgotten). */
  unsubscribe(topic) {
    const s = this.subs.get(topic);
    if (!s) return;
    this.subs.delete(topic);
    s.state = "unsubscribed";
    this.positions.delete(topic);
    if (!this.closed) this.link.post({t: "unsub", topic});
  }

  /**
   * publish data on topic: resolves with {pos} once the server took it
   * (on a topic with history, through any broker; {} on one without).
   * Each publish carries a fresh idempotency key (opts.idem: the
   * application's own; "" for none): one whose connection ends before
   * the reply is sent again with the same key after the reconnect, and
   * the server publishes it once.
   */
  publish(topic, data, opts = {}) {
    const idem = opts.idem === undefined ? newIdem() : opts.idem;
    return this._call({kind: "publish", topic, data, idem}, opts.timeout);
  }

  /**
   * presence of a topic this page subscribed to (namespace with presence):
   * resolves with {members: [{client, user, info}], truncated}.
   */
  presence(topic, opts = {}) {
    return this._call({kind: "presence", topic}, opts.timeout);
  }

  /** presenceStats of a subscribed topic: resolves with {clients, users}. */
  presenceStats(topic, opts = {}) {
    return this._call({kind: "presence_stats", topic}, opts.timeout);
  }

  /** rpc calls the application's method: resolves with its answer. */
  rpc(method, data, opts = {}) {
    return this._call({kind: "rpc", method, data}, opts.timeout).then((r) => r && r.data);
  }

  _call(c, timeout) {
    if (this.closed) return Promise.reject(new TornagoError(ErrorCodes.clientDisconnected, "client disconnected"));
    const ms = timeout || this.opts.timeout || 10000;
    return new Promise((resolve, reject) => {
      const ref = this.ref++;
      // The page keeps its own timer too: a Core in another tab or a
      // worker may be gone without a word.
      const timer = setTimeout(() => {
        if (this.calls.delete(ref)) reject(new TornagoError(ErrorCodes.timeout, "timeout", true));
      }, ms + 1000);
      this.calls.set(ref, {resolve: (v) => (clearTimeout(timer), resolve(v)), reject: (e) => (clearTimeout(timer), reject(e))});
      this.link.post(Object.assign({t: "call", ref, timeout: ms}, c));
    });
  }

  /** disconnect this page (the shared connection ends with its last page). */
  disconnect() {
    if (this.closed) return;
    this.closed = true;
    for (const [ref, c] of this.calls) {
      this.calls.delete(ref);
      c.reject(new TornagoError(ErrorCodes.clientDisconnected, "client disconnected"));
    }
    this.link.post({t: "bye"});
    this.link.close();
    this.link = null;
    const prev = this.state;
    this.state = "disconnected";
    if (prev !== "disconnected") {
      const d = {code: 0, reason: "disconnect called", client: this.clientID, transport: this.transport};
      this.emit("state", "disconnected", d);
      this.emit("disconnected", d);
    }
  }

  /** ready resolves once connected (rejects if the client disconnects for good). */
  ready() {
    if (this.state === "connected") return Promise.resolve(this);
    return new Promise((resolve, reject) => {
      const offs = [
        this.on("connected", () => (offs.forEach((f) => f()), resolve(this))),
        this.on("disconnected", (d) => (offs.forEach((f) => f()), reject(new TornagoError(d.code, d.reason)))),
      ];
    });
  }
}

/**
 * connect creates a Client and connects it: connect({url, token, getToken,
 * transports, shared}).
 */
export function connect(opts = {}) {
  return new Client(opts).connect();
}

// ---------------------------------------------------------------------------
// As a SharedWorker: one Core per base URL, shared by every page's port.

function runSharedWorker(scope) {
  const cores = new Map();
  scope.onconnect = (e) => {
    const port = e.ports[0];
    let core = null;
    const member = {post: (msg) => port.postMessage(msg)};
    port.onmessage = (ev) => {
      const msg = ev.data || {};
      if (msg.t === "hello" && !core) {
        const key = endpoints(msg.opts.url, scope.location ? scope.location.origin : "").websocket;
        core = cores.get(key);
        if (!core) {
          core = new Core(msg.opts);
          cores.set(key, core);
        }
        if (msg.tab) watchTab(msg.tab, () => core.detach(member));
      }
      if (core) core.handle(member, msg);
    };
    port.start();
  };
}

const inSharedWorker = typeof SharedWorkerGlobalScope === "function" && globalThis instanceof SharedWorkerGlobalScope;
if (inSharedWorker) runSharedWorker(globalThis);

export const Tornago = {connect, Client, Core, Subscription, TornagoError, ErrorCodes, VERSION};
if (typeof window !== "undefined") globalThis.Tornago = Tornago;
