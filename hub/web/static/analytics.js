// Analytics page: draws the embedded day series (#analytics-data) with the vendored uPlot.
// The same numbers are in each chart's <details> table; this only adds the pictures.
(function () {
  "use strict";
  const COLORS = ["#0b6b50", "#0a58ca", "#a4161a", "#8a4b00", "#6f42c1", "#1b1f24", "#d63384", "#20a0b0"];
  const LABELS = { customer: "Customers", api: "API", connector: "Connectors", automation: "Automations",
    broadcast: "Broadcasts", system: "System", app_echo: "Phone app (echo)", history: "History import" };

  function seriesOf(named, map, label) {
    return Object.entries(named).map(([name, values], i) => ({
      spec: { label: label ? label(name) : name, stroke: COLORS[i % COLORS.length], width: 2,
              spanGaps: true, points: { show: true, size: 6 } },
      values: values.map(map),
    }));
  }

  const DAY = 86400;
  const dayLabel = (v) => new Date(v * 1000).toISOString().slice(5, 10);

  function draw(el, xs, list, yLabel, percent, counts) {
    if (!list.length) { el.textContent = "No data in this period."; el.classList.add("muted"); return; }
    const opts = {
      width: Math.max(el.clientWidth, 280), height: 240,
      scales: { x: { time: true },
                y: { range: percent ? [0, 100] : (u, min, max) => [0, Math.max(max * 1.1, 1)] } },
      axes: [{ space: 50, incrs: [DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY],
               values: (u, splits) => splits.map(dayLabel) },
             { label: yLabel, size: 60,
               incrs: counts ? [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 50000, 100000] : undefined }],
      series: [{ label: "Day", value: (u, v) => v == null ? "—" : new Date(v * 1000).toISOString().slice(0, 10) },
               ...list.map((s) => s.spec)],
    };
    const plot = new window.uPlot(opts, [xs, ...list.map((s) => s.values)], el);
    new ResizeObserver(() => plot.setSize({ width: Math.max(el.clientWidth, 280), height: 240 })).observe(el);
    el.dataset.drawn = "true";
  }

  function init() {
    const source = document.getElementById("analytics-data");
    if (!source || !window.uPlot) return;
    const data = JSON.parse(source.textContent);
    const xs = data.days.map((d) => Date.parse(d + "T00:00:00Z") / 1000);
    const pct = (v) => (v == null ? null : Math.round(v * 1000) / 10);
    const num = (v) => Number(v);
    const charts = {
      delivery: [seriesOf({ "Delivered %": data.delivery.delivered_rate, "Read %": data.delivery.read_rate }, pct), "%"],
      origins: [seriesOf(data.origins.series, num, (n) => LABELS[n] || n), "messages"],
      spend: [seriesOf(data.spend.series, num), data.spend.currency || "cost"],
      revenue: [seriesOf(data.revenue.series, num), data.revenue.currency || "amount"],
    };
    for (const el of document.querySelectorAll("[data-chart]")) {
      const [list, label] = charts[el.dataset.chart] || [[], ""];
      draw(el, xs, list, label, el.dataset.chart === "delivery", el.dataset.chart === "origins");
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
