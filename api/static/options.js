// The options panel: for each OCC contract its latest quote and trade, read every second from
// GET /options/quotes/latest and /options/trades/latest (the live snapshots in Redis, the newest stored rows
// behind them).
//
// Polled, not streamed: Alpaca's option stream, and so WS /v1beta1/opra here, speaks msgpack only, which a
// client asks for with its handshake's Content-Type header; a browser's WebSocket cannot set one (a JSON
// client is refused with 412). Like the watchlist, the DOM is written once per animation frame.

import { formatPrice } from "./watchlist.js";

/** An OCC contract, as tickpipe.feeds.options.OCC_PATTERN. */
export const OCC = /^[A-Z][A-Z0-9]{0,5}[0-9]{6}[CP][0-9]{8}$/;
const POLL_MS = 1000;

export class OptionsPanel {
  /** @param {HTMLTableSectionElement} tbody */
  constructor(tbody) {
    this.tbody = tbody;
    this.rows = new Map(); // contract -> {tr, cells, quote, trade}
    this.dirty = new Set();
    this.frame = 0;
  }

  get contracts() {
    return [...this.rows.keys()];
  }

  setContracts(contracts) {
    const next = new Map();
    for (const contract of contracts) next.set(contract, this.rows.get(contract) ?? this.makeRow(contract));
    this.rows = next;
    this.tbody.replaceChildren(...[...next.values()].map((row) => row.tr));
  }

  makeRow(contract) {
    const tr = document.createElement("tr");
    tr.dataset.contract = contract;
    const cells = {};
    for (const name of ["contract", "bid", "ask", "last", "size", "time"]) {
      const td = document.createElement("td");
      td.className = name;
      td.textContent = name === "contract" ? contract : "–";
      tr.append(td);
      cells[name] = td;
    }
    return { tr, cells, quote: null, trade: null };
  }

  /** A latest answer ({"quotes": {contract: {...}}} or {"trades": ...}); how many rows it changed. */
  take(family, items) {
    let changed = 0;
    for (const [contract, item] of Object.entries(items ?? {})) {
      const row = this.rows.get(contract);
      const kept = family === "quotes" ? row?.quote : row?.trade;
      if (!row || (kept && kept.t === item.t)) continue;
      if (family === "quotes") row.quote = item;
      else row.trade = item;
      this.dirty.add(contract);
      changed += 1;
    }
    if (changed && !this.frame) this.frame = requestAnimationFrame(() => this.flush());
    return changed;
  }

  flush() {
    this.frame = 0;
    for (const contract of this.dirty) {
      const row = this.rows.get(contract);
      if (!row) continue;
      if (row.quote) {
        row.cells.bid.textContent = `${formatPrice(row.quote.bp)} ×${row.quote.bs}`;
        row.cells.ask.textContent = `${formatPrice(row.quote.ap)} ×${row.quote.as}`;
      }
      if (row.trade) {
        row.cells.last.textContent = formatPrice(row.trade.p);
        row.cells.size.textContent = `${row.trade.s} ${row.trade.x}`;
        row.cells.time.textContent = row.trade.t.slice(11, 23);
      }
    }
    this.dirty.clear();
  }
}

/**
 * Read the latest quotes and trades of the panel's contracts now and every POLL_MS after; ``onPoll``
 * hears each round's outcome ({quotes, trades} rows changed, or {error}).
 */
export function pollOptions(panel, onPoll) {
  const round = async () => {
    const contracts = panel.contracts;
    if (contracts.length > 0) {
      try {
        const changed = {};
        for (const family of ["quotes", "trades"]) {
          const url = `/options/${family}/latest?symbols=${contracts.join(",")}`;
          const response = await fetch(url, { cache: "no-store" });
          if (!response.ok) throw new Error(`GET ${url}: ${response.status}`);
          changed[family] = panel.take(family, (await response.json())[family]);
        }
        onPoll(changed);
      } catch (error) {
        onPoll({ error: String(error) });
      }
    }
    setTimeout(round, POLL_MS);
  };
  round();
}
