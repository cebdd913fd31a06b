// The real browser client (tornago.js, as the server serves it) in node,
// with npm's ws as its WebSocket, driven by a Go test line by line
// (TestProcsJSPublishOnceAfterKill and TestJSPublishSameReplyAfterDrop,
// idem_jsclient_test.go):
//   node js_publish_driver.mjs <tornago.mjs> <base URL> <topic> [transport]
// stdin, one JSON object a line: {"op":"publish","text":T} publishes the
// string T on the topic (each with the client's own fresh idempotency
// key); end of input disconnects and exits.
// stdout, one JSON object a line: {"ev":"state",state,transport,code},
// {"ev":"subscribed",result}, {"ev":"pub",data,pos} (the client's own
// subscription to the topic), {"ev":"ack",text,result} (the publish
// promise resolved) or {"ev":"err",text,error} (it was rejected).
import {createRequire} from "node:module";
import {pathToFileURL} from "node:url";
import readline from "node:readline";

// node 20 has fetch but no global WebSocket; ws is found through
// NODE_PATH (.ci/run installs it into .ci/node).
const require = createRequire(import.meta.url);
globalThis.WebSocket = require("ws");

const [mod, base, topic, transport = "websocket"] = process.argv.slice(2);
const {Client} = await import(pathToFileURL(mod).href);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

// shared: false and no storage: this process's own connection, positions
// in memory (node has neither SharedWorker, navigator.locks nor
// sessionStorage; "auto" would come to the same). One transport (the
// fourth argument, default websocket): no fallback to blur what is tested.
const c = new Client({
  url: base,
  shared: false,
  storage: null,
  transports: [transport],
  minReconnectDelay: 50,
  maxReconnectDelay: 300,
  timeout: 30000,
});
c.on("state", (state, d) => out({ev: "state", state, transport: d.transport, code: d.code, reason: d.reason}));
const s = c.subscribe(topic);
s.on("subscribed", (result) => out({ev: "subscribed", result}));
s.on("message", (data, pub) => out({ev: "pub", data, pos: pub.pos || ""}));
s.on("error", (e) => out({ev: "suberr", error: {code: e.code, message: e.message}}));
c.connect();

const rl = readline.createInterface({input: process.stdin});
rl.on("line", (line) => {
  const cmd = JSON.parse(line);
  if (cmd.op === "publish") {
    c.publish(topic, cmd.text).then(
      (result) => out({ev: "ack", text: cmd.text, result: result === undefined ? null : result}),
      (e) => out({ev: "err", text: cmd.text, error: {code: e.code, message: e.message}}),
    );
  }
});
rl.on("close", () => {
  c.disconnect();
  // ws's closing handshake must not keep the test waiting.
  setTimeout(() => process.exit(0), 100);
});
