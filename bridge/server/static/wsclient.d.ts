// Type declarations of wsclient.js (the unified-protocol browser client). See docs/protocol.md.

export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export declare const State: Readonly<{
  IDLE: "idle";
  CONNECTING: "connecting";
  OPEN: "open";
  RECONNECTING: "reconnecting";
  CLOSED: "closed";
}>;

/** Where a topic's stream stands. */
export interface Position {
  epoch: string;
  seq: number;
  /** The event at `seq`, when the client saw it: sent back in `since` to prove continuity. */
  event_id?: string;
}

/** A position in a `subscribed` ack; `recovered` is present when the subscribe asked `since`. */
export interface AckPosition extends Position {
  recovered?: boolean;
}

/** The event envelope (protocol version 1). */
export interface EventEnvelope<D = Record<string, unknown>> {
  v: 1;
  type: string;
  topic: string;
  event_id: string;
  seq: number;
  epoch: string;
  ts: number;
  data: D;
  /** Every topic of an event addressed to several, primary first; absent otherwise. */
  topics?: string[];
  /** For an event of several topics, where it stands on each of them; absent otherwise. */
  positions?: Record<string, Position>;
}

export interface SubscribedAck {
  type: "subscribed";
  message_id?: string | null;
  topics: string[];
  positions: Record<string, AckPosition>;
}

export interface UnsubscribedAck {
  type: "unsubscribed";
  message_id?: string | null;
  topics: string[];
}

export interface ErrorFrame {
  type: "error";
  code: "invalid_topic" | "not_found" | "forbidden" | "bad_message" | "too_many_topics" | "rate_limited" | string;
  topic: string | null;
  message_id: string | null;
  message: string;
}

export type ClientFrame =
  | { type: "subscribe"; topics: string[]; since?: Record<string, Position>; message_id?: string }
  | { type: "unsubscribe"; topics: string[]; message_id?: string }
  | { type: "ping"; message_id?: string }
  | { type: "pong" };

/** A definitive refusal by the server (`REFUSALS`). */
export interface Refusal {
  code: 4401 | 4403;
  reason: string;
  kind: "unauthenticated" | "forbidden";
}

/** Close codes the client treats as definitive, and what each means. */
export declare const REFUSALS: Readonly<{ 4401: "unauthenticated"; 4403: "forbidden" }>;

export interface WsClientOptions {
  /** Full WebSocket URL; default: ws(s)://<location.host><path>. */
  url?: string;
  /** Path used when `url` is not given; default "/api/ws". */
  path?: string;
  /** Token sent as `?token=` (browsers cannot set headers on a WebSocket). */
  token?: string;
  /** Called before every connection attempt; wins over `token`. */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** Called with the topic when the server could not replay missed events: refetch over REST. */
  onResync?: (topic: string) => void;
  onStateChange?: (state: ConnectionState, previous: ConnectionState) => void;
  /** The server refused the client for good (4401 sign in, 4403 origin): it is closed, not retrying. */
  onRefused?: (refusal: Refusal) => void;
  /** Open the socket at construction (createWsClient only); default true. */
  autoStart?: boolean;
  /** Backoff: full jitter in [backoffMinMs, min(backoffMaxMs, backoffInitialMs * 2^attempt)]. */
  backoffInitialMs?: number; // 250
  backoffMaxMs?: number; // 10000
  backoffMinMs?: number; // 100
  /** A connection open this long resets the backoff; default 5000. */
  stableAfterMs?: number;
  /** Frames kept by send() while not connected; default 100. */
  maxQueue?: number;
  /** Event ids remembered to drop duplicates; default 2000. */
  dedupSize?: number;
  /** Ping after this much silence, drop the socket if still silent `pongTimeoutMs` later; 0 disables. */
  keepaliveMs?: number; // 30000
  pongTimeoutMs?: number; // 10000
  pingTimeoutMs?: number; // 10000
  /** Injectables (tests, non-browser runtimes). */
  WebSocket?: typeof WebSocket;
  random?: () => number;
}

export interface SubscribeOptions<D = Record<string, unknown>> {
  /**
   * Where the view's REST snapshot was read (the server returns it with the snapshot, in the body
   * or the `Wsmigrate-Positions` header): the handler gets exactly the events after it.
   */
  since?: Position | null;
  /** True when the snapshot already holds `event` (same event_id or resource version): skipped. */
  contains?: (event: EventEnvelope<D>) => boolean;
  /** The server lost the history this subscription needed: reload the view (snapshot, then `since`). */
  onResync?: (topic: string) => void;
  /** The topic is live on the current socket (called at once if it already was, and after each reconnect). */
  onSubscribed?: (info: { topic: string; position: AckPosition | null }) => void;
  /** The server refused the topic. */
  onError?: (frame: ErrorFrame) => void;
}

export type Unsubscribe = () => void;

export interface WsClientStats {
  attempts: number;
  connects: number;
  reconnects: number;
  events: number;
  duplicatesDropped: number;
  /** Events a view's snapshot already held (`since`, `contains`). */
  snapshotSkipped: number;
  /** Topics re-subscribed from an older position for a view that joined after the socket passed it. */
  rewinds: number;
  resyncs: number;
  queueDropped: number;
  lastClose: { code: number; reason: string } | null;
}

export interface WsClientEventMap {
  statechange: CustomEvent<{ state: ConnectionState; previous: ConnectionState }>;
  open: CustomEvent<{ attempt: number }>;
  close: CustomEvent<{ code: number; reason: string; wasClean: boolean; willReconnect: boolean; delayMs?: number }>;
  subscribed: CustomEvent<{ ack: SubscribedAck }>;
  unsubscribed: CustomEvent<{ ack: UnsubscribedAck }>;
  resync: CustomEvent<{ topic: string }>;
  error: CustomEvent<{ frame: ErrorFrame }>;
  event: CustomEvent<{ event: EventEnvelope }>;
  duplicate: CustomEvent<{ event: EventEnvelope }>;
  queueoverflow: CustomEvent<{ frame: ClientFrame }>;
  handlererror: CustomEvent<{ error: unknown; event: unknown }>;
  refused: CustomEvent<Refusal>;
}

export declare class WsClient extends EventTarget {
  constructor(options?: WsClientOptions);
  readonly options: Required<Omit<WsClientOptions, "url" | "token" | "getToken" | "onResync" | "onStateChange" | "onRefused" | "WebSocket" | "random">> & WsClientOptions;
  readonly stats: WsClientStats;
  /** Set once the server refused this client for good. */
  readonly refusal: Refusal | null;
  readonly state: ConnectionState;
  readonly connected: boolean;
  readonly topics: string[];
  position(topic: string): Position | null;
  isLive(topic: string): boolean;
  start(): this;
  close(code?: number, reason?: string): void;
  subscribe<D = Record<string, unknown>>(
    topic: string, handler: (event: EventEnvelope<D>) => void, options?: SubscribeOptions<D>,
  ): Unsubscribe;
  on<D = Record<string, unknown>>(type: string, handler: (event: EventEnvelope<D>) => void): Unsubscribe;
  send(frame: ClientFrame): boolean;
  ping(timeoutMs?: number): Promise<number>;
  addEventListener<K extends keyof WsClientEventMap>(
    type: K, listener: (event: WsClientEventMap[K]) => void, options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof WsClientEventMap>(
    type: K, listener: (event: WsClientEventMap[K]) => void, options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions): void;
}

/** The topics an event is addressed to, by the protocol's topic rules. */
export declare function topicsOf(event: Pick<EventEnvelope, "topic" | "topics">): string[];

/** What makes an event frame the same frame again: its `event_id` and the topics it addresses. */
export declare function frameKey(event: Pick<EventEnvelope, "event_id" | "topic" | "topics">): string;

/** Where an event stands on each topic it addresses. */
export declare function positionsOf(event: Pick<EventEnvelope, "topic" | "epoch" | "seq" | "positions">): Record<string, Position>;

/** The response header a `topic_positions` REST endpoint sets. */
export declare const POSITIONS_HEADER: "Wsmigrate-Positions";

/** The positions a REST response carries in its `Wsmigrate-Positions` header ({} when absent). */
export declare function positionsFromResponse(response: Response): Record<string, Position>;

/** Create a client and open its socket (unless `autoStart: false`). */
export declare function createWsClient(options?: WsClientOptions): WsClient;
