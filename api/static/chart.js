// One symbol's minute bars as candles and volume: history from /bars/{symbol}, then live bars.
//
// lightweight-charts only appends or replaces the newest bar, so live bars that arrive while the
// history is still loading wait in `pending`, and bars older than the newest one shown are skipped
// (the history already holds them).

const LWC = window.LightweightCharts;
const HISTORY_BARS = 1000;
const FILL_BELOW = 150;
const UP = "#26a69a";
const DOWN = "#ef5350";

/** RFC 3339 (any number of fractional digits, Z or an offset) to whole Unix seconds. */
export function unixSeconds(text) {
  const match = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$/.exec(text);
  const ms = match ? Date.parse(match[1] + match[2]) : Date.parse(text);
  if (Number.isNaN(ms)) throw new Error(`expected an RFC 3339 time, got ${JSON.stringify(text)}`);
  return Math.floor(ms / 1000);
}

function toPoint(bar) {
  return { time: unixSeconds(bar.t), open: bar.o, high: bar.h, low: bar.l, close: bar.c, volume: bar.v };
}

function candleOf(point) {
  return { time: point.time, open: point.open, high: point.high, low: point.low, close: point.close };
}

function volumeOf(point) {
  return { time: point.time, value: point.volume, color: point.close >= point.open ? `${UP}66` : `${DOWN}66` };
}

export class BarChart {
  constructor(container) {
    if (!LWC) throw new Error("lightweight-charts did not load (static/vendor)");
    this.chart = LWC.createChart(container, {
      autoSize: true,
      layout: {
        background: { type: "solid", color: "#11161d" },
        textColor: "#9aa7b5",
        fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
      },
      grid: { vertLines: { color: "#1c232c" }, horzLines: { color: "#1c232c" } },
      rightPriceScale: { borderColor: "#2a333e" },
      // maxBarSpacing: a few bars fitted to the width stay candles, not blocks.
      timeScale: { borderColor: "#2a333e", timeVisible: true, secondsVisible: false, maxBarSpacing: 24 },
      crosshair: { mode: LWC.CrosshairMode.Normal },
    });
    this.candles = this.chart.addSeries(LWC.CandlestickSeries, {
      upColor: UP, downColor: DOWN, wickUpColor: UP, wickDownColor: DOWN, borderVisible: false,
    });
    this.volume = this.chart.addSeries(LWC.HistogramSeries, {
      priceFormat: { type: "volume" }, priceScaleId: "volume", lastValueVisible: false, priceLineVisible: false,
    });
    this.chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    this.symbol = null;
    this.lastTime = null;
    this.loading = false;
    this.pending = [];
    this.generation = 0;
  }

  /** Show `symbol`: its last HISTORY_BARS minute bars; resolves to how many were loaded (null if superseded). */
  async load(symbol) {
    const generation = ++this.generation;
    this.symbol = symbol;
    this.lastTime = null;
    this.loading = true;
    this.pending = [];
    this.candles.setData([]);
    this.volume.setData([]);
    try {
      const url = `/bars/${encodeURIComponent(symbol)}?timeframe=1Min&sort=desc&limit=${HISTORY_BARS}`;
      const response = await fetch(url);
      const body = await response.json();
      if (generation !== this.generation) return null;
      if (!response.ok) throw new Error(`GET ${url}: ${response.status} ${JSON.stringify(body.detail ?? body)}`);
      const points = [];
      for (const bar of (body.bars ?? []).reverse()) {
        const point = toPoint(bar);
        if (points.length === 0 || point.time > points[points.length - 1].time) points.push(point);
      }
      this.candles.setData(points.map(candleOf));
      this.volume.setData(points.map(volumeOf));
      this.lastTime = points.length > 0 ? points[points.length - 1].time : null;
      // A short history fills the width; a long one shows its newest bars at the default spacing.
      if (points.length < FILL_BELOW) this.chart.timeScale().fitContent();
      else this.chart.timeScale().scrollToRealTime();
      return points.length;
    } finally {
      if (generation === this.generation) {
        this.loading = false;
        const pending = this.pending;
        this.pending = [];
        for (const point of pending) this.apply(point);
      }
    }
  }

  /** A live bar message ({"T":"b"|"u","S",...}); true when the chart drew it. */
  update(message) {
    if (message.S !== this.symbol) return false;
    const point = toPoint(message);
    if (this.loading) {
      this.pending.push(point);
      return false;
    }
    return this.apply(point);
  }

  apply(point) {
    if (this.lastTime !== null && point.time < this.lastTime) return false;
    this.candles.update(candleOf(point));
    this.volume.update(volumeOf(point));
    this.lastTime = point.time;
    return true;
  }
}
