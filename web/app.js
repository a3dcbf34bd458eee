// The browser chat client. No build step, no dependencies: an ES module the local stack serves as is.
// Protocol details (URLs, frames, error wording, backoff) live in protocol.js; this file is the I/O and UI.
// All user data reaches the page through textContent, never as HTML.
//
// One WebSocket carries every room the user is in and their direct conversations. Each conversation keeps
// its own messages, history cursors, outbox, unread count, members and typing state; switching between
// them only swaps which one is on screen.

import {
  DEFAULT_MAX_MESSAGE_BYTES,
  ROOM_PATTERN,
  SUBPROTOCOL,
  TYPING_INTERVAL_MS,
  TYPING_SHOWN_MS,
  backoffDelay,
  connectRequest,
  decodeToken,
  diagnoseHandshake,
  explainClose,
  explainError,
  explainGatewayFrame,
  explainJoinError,
  historyFrame,
  joinFrame,
  leaveFrame,
  listMembersFrame,
  newClientMsgId,
  NOT_STORED_CODES,
  parseFrame,
  resumeCursor,
  roomRule,
  sendDirectFrame,
  sendMessageFrame,
  typingFrame,
  ulidTime,
  userIdFor,
  utf8Bytes,
} from "./protocol.js";

// How the token reaches the server:
//   "query"       — ?token=JWT&room_id=ROOM, the seed article's form (the default);
//   "subprotocol" — new WebSocket(url, ["chat.v1", "bearer." + token]); the server echoes "chat.v1".
// The local stack's /config.json may override it with "tokenTransport".
export const TOKEN_TRANSPORT = "query";

const RECONNECT = { baseMs: 1000, maxMs: 30000 }; // exponential, with jitter (protocol.backoffDelay)
const STABLE_AFTER_MS = 5000; // a connection that stayed open this long resets the backoff
const GROUP_WITHIN_MS = 5 * 60 * 1000; // consecutive messages of one sender within this are grouped
const MAX_RENDERED = 5000; // oldest messages of a conversation are dropped beyond this (paging back brings them again)
const PAGE_SIZE = 50; // messages per history page
const ACK_TIMEOUT_MS = 10000; // a send not acknowledged within this is shown as failed, with a retry
const HISTORY_TIMEOUT_MS = 15000; // a history page not answered within this is asked for again
const ANSWER_TIMEOUT_MS = 10000; // join, leave, listMembers
const RATE_LIMITED_PAUSE_MS = 1000; // a join, leave, member list or history page refused as too fast goes again after this
const TYPING_ERROR_WINDOW_MS = 250; // an error this soon after a typing frame, with nothing else sent, is its own
const STORE = {
  mode: "chat.mode",
  name: "chat.name",
  room: "chat.room",
  rooms: "chat.rooms",
  wsUrl: "chat.wsUrl",
  token: "chat.token",
  anon: "chat.anonId",
};

const $ = (id) => document.getElementById(id);
const el = (tag, className, text) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
};
const store = {
  get: (key) => {
    try {
      return localStorage.getItem(key) ?? "";
    } catch {
      return "";
    }
  },
  set: (key, value) => {
    try {
      localStorage.setItem(key, value);
    } catch {
      /* private mode: not remembered */
    }
  },
};
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const fullTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const numberFormat = new Intl.NumberFormat("en-US");

// ---------------------------------------------------------------------------------------------------
// Connection: one socket for every room and direct conversation, reconnecting with backoff until stopped.

class ChatConnection {
  /** @param {{target: () => Promise<{baseUrl: string, token: string, roomId: string}>, local: boolean,
   *           transport: string, onFrame: Function, onOpen: Function, onState: Function}} options */
  constructor(options) {
    this.options = options;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
    this.state = "idle";
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, "left");
    this.setState("idle");
  }

  /** Retry at once (back online, tab visible again); never reopens a connection closed on purpose
   *  ("closed": expired token, forbidden room): only the user's retry button (start()) does that. */
  retryNow() {
    if (this.stopped || ["connecting", "connected", "closed"].includes(this.state)) return;
    clearTimeout(this.timer);
    this.connect();
  }

  send(payload) {
    if (this.state !== "connected" || !this.ws) return false;
    this.ws.send(payload);
    return true;
  }

  setState(state, info = {}) {
    this.state = state;
    this.options.onState(state, info);
  }

  async connect() {
    this.setState("connecting");
    let target;
    try {
      target = await this.options.target();
    } catch (error) {
      if (this.stopped) return;
      this.scheduleRetry(error.message || "Could not reach the server.");
      return;
    }
    if (this.stopped) return;
    const verdict = diagnoseHandshake({ token: target.token, roomId: target.roomId });
    if (verdict?.fatal) {
      this.setState("closed", { reason: verdict.text, fatal: true, verdict });
      return;
    }
    const { url, protocols } = connectRequest(target.baseUrl, {
      token: target.token,
      roomId: target.roomId,
      transport: this.options.transport,
    });
    let ws;
    try {
      ws = protocols.length ? new WebSocket(url, protocols) : new WebSocket(url);
    } catch (error) {
      this.setState("closed", { reason: `That URL can’t be used: ${error.message}`, fatal: true });
      return;
    }
    this.ws = ws;
    let openedAt = 0;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      if (protocols.length && ws.protocol !== SUBPROTOCOL) {
        ws.close(1002, "subprotocol");
        return;
      }
      openedAt = Date.now();
      this.setState("connected");
      this.options.onOpen();
    };
    ws.onmessage = (event) => {
      if (ws === this.ws) this.options.onFrame(event.data);
    };
    ws.onclose = (event) => {
      if (ws !== this.ws || this.stopped) return;
      this.ws = null;
      if (!openedAt) {
        // A refused handshake and an unreachable server look the same to a page (close 1006 before
        // open): say what the token and room tell us, else say honestly that we cannot tell.
        const refusal = diagnoseHandshake({ token: target.token, roomId: target.roomId });
        if (refusal?.fatal) {
          this.setState("closed", { reason: refusal.text, fatal: true, verdict: refusal });
          return;
        }
        const hint = this.options.local
          ? "Can’t reach the local stack."
          : "The server refused the connection or can’t be reached (a browser isn’t told which) — check the URL and that the token is for this API.";
        this.scheduleRetry(hint);
        return;
      }
      if (Date.now() - openedAt >= STABLE_AFTER_MS) this.attempt = 0;
      this.scheduleRetry(explainClose(event.code, event.reason));
    };
  }

  scheduleRetry(reason) {
    const delay = backoffDelay(this.attempt, RECONNECT);
    this.attempt += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
    this.setState("reconnecting", { reason, until: Date.now() + delay, attempt: this.attempt });
  }
}


// ---------------------------------------------------------------------------------------------------
// Page state

const app = {
  config: null, // /config.json of the local stack; null when the page is served elsewhere
  mode: "local", // "local": token from /dev/token; "remote": the user's wss:// URL and token
  session: null, // {baseUrl, roomId (the room of the join form), userId, name, token, local, rooms (claim) }
  conn: null,
  connectRoom: null, // the room_id of the current connection's URL: in it without a join
  convs: new Map(), // "room:<id>" | "dm:<user id>" -> conversation (see newConversation), in list order
  active: null, // the conversation on screen
  names: new Map(), // user_id -> display name, from members, presence, typing and messages
  wire: { queue: [], inFlight: null, timer: null, pausedUntil: 0 }, // see request()
  drawer: "", // "" | "nav" | "members": the panel open over the chat on narrow screens
  noTyping: false, // the server has no typing route: stop sending typing frames
  typingWanted: null, // {conv, at}: a typing frame held back while a request was under way
  countdown: null,
};

function maxBytes() {
  const value = Number(app.config?.maxMessageBytes);
  return Number.isInteger(value) && value > 0 ? value : DEFAULT_MAX_MESSAGE_BYTES;
}

/** A room ("room", its room_id) or a direct conversation ("dm", the other user's id). Its message list
 *  and outbox are elements of their own, in the page only while it is the active one. */
function newConversation(kind, id) {
  const list = el("ol", "messages");
  list.setAttribute("role", "log");
  list.setAttribute("aria-live", "polite");
  list.setAttribute("aria-relevant", "additions");
  list.tabIndex = 0;
  const outboxList = el("ol", "messages outbox");
  outboxList.setAttribute("aria-label", "Not yet delivered");
  const conv = {
    key: `${kind}:${id}`,
    kind,
    id,
    // rooms: "joining" until the server answers "joined" (or the connection's URL room is open);
    // direct conversations need no join.
    state: kind === "dm" ? "joined" : "joining",
    list,
    outboxList,
    seen: new Set(), // message_ids shown (frames may arrive twice: live, re-broadcast, history)
    outbox: [], // {text, clientMsgId, state: "queued"|"sending"|"sent"|"failed", node, sentAt, conv}
    history: { newestId: null, oldestId: null, olderExist: false, loadingOlder: false, loaded: false },
    lastRendered: null,
    unread: 0,
    unseenBelow: 0,
    scroll: null, // {top, atBottom} while not on screen
    draft: "",
    members: new Map(), // user_id -> {name, online: true | false | null (seen, state unknown)}
    typing: new Map(), // user_id -> time until which "… is typing" shows
    typingSentAt: 0,
  };
  list.setAttribute("aria-label", `Messages in ${label(conv)}`);
  return conv;
}

function label(conv) {
  return conv.kind === "room" ? `#${conv.id}` : nameOf(conv.id);
}

function nameOf(userId) {
  return app.names.get(userId) || userId;
}

function noteName(userId, name) {
  if (!userId || !name) return;
  if (app.names.get(userId) === name) return;
  app.names.set(userId, name);
  if (app.convs.has(`dm:${userId}`)) renderConvLists();
}

const rooms = () => [...app.convs.values()].filter((conv) => conv.kind === "room");

// ---------------------------------------------------------------------------------------------------
// Join view

async function loadConfig() {
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    if (!response.ok) return null;
    const config = await response.json();
    return config && typeof config === "object" ? config : null;
  } catch {
    return null;
  }
}

function setMode(mode) {
  app.mode = app.config?.local ? mode : "remote";
  const remote = app.mode === "remote";
  $("remote-fields").hidden = !remote;
  $("name-field").hidden = remote;
  $("name").required = !remote;
  $("mode-toggle").hidden = !app.config?.local;
  $("mode-toggle").textContent = remote ? "Use the local stack instead" : "Connect to a deployed API instead";
  $("join-lede").textContent = remote
    ? "Connect to your deployed chat API with its WebSocket URL and a token."
    : "Pick a name and a room. Everyone in the same room sees each other’s messages.";
  store.set(STORE.mode, app.mode);
  showJoinError("");
}

function showJoinError(text) {
  $("join-error").textContent = text;
  $("join-error").hidden = !text;
  if (text) $("join-error").scrollIntoView({ block: "nearest" });
}

async function localToken(userId, name) {
  const query = new URLSearchParams({ user: userId, name });
  let response;
  try {
    response = await fetch(`dev/token?${query}`, { cache: "no-store" });
  } catch {
    throw new Error("Can’t reach the local stack.");
  }
  if (!response.ok) throw new Error(`The local stack refused a development token (HTTP ${response.status}).`);
  const body = await response.json();
  if (!body || typeof body.token !== "string") throw new Error("The local stack sent no token.");
  return body.token;
}

async function onJoin(event) {
  event.preventDefault();
  showJoinError("");
  const roomId = $("room").value.trim();
  if (!ROOM_PATTERN.test(roomId)) {
    showJoinError(roomRule());
    $("room").focus();
    return;
  }
  let session;
  if (app.mode === "local") {
    const name = $("name").value.trim();
    if (!name) {
      showJoinError("Enter your name.");
      $("name").focus();
      return;
    }
    let anon = store.get(STORE.anon);
    if (!anon) {
      anon = `user-${Math.random().toString(36).slice(2, 8)}`;
      store.set(STORE.anon, anon);
    }
    const userId = userIdFor(name, anon);
    session = { baseUrl: app.config.wsUrl, roomId, userId, name, token: "", local: true };
    store.set(STORE.name, name);
  } else {
    const baseUrl = $("ws-url").value.trim();
    const token = $("token").value.trim().replace(/^Bearer\s+/i, "");
    if (!/^wss?:\/\/[^/]+/i.test(baseUrl)) {
      showJoinError("Enter the API’s WebSocket URL — it starts with wss://");
      $("ws-url").focus();
      return;
    }
    store.set(STORE.wsUrl, baseUrl);
    store.set(STORE.token, token);
    const verdict = diagnoseHandshake({ token, roomId });
    if (verdict?.fatal) {
      showJoinError(verdict.text);
      $(verdict.status === 400 ? "room" : "token").focus();
      return;
    }
    const claims = decodeToken(token);
    session = {
      baseUrl,
      roomId,
      userId: String(claims.sub ?? ""),
      name: String(claims.name || claims.sub || "you"),
      token,
      local: false,
      rooms: Array.isArray(claims.rooms) ? claims.rooms : null,
    };
  }
  store.set(STORE.room, roomId);
  enterChat(session);
}

// ---------------------------------------------------------------------------------------------------
// Chat view

function enterChat(session) {
  app.session = session;
  app.convs.clear();
  app.names.clear();
  app.active = null;
  app.noTyping = false;
  resetWire();
  showComposerError("");
  $("me").textContent = `${session.name} · ${session.userId}`;
  $("endpoint").textContent = session.baseUrl;
  noteName(session.userId, session.name);
  // The form's room first (it is the connection's URL room), then the rooms this browser was in before.
  const remembered = parseRooms(store.get(STORE.rooms));
  for (const roomId of [session.roomId, ...remembered.filter((id) => id !== session.roomId)]) {
    if (mayJoin(roomId)) addRoom(roomId);
  }
  activate(app.convs.get(`room:${session.roomId}`));
  $("join-view").hidden = true;
  $("chat-view").hidden = false;

  app.conn = new ChatConnection({
    local: session.local,
    transport: app.config?.tokenTransport === "subprotocol" ? "subprotocol" : TOKEN_TRANSPORT,
    target: async () => {
      if (session.local) session.token = await localToken(session.userId, session.name);
      app.connectRoom = (rooms()[0] ?? { id: session.roomId }).id;
      return { baseUrl: session.baseUrl, token: session.token, roomId: app.connectRoom };
    },
    onOpen: onOpen,
    onFrame: onFrame,
    onState: (state, info) => {
      // In-flight requests are made again (sends with the same client_msg_id) when the socket is back.
      if (state === "reconnecting" || state === "closed" || state === "idle") resetWire();
      renderState(state, info);
    },
  });
  app.conn.start();
  $("message").focus();
}

function parseRooms(text) {
  try {
    const value = JSON.parse(text || "[]");
    return Array.isArray(value) ? value.filter((id) => typeof id === "string" && ROOM_PATTERN.test(id)) : [];
  } catch {
    return [];
  }
}

function rememberRooms() {
  store.set(STORE.rooms, JSON.stringify(rooms().map((conv) => conv.id)));
}

/** Whether the token lets the user into a room, as far as the page can tell (the server decides). */
function mayJoin(roomId) {
  const granted = app.session?.rooms;
  return ROOM_PATTERN.test(roomId) && (!Array.isArray(granted) || granted.includes(roomId));
}

function leave({ error = "" } = {}) {
  app.conn?.stop();
  app.conn = null;
  clearInterval(app.countdown);
  setDrawer("");
  $("chat-view").hidden = true;
  $("join-view").hidden = false;
  document.title = "Chat";
  showJoinError(error);
  (app.mode === "remote" && error ? $("token") : $(app.mode === "local" ? "name" : "ws-url")).focus();
}

const STATE_LABEL = { connecting: "Connecting…", connected: "Connected", idle: "Left" };

function renderState(state, info) {
  const status = $("status");
  status.dataset.state = state;
  clearInterval(app.countdown);
  const detail = $("status-detail");
  const banner = $("status-banner");
  const retry = $("retry-now");
  let announce;
  if (state === "reconnecting") {
    const tick = () => {
      const seconds = Math.max(1, Math.ceil((info.until - Date.now()) / 1000));
      $("status-text").textContent = `Reconnecting in ${seconds} s`;
    };
    tick();
    app.countdown = setInterval(tick, 250);
    detail.textContent = info.reason;
    banner.hidden = false;
    retry.textContent = "Retry now";
    announce = `Disconnected. ${info.reason} Reconnecting automatically.`;
  } else if (state === "closed") {
    $("status-text").textContent = "Closed";
    detail.textContent = info.reason;
    banner.hidden = false;
    retry.textContent = info.fatal ? "Sign in again" : "Reconnect";
    retry.dataset.action = info.fatal ? "signin" : "retry";
    announce = `Closed. ${info.reason}`;
  } else {
    $("status-text").textContent = STATE_LABEL[state] ?? state;
    banner.hidden = true;
    announce = state === "connected" ? `Connected to ${app.active ? label(app.active) : "the chat"}.` : "";
  }
  if (state !== "closed") delete retry.dataset.action;
  if (announce) $("announcer").textContent = announce;
  $("chat-view").dataset.state = state;
}

// ---------------------------------------------------------------------------------------------------
// Requests: one at a time. The server handles a connection's frames concurrently and its answers (errors
// above all) name no request, so the page sends the next request only once the previous one is answered
// or has timed out: every answer then belongs to the one request in flight, and a sender's messages are
// stored in the order they were written. Typing frames get no answer: see sendTyping().
// Nothing is queued while the socket is down: on open, onOpen() asks again for everything still needed.

/** @param {{payload: () => string, matches: (frame) => boolean, onAnswer: Function, onError?: Function,
 *           onTimeout?: Function, onDrop?: Function, timeoutMs?: number, front?: boolean,
 *           again?: boolean (sent again, after a pause, when refused as rate_limited)}} req */
function request(req) {
  if (app.conn?.state !== "connected") return;
  if (req.front) app.wire.queue.unshift(req);
  else app.wire.queue.push(req);
  pump();
}

function pump() {
  const wire = app.wire;
  if (!wire.inFlight && !wire.queue.length && app.typingWanted) {
    const { conv, at } = app.typingWanted;
    app.typingWanted = null;
    if (conv === app.active && Date.now() - at < TYPING_INTERVAL_MS) sendTyping();
  }
  if (wire.inFlight || !wire.queue.length || app.conn?.state !== "connected" || Date.now() < wire.pausedUntil) return;
  const req = wire.queue.shift();
  if (!app.conn.send(req.payload())) {
    wire.queue.unshift(req);
    return;
  }
  wire.inFlight = req;
  wire.timer = setTimeout(() => {
    if (wire.inFlight !== req) return;
    wire.inFlight = null;
    req.onTimeout?.();
    pump();
  }, req.timeoutMs ?? ANSWER_TIMEOUT_MS);
}

/** Hands an answer to the request in flight if it is the one it answers. */
function answer(frame) {
  const req = app.wire.inFlight;
  if (!req || !req.matches(frame)) return false;
  settle(req);
  req.onAnswer(frame);
  pump();
  return true;
}

/** An error frame (or API Gateway's own) answers the request in flight, whatever it was. */
function refuse(error) {
  const wire = app.wire;
  const req = wire.inFlight;
  if (!req) return false;
  settle(req);
  if (error.code === "rate_limited" && req.again) {
    // The per-user limit counts every frame: after a reconnect into many rooms the joins and history pages
    // can outrun it. Such requests wait a moment and go again; nothing is lost or reported.
    wire.queue.unshift(req);
    wire.pausedUntil = Date.now() + RATE_LIMITED_PAUSE_MS;
    setTimeout(pump, RATE_LIMITED_PAUSE_MS);
    return true;
  }
  (req.onError ?? (() => {}))(error);
  pump();
  return true;
}

function settle(req) {
  clearTimeout(app.wire.timer);
  if (app.wire.inFlight === req) app.wire.inFlight = null;
}

function resetWire() {
  const wire = app.wire;
  clearTimeout(wire.timer);
  const dropped = [wire.inFlight, ...wire.queue].filter(Boolean);
  wire.inFlight = null;
  wire.queue = [];
  for (const req of dropped) req.onDrop?.();
}

// ---------------------------------------------------------------------------------------------------
// (Re)connected: join the rooms the user is in, then fetch each conversation's history (what was missed
// while away, page by page) and send what is waiting in its outbox.

function onOpen() {
  const connected = app.connectRoom;
  if (!app.convs.has(`room:${connected}`)) {
    // Left while the connection was being made: leave it on the server too.
    request({ again: true, payload: () => leaveFrame(connected), matches: (f) => f.kind === "left" && f.roomId === connected, onAnswer: () => {} });
  }
  for (const conv of app.convs.values()) {
    if (conv.kind === "room" && conv.id !== connected) {
      conv.state = "joining";
      requestJoin(conv);
    } else {
      conv.state = "joined";
      afterJoin(conv);
    }
  }
  renderConvLists();
  if (app.active) renderHeader();
}

function afterJoin(conv) {
  if (conv === app.active && conv.kind === "room") requestMembers(conv);
  if (conv.history.newestId) resumeAfter(conv, resumeCursor(conv.history.newestId));
  else loadNewest(conv);
  for (const entry of conv.outbox) if (entry.state === "queued") requestSend(entry);
}

function requestJoin(conv) {
  request({
    again: true,
    payload: () => joinFrame(conv.id),
    matches: (f) => f.kind === "joined" && f.roomId === conv.id,
    onAnswer: () => {
      if (app.convs.get(conv.key) !== conv) return;
      conv.state = "joined";
      renderConvLists();
      if (conv === app.active) renderHeader();
      afterJoin(conv);
    },
    onError: (error) => joinFailed(conv, explainJoinError(error.code, conv.id, error.message)),
    onTimeout: () => joinFailed(conv, `The server did not answer the join of “${conv.id}”. Try again.`),
  });
}

function joinFailed(conv, text) {
  if (app.convs.get(conv.key) !== conv) return;
  const unsent = conv.outbox.map((entry) => entry.text).join("\n\n");
  removeConversation(conv);
  if (unsent && !$("message").value.trim()) {
    // What was written for that room is not lost: it is back in the box.
    $("message").value = unsent;
    autoGrow();
    updateByteCount();
  }
  showRoomError(text);
  $("announcer").textContent = text;
  // On a narrow screen the room list is a drawer: open it so the reason is seen where the join was typed.
  if (getComputedStyle($("nav-toggle")).display !== "none") setDrawer("nav");
}

// ---------------------------------------------------------------------------------------------------
// Rooms and direct conversations: the lists, joining, leaving, switching.

function addRoom(roomId) {
  const conv = newConversation("room", roomId);
  conv.members.set(app.session.userId, { name: app.session.name, online: true });
  app.convs.set(conv.key, conv);
  rememberRooms();
  renderConvLists();
  return conv;
}

function joinRoom(roomId) {
  showRoomError("");
  if (!ROOM_PATTERN.test(roomId)) {
    showRoomError(roomRule());
    return false;
  }
  if (!mayJoin(roomId)) {
    showRoomError(explainJoinError("forbidden_room", roomId));
    return false;
  }
  const existing = app.convs.get(`room:${roomId}`);
  if (existing) {
    activate(existing);
    return true;
  }
  const conv = addRoom(roomId);
  activate(conv);
  requestJoin(conv); // sent at once if connected; else on (re)connect
  return true;
}

function leaveRoom(conv) {
  if (rooms().length <= 1) return; // the connection needs one room to open with
  removeConversation(conv);
  request({
    again: true,
    payload: () => leaveFrame(conv.id),
    matches: (f) => f.kind === "left" && f.roomId === conv.id,
    onAnswer: () => {},
  });
  $("announcer").textContent = `Left #${conv.id}.`;
}

function removeConversation(conv) {
  app.convs.delete(conv.key);
  if (conv.kind === "room") rememberRooms();
  if (app.active === conv) {
    app.active = null;
    activate(rooms()[0] ?? app.convs.values().next().value);
  }
  renderConvLists();
}

/** The direct conversation with a user, created (and its history asked for) the first time. */
function directWith(userId) {
  let conv = app.convs.get(`dm:${userId}`);
  if (!conv) {
    conv = newConversation("dm", userId);
    app.convs.set(conv.key, conv);
    renderConvLists();
    loadNewest(conv);
  }
  return conv;
}

function openDirect(userId) {
  if (!userId || userId === app.session.userId) return;
  activate(directWith(userId));
  $("message").focus();
}

/** Puts a conversation on screen: its messages, outbox, draft, scroll position, members and typing. */
function activate(conv) {
  if (!conv) return;
  const scroller = $("scroller");
  const previous = app.active;
  if (previous && previous !== conv) {
    previous.draft = $("message").value;
    previous.scroll = { top: scroller.scrollTop, atBottom: isAtBottom() };
    previous.list.removeAttribute("id");
    previous.outboxList.removeAttribute("id");
  }
  app.active = conv;
  conv.list.id = "messages";
  conv.outboxList.id = "outbox";
  scroller.replaceChildren(historyLoading, emptyNote, conv.list, conv.outboxList);
  historyLoading.hidden = !conv.history.loadingOlder;
  emptyNote.hidden = conv.list.childElementCount > 0 || conv.outbox.length > 0;
  emptyNote.textContent = conv.kind === "room" ? "No messages yet — say hello." : `No messages with ${nameOf(conv.id)} yet — say hello.`;
  if (previous !== conv) {
    $("message").value = conv.draft;
    autoGrow();
    updateByteCount();
    conv.unread = 0;
    conv.unseenBelow = 0;
    $("jump").hidden = true;
    if (!conv.scroll || conv.scroll.atBottom) scrollToBottom();
    else scroller.scrollTop = conv.scroll.top;
    if (conv.kind === "room" && conv.state === "joined") requestMembers(conv);
  }
  renderHeader();
  renderConvLists();
  renderMembers();
  renderTyping();
  setDrawer("");
}

function renderHeader() {
  const conv = app.active;
  $("room-hash").textContent = conv.kind === "room" ? "#" : "@";
  $("room-name").textContent = conv.kind === "room" ? conv.id : nameOf(conv.id);
  $("room-joining").hidden = !(conv.kind === "room" && conv.state === "joining");
  $("message").placeholder = conv.kind === "room" ? `Message #${conv.id}` : `Message ${nameOf(conv.id)}`;
  document.title = `${label(conv)} — Chat`;
}

function renderConvLists() {
  if (!app.session) return;
  const item = (conv) => {
    const li = el("li", "conv-item");
    li.dataset.key = conv.key;
    li.dataset[conv.kind === "room" ? "room" : "user"] = conv.id;
    li.dataset.state = conv.state;
    const open = el("button", "conv");
    open.type = "button";
    if (conv === app.active) open.setAttribute("aria-current", "page");
    const name = el("span", "conv-name", conv.kind === "room" ? conv.id : nameOf(conv.id));
    const mark = el("span", "conv-mark", conv.kind === "room" ? "#" : "@");
    mark.setAttribute("aria-hidden", "true");
    open.append(mark, name);
    if (conv.kind === "room" && conv.state === "joining") open.append(el("span", "conv-note", "joining…"));
    if (conv.unread > 0) {
      const badge = el("span", "badge", conv.unread > 99 ? "99+" : String(conv.unread));
      badge.title = `${conv.unread} unread`;
      open.append(badge);
      open.setAttribute("aria-label", `${label(conv)}, ${conv.unread} unread`);
    }
    open.addEventListener("click", () => activate(conv));
    li.append(open);
    if (conv.kind === "room" && rooms().length > 1) {
      const out = el("button", "icon conv-leave", "×");
      out.type = "button";
      out.title = `Leave #${conv.id}`;
      out.setAttribute("aria-label", `Leave #${conv.id}`);
      out.addEventListener("click", () => leaveRoom(conv));
      li.append(out);
    }
    return li;
  };
  const all = [...app.convs.values()];
  $("room-list").replaceChildren(...all.filter((conv) => conv.kind === "room").map(item));
  const dms = all.filter((conv) => conv.kind === "dm");
  $("dm-list").replaceChildren(...dms.map(item));
  $("dm-empty").hidden = dms.length > 0;
  const unread = all.reduce((sum, conv) => sum + (conv === app.active ? 0 : conv.unread), 0);
  const badge = $("nav-unread");
  badge.textContent = unread > 99 ? "99+" : String(unread);
  badge.hidden = unread === 0;
  $("nav-toggle").setAttribute("aria-label", unread ? `Rooms and direct messages, ${unread} unread` : "Rooms and direct messages");
}

function showRoomError(text) {
  $("room-error").textContent = text;
  $("room-error").hidden = !text;
}

function setDrawer(which) {
  app.drawer = which;
  $("chat-view").dataset.drawer = which;
  $("nav-toggle").setAttribute("aria-expanded", String(which === "nav"));
  $("members-toggle").setAttribute("aria-expanded", String(which === "members"));
}

// ---------------------------------------------------------------------------------------------------
// Members and presence: listMembers when a room comes on screen, then presence frames keep it current.
// People seen only through their messages are listed without a state.

function requestMembers(conv) {
  request({
    again: true,
    payload: () => listMembersFrame(conv.id),
    matches: (f) => f.kind === "members" && f.roomId === conv.id,
    onAnswer: (frame) => applyMembers(frame),
    onError: () => {}, // a server without member lists: people seen in messages are still listed
  });
}

function applyMembers(frame) {
  const conv = app.convs.get(`room:${frame.roomId}`);
  if (!conv) return;
  for (const member of conv.members.values()) member.online = member.online === null ? null : false;
  for (const { userId, name } of frame.members) {
    noteName(userId, name);
    conv.members.set(userId, { name: name || conv.members.get(userId)?.name || null, online: true });
  }
  conv.members.set(app.session.userId, { name: app.session.name, online: true });
  if (conv === app.active) renderMembers();
}

function onPresence(frame) {
  const conv = app.convs.get(`room:${frame.roomId}`);
  if (!conv || frame.userId === app.session.userId) return;
  noteName(frame.userId, frame.name);
  const member = conv.members.get(frame.userId);
  conv.members.set(frame.userId, { name: frame.name || member?.name || null, online: frame.online });
  if (!frame.online) conv.typing.delete(frame.userId);
  if (conv === app.active) {
    renderMembers();
    renderTyping();
  }
}

function onlineAnywhere(userId) {
  let known = null;
  for (const conv of rooms()) {
    const member = conv.members.get(userId);
    if (member?.online) return true;
    if (member && member.online === false) known = false;
  }
  return known;
}

function renderMembers() {
  const conv = app.active;
  if (!conv) return;
  let entries;
  if (conv.kind === "room") {
    entries = [...conv.members].map(([userId, member]) => ({ userId, name: member.name || nameOf(userId), online: member.online }));
    const online = entries.filter((entry) => entry.online).length;
    $("members-title").textContent = "Members";
    $("members-count").textContent = `#${conv.id} · ${online} online`;
    $("members-toggle-count").textContent = String(online);
  } else {
    entries = [app.session.userId, conv.id].map((userId) => ({
      userId,
      name: nameOf(userId),
      online: userId === app.session.userId ? true : onlineAnywhere(userId),
    }));
    $("members-title").textContent = "Direct conversation";
    $("members-count").textContent = "";
    $("members-toggle-count").textContent = "2";
  }
  const rank = (entry) => (entry.userId === app.session.userId ? 0 : entry.online ? 1 : entry.online === false ? 3 : 2);
  entries.sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name));
  $("members").replaceChildren(
    ...entries.map((entry) => {
      const me = entry.userId === app.session.userId;
      const li = el("li", me ? "person me" : "person");
      li.dataset.userId = entry.userId;
      li.dataset.online = entry.online === null ? "unknown" : String(entry.online);
      const avatar = el("span", "avatar", initial(entry.name));
      avatar.setAttribute("aria-hidden", "true");
      const state = el("span", "presence", entry.online ? "online" : entry.online === false ? "offline" : "");
      const name = el("span", "person-name", entry.name);
      if (entry.name !== entry.userId) name.title = entry.userId;
      li.append(avatar, name);
      if (me) li.append(el("span", "you-badge", "you"));
      li.append(state);
      if (!me && !(conv.kind === "dm" && conv.id === entry.userId)) {
        const write = el("button", "small ghost dm-open", "Message");
        write.type = "button";
        write.setAttribute("aria-label", `Message ${entry.name} directly`);
        write.addEventListener("click", () => openDirect(entry.userId));
        li.append(write);
      }
      return li;
    }),
  );
}

// ---------------------------------------------------------------------------------------------------
// Typing: sent at most once per 2 s while the user types in a room; shown for others for about 3 s.

function onTyping(frame) {
  const conv = app.convs.get(`room:${frame.roomId}`);
  if (!conv || frame.userId === app.session.userId) return;
  noteName(frame.userId, frame.name);
  conv.typing.set(frame.userId, Date.now() + TYPING_SHOWN_MS);
  if (conv === app.active) renderTyping();
}

function renderTyping() {
  const conv = app.active;
  const now = Date.now();
  const names = [];
  if (conv) {
    for (const [userId, until] of conv.typing) {
      if (until <= now) conv.typing.delete(userId);
      else names.push(nameOf(userId));
    }
  }
  let text = "";
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = "Several people are typing…";
  const node = $("typing");
  if (node.textContent !== text) node.textContent = text;
}

/** Typing gets no answer, but an error (a server without typing, the rate limit) names no request either:
 *  so a typing frame goes out only when nothing else is waiting, and holds the line for a moment in which
 *  any error is its own. Best effort: skipped while other requests are under way. */
function sendTyping() {
  const conv = app.active;
  if (app.noTyping || !conv || conv.kind !== "room" || conv.state !== "joined" || !$("message").value.trim()) return;
  const now = Date.now();
  if (now - conv.typingSentAt < TYPING_INTERVAL_MS) return;
  if (app.wire.inFlight || app.wire.queue.length) {
    app.typingWanted = { conv, at: now }; // sent by pump() once the line is free, if still fresh
    return;
  }
  app.typingWanted = null;
  conv.typingSentAt = now;
  request({
    payload: () => typingFrame(conv.id),
    matches: () => false,
    onAnswer: () => {},
    onError: (error) => {
      if (error.code === "unknown_action" || (error.code === "gateway" && error.message === "Forbidden")) app.noTyping = true;
    },
    timeoutMs: TYPING_ERROR_WINDOW_MS,
  });
}

// ---------------------------------------------------------------------------------------------------
// Incoming frames

function onFrame(data) {
  const frame = parseFrame(data);
  switch (frame.kind) {
    case "message": {
      const conv = conversationOf(frame);
      if (!conv) return;
      conv.typing.delete(frame.userId);
      if (conv === app.active) renderTyping();
      showMessage(conv, frame, { live: true, unread: true });
      return;
    }
    case "ack":
      if (!answer(frame)) onAck(frame);
      return;
    case "history":
    case "joined":
    case "left":
      answer(frame);
      return;
    case "members":
      if (!answer(frame)) applyMembers(frame);
      return;
    case "presence":
      onPresence(frame);
      return;
    case "typing":
      onTyping(frame);
      return;
    case "error":
      if (!refuse(frame)) showComposerError(explainError(frame.code, frame.message, { maxBytes: maxBytes() }), frame.code);
      return;
    case "gateway":
      // "Internal server error": the function failed, perhaps after storing the message: retry, same id.
      if (!refuse({ code: "gateway", message: frame.message })) showComposerError(explainGatewayFrame(frame.message), "gateway");
      return;
    default:
  }
}

/** The conversation a live message belongs to: its room (if the user is in it) or the direct one. */
function conversationOf(frame) {
  if (!frame.direct) return app.convs.get(`room:${frame.roomId}`) ?? null;
  const me = app.session.userId;
  const other = frame.userId === me ? frame.toUserId : frame.userId;
  if (!other || other === me) return null;
  noteName(frame.userId, frame.name);
  return directWith(other);
}

/** Shows a message once (by message_id), in message_id order wherever it arrives from. `unread`: count it
 *  as unread when it is someone else's and its conversation is not on screen. */
function showMessage(conv, frame, { live = false, unread = false } = {}) {
  if (!frame.id || conv.seen.has(frame.id)) {
    if (frame.id) settleOutbox(conv, frame.clientMsgId, frame.id);
    return false;
  }
  conv.seen.add(frame.id);
  const own = frame.userId === app.session.userId;
  const history = conv.history;
  if (!history.newestId || frame.id > history.newestId) history.newestId = frame.id;
  if (!history.oldestId || frame.id < history.oldestId) history.oldestId = frame.id;
  if (own) settleOutbox(conv, frame.clientMsgId, frame.id);
  noteName(frame.userId, frame.name);
  if (conv.kind === "room" && !conv.members.has(frame.userId)) {
    conv.members.set(frame.userId, { name: frame.name, online: null });
    if (conv === app.active) renderMembers();
  }
  renderMessage(conv, frame, own, { live });
  if (unread && !own && conv !== app.active) {
    conv.unread += 1;
    renderConvLists();
  }
  return true;
}

function initial(name) {
  const first = [...String(name).trim()][0] || "?";
  return first.toUpperCase();
}

function colorIndex(userId) {
  let hash = 0;
  for (const ch of userId) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % 8;
}

function isAtBottom() {
  const scroller = $("scroller");
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
}

function renderMessage(conv, frame, own, { live = false } = {}) {
  const onScreen = conv === app.active;
  const atBottom = onScreen && isAtBottom();
  const when = frame.timestamp ? new Date(frame.timestamp) : new Date();
  const time = Number.isNaN(when.getTime()) ? new Date() : when;
  const name = frame.name || nameOf(frame.userId);

  const list = conv.list;
  const next = [...list.children].find((node) => node.dataset.messageId > frame.id) ?? null;
  const previous = next ? next.previousElementSibling : list.lastElementChild;
  const grouped = groupedWith(previous, frame.userId, time);

  const item = el("li", `msg${own ? " own" : ""}${grouped ? " grouped" : ""}`);
  item.dataset.userId = frame.userId;
  item.dataset.messageId = frame.id;
  item.dataset.time = String(time.getTime());
  item.dataset.color = String(colorIndex(frame.userId));

  const avatar = el("span", "avatar", initial(name));
  avatar.setAttribute("aria-hidden", "true");
  const meta = el("div", "meta");
  const author = el("span", "author", name);
  if (name !== frame.userId) author.title = frame.userId;
  meta.append(author);
  if (own) meta.append(el("span", "you-badge", "you"));
  const stamp = el("time", "time", timeFormat.format(time));
  stamp.dateTime = time.toISOString();
  stamp.title = fullTimeFormat.format(time);
  meta.append(stamp);
  if (own) {
    const delivery = el("span", "delivery", "✓ sent");
    delivery.title = conv.kind === "room"
      ? "Stored on the server: everyone in the room gets it, now or when they are back"
      : "Stored on the server: they get it now or when they are back";
    meta.append(delivery);
  }
  const body = el("div", "body");
  body.append(meta, el("div", "text", frame.text));
  item.append(avatar, body);

  list.insertBefore(item, next);
  if (next) next.classList.toggle("grouped", groupedWith(item, next.dataset.userId, new Date(Number(next.dataset.time))));
  const appended = next === null;
  if (appended) {
    while (list.childElementCount > MAX_RENDERED) {
      list.firstElementChild.remove();
      conv.history.olderExist = true;
      conv.history.oldestId = list.firstElementChild?.dataset.messageId ?? null;
    }
  }
  if (!onScreen) return;
  emptyNote.hidden = true;
  if (!appended || !live) return;
  if (atBottom || own) {
    scrollToBottom();
  } else {
    noteUnseenBelow(1);
  }
}

function noteUnseenBelow(count) {
  const conv = app.active;
  conv.unseenBelow += count;
  $("jump").textContent = `${conv.unseenBelow} new message${conv.unseenBelow === 1 ? "" : "s"} ↓`;
  $("jump").hidden = false;
}

function groupedWith(previous, userId, time) {
  if (!previous || previous.dataset.userId !== userId) return false;
  const before = Number(previous.dataset.time);
  return time - before < GROUP_WITHIN_MS && time >= before;
}

function scrollToBottom() {
  const scroller = $("scroller");
  scroller.scrollTop = scroller.scrollHeight;
  if (app.active) app.active.unseenBelow = 0;
  $("jump").hidden = true;
}

// ---------------------------------------------------------------------------------------------------
// History, per conversation: the newest page when it is first opened, older pages when scrolled to the
// top, and after every reconnect everything after the last message seen, page by page until the server
// says there is no more.

const historyTarget = (conv) => (conv.kind === "room" ? conv.id : { withUserId: conv.id });

function requestHistory(conv, fields, onPage, { onDrop } = {}) {
  const req = {
    again: true,
    payload: () => historyFrame(historyTarget(conv), fields),
    matches: (f) => f.kind === "history",
    onAnswer: (page) => {
      if (app.convs.get(conv.key) === conv) onPage(page);
    },
    onError: () => onDrop?.(), // would fail again the same way
    onTimeout: () => request({ ...req, front: true }),
    onDrop, // the socket dropped: onOpen asks again
    timeoutMs: HISTORY_TIMEOUT_MS,
  };
  request(req);
}

function loadNewest(conv) {
  requestHistory(conv, { limit: PAGE_SIZE }, (page) => {
    const first = !conv.history.loaded;
    for (const message of page.messages) showMessage(conv, message, { unread: !first });
    conv.history.loaded = true;
    if (first) conv.history.olderExist = page.hasMore;
    if (conv === app.active) scrollToBottom();
  });
}

function resumeAfter(conv, cursor) {
  requestHistory(conv, { after: cursor, limit: 100 }, (page) => {
    const atBottom = conv === app.active && isAtBottom();
    let shown = 0;
    for (const message of page.messages) if (showMessage(conv, message, { unread: true })) shown += 1;
    if (atBottom) scrollToBottom();
    else if (shown && conv === app.active) noteUnseenBelow(shown);
    if (page.hasMore && page.messages.length) resumeAfter(conv, page.messages[page.messages.length - 1].id);
  });
}

function loadOlder(conv) {
  const history = conv.history;
  if (!history.olderExist || history.loadingOlder || !history.oldestId) return;
  history.loadingOlder = true;
  historyLoading.hidden = false;
  const done = () => {
    history.loadingOlder = false;
    if (conv === app.active) historyLoading.hidden = true;
  };
  requestHistory(
    conv,
    { before: history.oldestId, limit: PAGE_SIZE },
    (page) => {
      const scroller = $("scroller");
      // Keep what the reader is looking at in place while older messages are added above it.
      const fromBottom = scroller.scrollHeight - scroller.scrollTop;
      for (const message of page.messages) showMessage(conv, message);
      if (conv === app.active) scroller.scrollTop = scroller.scrollHeight - fromBottom;
      history.olderExist = page.hasMore;
      done();
    },
    { onDrop: done },
  );
}

// ---------------------------------------------------------------------------------------------------
// Composer and outbox: nothing typed is silently lost. A message is shown as "waiting" while offline and
// sent on reconnect; one whose send failed can be retried (same client_msg_id), edited or discarded.
// Each conversation's messages go out one at a time, in the order they were written (see request()).

const OUTBOX_LABEL = {
  queued: "Waiting for the connection — sends when it is back",
  sending: "Sending…",
  sent: "Sent",
  failed: "Not sent",
};

function submitMessage() {
  const box = $("message");
  const text = box.value;
  const conv = app.active;
  if (!text.trim()) {
    showComposerError("That message is empty — type something first.", "empty");
    return;
  }
  if (app.conn?.state === "closed") {
    // Nothing will reconnect on its own: keep the text in the box rather than queue it out of sight.
    showComposerError("Not connected — your message is still in the box. Use the button above to reconnect.", "closed");
    return;
  }
  showComposerError("");
  const entry = { text, clientMsgId: newClientMsgId(), state: "queued", node: null, sentAt: 0, conv };
  conv.outbox.push(entry);
  box.value = "";
  conv.draft = "";
  autoGrow();
  updateByteCount();
  renderOutboxEntry(entry);
  emptyNote.hidden = true;
  if (conv.state === "joined") requestSend(entry);
  scrollToBottom();
}

/** Sends (or sends again) an entry with its own client_msg_id: the server stores it at most once. */
function requestSend(entry) {
  const conv = entry.conv;
  // Connected, it is on its way (perhaps behind other requests); else it waits for the connection.
  entry.state = app.conn?.state === "connected" ? "sending" : "queued";
  renderOutboxEntry(entry);
  request({
    payload: () => {
      entry.state = "sending";
      entry.sentAt = Date.now();
      renderOutboxEntry(entry);
      return conv.kind === "room"
        ? sendMessageFrame(conv.id, entry.text, entry.clientMsgId)
        : sendDirectFrame(conv.id, entry.text, entry.clientMsgId);
    },
    matches: (f) => f.kind === "ack" && f.clientMsgId === entry.clientMsgId,
    onAnswer: (ack) => onAck(ack),
    onError: (error) => failSend(entry, error),
    onTimeout: () => {
      if (entry.state !== "sending") return;
      entry.state = "failed";
      renderOutboxEntry(entry);
    },
    onDrop: () => {
      if (entry.state !== "sending" && entry.state !== "queued") return;
      entry.state = "queued";
      renderOutboxEntry(entry);
    },
    timeoutMs: ACK_TIMEOUT_MS,
  });
}

function findEntry(predicate) {
  for (const conv of app.convs.values()) {
    const entry = conv.outbox.find(predicate);
    if (entry) return entry;
  }
  return null;
}

function onAck(ack) {
  const entry = findEntry((candidate) => candidate.clientMsgId === ack.clientMsgId);
  if (!entry) return;
  if (entry.conv.seen.has(ack.id)) {
    removeOutbox(entry); // its broadcast is already on the page
    return;
  }
  if (entry.conv.kind === "dm") {
    // A direct message comes back to the sender's other connections, not to this one: the ack is its echo.
    const ms = ulidTime(ack.id);
    const timestamp = new Date(ms ?? Date.now()).toISOString();
    showMessage(entry.conv, { kind: "message", direct: true, id: ack.id, userId: app.session.userId, toUserId: entry.conv.id, name: app.session.name, text: entry.text, timestamp, clientMsgId: entry.clientMsgId });
    return;
  }
  entry.state = "sent";
  entry.messageId = ack.id;
  renderOutboxEntry(entry);
}

/** The stored message is on the page: its pending bubble goes. */
function settleOutbox(conv, clientMsgId, messageId) {
  const entry = conv.outbox.find(
    (candidate) => (clientMsgId && candidate.clientMsgId === clientMsgId) || candidate.messageId === messageId,
  );
  if (entry) removeOutbox(entry);
}

/** The server refused a send (or API Gateway answered for a failed function). */
function failSend(entry, error) {
  const notStored = NOT_STORED_CODES.has(error.code);
  const box = $("message");
  const onScreen = entry.conv === app.active;
  if (notStored && onScreen && !box.value.trim()) {
    // Refused and not stored: put it back where the user can fix it (e.g. shorten an over-long message).
    removeOutbox(entry);
    box.value = entry.text;
    autoGrow();
    updateByteCount();
  } else {
    entry.state = "failed";
    if (notStored) entry.clientMsgId = newClientMsgId(); // it was not stored: an edit is a new message
    renderOutboxEntry(entry);
  }
  if (!onScreen) return;
  const text = error.code === "gateway"
    ? explainGatewayFrame(error.message)
    : explainError(error.code, error.message, { maxBytes: maxBytes(), bytes: utf8Bytes(entry.text), direct: entry.conv.kind === "dm" });
  showComposerError(text, error.code);
}

function removeOutbox(entry) {
  const conv = entry.conv;
  conv.outbox = conv.outbox.filter((candidate) => candidate !== entry);
  entry.node?.remove();
}

function renderOutboxEntry(entry) {
  if (!entry.node) {
    entry.node = el("li", "msg own pending");
    entry.conv.outboxList.append(entry.node);
  }
  const body = el("div", "body");
  const meta = el("div", "meta");
  meta.append(el("span", "pending-label", OUTBOX_LABEL[entry.state]));
  body.append(meta, el("div", "text", entry.text));
  if (entry.state === "failed") {
    const actions = el("div", "pending-actions");
    const again = el("button", "small retry", "Retry");
    again.type = "button";
    again.title = "Sends it again; the server never stores one message twice";
    again.addEventListener("click", () => {
      showComposerError("");
      if (entry.conv.state === "joined") requestSend(entry);
      else {
        entry.state = "queued";
        renderOutboxEntry(entry);
      }
    });
    const edit = el("button", "small ghost", "Edit");
    edit.type = "button";
    edit.addEventListener("click", () => {
      removeOutbox(entry);
      $("message").value = entry.text;
      autoGrow();
      updateByteCount();
      $("message").focus();
    });
    const discard = el("button", "small ghost", "Discard");
    discard.type = "button";
    discard.addEventListener("click", () => removeOutbox(entry));
    actions.append(again, edit, discard);
    body.append(actions);
  }
  entry.node.dataset.state = entry.state;
  entry.node.dataset.clientMsgId = entry.clientMsgId;
  entry.node.replaceChildren(body);
}

function showComposerError(text, code = "") {
  $("composer-error-text").textContent = text;
  $("composer-error").hidden = !text;
  $("composer-error").dataset.code = code;
}

function autoGrow() {
  const box = $("message");
  box.style.height = "auto";
  box.style.height = `${Math.min(box.scrollHeight + 2, 200)}px`;
}

function updateByteCount() {
  const bytes = utf8Bytes($("message").value);
  const limit = maxBytes();
  const counter = $("byte-count");
  if (bytes < limit * 0.75) {
    counter.textContent = "";
    counter.classList.remove("over");
    return;
  }
  counter.textContent = `${numberFormat.format(bytes)} / ${numberFormat.format(limit)} bytes${bytes > limit ? " — too long" : ""}`;
  counter.classList.toggle("over", bytes > limit);
}

// ---------------------------------------------------------------------------------------------------
// Wiring

const historyLoading = $("history-loading");
const emptyNote = $("empty");

async function main() {
  app.config = await loadConfig();
  $("name").value = store.get(STORE.name);
  $("room").value = store.get(STORE.room) || "general";
  $("ws-url").value = store.get(STORE.wsUrl);
  $("token").value = store.get(STORE.token);
  setMode(store.get(STORE.mode) === "remote" || !app.config?.local ? "remote" : "local");

  $("join-form").addEventListener("submit", onJoin);
  $("mode-toggle").addEventListener("click", () => setMode(app.mode === "local" ? "remote" : "local"));
  $("leave").addEventListener("click", () => {
    store.set(STORE.rooms, "[]"); // signing out forgets the rooms; a reload or an expired token does not
    leave();
  });
  $("retry-now").addEventListener("click", () => {
    if ($("retry-now").dataset.action === "signin") {
      leave({ error: $("status-detail").textContent });
    } else if (app.conn?.state === "closed") {
      app.conn.attempt = 0;
      app.conn.start();
    } else {
      app.conn?.retryNow();
    }
  });
  $("join-room-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const box = $("new-room");
    if (joinRoom(box.value.trim())) {
      box.value = "";
      $("message").focus();
    } else {
      box.focus();
    }
  });
  $("nav-toggle").addEventListener("click", () => setDrawer(app.drawer === "nav" ? "" : "nav"));
  $("members-toggle").addEventListener("click", () => setDrawer(app.drawer === "members" ? "" : "members"));
  $("drawer-backdrop").addEventListener("click", () => setDrawer(""));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && app.drawer) setDrawer("");
  });
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    submitMessage();
  });
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !event.altKey && !event.ctrlKey && !event.metaKey) {
      event.preventDefault();
      submitMessage();
    } else if (event.key === "Escape") {
      showComposerError("");
    }
  });
  $("message").addEventListener("input", () => {
    autoGrow();
    updateByteCount();
    sendTyping();
  });
  $("composer-error-close").addEventListener("click", () => {
    showComposerError("");
    $("message").focus();
  });
  $("scroller").addEventListener("scroll", () => {
    if (!app.active) return;
    if (isAtBottom()) {
      app.active.unseenBelow = 0;
      $("jump").hidden = true;
    }
    if ($("scroller").scrollTop < 40) loadOlder(app.active);
  });
  setInterval(renderTyping, 500);
  $("jump").addEventListener("click", () => {
    scrollToBottom();
    $("message").focus();
  });
  window.addEventListener("online", () => app.conn?.retryNow());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") app.conn?.retryNow();
  });
  const first = ["ws-url", "token", "name", "room"].map($).find((field) => !field.closest("[hidden]") && !field.value.trim());
  (first ?? $("join-button")).focus();
  document.body.dataset.ready = "true";
}

main();
