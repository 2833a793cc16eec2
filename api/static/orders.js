// The order updates panel: the account's latest order updates, live from the trading stream (/stream,
// Alpaca's trading dialect: binary frames of one JSON object, authenticate -> authorization, listen ->
// listening, then {"stream":"trade_updates","data":{...}} per update), and, each time the stream listens,
// the latest stored ones from GET /trade_updates?sort=desc (so an update stored while the page was not
// listening is shown too; one seen twice is shown once). Newest first, at most MAX_UPDATES; the DOM is
// written once per animation frame.
//
// Both are served only to a key allowed to see order updates: a key that is not is "refused" (the stream
// answers unauthorized, the route 401/403), an API whose ALPACA_FEEDS does not name trade_updates is
// "absent" (the stream answers listening with an error); neither is asked again.

import { formatPrice } from "./watchlist.js";

const MAX_UPDATES = 50;
const STORED = 20; // updates read from GET /trade_updates each time the stream listens
const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 15000;
const decoder = new TextDecoder();

/** An RFC 3339 time as a string that sorts as the time does (to the nanosecond); "" when it is none. */
export function timeKey(iso) {
  const match = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(iso ?? "");
  if (!match) return "";
  const seconds = Date.parse(`${match[1]}${match[3]}`) / 1000;
  if (Number.isNaN(seconds)) return "";
  return `${String(seconds).padStart(12, "0")}.${(match[2] ?? "").padEnd(9, "0")}`;
}

/** HH:MM:SS.mmm (UTC) of an RFC 3339 time with up to nine fractional digits; "–" when it is none. */
function clock(iso) {
  const key = timeKey(iso);
  if (!key) return "–";
  const [seconds, fraction] = key.split(".");
  return `${new Date(Number(seconds) * 1000).toISOString().slice(11, 19)}.${fraction.slice(0, 3)}`;
}

function quantity(text) {
  if (text === null || text === undefined || text === "") return "–";
  const n = Number(text);
  return Number.isFinite(n) ? String(n) : String(text);
}

/** One update's identity: the same update from the route and from the stream has the same one. */
function identity(update) {
  return [update.order?.id, update.event, update.execution_id ?? "", timeKey(update.timestamp)].join("|");
}

export class OrdersPanel {
  /** @param {HTMLTableSectionElement} tbody */
  constructor(tbody) {
    this.tbody = tbody;
    this.updates = new Map(); // identity -> {update, key, seq}
    this.seq = 0;
    this.frame = 0;
  }

  /** An update (the data of a trade_updates message, or an item of GET /trade_updates); true if it was taken. */
  take(update) {
    if (!update || typeof update.event !== "string" || typeof update.order !== "object" || update.order === null) {
      return false;
    }
    const id = identity(update);
    if (this.updates.has(id)) return false;
    this.seq += 1;
    this.updates.set(id, { update, key: timeKey(update.timestamp), seq: this.seq });
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.draw();
      });
    }
    return true;
  }

  /** The updates kept, newest first (the later arrival first among equal times). */
  get shown() {
    return [...this.updates.values()]
      .sort((a, b) => (a.key < b.key ? 1 : a.key > b.key ? -1 : b.seq - a.seq))
      .map((entry) => entry.update);
  }

  draw() {
    const kept = [...this.updates.entries()]
      .sort(([, a], [, b]) => (a.key < b.key ? 1 : a.key > b.key ? -1 : b.seq - a.seq))
      .slice(0, MAX_UPDATES);
    this.updates = new Map(kept);
    this.tbody.replaceChildren(...kept.map(([id, { update }]) => this.row(id, update)));
  }

  row(id, update) {
    const order = update.order;
    const tr = document.createElement("tr");
    tr.dataset.id = id;
    tr.dataset.order = String(order.id ?? "");
    tr.dataset.event = update.event;
    const cells = {
      time: clock(update.timestamp),
      symbol: order.symbol ?? "–",
      event: update.event,
      side: order.side ?? "–",
      qty: `${quantity(order.filled_qty)}/${quantity(order.qty ?? order.notional)}`,
      price: update.price !== undefined && update.price !== null ? formatPrice(Number(update.price)) : "–",
      "order-status": order.status ?? "–",
    };
    for (const [name, text] of Object.entries(cells)) {
      const td = document.createElement("td");
      td.className = name;
      td.textContent = text;
      tr.append(td);
    }
    if (order.side === "buy" || order.side === "sell") tr.classList.add(order.side);
    tr.title = `order ${order.id ?? "?"}${update.qty ? `: ${quantity(update.qty)} filled at ${update.price}` : ""}`;
    return tr;
  }
}

/**
 * A client of /stream that stays connected, for the order updates.
 * States: connecting -> authenticating -> live; on a drop: waiting (backoff) -> connecting;
 * refused (the key may not see order updates) and absent (the API does not carry them) are final.
 */
export class TradingStream {
  /**
   * @param {string} url ws:// or wss:// URL of /stream
   * @param {{key: string, secret: string}} credentials
   * @param {{onUpdate: (data: object) => void, onState: (state: string, detail: string) => void}} handlers
   */
  constructor(url, credentials, handlers) {
    this.url = url;
    this.credentials = credentials;
    this.handlers = handlers;
    this.socket = null;
    this.state = "idle";
    this.attempt = 0;
    this.final = false;
  }

  start() {
    this.connect();
  }

  setState(state, detail = "") {
    this.state = state;
    this.handlers.onState(state, detail);
  }

  /** Stop for good, in ``state`` (refused, absent) saying why. */
  end(state, detail) {
    this.final = true;
    this.setState(state, detail);
    this.socket?.close();
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  connect() {
    if (this.final) return;
    this.setState("connecting", this.url);
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch (error) {
      this.retry(String(error));
      return;
    }
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.onopen = () => {
      this.setState("authenticating");
      this.send({ action: "authenticate", data: { key_id: this.credentials.key, secret_key: this.credentials.secret } });
    };
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (!this.final) this.retry(event.reason || `closed (${event.code})`);
    };
    socket.onerror = () => {}; // onclose follows
  }

  receive(data) {
    let message;
    try {
      message = JSON.parse(typeof data === "string" ? data : decoder.decode(data));
    } catch {
      console.warn("tickpipe: not JSON from /stream");
      return;
    }
    const body = message?.data ?? {};
    switch (message?.stream) {
      case "authorization":
        if (body.status === "authorized") {
          this.setState("authenticating", "authorized");
          this.send({ action: "listen", data: { streams: ["trade_updates"] } });
        } else {
          this.end("refused", body.message ?? "unauthorized");
        }
        break;
      case "listening":
        if ((body.streams ?? []).includes("trade_updates")) {
          this.attempt = 0;
          this.setState("live");
        } else {
          this.end("absent", body.error ?? "the API does not stream trade_updates");
        }
        break;
      case "trade_updates":
        this.handlers.onUpdate(body);
        break;
      case "error":
        this.setState(this.state, body.message ?? "error");
        break;
      default:
        break;
    }
  }

  retry(reason) {
    const ceiling = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** this.attempt);
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    this.attempt += 1;
    this.setState("waiting", `${reason}; retrying in ${(delay / 1000).toFixed(1)} s`);
    setTimeout(() => this.connect(), delay);
  }
}

/** The latest stored updates, newest first; {updates} or {status} when the route refuses (401, 403). */
export async function latestUpdates(credentials) {
  const response = await fetch(`/trade_updates?limit=${STORED}&sort=desc`, {
    headers: { "APCA-API-KEY-ID": credentials.key, "APCA-API-SECRET-KEY": credentials.secret },
  });
  if (!response.ok) {
    let detail = `${response.status}`;
    try {
      detail = (await response.json()).message ?? detail;
    } catch {
      // not JSON: the status says enough
    }
    return { status: response.status, detail };
  }
  return { updates: (await response.json()).trade_updates ?? [] };
}
