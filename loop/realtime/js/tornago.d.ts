// Type declarations for tornago.js, the browser client of the Tornago client
// protocol, version 1 (proto/clientproto/PROTOCOL.md).

export declare const VERSION: string;

/** Client-side error codes; server errors keep the protocol's codes (100+). */
export declare const ErrorCodes: Readonly<{
  timeout: 1;
  transportClosed: 2;
  clientDisconnected: 3;
  badArgument: 4;
}>;

export type TransportName = "websocket" | "sse" | "longpoll";
export type State = "disconnected" | "connecting" | "connected";

export interface ConnectOptions {
  /** Base URL of the server (http(s) or ws(s), optional path prefix); default: the page's origin. */
  url?: string;
  /** Connect token (a JWT, or what the server's Authenticate hook reads). */
  token?: string;
  /** Gets a new token: before the current one expires (refresh) and after disconnect 3005. */
  getToken?: () => string | Promise<string>;
  /** Transports tried in order on each (re)connect; default all three. */
  transports?: TransportName[];
  /**
   * One connection per browser and origin: "auto" (default: a SharedWorker,
   * else a leader tab elected with Web Locks over a BroadcastChannel),
   * "sharedworker", "broadcast", or false (this page's own connection).
   */
  shared?: "auto" | "sharedworker" | "broadcast" | boolean;
  /** URL of tornago.js for the SharedWorker; default: this module's URL. */
  workerURL?: string | URL;
  /** A SharedWorker silent this long (ms, 3000) counts as failed: a leader tab instead. */
  workerTimeout?: number;
  /** Client name and application data sent with connect. */
  name?: string;
  data?: unknown;
  /** Send cookies on cross-origin SSE and POSTs. */
  withCredentials?: boolean;
  /** Default timeout of publish and rpc, ms (10000). */
  timeout?: number;
  /** Give up a transport that sends no connect reply within this, ms (5000). */
  connectTimeout?: number;
  /** Reconnect backoff bounds, ms (500 and 20000; full jitter). */
  minReconnectDelay?: number;
  maxReconnectDelay?: number;
  /** Idle time before a ping command, ms; default the server's ping interval. */
  pingInterval?: number;
  /** Close and reconnect when a ping is not answered within this, ms (5000). */
  pongTimeout?: number;
  /** Where positions are kept; default sessionStorage (null: memory only). */
  storage?: Pick<Storage, "getItem" | "setItem" | "removeItem"> | null;
}

export interface StateDetail {
  /** Why the last connection ended (0 when none, or disconnect() called). */
  code: number;
  reason: string;
  client: string;
  transport: TransportName | "";
}

export interface Publication {
  /** "EPOCH-OFFSET"; absent on a topic without history. */
  pos?: string;
  /** On a `latest` topic: publications not sent just before this one (the client read too slowly). */
  skipped?: number;
  data: unknown;
}

export interface SubscribeResult {
  head?: string;
  recovered: number;
  /** The history no longer reaches the position: something was missed. */
  gone: boolean;
  /** The subscription ends in ttl seconds (its token's exp) unless refreshed (getToken). */
  expires?: boolean;
  ttl?: number;
}

export interface SubscribeOptions {
  /** Resume after this position; default the one kept in sessionStorage, else from now. */
  since?: string;
  onMessage?: (data: any, pub: Publication) => void;
  /** Called on every (re)subscription, with recovered/gone. */
  onSubscribed?: (result: SubscribeResult) => void;
  onError?: (err: TornagoError) => void;
  onUnsubscribed?: (info: {code: number; reason: string}) => void;
  /** Joins and leaves of the topic (namespaces with join_leave), coalesced. */
  onJoinLeave?: (ev: JoinLeave) => void;
  /** The subscription token (namespaces with subscribe_token). */
  token?: string;
  /**
   * Gives a subscription token for topic: first (when token is empty), at 80% of its ttl
   * (sub_refresh), and after the server ended the subscription because its token expired
   * (then subscribed again from the position; onSubscribed is called again).
   */
  getToken?: (topic: string) => string | Promise<string>;
}

/** A subscriber as presence and join/leave show it. */
export interface ClientInfo {
  client: string;
  user?: string;
  /** What the server's authentication attached (left out when large). */
  info?: any;
}

/** One coalesced join/leave event; over the namespace's size, counts only. */
export interface JoinLeave {
  join: ClientInfo[];
  leave: ClientInfo[];
  counts: {joined: number; left: number; clients: number} | null;
}

export declare class TornagoError extends Error {
  code: number;
  temporary: boolean;
  constructor(code: number, message: string, temporary?: boolean);
}

export declare class Emitter {
  on(event: string, fn: (...args: any[]) => void): () => void;
  off(event: string, fn: (...args: any[]) => void): void;
  once(event: string, fn: (...args: any[]) => void): () => void;
}

export declare class Subscription extends Emitter {
  readonly topic: string;
  state: "subscribing" | "subscribed" | "unsubscribed" | "error";
  result: SubscribeResult | null;
  /** Resolves on the first subscription; rejects on a refusal. */
  readonly ready: Promise<SubscribeResult>;
  /** Position of the last publication handled by this page. */
  readonly position: string;
  unsubscribe(): void;
  on(event: "message", fn: (data: any, pub: Publication) => void): () => void;
  on(event: "subscribed", fn: (result: SubscribeResult) => void): () => void;
  on(event: "error", fn: (err: TornagoError) => void): () => void;
  on(event: "unsubscribed", fn: (info: {code: number; reason: string}) => void): () => void;
  on(event: "joinleave", fn: (ev: JoinLeave) => void): () => void;
}

export declare class Client extends Emitter {
  constructor(opts?: ConnectOptions);
  readonly state: State;
  /** The server's id for the connection ("" while not connected). */
  readonly clientID: string;
  readonly transport: TransportName | "";
  connect(): this;
  subscribe(topic: string, opts?: SubscribeOptions): Subscription;
  unsubscribe(topic: string): void;
  /** Resolves with {pos} once the server accepted the publication. */
  /** opts.idem: the publish's idempotency key (default: a fresh one; "" for none). */
  publish(topic: string, data: unknown, opts?: {timeout?: number; idem?: string}): Promise<{pos?: string}>;
  /** Who is subscribed to topic (subscribed here; a namespace with presence). */
  presence(topic: string, opts?: {timeout?: number}): Promise<{members: ClientInfo[]; truncated?: boolean}>;
  /** Subscribers and distinct users of topic. */
  presenceStats(topic: string, opts?: {timeout?: number}): Promise<{clients: number; users: number}>;
  /** Resolves with the application's answer. */
  rpc<T = unknown>(method: string, data?: unknown, opts?: {timeout?: number}): Promise<T>;
  disconnect(): void;
  ready(): Promise<this>;
  on(event: "state", fn: (state: State, detail: StateDetail) => void): () => void;
  on(event: "connecting" | "connected" | "disconnected", fn: (detail: StateDetail) => void): () => void;
  /** A publication of a topic the server subscribed this connection to. */
  on(event: "publication", fn: (topic: string, data: any, pub: Publication) => void): () => void;
  on(event: "serverSubscribed", fn: (topic: string, head: string) => void): () => void;
  on(event: "serverUnsubscribed", fn: (topic: string, info: {code: number; reason: string}) => void): () => void;
}

export declare function connect(opts?: ConnectOptions): Client;

/** Exponential backoff with full jitter: uniform in [0, min(max, min*2^attempt)). */
export declare function backoffDelay(attempt: number, min?: number, max?: number, rnd?: () => number): number;
export declare function parsePosition(s: string): {epoch: bigint; offset: bigint} | null;
export declare function comparePositions(a: string, b: string): -1 | 0 | 1 | null;
export declare function reconnectsAfter(code: number): boolean;

export declare const Tornago: {
  connect: typeof connect;
  Client: typeof Client;
  Subscription: typeof Subscription;
  TornagoError: typeof TornagoError;
  ErrorCodes: typeof ErrorCodes;
  VERSION: string;
};

declare global {
  // Set when tornago.js is loaded in a page.
  var Tornago: typeof import("./tornago.js").Tornago;
}
