// The browser chat client. No build step, no dependencies: an ES module the local stack serves as is.
// Protocol details (URLs, frames, error wording, backoff) live in protocol.js; this file is the I/O and UI.
// All user data reaches the page through textContent, never as HTML.

import {
  DEFAULT_MAX_MESSAGE_BYTES,
  ROOM_PATTERN,
  SUBPROTOCOL,
  backoffDelay,
  connectRequest,
  decodeToken,
  diagnoseHandshake,
  explainClose,
  explainError,
  explainGatewayFrame,
  historyFrame,
  newClientMsgId,
  NOT_STORED_CODES,
  parseFrame,
  resumeCursor,
  roomRule,
  sendMessageFrame,
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
const MAX_RENDERED = 5000; // oldest messages are dropped from the page beyond this (paging back brings them again)
const PAGE_SIZE = 50; // messages per history page
const ACK_TIMEOUT_MS = 10000; // a send not acknowledged within this is shown as failed, with a retry
const HISTORY_TIMEOUT_MS = 15000; // a history page not answered within this is asked for again
const STORE = { mode: "chat.mode", name: "chat.name", room: "chat.room", wsUrl: "chat.wsUrl", token: "chat.token", anon: "chat.anonId" };

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
// Connection: one room, reconnecting with backoff until stopped.

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
  session: null, // {baseUrl, roomId, userId, name, token, local}
  conn: null,
  seen: new Set(), // message_ids already shown (frames may arrive twice: live, re-broadcast, history)
  people: new Map(), // user_id -> display name, from messages seen
  outbox: [], // {text, clientMsgId, state: "queued"|"sending"|"sent"|"failed", node, sentAt}
  history: null, // see resetHistory()
  lastRendered: null, // {userId, time} of the last message, for grouping
  unseenBelow: 0,
  countdown: null,
};

function maxBytes() {
  const value = Number(app.config?.maxMessageBytes);
  return Number.isInteger(value) && value > 0 ? value : DEFAULT_MAX_MESSAGE_BYTES;
}

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
    session = { baseUrl, roomId, userId: String(claims.sub ?? ""), name: String(claims.name || claims.sub || "you"), token, local: false };
  }
  store.set(STORE.room, roomId);
  enterChat(session);
}

// ---------------------------------------------------------------------------------------------------
// Chat view

function enterChat(session) {
  app.session = session;
  app.seen.clear();
  app.people.clear();
  app.outbox = [];
  resetHistory();
  app.lastRendered = null;
  app.unseenBelow = 0;
  $("messages").replaceChildren();
  $("outbox").replaceChildren();
  $("empty").hidden = false;
  $("jump").hidden = true;
  showComposerError("");
  $("room-name").textContent = session.roomId;
  $("messages").setAttribute("aria-label", `Messages in ${session.roomId}`);
  $("message").placeholder = `Message #${session.roomId}`;
  $("me").textContent = `${session.name} · ${session.userId}`;
  $("endpoint").textContent = session.baseUrl;
  document.title = `#${session.roomId} — Chat`;
  notePerson(session.userId, session.name);
  $("join-view").hidden = true;
  $("chat-view").hidden = false;

  app.conn = new ChatConnection({
    local: session.local,
    transport: app.config?.tokenTransport === "subprotocol" ? "subprotocol" : TOKEN_TRANSPORT,
    target: async () => {
      if (session.local) session.token = await localToken(session.userId, session.name);
      return { baseUrl: session.baseUrl, token: session.token, roomId: session.roomId };
    },
    onOpen: onOpen,
    onFrame: onFrame,
    onState: (state, info) => {
      // In-flight messages are sent again (same client_msg_id) when the socket is back.
      if (state === "reconnecting" || state === "closed") requeueSending();
      renderState(state, info);
    },
  });
  app.conn.start();
  $("message").focus();
}

function leave({ error = "" } = {}) {
  app.conn?.stop();
  app.conn = null;
  clearInterval(app.countdown);
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
    announce = state === "connected" ? `Connected to ${app.session?.roomId}.` : "";
  }
  if (state !== "closed") delete retry.dataset.action;
  if (announce) $("announcer").textContent = announce;
  $("chat-view").dataset.state = state;
}

function onFrame(data) {
  const frame = parseFrame(data);
  if (frame.kind === "message") {
    if (frame.roomId && frame.roomId !== app.session.roomId) return;
    showMessage(frame, { live: true });
  } else if (frame.kind === "ack") {
    onAck(frame);
  } else if (frame.kind === "history") {
    onHistory(frame);
  } else if (frame.kind === "error") {
    const failed = failOldestSending(NOT_STORED_CODES.has(frame.code));
    showComposerError(explainError(frame.code, frame.message, { maxBytes: maxBytes(), bytes: failed ? utf8Bytes(failed.text) : 0 }), frame.code);
  } else if (frame.kind === "gateway") {
    // "Internal server error": the function failed, perhaps after storing the message: retry, same id.
    failOldestSending(false);
    showComposerError(explainGatewayFrame(frame.message), "gateway");
  }
}

/** Shows a message once (by message_id), in message_id order wherever it arrives from. */
function showMessage(frame, { live = false } = {}) {
  if (!frame.id || app.seen.has(frame.id)) {
    if (frame.id) settleOutbox(frame.clientMsgId, frame.id);
    return false;
  }
  app.seen.add(frame.id);
  const own = frame.userId === app.session.userId;
  const history = app.history;
  if (!history.newestId || frame.id > history.newestId) history.newestId = frame.id;
  if (!history.oldestId || frame.id < history.oldestId) history.oldestId = frame.id;
  if (own) settleOutbox(frame.clientMsgId, frame.id);
  renderMessage(frame, own, { live });
  return true;
}

function notePerson(userId, name) {
  if (!userId) return;
  const had = app.people.get(userId);
  app.people.set(userId, name || had || userId);
  if (had === app.people.get(userId)) return;
  const list = $("people");
  list.replaceChildren(
    ...[...app.people].map(([id, label]) => {
      const item = el("li", id === app.session.userId ? "person me" : "person");
      item.append(el("span", "avatar", initial(label)), el("span", "person-name", label));
      if (id === app.session.userId) item.append(el("span", "you-badge", "you"));
      return item;
    }),
  );
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

function renderMessage(frame, own, { live = false } = {}) {
  const scroller = $("scroller");
  const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  const when = frame.timestamp ? new Date(frame.timestamp) : new Date();
  const time = Number.isNaN(when.getTime()) ? new Date() : when;
  const name = frame.name || app.people.get(frame.userId) || frame.userId;
  notePerson(frame.userId, frame.name);

  const list = $("messages");
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
    delivery.title = "Stored on the server: everyone in the room gets it, now or when they are back";
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
      app.history.olderExist = true;
      app.history.oldestId = list.firstElementChild?.dataset.messageId ?? null;
    }
  }
  $("empty").hidden = true;
  if (!appended || !live) return;
  if (atBottom || own) {
    scrollToBottom();
  } else {
    app.unseenBelow += 1;
    $("jump").textContent = `${app.unseenBelow} new message${app.unseenBelow === 1 ? "" : "s"} ↓`;
    $("jump").hidden = false;
  }
}

function groupedWith(previous, userId, time) {
  if (!previous || previous.dataset.userId !== userId) return false;
  const before = Number(previous.dataset.time);
  return time - before < GROUP_WITHIN_MS && time >= before;
}

function scrollToBottom() {
  const scroller = $("scroller");
  scroller.scrollTop = scroller.scrollHeight;
  app.unseenBelow = 0;
  $("jump").hidden = true;
}

// ---------------------------------------------------------------------------------------------------
// History: the newest page on join, older pages when scrolled to the top, and after every reconnect
// everything after the last message seen, page by page until the server says there is no more. One
// request at a time, so each answer belongs to the request before it.

function resetHistory() {
  clearTimeout(app.history?.timer);
  app.history = { newestId: null, oldestId: null, olderExist: false, loadingOlder: false, queue: [], inFlight: null, timer: null };
}

function onOpen() {
  const history = app.history;
  clearTimeout(history.timer);
  history.inFlight = null;
  history.queue = [];
  history.loadingOlder = false;
  if (history.newestId) {
    resumeAfter(resumeCursor(history.newestId));
  } else {
    requestHistory({ limit: PAGE_SIZE }, (page) => {
      for (const message of page.messages) showMessage(message);
      app.history.olderExist = page.hasMore;
      scrollToBottom();
    });
  }
  flushOutbox();
}

function resumeAfter(cursor) {
  requestHistory({ after: cursor, limit: 100 }, (page) => {
    const scroller = $("scroller");
    const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
    let shown = 0;
    for (const message of page.messages) if (showMessage(message)) shown += 1;
    if (atBottom) scrollToBottom();
    else if (shown) {
      app.unseenBelow += shown;
      $("jump").textContent = `${app.unseenBelow} new message${app.unseenBelow === 1 ? "" : "s"} ↓`;
      $("jump").hidden = false;
    }
    if (page.hasMore && page.messages.length) resumeAfter(page.messages[page.messages.length - 1].id);
  });
}

function loadOlder() {
  const history = app.history;
  if (!history.olderExist || history.loadingOlder || !history.oldestId) return;
  history.loadingOlder = true;
  $("history-loading").hidden = false;
  requestHistory({ before: history.oldestId, limit: PAGE_SIZE }, (page) => {
    const scroller = $("scroller");
    // Keep what the reader is looking at in place while older messages are added above it.
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    for (const message of page.messages) showMessage(message);
    scroller.scrollTop = scroller.scrollHeight - fromBottom;
    app.history.olderExist = page.hasMore;
    app.history.loadingOlder = false;
    $("history-loading").hidden = true;
  });
}

function requestHistory(fields, onPage) {
  app.history.queue.push({ fields, onPage });
  pumpHistory();
}

function pumpHistory() {
  const history = app.history;
  if (history.inFlight || !history.queue.length) return;
  const next = history.queue[0];
  if (!app.conn?.send(historyFrame(app.session.roomId, next.fields))) return; // sent again on reconnect
  history.queue.shift();
  history.inFlight = next;
  history.timer = setTimeout(() => {
    if (app.history !== history || history.inFlight !== next) return;
    history.inFlight = null;
    history.queue.unshift(next);
    history.loadingOlder = false;
    pumpHistory();
  }, HISTORY_TIMEOUT_MS);
}

function onHistory(page) {
  const history = app.history;
  const request = history.inFlight;
  if (!request || (page.roomId && page.roomId !== app.session.roomId)) return;
  clearTimeout(history.timer);
  history.inFlight = null;
  request.onPage(page);
  pumpHistory();
}

// ---------------------------------------------------------------------------------------------------
// Composer and outbox: nothing typed is silently lost. A message is shown as "waiting" while offline and
// sent on reconnect; one sent but never confirmed (the connection dropped) can be sent again or discarded.

const OUTBOX_LABEL = {
  queued: "Waiting for the connection — sends when it is back",
  sending: "Sending…",
  sent: "Sent",
  failed: "Not sent",
};

function submitMessage() {
  const box = $("message");
  const text = box.value;
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
  const entry = { text, clientMsgId: newClientMsgId(), state: "queued", node: null, sentAt: 0 };
  app.outbox.push(entry);
  box.value = "";
  autoGrow();
  updateByteCount();
  transmit(entry);
  renderOutboxEntry(entry);
  scrollToBottom();
}

/** Sends (or sends again) an entry with its own client_msg_id: the server stores it at most once. */
function transmit(entry) {
  if (app.conn?.send(sendMessageFrame(app.session.roomId, entry.text, entry.clientMsgId))) {
    entry.state = "sending";
    entry.sentAt = Date.now();
  } else {
    entry.state = "queued";
  }
}

function flushOutbox() {
  for (const entry of app.outbox) {
    if (entry.state !== "queued") continue;
    transmit(entry);
    if (entry.state !== "sending") break;
    renderOutboxEntry(entry);
  }
}

function onAck(ack) {
  const entry = app.outbox.find((candidate) => candidate.clientMsgId === ack.clientMsgId);
  if (!entry) return;
  if (app.seen.has(ack.id)) {
    removeOutbox(entry); // its broadcast is already on the page
    return;
  }
  entry.state = "sent";
  entry.messageId = ack.id;
  renderOutboxEntry(entry);
}

/** The stored message is on the page: its pending bubble goes. */
function settleOutbox(clientMsgId, messageId) {
  const entry = app.outbox.find(
    (candidate) => (clientMsgId && candidate.clientMsgId === clientMsgId) || candidate.messageId === messageId,
  );
  if (entry) removeOutbox(entry);
}

/** An error frame answers the oldest message still waiting for its answer. */
function failOldestSending(notStored) {
  const entry = app.outbox.find((candidate) => candidate.state === "sending");
  if (!entry) return null;
  const box = $("message");
  if (notStored && !box.value.trim()) {
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
  return entry;
}

function expireUnacknowledged() {
  for (const entry of app.outbox) {
    if (entry.state === "sending" && Date.now() - entry.sentAt > ACK_TIMEOUT_MS) {
      entry.state = "failed";
      renderOutboxEntry(entry);
    }
  }
}

function removeOutbox(entry) {
  app.outbox = app.outbox.filter((candidate) => candidate !== entry);
  entry.node?.remove();
}

function renderOutboxEntry(entry) {
  if (!entry.node) {
    entry.node = el("li", "msg own pending");
    $("outbox").append(entry.node);
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
      transmit(entry);
      renderOutboxEntry(entry);
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

function requeueSending() {
  for (const entry of app.outbox) {
    if (entry.state === "sending") {
      entry.state = "queued";
      renderOutboxEntry(entry);
    }
  }
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

async function main() {
  app.config = await loadConfig();
  $("name").value = store.get(STORE.name);
  $("room").value = store.get(STORE.room) || "general";
  $("ws-url").value = store.get(STORE.wsUrl);
  $("token").value = store.get(STORE.token);
  setMode(store.get(STORE.mode) === "remote" || !app.config?.local ? "remote" : "local");

  $("join-form").addEventListener("submit", onJoin);
  $("mode-toggle").addEventListener("click", () => setMode(app.mode === "local" ? "remote" : "local"));
  $("leave").addEventListener("click", () => leave());
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
  });
  $("composer-error-close").addEventListener("click", () => {
    showComposerError("");
    $("message").focus();
  });
  $("scroller").addEventListener("scroll", () => {
    const scroller = $("scroller");
    if (scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80) {
      app.unseenBelow = 0;
      $("jump").hidden = true;
    }
    if (scroller.scrollTop < 40 && app.session) loadOlder();
  });
  setInterval(expireUnacknowledged, 1000);
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
