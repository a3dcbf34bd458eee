// The chat protocol as the browser sees it (docs/protocol.md, docs/history.md), with no DOM and no I/O:
// URLs, frames (rooms, presence, typing, direct messages), message ids, error wording, token claims and
// the reconnect schedule. app.js does the I/O.

export const ROOM_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;
export const DEFAULT_MAX_MESSAGE_BYTES = 4096;
export const SUBPROTOCOL = "chat.v1";

const numberFormat = new Intl.NumberFormat("en-US");

/** UTF-8 length of a string, as the server counts it. */
export function utf8Bytes(text) {
  return new TextEncoder().encode(text).length;
}

/** The connect URL and subprotocols for `new WebSocket(url, protocols)`.
 *  transport "query": ?token=JWT&room_id=ROOM (the seed article's form, the default);
 *  transport "subprotocol": the token travels as Sec-WebSocket-Protocol "bearer.<JWT>" beside "chat.v1". */
export function connectRequest(baseUrl, { token, roomId, transport = "query" }) {
  const url = new URL(baseUrl);
  if (transport === "subprotocol") {
    url.searchParams.set("room_id", roomId);
    return { url: url.toString(), protocols: [SUBPROTOCOL, `bearer.${token}`] };
  }
  url.searchParams.set("token", token);
  url.searchParams.set("room_id", roomId);
  return { url: url.toString(), protocols: [] };
}

/** A chat message; `clientMsgId` makes the send idempotent: a retry with the same id is never stored twice. */
export function sendMessageFrame(roomId, message, clientMsgId) {
  const frame = { action: "sendMessage", room_id: roomId, message };
  if (clientMsgId) frame.client_msg_id = clientMsgId;
  return JSON.stringify(frame);
}

/** A direct message to one user; stored, acknowledged and retried like a room message. */
export function sendDirectFrame(toUserId, message, clientMsgId) {
  const frame = { action: "sendDirect", to_user_id: toUserId, message };
  if (clientMsgId) frame.client_msg_id = clientMsgId;
  return JSON.stringify(frame);
}

/** Another room on the same connection, and back out of it. */
export function joinFrame(roomId) {
  return JSON.stringify({ action: "join", room_id: roomId });
}

export function leaveFrame(roomId) {
  return JSON.stringify({ action: "leave", room_id: roomId });
}

export function listMembersFrame(roomId) {
  return JSON.stringify({ action: "listMembers", room_id: roomId });
}

export function typingFrame(roomId) {
  return JSON.stringify({ action: "typing", room_id: roomId });
}

/** The server drops typing frames beyond one per connection per room in this interval. */
export const TYPING_INTERVAL_MS = 2000;
/** How long "… is typing" stays up after the last typing frame of a user. */
export const TYPING_SHOWN_MS = 3000;

/** One page of history: the newest (no cursor), or just `before` / `after` a message_id.
 *  `target` is a room id (a string) or `{withUserId}` for the direct conversation with that user. */
export function historyFrame(target, { before, after, limit } = {}) {
  const frame = { action: "getHistory" };
  if (typeof target === "string") frame.room_id = target;
  else frame.with_user_id = target.withUserId;
  if (before) frame.before = before;
  if (after) frame.after = after;
  if (limit) frame.limit = limit;
  return JSON.stringify(frame);
}

export const CLIENT_MSG_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** A fresh client_msg_id: 128 random bits, hex ("c-" + 32 characters). */
export function newClientMsgId(random = (bytes) => crypto.getRandomValues(bytes)) {
  const bytes = random(new Uint8Array(16));
  return `c-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

// message_ids are ULIDs: 26 characters of Crockford base32, the first 10 the millisecond they were made.
const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
export const ULID_PATTERN = /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/;

export function ulidTime(id) {
  if (!ULID_PATTERN.test(id)) return null;
  let ms = 0;
  for (const ch of id.slice(0, 10)) ms = ms * 32 + CROCKFORD.indexOf(ch);
  return ms;
}

/** The smallest message_id of millisecond `ms`. */
export function lowestIdAt(ms) {
  let value = Math.max(0, Math.floor(ms));
  let time = "";
  for (let i = 0; i < 10; i += 1) {
    time = CROCKFORD[value % 32] + time;
    value = Math.floor(value / 32);
  }
  return time + "0".repeat(16);
}

/** Where to resume after a reconnect: before the last id seen by the longest a store can take. An id is
 *  drawn before its write, and the write can land up to ~16 s later (3 DynamoDB attempts of 2 s connect +
 *  3 s read, docs/history.md), after messages with newer ids: asking `after` exactly the last id seen could
 *  skip it for good. What is fetched twice is dropped by message_id. */
export const RESUME_REWIND_MS = 20000;

export function resumeCursor(lastSeenId, rewindMs = RESUME_REWIND_MS) {
  const ms = ulidTime(lastSeenId);
  return ms === null ? lastSeenId : lowestIdAt(ms - rewindMs);
}

/** Classifies one server frame: {kind: "message"|"error"|"gateway"|"unknown", ...}. */
export function parseFrame(data) {
  let frame;
  try {
    frame = JSON.parse(data);
  } catch {
    return { kind: "unknown", raw: String(data) };
  }
  if (frame === null || typeof frame !== "object" || Array.isArray(frame)) {
    return { kind: "unknown", raw: String(data) };
  }
  if ((frame.action === "message" || frame.action === "direct") && typeof frame.message === "string") {
    return parseMessage(frame);
  }
  const roomId = typeof frame.room_id === "string" ? frame.room_id : "";
  if ((frame.action === "joined" || frame.action === "left") && roomId) {
    return { kind: frame.action, roomId };
  }
  if (frame.action === "members" && roomId && Array.isArray(frame.members)) {
    const members = frame.members
      .filter((m) => m && typeof m === "object" && typeof m.user_id === "string" && m.user_id)
      .map((m) => ({ userId: m.user_id, name: cleanName(m.name) }));
    return { kind: "members", roomId, members };
  }
  if (frame.action === "presence" && roomId && typeof frame.user_id === "string" && ["online", "offline"].includes(frame.state)) {
    return { kind: "presence", roomId, userId: frame.user_id, name: cleanName(frame.name), online: frame.state === "online" };
  }
  if (frame.action === "typing" && roomId && typeof frame.user_id === "string") {
    return { kind: "typing", roomId, userId: frame.user_id, name: cleanName(frame.name) };
  }
  if (frame.action === "ack" && typeof frame.client_msg_id === "string" && typeof frame.message_id === "string") {
    return { kind: "ack", clientMsgId: frame.client_msg_id, id: frame.message_id, roomId: String(frame.room_id ?? "") };
  }
  if (frame.action === "history" && Array.isArray(frame.messages)) {
    const messages = frame.messages
      .filter((m) => m && typeof m === "object" && typeof m.message === "string" && typeof m.message_id === "string")
      .map(parseMessage);
    const withUserId = typeof frame.with_user_id === "string" ? frame.with_user_id : "";
    return { kind: "history", roomId: String(frame.room_id ?? ""), withUserId, messages, hasMore: frame.has_more === true };
  }
  if (frame.action === "error") {
    return { kind: "error", code: String(frame.code ?? ""), message: String(frame.message ?? "") };
  }
  // API Gateway's own frames: {"message": "Forbidden", "connectionId": ..., "requestId": ...}
  if (typeof frame.message === "string" && "requestId" in frame) {
    return { kind: "gateway", message: frame.message, requestId: String(frame.requestId) };
  }
  return { kind: "unknown", raw: String(data) };
}

function cleanName(name) {
  return typeof name === "string" && name.trim() ? name : null;
}

/** A room message or a direct one ("direct", or a page of a direct conversation's history). A direct one
 *  has `direct: true`, `userId` its sender and `toUserId` its recipient. */
function parseMessage(frame) {
  const direct = frame.action === "direct" || (typeof frame.from_user_id === "string" && !frame.room_id);
  return {
    kind: "message",
    direct,
    id: typeof frame.message_id === "string" ? frame.message_id : null,
    roomId: direct ? "" : String(frame.room_id ?? ""),
    userId: String((direct ? frame.from_user_id : frame.user_id) ?? frame.user_id ?? ""),
    toUserId: direct ? String(frame.to_user_id ?? "") : "",
    name: cleanName(frame.name),
    text: frame.message,
    timestamp: typeof frame.timestamp === "string" ? frame.timestamp : null,
    clientMsgId: typeof frame.client_msg_id === "string" ? frame.client_msg_id : null,
  };
}

/** Errors after which the message was certainly not stored: it goes back into the box to be fixed. Any
 *  other failure (internal, rate_limited, a gateway error, no answer) may or may not have stored it: the
 *  message is retried with its client_msg_id, which the server never stores twice. */
export const NOT_STORED_CODES = new Set(["message_too_large", "invalid_message", "invalid_request", "forbidden_room"]);

/** Plain words for an error answering a join of `roomId`. */
export function explainJoinError(code, roomId, serverMessage) {
  switch (code) {
    case "too_many_rooms":
      return `You are in as many rooms as one connection allows — leave one before joining “${roomId}”.`;
    case "forbidden_room":
      return `Your token does not let you into room “${roomId}”.`;
    case "invalid_request":
      return roomRule();
    case "unknown_action":
      return "This server has one room per connection: it cannot join another room.";
    default:
      return explainError(code, serverMessage);
  }
}

/** Plain words for a contract error frame. `context.bytes` is the size of what was sent. */
export function explainError(code, serverMessage, context = {}) {
  switch (code) {
    case "message_too_large": {
      const limit = limitFrom(serverMessage) ?? context.maxBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
      const yours = context.bytes ? ` (yours was ${numberFormat.format(context.bytes)})` : "";
      return `Message too long — ${numberFormat.format(limit)} bytes at most${yours}. It was not sent.`;
    }
    case "invalid_message":
      return "That message is empty — type something first.";
    case "forbidden_room":
      return "You are not in that room any more — join it again to post there.";
    case "too_many_rooms":
      return "You are in as many rooms as one connection allows — leave one first.";
    case "invalid_json":
    case "unknown_action":
      return "The server did not understand that request. Reload the page and try again.";
    case "internal":
      return "The server hit a problem with that message. Retry it — it will not be sent twice.";
    case "rate_limited":
      return "You are sending too fast — wait a moment, then retry.";
    case "invalid_request":
      return context.direct
        ? "That person can’t be written to (a direct message needs another user’s id)."
        : "The server refused that request as malformed. Reload the page and try again.";
    default:
      return serverMessage ? `The server refused that: ${serverMessage}` : "The server refused that message.";
  }
}

export function explainGatewayFrame(message) {
  if (message === "Forbidden") return "The server has no route for that request (Forbidden).";
  if (message === "Internal server error") return "The server hit a problem with that message. Retry it — it will not be sent twice.";
  return `The server said: ${message}`;
}

/** The limit stated in the server's reason ("... at most 4,096 bytes ..."), if it states one. */
function limitFrom(text) {
  const match = /(?:at most|maximum(?: is)?|limit(?: is)?|up to)\s*(\d[\d,]*)/i.exec(text || "");
  return match ? Number(match[1].replaceAll(",", "")) : null;
}

/** The claims of a JWT, without verifying it (only the server can). null if it isn't one. */
export function decodeToken(token) {
  const parts = String(token || "").split(".");
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replaceAll("-", "+").replaceAll("_", "/");
    const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" && !Array.isArray(claims) ? claims : null;
  } catch {
    return null;
  }
}

/** What the client can tell, before connecting or after a refused handshake, about why the server
 *  would say no. Browsers hide the handshake's HTTP status (a refusal is a close 1006 before open), so
 *  this mirrors the contract's checks that need no secret: 401 (not a JWT, expired), 400 (room), 403
 *  (room not in the `rooms` claim). null when nothing client-side explains a refusal. */
export function diagnoseHandshake({ token, roomId, nowSeconds = Date.now() / 1000 }) {
  if (!token) return { status: 401, fatal: true, text: "No token — sign in again to get one." };
  const claims = decodeToken(token);
  if (!claims) return { status: 401, fatal: true, text: "That token is not a valid JWT — paste the whole token." };
  if (typeof claims.exp === "number" && claims.exp <= nowSeconds) {
    return { status: 401, fatal: true, expired: true, text: `Your session expired ${ago(nowSeconds - claims.exp)}. Sign in again to get a new token.` };
  }
  if (!ROOM_PATTERN.test(roomId || "")) {
    return { status: 400, fatal: true, text: roomRule() };
  }
  if (Array.isArray(claims.rooms) && !claims.rooms.includes(roomId)) {
    return { status: 403, fatal: true, text: `Your token does not let you into room “${roomId}”.` };
  }
  return null;
}

export function roomRule() {
  return "Room names are 1–64 letters, digits or . _ : - (no spaces).";
}

function ago(seconds) {
  if (seconds < 90) return "just now";
  if (seconds < 5400) return `${Math.round(seconds / 60)} minutes ago`;
  if (seconds < 129600) return `${Math.round(seconds / 3600)} hours ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

/** Plain words for a close after the socket was open. */
export function explainClose(code, reason) {
  const said = reason ? ` (“${reason}”)` : "";
  switch (code) {
    case 1000:
      return `The server closed the connection${said}.`;
    case 1001:
      return `The server went away${said}.`;
    case 1003:
      return "The server refused a binary frame.";
    case 1006:
      return "The connection dropped.";
    case 1008:
      return `The server closed the connection for a policy reason${said}.`;
    case 1009:
      return "A frame was too big for the server (32 KB per frame).";
    case 1011:
      return `The server hit an error${said}.`;
    case 1012:
      return "The server is restarting.";
    default:
      return `The connection closed (code ${code})${said}.`;
  }
}

/** Exponential backoff with "equal jitter": half the step is fixed, half random, capped.
 *  attempt 0 -> 0.5-1 s, 1 -> 1-2 s, 2 -> 2-4 s, ... up to maxMs. */
export function backoffDelay(attempt, { baseMs = 1000, maxMs = 30000, random = Math.random } = {}) {
  const step = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20));
  return Math.round(step / 2 + random() * (step / 2));
}

/** A user id the local token endpoint accepts, derived from a display name. */
export function userIdFor(name, fallback) {
  const slug = String(name)
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9_-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40);
  return slug || fallback;
}
