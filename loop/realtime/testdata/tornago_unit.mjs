// Unit tests of tornago.js's pure parts and of its connection bookkeeping,
// run by TestJSClientUnit (js_test.go): node tornago_unit.mjs <tornago.mjs>.
// The bookkeeping tests drive the Core through an in-memory transport that
// answers like the protocol's server does (PROTOCOL.md); the transports
// themselves are tested against the real server in Chromium.
import assert from "node:assert/strict";
import {pathToFileURL} from "node:url";

const T = await import(pathToFileURL(process.argv[2]).href);
const {backoffDelay, parsePosition, comparePositions, reconnectsAfter, parseFrame, endpoints, Positions, Core, Client, TRANSPORTS, ErrorCodes} = T;

const tests = [];
const test = (name, fn) => tests.push({name, fn});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, cond, ms = 2000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await sleep(5);
  }
}

class MemStorage {
  constructor() {
    this.m = new Map();
  }
  getItem(k) {
    return this.m.has(k) ? this.m.get(k) : null;
  }
  setItem(k, v) {
    this.m.set(k, String(v));
  }
  removeItem(k) {
    this.m.delete(k);
  }
}

// ---- pure parts ----

test("backoff: full jitter within exponential cap", () => {
  assert.equal(backoffDelay(0, 500, 20000, () => 0), 0);
  assert.equal(backoffDelay(0, 500, 20000, () => 0.999999), 499);
  assert.equal(backoffDelay(3, 500, 20000, () => 0.999999), 3999);
  assert.equal(backoffDelay(10, 500, 20000, () => 0.999999), 19999);
  assert.equal(backoffDelay(1e6, 500, 20000, () => 0.5), 10000);
  for (let a = 0; a < 12; a++) {
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(a, 500, 20000);
      assert.ok(d >= 0 && d < Math.min(20000, 500 * 2 ** a), `attempt ${a}: ${d}`);
    }
  }
  // Full jitter spreads a storm: 1000 clients at attempt 5 are not bunched.
  const ds = Array.from({length: 1000}, () => backoffDelay(5, 500, 20000));
  const buckets = new Array(4).fill(0);
  for (const d of ds) buckets[Math.floor(d / 4000)]++;
  for (const b of buckets) assert.ok(b > 150, "uneven buckets " + buckets);
});

test("positions: parse and compare", () => {
  assert.deepEqual(parsePosition("17-42"), {epoch: 17n, offset: 42n});
  assert.deepEqual(parsePosition("0-0"), {epoch: 0n, offset: 0n});
  assert.deepEqual(parsePosition("18446744073709551615-9007199254740993"), {epoch: 18446744073709551615n, offset: 9007199254740993n});
  for (const bad of ["", "17", "17-", "-1", "017-1", "1-01", "1-2-3", " 1-2", "a-b", "1.5-2", null, 42]) {
    assert.equal(parsePosition(bad), null, String(bad));
  }
  assert.equal(comparePositions("1-2", "1-10"), -1);
  assert.equal(comparePositions("1-10", "1-2"), 1);
  assert.equal(comparePositions("1-9007199254740993", "1-9007199254740992"), 1);
  assert.equal(comparePositions("1-2", "1-2"), 0);
  assert.equal(comparePositions("1-2", "2-2"), null);
  assert.equal(comparePositions("1-2", "x"), null);
});

test("positions: kept per topic, survive a reload, never go back", () => {
  const st = new MemStorage();
  const p = new Positions("ws://h/connection/websocket", st);
  assert.equal(p.get("chat"), "");
  assert.equal(p.advance("chat", "5-1"), true);
  assert.equal(p.advance("chat", "5-3"), true);
  assert.equal(p.advance("chat", "5-2"), false, "older is not news");
  assert.equal(p.advance("chat", "5-3"), false, "same is not news");
  assert.equal(p.advance("chat", "6-1"), true, "another epoch replaces");
  assert.equal(p.advance("clock", "1-1"), true);
  const reloaded = new Positions("ws://h/connection/websocket", st);
  assert.equal(reloaded.get("chat"), "6-1");
  assert.equal(reloaded.get("clock"), "1-1");
  assert.equal(new Positions("ws://other/connection/websocket", st).get("chat"), "", "per server");
  st.setItem("tornago:ws://h/connection/websocket:evil", "not a position");
  assert.equal(reloaded.get("evil"), "", "garbage in storage is ignored");
  reloaded.delete("chat");
  assert.equal(new Positions("ws://h/connection/websocket", st).get("chat"), "");
  // Storage that throws (privacy mode, quota) still works in memory.
  const bad = {getItem() { throw new Error("no"); }, setItem() { throw new Error("no"); }, removeItem() { throw new Error("no"); }};
  const q = new Positions("x", bad);
  assert.equal(q.advance("t", "1-1"), true);
  assert.equal(q.get("t"), "1-1");
});

test("frames, endpoints, reconnect codes", () => {
  assert.deepEqual(parseFrame('{"id":1,"result":{}}'), {id: 1, result: {}});
  for (const bad of ["", "[1]", "null", "42", '"s"', "{", '{"id":1']) {
    assert.throws(() => parseFrame(bad), (e) => e.code === 107, bad);
  }
  assert.deepEqual(endpoints("https://ex.com/rt/", ""), {
    websocket: "wss://ex.com/rt/connection/websocket",
    sse: "https://ex.com/rt/connection/sse",
    poll: "https://ex.com/rt/connection/poll",
    command: "https://ex.com/rt/connection/command",
  });
  assert.equal(endpoints("", "http://127.0.0.1:8888").websocket, "ws://127.0.0.1:8888/connection/websocket");
  assert.equal(endpoints("ws://h:1", "").sse, "http://h:1/connection/sse");
  for (const c of [1000, 1001, 1006, 3000, 3005, 3006, 3499]) assert.equal(reconnectsAfter(c), true, String(c));
  for (const c of [3500, 3501, 3503, 3505, 3999, 4000]) assert.equal(reconnectsAfter(c), false, String(c));
});

// ---- bookkeeping, through an in-memory protocol server ----

// MemServer answers commands as PROTOCOL.md says: history per topic with
// positions 7-N, recovery after since, publish with pos.
class MemServer {
  constructor(name = "mem") {
    this.name = name;
    this.conns = [];
    this.history = new Map();
    this.commands = [];
    this.connectResult = {ping: 25};
    this.onConnect = null; // (conn, cmd) => true when handled here
    this.silent = false;
    const srv = this;
    TRANSPORTS[name] = (urls, connectCmd, h) => {
      const c = {
        h,
        subs: new Set(),
        closed: false,
        token: connectCmd.connect.token,
        send(cmd) {
          if (!c.closed) queueMicrotask(() => srv.command(c, cmd));
        },
        close() {
          c.closed = true;
        },
        // kill: the connection breaks (the client hears code).
        kill(code = 1006, frame) {
          if (c.closed) return;
          if (frame) h.onFrame(JSON.stringify({disconnect: frame}));
          c.closed = true;
          h.onClose(code, "killed");
        },
      };
      srv.conns.push(c);
      queueMicrotask(() => srv.command(c, connectCmd));
      return c;
    };
  }
  live() {
    return this.conns.filter((c) => !c.closed);
  }
  frame(c, f) {
    if (!c.closed) c.h.onFrame(JSON.stringify(f));
  }
  publish(topic, data) {
    const h = this.history.get(topic) || [];
    const pos = "7-" + (h.length + 1);
    h.push({pos, data});
    this.history.set(topic, h);
    for (const c of this.live()) if (c.subs.has(topic)) this.frame(c, {push: {topic, pub: {pos, data}}});
    return pos;
  }
  command(c, cmd) {
    if (c.closed) return;
    this.commands.push(cmd);
    if (this.silent && !cmd.connect) return;
    if (cmd.connect) {
      if (this.onConnect && this.onConnect(c, cmd)) return;
      this.frame(c, {id: cmd.id, result: Object.assign({client: "c" + this.conns.length, version: "1"}, this.connectResult)});
    } else if (cmd.subscribe) {
      const {topic, since} = cmd.subscribe;
      const h = this.history.get(topic) || [];
      const head = h.length ? h[h.length - 1].pos : "7-0";
      let recovered = 0;
      if (since) {
        const off = Number(since.split("-")[1]);
        for (const p of h.slice(off)) {
          this.frame(c, {push: {topic, pub: p}});
          recovered++;
        }
      }
      c.subs.add(topic);
      this.frame(c, {id: cmd.id, result: Object.assign({head, recovered, gone: false}, this.subResult)});
    } else if (cmd.unsubscribe) {
      c.subs.delete(cmd.unsubscribe.topic);
      this.frame(c, {id: cmd.id, result: {}});
    } else if (cmd.publish) {
      // Exactly once per idempotency key, as the real server.
      const k = cmd.publish.idem;
      this.idem = this.idem || new Map();
      if (k && this.idem.has(k)) return this.frame(c, {id: cmd.id, result: {pos: this.idem.get(k)}});
      const pos = this.publish(cmd.publish.topic, cmd.publish.data);
      if (k) this.idem.set(k, pos);
      if (this.loseReply) {
        // Published, but the connection breaks before the reply.
        this.loseReply = false;
        return c.kill(1006);
      }
      this.frame(c, {id: cmd.id, result: {pos}});
    } else if (cmd.rpc) {
      if (cmd.rpc.method === "echo") this.frame(c, {id: cmd.id, result: {data: cmd.rpc.data}});
      else this.frame(c, {id: cmd.id, error: {code: 104, message: "method not found"}});
    } else if (cmd.refresh) {
      c.token = cmd.refresh.token;
      this.frame(c, {id: cmd.id, result: {expires: true, ttl: 3600}});
    } else if (cmd.sub_refresh) {
      this.frame(c, {id: cmd.id, result: Object.assign({}, this.subResult)});
    } else if (cmd.ping) {
      this.frame(c, {id: cmd.id, result: {}});
    }
  }
}

let n = 0;
function client(srv, extra = {}) {
  return new Client(Object.assign({url: "ws://unit" + n++, transports: [srv.name], shared: false, storage: new MemStorage(), minReconnectDelay: 5, maxReconnectDelay: 40}, extra)).connect();
}

test("reconnect resumes every topic from its position: nothing lost, nothing repeated", async () => {
  const srv = new MemServer();
  const c = client(srv);
  const got = [];
  const states = [];
  c.on("state", (s, d) => states.push(s + ":" + d.code));
  const sub = c.subscribe("chat", {onMessage: (d) => got.push(d)});
  await sub.ready;
  assert.equal(c.state, "connected");
  assert.equal(c.transport, srv.name);
  srv.publish("chat", "a");
  srv.publish("chat", "b");
  await until("two", () => got.length === 2);
  assert.equal(sub.position, "7-2");
  srv.live()[0].kill(1006);
  srv.publish("chat", "c"); // while down
  srv.publish("chat", "d");
  await until("reconnect", () => srv.live().length === 1 && c.state === "connected");
  await until("recovered", () => got.length === 4);
  srv.publish("chat", "e");
  await until("live again", () => got.length === 5);
  assert.deepEqual(got, ["a", "b", "c", "d", "e"]);
  const subs = srv.commands.filter((x) => x.subscribe);
  assert.deepEqual(subs.map((x) => x.subscribe.since), [undefined, "7-2"]);
  assert.ok(states.includes("connecting:1006"), states.join());
  // A repeated publication (a server replaying on another process) is dropped.
  srv.frame(srv.live()[0], {push: {topic: "chat", pub: {pos: "7-4", data: "d"}}});
  await sleep(20);
  assert.equal(got.length, 5);
  c.disconnect();
});

test("subscribe from now still resumes after a reconnect (from the head)", async () => {
  const srv = new MemServer();
  srv.publish("news", "old");
  const c = client(srv);
  const got = [];
  await c.subscribe("news", {onMessage: (d) => got.push(d)}).ready;
  srv.live()[0].kill(1001);
  srv.publish("news", "during");
  await until("recovered", () => got.length === 1);
  assert.deepEqual(got, ["during"]);
  c.disconnect();
});

test("a reload subscribes from the kept position", async () => {
  const srv = new MemServer();
  const storage = new MemStorage();
  const url = "ws://reload";
  const c1 = client(srv, {storage, url});
  const got = [];
  await c1.subscribe("chat", {onMessage: (d) => got.push(d)}).ready;
  srv.publish("chat", 1);
  srv.publish("chat", 2);
  await until("two", () => got.length === 2);
  c1.disconnect(); // the page goes
  srv.publish("chat", 3);
  const c2 = client(srv, {storage, url}); // the page comes back
  const got2 = [];
  const r = await c2.subscribe("chat", {onMessage: (d) => got2.push(d)}).ready;
  assert.equal(r.recovered, 1);
  assert.deepEqual(got2, [3]);
  c2.disconnect();
});

test("3500+ does not reconnect; 3000-3499 does", async () => {
  const srv = new MemServer();
  const c = client(srv);
  await c.ready();
  srv.live()[0].kill(3503, {code: 3503, reason: "disconnected", reconnect: false});
  await until("disconnected", () => c.state === "disconnected");
  await sleep(100);
  assert.equal(srv.conns.length, 1, "no reconnect after 3503");
  const d = await new Promise((r) => {
    const c2 = client(srv);
    c2.once("connected", () => {
      srv.live()[0].kill(3000, {code: 3000, reason: "shutdown", reconnect: true});
      c2.once("connected", () => r(c2));
    });
  });
  assert.equal(srv.conns.length, 3);
  d.disconnect();
});

test("connect refused as unauthorized: disconnected with 3500, no retry", async () => {
  const srv = new MemServer();
  srv.onConnect = (conn, cmd) => {
    srv.frame(conn, {id: cmd.id, error: {code: 101, message: "unauthorized"}});
    return true;
  };
  const c = client(srv, {token: "bad"});
  const d = await new Promise((r) => c.once("disconnected", r));
  assert.equal(d.code, 3500);
  await sleep(50);
  assert.equal(srv.conns.length, 1);
});

test("3005: getToken, then reconnect with the new token", async () => {
  const srv = new MemServer();
  let asked = 0;
  const c = client(srv, {token: "t1", getToken: async () => "t" + (2 + asked++)});
  await c.ready();
  assert.equal(srv.conns[0].token, "t1");
  srv.live()[0].kill(3005, {code: 3005, reason: "token expired", reconnect: true});
  await until("reconnected", () => srv.live().length === 1 && c.state === "connected");
  assert.equal(asked, 1);
  assert.equal(srv.live()[0].token, "t2");
  // Without getToken, 3005 is the end.
  const c2 = client(srv, {token: "x"});
  await c2.ready();
  srv.live().at(-1).kill(3005, {code: 3005, reason: "token expired", reconnect: true});
  const d = await new Promise((r) => c2.once("disconnected", r));
  assert.equal(d.code, 3005);
  c.disconnect();
});

test("refresh before the token expires", async () => {
  const srv = new MemServer();
  srv.connectResult = {ping: 25, expires: true, ttl: 1};
  const c = client(srv, {token: "t1", getToken: () => "fresh"});
  await c.ready();
  await until("refresh", () => srv.commands.some((x) => x.refresh), 1500);
  assert.equal(srv.commands.find((x) => x.refresh).refresh.token, "fresh");
  assert.equal(srv.live().length, 1, "same connection");
  c.disconnect();
});

test("subscription tokens: getToken(topic), sub_refresh at 80% of the ttl, after an expiry a new token and again from the position", async () => {
  const srv = new MemServer();
  srv.subResult = {expires: true, ttl: 1};
  const c = client(srv);
  const asked = [];
  const got = [];
  let subscribed = 0, unsubscribed = 0;
  const sub = c.subscribe("private:a", {
    getToken: async (topic) => (asked.push(topic), "s" + asked.length),
    onMessage: (d) => got.push(d),
    onSubscribed: () => subscribed++,
    onUnsubscribed: () => unsubscribed++,
  });
  const r = await sub.ready;
  assert.equal(r.ttl, 1);
  assert.equal(srv.commands.find((x) => x.subscribe).subscribe.token, "s1");
  await until("sub_refresh", () => srv.commands.some((x) => x.sub_refresh), 1500);
  assert.deepEqual(srv.commands.find((x) => x.sub_refresh).sub_refresh, {topic: "private:a", token: "s2"});
  srv.publish("private:a", "a");
  await until("a", () => got.length === 1);
  // The server ends it (the token expired); a publication comes meanwhile.
  const conn = srv.live()[0];
  conn.subs.delete("private:a");
  srv.frame(conn, {push: {topic: "private:a", unsub: {code: 109, reason: "subscription token expired"}}});
  srv.publish("private:a", "b");
  await until("subscribed again", () => srv.commands.filter((x) => x.subscribe).length === 2);
  const again = srv.commands.filter((x) => x.subscribe)[1].subscribe;
  assert.equal(again.since, "7-1");
  assert.match(again.token, /^s[3-9]$/);
  await until("b recovered", () => got.length === 2);
  srv.publish("private:a", "c");
  await until("c", () => got.length === 3);
  assert.deepEqual(got, ["a", "b", "c"]);
  assert.equal(unsubscribed, 0);
  assert.ok(subscribed >= 2);
  assert.ok(asked.every((t) => t === "private:a"));
  assert.equal(srv.live().length, 1, "same connection");
  // Without getToken the expiry ends the subscription.
  const ends = [];
  const sub2 = c.subscribe("private:b", {token: "t", onUnsubscribed: (i) => ends.push(i.code)});
  await sub2.ready;
  assert.equal(srv.commands.filter((x) => x.subscribe).at(-1).subscribe.token, "t");
  srv.frame(conn, {push: {topic: "private:b", unsub: {code: 109, reason: "subscription token expired"}}});
  await until("unsubscribed", () => ends.length === 1);
  assert.deepEqual(ends, [109]);
  c.disconnect();
});

test("publish acks, rpc answers, errors and timeouts", async () => {
  const srv = new MemServer();
  const c = client(srv, {timeout: 200});
  const early = c.publish("chat", {x: 1}); // before connect: waits for it
  assert.deepEqual(await early, {pos: "7-1"});
  assert.deepEqual(await c.rpc("echo", {y: [1, 2]}), {y: [1, 2]});
  await c.publish("chat"); // no data: sent as null, never a command without its field
  assert.ok("data" in srv.commands.at(-1).publish && srv.commands.at(-1).publish.data === null);
  await assert.rejects(c.rpc("nope"), (e) => e.code === 104 && e.message === "method not found");
  srv.silent = true;
  await assert.rejects(c.publish("chat", 1), (e) => e.code === ErrorCodes.timeout && e.temporary);
  // In flight when the connection breaks: transportClosed, not a hang.
  // (Without an idempotency key: a publish with one is sent again.)
  const p = c.publish("chat", 2, {timeout: 5000, idem: ""});
  await sleep(10);
  srv.live()[0].kill(1006);
  await assert.rejects(p, (e) => e.code === ErrorCodes.transportClosed);
  c.disconnect();
  await assert.rejects(c.publish("chat", 3), (e) => e.code === ErrorCodes.clientDisconnected);
});

test("a publish whose reply was lost is sent again with the same key after the reconnect: published once", async () => {
  const srv = new MemServer();
  const c = client(srv, {timeout: 3000});
  await c.publish("chat", "first");
  srv.loseReply = true;
  const res = await c.publish("chat", "again");
  assert.deepEqual(res, {pos: "7-2"});
  assert.equal(srv.history.get("chat").length, 2, "published once");
  const sent = srv.commands.filter((x) => x.publish && x.publish.data === "again");
  assert.equal(sent.length, 2, "sent twice");
  assert.ok(sent[0].publish.idem && sent[0].publish.idem === sent[1].publish.idem && sent[0].publish.idem.length <= 64);
  assert.notEqual(srv.commands.find((x) => x.publish && x.publish.data === "first").publish.idem, sent[0].publish.idem);
  c.disconnect();
});

test("fallback: a transport that fails or never answers gives way to the next", async () => {
  const srv = new MemServer("fallback-target");
  TRANSPORTS.broken = (u, cmd, h) => {
    queueMicrotask(() => h.onClose(1006, "refused"));
    return {send() {}, close() {}};
  };
  TRANSPORTS.blackhole = () => ({send() {}, close() {}});
  TRANSPORTS.throws = () => {
    throw new Error("refused by the page's CSP");
  };
  const c = client(srv, {transports: ["throws", "broken", "blackhole", srv.name], connectTimeout: 50});
  const t0 = Date.now();
  await c.ready();
  assert.equal(c.transport, srv.name);
  assert.ok(Date.now() - t0 < 1000);
  c.disconnect();
});

test("disconnect() while connecting: the late connect reply is ignored and the transport closed", async () => {
  let opened = null;
  TRANSPORTS.late = (u, cmd, h) => {
    opened = {closed: false, send() {}, close() { opened.closed = true; }};
    setTimeout(() => h.onFrame(JSON.stringify({id: cmd.id, result: {client: "late"}})), 30);
    return opened;
  };
  const states = [];
  const c = new Client({url: "ws://late", transports: ["late"], shared: false, storage: null}).connect();
  c.on("state", (s) => states.push(s));
  await until("opening", () => opened !== null);
  c.disconnect();
  await sleep(80);
  assert.equal(c.state, "disconnected");
  assert.ok(opened.closed, "the opening transport is closed");
  assert.ok(!states.includes("connected"), states.join());
});

test("no pong: a silent connection is replaced", async () => {
  const srv = new MemServer();
  const c = client(srv, {pingInterval: 30, pongTimeout: 30});
  await c.ready();
  srv.silent = true; // a blackhole: nothing answers, nothing closes
  await until("reconnect", () => srv.conns.length >= 2, 2000);
  assert.ok(srv.commands.some((x) => x.ping));
  assert.ok(srv.conns[0].closed);
  c.disconnect();
});

test("shared core: a page joining late is served from kept publications", async () => {
  const srv = new MemServer();
  const core = new Core({url: "ws://shared", transports: [srv.name], minReconnectDelay: 5});
  const inbox = (name) => {
    const m = {name, got: [], res: [], post: (msg) => (msg.t === "pub" ? m.got.push(msg.pub.data) : msg.t === "subres" ? m.res.push(msg.result || msg.error) : 0)};
    return m;
  };
  const a = inbox("a"), b = inbox("b"), c = inbox("c");
  core.handle(a, {t: "hello"});
  core.handle(a, {t: "sub", topic: "chat"});
  await until("a subscribed", () => a.res.length === 1);
  srv.publish("chat", 1);
  srv.publish("chat", 2);
  srv.publish("chat", 3);
  await until("a got 3", () => a.got.length === 3);
  core.handle(b, {t: "hello"});
  core.handle(b, {t: "sub", topic: "chat", since: "7-1"});
  core.handle(c, {t: "hello"});
  core.handle(c, {t: "sub", topic: "chat"});
  await until("b, c", () => b.res.length === 1 && c.res.length === 1);
  assert.deepEqual(b.got, [2, 3]);
  assert.equal(b.res[0].recovered, 2);
  assert.deepEqual(c.got, []);
  srv.publish("chat", 4);
  await until("all got 4", () => a.got.length === 4 && b.got.length === 3 && c.got.length === 1);
  assert.equal(srv.live().length, 1, "one connection for three pages");
  assert.equal(srv.commands.filter((x) => x.subscribe).length, 1, "one subscription for three pages");
  // The last page to leave a topic unsubscribes; the last page closes it.
  core.handle(a, {t: "bye"});
  core.handle(b, {t: "unsub", topic: "chat"});
  await sleep(10);
  assert.equal(srv.commands.filter((x) => x.unsubscribe).length, 0);
  core.handle(c, {t: "unsub", topic: "chat"});
  await until("unsubscribed", () => srv.commands.some((x) => x.unsubscribe));
  core.handle(b, {t: "bye"});
  core.handle(c, {t: "bye"});
  assert.equal(core.state, "disconnected");
  assert.equal(srv.live()[0]?.closed ?? true, true);
});

test("shared core: after a reconnect every page resumes, none is told gone", async () => {
  const srv = new MemServer();
  const core = new Core({url: "ws://shared2", transports: [srv.name], minReconnectDelay: 5});
  const pages = ["a", "b"].map((name) => {
    const m = {name, got: [], res: [], post: (msg) => (msg.t === "pub" ? m.got.push(msg.pub.data) : msg.t === "subres" ? m.res.push(msg.result) : 0)};
    core.handle(m, {t: "hello"});
    return m;
  });
  core.handle(pages[0], {t: "sub", topic: "t", since: ""});
  await until("a", () => pages[0].res.length === 1);
  srv.publish("t", 1);
  core.handle(pages[1], {t: "sub", topic: "t", since: "7-1"}); // b already has 1
  srv.publish("t", 2);
  await until("both got 2", () => pages.every((p) => p.got.at(-1) === 2));
  srv.live()[0].kill(1006);
  srv.publish("t", 3);
  await until("resubscribed", () => pages.every((p) => p.res.length >= 2 && p.got.at(-1) === 3));
  for (const p of pages) assert.ok(p.res.every((r) => !r.gone), p.name + " told gone: " + JSON.stringify(p.res));
  assert.deepEqual(pages[0].got, [1, 2, 3]);
  assert.deepEqual(pages[1].got, [2, 3]);
  core.handle(pages[0], {t: "bye"});
  core.handle(pages[1], {t: "bye"});
});

let failed = 0;
for (const t of tests) {
  try {
    await t.fn();
    console.log("ok   " + t.name);
  } catch (e) {
    failed++;
    console.log("FAIL " + t.name + "\n     " + (e && e.stack ? e.stack.split("\n").slice(0, 4).join("\n     ") : e));
  }
}
console.log(failed ? `${failed} of ${tests.length} failed` : `all ${tests.length} passed`);
process.exit(failed ? 1 : 0);
