// The tickpipe dashboard: a live watchlist, one symbol's candles, the pipeline's status, crypto
// pairs (latest quote, top of the order book) when the API carries the crypto feed, option contracts
// (latest quote and trade) when it carries the options feed, the latest news stories when it carries news,
// and the account's order updates when it carries them and the page's key may see them.
//
// Page parameters (all optional): ?symbols=AAPL,MSFT (the watchlist), ?chart=AAPL (the chart's
// symbol), ?crypto=BTC/USD,ETH/USD (the crypto pairs), ?options=SPY240621C00530000,... (the option
// contracts; default: the first known ones), ?key=..&secret=.. (credentials for the streams when the
// API requires them).
// window.__tickpipe exposes counters for tests and for the curious.

import { BarChart } from "./chart.js";
import { CryptoPanel } from "./crypto.js";
import { OCC, OptionsPanel, pollOptions } from "./options.js";
import { NewsPanel } from "./news.js";
import { OrdersPanel, TradingStream, latestUpdates } from "./orders.js";
import { pollStatus } from "./status.js";
import { LiveStream, streamUrl } from "./stream.js";
import { Watchlist } from "./watchlist.js";

const DEFAULT_SYMBOLS = ["SPY", "QQQ", "AAPL", "NVDA", "TSLA", "MSFT", "AMZN", "META", "GOOGL", "AMD"];
const SYMBOL = /^[A-Z][A-Z0-9./-]{0,15}$/; // as tickpipe.settings.SYMBOL_RE
const DEFAULT_PAIRS = ["BTC/USD", "ETH/USD", "SOL/USD"];
const PAIR = /^[A-Z0-9]{1,12}\/[A-Z0-9]{1,12}$/; // as tickpipe.settings.PAIR_RE
const CRYPTO_PATH = "/v1beta3/crypto/us"; // tickpipe.feeds.CRYPTO.stream_path
const OPTION_CONTRACTS = 8; // contracts shown when ?options= names none
const NEWS_PATH = "/v1beta1/news"; // tickpipe.feeds.NEWS.stream_path
const TRADING_PATH = "/stream"; // the order updates' stream (api/stream/trading.py)
const STORE = "tickpipe.dashboard";

const params = new URLSearchParams(location.search);
const stats = {
  state: "idle", stateDetail: "", chartSymbol: null, barsLoaded: null, chartError: null,
  quotes: 0, trades: 0, liveBars: 0, barsDrawn: 0, lastBarTime: null, status: null, subscribed: null,
  everLive: false, reconnects: 0,
  crypto: { state: "idle", detail: "", quotes: 0, books: 0, subscribed: null },
  options: { state: "idle", detail: "", contracts: [], polls: 0, quotes: 0, trades: 0 },
  news: { state: "idle", detail: "", stored: 0, live: 0 },
  orders: { state: "idle", detail: "", stored: 0, live: 0, reads: 0 },
};
window.__tickpipe = stats;

function symbolList(text) {
  return (text ?? "").split(",").map((s) => s.trim().toUpperCase()).filter((s) => SYMBOL.test(s));
}

function saved() {
  try {
    return JSON.parse(localStorage.getItem(STORE) ?? "{}");
  } catch {
    return {};
  }
}

function save(watch, chart) {
  if (!params.has("symbols")) localStorage.setItem(STORE, JSON.stringify({ symbols: watch, chart }));
}

function names(items) {
  return (items ?? []).map((item) => (typeof item === "string" ? item : item.symbol ?? item.S)).filter(Boolean);
}

/** What GET /symbols lists: the stock symbols ({"symbols": [...]}, or a bare list), and the option
 *  contracts when the API carries options ("options": [...]; null when it does not). */
async function knownSymbols() {
  try {
    const response = await fetch("/symbols");
    if (!response.ok) return { stocks: [], options: null };
    const body = await response.json();
    if (Array.isArray(body)) return { stocks: names(body), options: null };
    return { stocks: names(body.symbols), options: Array.isArray(body.options) ? names(body.options) : null };
  } catch {
    return { stocks: [], options: null };
  }
}

function pairList(text) {
  return (text ?? "").split(",").map((s) => s.trim().toUpperCase()).filter((s) => PAIR.test(s));
}

/** The crypto panel: its own stream of quotes and order books; hidden while the API does not carry crypto. */
function startCrypto(credentials) {
  const panel = new CryptoPanel(document.querySelector("#crypto-pairs tbody"));
  const section = document.getElementById("crypto");
  const badge = document.getElementById("crypto-conn");
  const pairs = pairList(params.get("crypto"));
  panel.setPairs(pairs.length > 0 ? pairs : DEFAULT_PAIRS);
  const stream = new LiveStream(
    streamUrl(location, CRYPTO_PATH),
    credentials,
    {
      onData: (messages) => {
        for (const message of messages) {
          if (panel.take(message)) stats.crypto[message.T === "q" ? "quotes" : "books"] += 1;
        }
      },
      onState: (state, detail) => {
        stats.crypto.state = state;
        stats.crypto.detail = detail;
        badge.dataset.state = state;
        badge.textContent = state;
        badge.title = `WebSocket ${CRYPTO_PATH}: ${state}${detail ? ` (${detail})` : ""}`;
        if (state === "live") section.hidden = false;
        if (state === "refused") section.hidden = true; // ALPACA_FEEDS does not name crypto
      },
      onSubscription: (msg) => {
        stats.crypto.subscribed = { quotes: msg.quotes ?? [], orderbooks: msg.orderbooks ?? [] };
      },
    },
    ["quotes", "orderbooks"],
  );
  stream.want({ quotes: panel.pairs, orderbooks: panel.pairs });
  stream.start();
  window.__tickpipeCrypto = panel; // for tests: panel.top(pair) is the book as kept here
}

function contractList(text) {
  return (text ?? "").split(",").map((s) => s.trim().toUpperCase()).filter((s) => OCC.test(s));
}

/** The options panel: the latest quote and trade of some contracts, polled; hidden while the API does
 *  not carry options (``known`` null: /symbols has no "options"). */
function startOptions(known) {
  const section = document.getElementById("options");
  const note = document.getElementById("options-note");
  if (known === null) {
    stats.options.state = "absent";
    return;
  }
  const panel = new OptionsPanel(document.querySelector("#option-contracts tbody"));
  const asked = contractList(params.get("options"));
  const contracts = asked.length > 0 ? asked : known.filter((c) => OCC.test(c)).slice(0, OPTION_CONTRACTS);
  panel.setContracts(contracts);
  stats.options.contracts = contracts;
  stats.options.state = "polling";
  section.hidden = false;
  note.textContent = contracts.length > 0 ? "" : "no option contracts known yet";
  pollOptions(panel, (outcome) => {
    stats.options.polls += 1;
    if (outcome.error) {
      stats.options.detail = outcome.error;
      note.textContent = outcome.error;
      return;
    }
    stats.options.detail = "";
    note.textContent = "";
    stats.options.quotes += outcome.quotes;
    stats.options.trades += outcome.trades;
  });
  window.__tickpipeOptions = panel;
}

/** The news panel: the latest stored stories, then the news stream; hidden while the API does not carry news. */
function startNews(credentials) {
  const panel = new NewsPanel(document.getElementById("news-list"));
  const section = document.getElementById("news");
  const badge = document.getElementById("news-conn");
  fetch("/news?limit=20", { headers: { "APCA-API-KEY-ID": credentials.key, "APCA-API-SECRET-KEY": credentials.secret } })
    .then((response) => (response.ok ? response.json() : { news: [] }))
    .then((body) => {
      for (const story of body.news ?? []) if (panel.take(story)) stats.news.stored += 1;
    })
    .catch(() => {});
  const stream = new LiveStream(
    streamUrl(location, NEWS_PATH),
    credentials,
    {
      onData: (messages) => {
        for (const message of messages) if (panel.take(message)) stats.news.live += 1;
      },
      onState: (state, detail) => {
        stats.news.state = state;
        stats.news.detail = detail;
        badge.dataset.state = state;
        badge.textContent = state;
        badge.title = `WebSocket ${NEWS_PATH}: ${state}${detail ? ` (${detail})` : ""}`;
        if (state === "live") section.hidden = false;
        if (state === "refused") section.hidden = true; // ALPACA_FEEDS does not name news
      },
    },
    ["news"],
  );
  stream.want({ news: ["*"] });
  stream.start();
  window.__tickpipeNews = panel; // for tests: panel.shown is what the list holds
}

/** The order updates panel: the trading stream, and the latest stored updates each time it listens; hidden
 *  unless the key may see order updates (refused) and the API carries them (absent). */
function startOrders(credentials) {
  const panel = new OrdersPanel(document.querySelector("#order-updates tbody"));
  const section = document.getElementById("orders");
  const badge = document.getElementById("orders-conn");
  const show = (state, detail) => {
    stats.orders.state = state;
    stats.orders.detail = detail;
    badge.dataset.state = state;
    badge.textContent = state;
    badge.title = `WebSocket ${TRADING_PATH}: ${state}${detail ? ` (${detail})` : ""}`;
    if (state === "live") section.hidden = false;
    if (state === "refused" || state === "absent") section.hidden = true;
  };
  const stream = new TradingStream(streamUrl(location, TRADING_PATH), credentials, {
    onUpdate: (update) => {
      if (panel.take(update)) stats.orders.live += 1;
    },
    onState: (state, detail) => {
      show(state, detail);
      if (state !== "live") return;
      // Listening: what was stored before (or while the page was away) comes from the history route.
      latestUpdates(credentials)
        .then((outcome) => {
          stats.orders.reads += 1;
          if (outcome.status === 401 || outcome.status === 403) {
            stream.end("refused", outcome.detail);
          } else if (outcome.updates) {
            for (const update of outcome.updates) if (panel.take(update)) stats.orders.stored += 1;
          }
        })
        .catch(() => {
          stats.orders.reads += 1;
        });
    },
  });
  stream.start();
  window.__tickpipeOrders = panel; // for tests: panel.shown is what the table holds, newest first
}

function initialSymbols(known) {
  const fromUrl = symbolList(params.get("symbols"));
  if (fromUrl.length > 0) return fromUrl;
  const stored = Array.isArray(saved().symbols) ? saved().symbols.filter((s) => SYMBOL.test(s)) : [];
  if (stored.length > 0) return stored;
  const liked = DEFAULT_SYMBOLS.filter((s) => known.includes(s));
  if (liked.length > 0) return liked;
  return known.length > 0 ? [...known].sort().slice(0, DEFAULT_SYMBOLS.length) : DEFAULT_SYMBOLS;
}

function showConnection(state, detail) {
  stats.state = state;
  stats.stateDetail = detail;
  const badge = document.getElementById("conn");
  badge.dataset.state = state;
  badge.textContent = detail ? `${state}: ${detail}` : state;
  badge.title = `WebSocket /v2/stream: ${state}${detail ? ` (${detail})` : ""}`;
}

async function main() {
  const chart = new BarChart(document.getElementById("chart"));
  const credentials = { key: params.get("key") ?? "dashboard", secret: params.get("secret") ?? "dashboard" };
  startCrypto(credentials);
  startNews(credentials);
  startOrders(credentials);
  const stream = new LiveStream(
    streamUrl(location),
    credentials,
    {
      onData,
      onState: (state, detail) => {
        const entering = state === "live" && stats.state !== "live";
        showConnection(state, detail);
        if (!entering) return;
        if (stats.everLive && chart.symbol) {
          // Back after a drop: reload the history, so bars stored meanwhile are not a gap.
          stats.reconnects += 1;
          showChart(chart.symbol);
        }
        stats.everLive = true;
      },
      onSubscription: (msg) => {
        stats.subscribed = { quotes: msg.quotes ?? [], trades: msg.trades ?? [], bars: msg.bars ?? [] };
      },
    },
  );
  const watchlist = new Watchlist(document.querySelector("#watchlist tbody"), {
    onSelect: (symbol) => showChart(symbol),
    onRemove: (symbol) => setWatch(watchlist.symbols.filter((s) => s !== symbol)),
  });

  let received = 0;
  function onData(messages) {
    received += messages.length;
    for (const message of messages) {
      if (message.T === "q") {
        stats.quotes += 1;
        watchlist.take(message);
      } else if (message.T === "t") {
        stats.trades += 1;
        watchlist.take(message);
      } else if (message.T === "b" || message.T === "u") {
        stats.liveBars += 1;
        if (chart.update(message)) {
          stats.barsDrawn += 1;
          stats.lastBarTime = chart.lastTime;
        }
      }
    }
  }
  setInterval(() => {
    document.getElementById("rate").textContent = `${received} msg/s`;
    received = 0;
  }, 1000);

  function subscribe() {
    const symbols = watchlist.symbols;
    stream.want({ quotes: symbols, trades: symbols, bars: chart.symbol ? [chart.symbol] : [] });
  }

  function setWatch(symbols) {
    watchlist.setSymbols([...new Set(symbols)]);
    watchlist.select(chart.symbol);
    save(watchlist.symbols, chart.symbol);
    subscribe();
  }

  async function showChart(symbol) {
    document.getElementById("chart-symbol").textContent = symbol;
    const note = document.getElementById("chart-note");
    note.textContent = "loading…";
    stats.chartSymbol = symbol;
    stats.barsLoaded = null;
    stats.lastBarTime = null;
    stats.chartError = null;
    watchlist.select(symbol);
    const loading = chart.load(symbol);
    subscribe(); // bars of the new symbol; its live bars wait until the history is drawn
    save(watchlist.symbols, symbol);
    try {
      const count = await loading;
      if (count === null) return; // another symbol was chosen meanwhile
      stats.barsLoaded = count;
      stats.lastBarTime = chart.lastTime; // the newest bar shown: history's, or a live one that came meanwhile
      note.textContent = count === 0 ? "no bars stored yet: live bars appear as they come" : "";
    } catch (error) {
      stats.chartError = String(error);
      note.textContent = `could not load bars: ${error.message}`;
    }
  }

  document.getElementById("add").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("add-symbol");
    const added = symbolList(input.value);
    input.value = "";
    if (added.length > 0) setWatch([...watchlist.symbols, ...added]);
  });

  stream.start();
  pollStatus((status) => {
    stats.status = status;
  });

  const listed = await knownSymbols();
  startOptions(listed.options);
  const known = listed.stocks;
  document.getElementById("all-symbols").replaceChildren(
    ...known.map((symbol) => Object.assign(document.createElement("option"), { value: symbol })),
  );
  const symbols = initialSymbols(known);
  watchlist.setSymbols(symbols);
  const wanted = symbolList(params.get("chart"))[0] ?? saved().chart;
  await showChart(wanted && SYMBOL.test(wanted) ? wanted : symbols[0]);
}

main().catch((error) => {
  console.error(error);
  stats.fatal = String(error);
  showConnection("error", String(error));
});
