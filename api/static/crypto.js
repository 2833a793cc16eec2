// The crypto panel: for each pair its latest quote and the top of its order book, live from the
// crypto stream (/v1beta3/crypto/us, the same protocol as /v2/stream with pairs and order books).
//
// A book starts from the whole book the stream sends first (r: true) and takes each update's levels
// (size 0: the price is gone). Like the watchlist, the DOM is written once per animation frame.

import { formatPrice } from "./watchlist.js";

/** Best (price, size) of a side: the highest bid or the lowest ask; null when the side is empty. */
function best(side, highest) {
  let top = null;
  for (const [price, size] of side) {
    if (top === null || (highest ? price > top[0] : price < top[0])) top = [price, size];
  }
  return top;
}

function level(top) {
  return top ? `${formatPrice(top[0])} ×${top[1]}` : "–";
}

export class CryptoPanel {
  /** @param {HTMLTableSectionElement} tbody */
  constructor(tbody) {
    this.tbody = tbody;
    this.rows = new Map(); // pair -> {tr, cells, quote, book: {bids: Map, asks: Map} | null}
    this.dirty = new Set();
    this.frame = 0;
  }

  get pairs() {
    return [...this.rows.keys()];
  }

  setPairs(pairs) {
    const next = new Map();
    for (const pair of pairs) next.set(pair, this.rows.get(pair) ?? this.makeRow(pair));
    this.rows = next;
    this.tbody.replaceChildren(...[...next.values()].map((row) => row.tr));
  }

  makeRow(pair) {
    const tr = document.createElement("tr");
    tr.dataset.pair = pair;
    const cells = {};
    for (const name of ["pair", "bid", "ask", "book-bid", "book-ask", "depth"]) {
      const td = document.createElement("td");
      td.className = name;
      td.textContent = name === "pair" ? pair : "–";
      tr.append(td);
      cells[name] = td;
    }
    return { tr, cells, quote: null, book: null };
  }

  /** A quote ({"T":"q"}) or order book ({"T":"o"}) message of a shown pair; true if it was taken. */
  take(message) {
    const row = this.rows.get(message.S);
    if (!row) return false;
    if (message.T === "q") {
      row.quote = message;
    } else if (message.T === "o") {
      if (message.r) row.book = { bids: new Map(), asks: new Map() };
      if (!row.book) return false; // an update before the whole book: nothing to apply it to
      for (const [side, levels] of [[row.book.bids, message.b], [row.book.asks, message.a]]) {
        for (const { p, s } of levels ?? []) {
          if (s === 0) side.delete(p);
          else side.set(p, s);
        }
      }
    } else {
      return false;
    }
    this.dirty.add(message.S);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
    return true;
  }

  /** The top of a pair's book as kept here: {bid: [p, s], ask: [p, s], levels: [bids, asks]}, or null. */
  top(pair) {
    const book = this.rows.get(pair)?.book;
    if (!book) return null;
    return { bid: best(book.bids, true), ask: best(book.asks, false), levels: [book.bids.size, book.asks.size] };
  }

  flush() {
    this.frame = 0;
    for (const pair of this.dirty) {
      const row = this.rows.get(pair);
      if (!row) continue;
      if (row.quote) {
        row.cells.bid.textContent = `${formatPrice(row.quote.bp)} ×${row.quote.bs}`;
        row.cells.ask.textContent = `${formatPrice(row.quote.ap)} ×${row.quote.as}`;
      }
      const top = this.top(pair);
      if (top) {
        row.cells["book-bid"].textContent = level(top.bid);
        row.cells["book-ask"].textContent = level(top.ask);
        row.cells.depth.textContent = `${top.levels[0]} / ${top.levels[1]}`;
      }
    }
    this.dirty.clear();
  }
}
