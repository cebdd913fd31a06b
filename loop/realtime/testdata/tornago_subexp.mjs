// The browser client against the real server (TestJSClientSubscriptionExpiry,
// js_test.go): node tornago_subexp.mjs <tornago.mjs> <ws url>. Subscription
// tokens "sub:USER:TOPIC:MS" live MS ms (the test server's
// VerifySubscribeToken); the server's ttl for 1.5 s is 1 s, so getToken is
// asked for a sub_refresh 0.8 s after each subscribe or refresh.
import assert from "node:assert/strict";
import {pathToFileURL} from "node:url";

const T = await import(pathToFileURL(process.argv[2]).href);
const url = process.argv[3];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, cond, ms = 5000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await sleep(10);
  }
}

const c = T.connect({url, shared: false, transports: ["websocket"], token: "ann", storage: null, minReconnectDelay: 50, maxReconnectDelay: 200});
const states = [];
c.on("state", (s, d) => states.push(s + ":" + d.code));
const got = {a: [], b: [], canary: []};
let aCalls = 0, bCalls = 0, bSubscribed = 0, ended = 0;

// a: refreshed before each expiry.
const a = c.subscribe("private:a", {
  getToken: (topic) => (aCalls++, "sub:ann:" + topic + ":1500"),
  onMessage: (d) => got.a.push(d),
  onUnsubscribed: () => ended++,
});
// b: its refresh is refused (a token for another topic); the server ends
// it at the expiry (109); a new token, and again from its position.
const b = c.subscribe("private:b", {
  getToken: async (topic) => {
    bCalls++;
    if (bCalls === 1) return "sub:ann:" + topic + ":1500";
    if (bCalls === 2) return "sub:ann:private:other:60000";
    // Ended by the server: a publication comes before the resubscribe.
    await c.publish("private:b", "2");
    return "sub:ann:" + topic + ":60000";
  },
  onMessage: (d) => got.b.push(d),
  onSubscribed: () => bSubscribed++,
  onUnsubscribed: () => ended++,
});
const canary = c.subscribe("chat:canary", {onMessage: (d) => got.canary.push(d)});
const [ra, rb, rc] = await Promise.all([a.ready, b.ready, canary.ready]);
assert.equal(ra.expires, true);
assert.equal(ra.ttl, 1);
assert.equal(rb.ttl, 1);
assert.equal(rc.expires, undefined, "the canary's topic has no tokens");
await c.publish("private:b", "1");
await sleep(3500); // two expiries of a; b's refresh refused, then its end
await c.publish("private:a", "x");
await c.publish("private:b", "3");
await c.publish("chat:canary", "c");
await until("every publication", () => got.a.length === 1 && got.b.length >= 3 && got.canary.length === 1);
await sleep(100);
assert.deepEqual(got, {a: ["x"], b: ["1", "2", "3"], canary: ["c"]});
assert.ok(aCalls >= 4, "a's getToken calls: " + aCalls);
assert.ok(bCalls >= 3, "b's getToken calls: " + bCalls);
assert.ok(bSubscribed >= 2, "b subscribed " + bSubscribed + " times");
assert.equal(ended, 0, "no subscription told unsubscribed");
assert.deepEqual(states.filter((s) => s.startsWith("connected")), ["connected:0"], "one connection: " + states.join());
console.log(JSON.stringify({aCalls, bCalls, bSubscribed, got}));
c.disconnect();
process.exit(0);
