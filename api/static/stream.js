// A client of /v2/stream (Alpaca's market data stream v2 protocol, JSON) that stays connected; the same
// for another feed's path (/v1beta3/crypto/us) with that feed's channels.
//
// States: connecting -> authenticating -> live; on any drop: waiting (backoff) -> connecting.
// The wanted subscription is kept here, so a reconnect subscribes to it again by itself.
// A feed the API does not carry is refused (409, "insufficient subscription"): state "refused", no retry.

const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 15000;
const CHANNELS = ["quotes", "trades", "bars"];

export class LiveStream {
  /**
   * @param {string} url ws:// or wss:// URL of /v2/stream
   * @param {{key: string, secret: string}} credentials
   * @param {{onData: (msgs: object[]) => void, onState: (state: string, detail: string) => void,
   *          onSubscription?: (msg: object) => void}} handlers
   * @param {string[]} channels the channels wanted lists are kept for
   */
  constructor(url, credentials, handlers, channels = CHANNELS) {
    this.url = url;
    this.credentials = credentials;
    this.handlers = handlers;
    this.channels = channels;
    this.wanted = Object.fromEntries(channels.map((channel) => [channel, new Set()]));
    this.refused = false;
    this.socket = null;
    this.state = "idle";
    this.attempt = 0;
    this.timer = null;
    this.lastError = "";
  }

  start() {
    this.connect();
  }

  /** Replace the wanted symbols of each channel; sends the difference when live. */
  want(next) {
    const add = {};
    const remove = {};
    for (const channel of this.channels) {
      const target = new Set(next[channel] || []);
      add[channel] = [...target].filter((s) => !this.wanted[channel].has(s));
      remove[channel] = [...this.wanted[channel]].filter((s) => !target.has(s));
      this.wanted[channel] = target;
    }
    if (this.state === "live") {
      this.sendChange("unsubscribe", remove);
      this.sendChange("subscribe", add);
    }
  }

  sendChange(action, lists) {
    if (this.channels.some((c) => lists[c].length > 0)) {
      this.send({ action, ...lists });
    }
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }

  setState(state, detail = "") {
    this.state = state;
    this.handlers.onState(state, detail);
  }

  connect() {
    this.timer = null;
    this.setState("connecting", this.url);
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch (error) {
      this.retry(String(error));
      return;
    }
    this.socket = socket;
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.refused) return; // the API does not carry this feed: asking again changes nothing
      this.retry(this.lastError || event.reason || `closed (${event.code})`);
      this.lastError = "";
    };
    socket.onerror = () => {}; // onclose follows and carries the reason
  }

  receive(data) {
    let messages;
    try {
      messages = JSON.parse(data);
    } catch {
      console.warn("tickpipe: not JSON from the stream", data);
      return;
    }
    if (!Array.isArray(messages)) messages = [messages];
    const market = [];
    for (const msg of messages) {
      switch (msg.T) {
        case "success":
          if (msg.msg === "connected") {
            this.setState("authenticating");
            this.send({ action: "auth", ...this.credentials });
          } else if (msg.msg === "authenticated") {
            this.attempt = 0;
            this.setState("live");
            const lists = {};
            for (const channel of this.channels) lists[channel] = [...this.wanted[channel]];
            this.sendChange("subscribe", lists);
          }
          break;
        case "error":
          // While live an error refuses one request (405 symbol limit ...) and the stream goes on;
          // before, it is why the server is about to close (402 auth failed, 406 connection limit ...).
          if (this.state === "live") {
            this.setState("live", `${msg.code ?? ""} ${msg.msg ?? ""}`.trim());
          } else if (msg.code === 409) {
            this.refused = true;
            this.setState("refused", msg.detail ?? msg.msg ?? "");
          } else {
            this.lastError = `${msg.code ?? ""} ${msg.msg ?? ""}`.trim();
            this.setState("error", this.lastError);
          }
          break;
        case "subscription":
          if (this.state === "live") this.setState("live"); // a refused request before is settled
          this.handlers.onSubscription?.(msg);
          break;
        default:
          market.push(msg);
      }
    }
    if (market.length > 0) this.handlers.onData(market);
  }

  retry(reason) {
    // Full jitter: clients that lost the server together do not come back together.
    const ceiling = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** this.attempt);
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    this.attempt += 1;
    this.setState("waiting", `${reason}; retrying in ${(delay / 1000).toFixed(1)} s`);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}

/** A stream URL of the page's own origin: ws(s)://host/v2/stream, or another feed's ``path``. */
export function streamUrl(location, path = "/v2/stream") {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}
