// The auditor's page: the data-flow map (connectors → topics → categories → partners, drawn
// as SVG), refusals over time, the audit chain's verification state, recent entries and
// exports. Everything comes from /v1/audit with the auditor's bearer token.
"use strict";

(function () {
  const {
    act,
    announce,
    api,
    dataTable,
    download,
    el,
    fmtDate,
    fmtNumber,
    nameOf,
    showError,
    t,
    tOr,
  } = window.Tsunagu;

  const KINDS = [
    "publish_batch",
    "dead_letter",
    "consent_change",
    "decision",
    "partner_read",
    "erasure",
    "token_issued",
    "admin_change",
    "audit_export",
  ];
  const COLUMNS = ["connector", "topic", "category", "partner"];
  const WINDOWS = {
    "1h": { ms: 3600 * 1000, bucket: "hour" },
    "24h": { ms: 24 * 3600 * 1000, bucket: "hour" },
    "7d": { ms: 7 * 24 * 3600 * 1000, bucket: "day" },
  };

  const state = {
    partners: new Map(),
    categories: new Map(),
    purposes: new Map(),
    since: null,
    until: null,
    flows: null,
    refusals: null,
    verification: null,
    entries: null,
    nextCursor: null,
  };
  // Answers to an older request (the window changed meanwhile) are dropped.
  let generation = 0;

  // ----- names -------------------------------------------------------------------------

  function nodeLabel(node) {
    switch (node.kind) {
      case "connector": {
        const parts = node.code.split(":");
        return parts[parts.length - 1] || node.code;
      }
      case "topic":
        return tOr("topic." + node.code, node.code);
      case "category":
        return nameOf(state.categories.get(node.code), node.code);
      case "partner":
        return nameOf(state.partners.get(node.code), node.code);
      default:
        return node.code;
    }
  }

  function reasonsText(reasons) {
    return Object.entries(reasons || {})
      .sort((a, b) => b[1] - a[1])
      .map(([reason, n]) => `${tOr("reason." + reason, reason)} ${fmtNumber(n)}`)
      .join(", ");
  }

  // ----- loading -----------------------------------------------------------------------

  async function loadCatalogue() {
    const [partners, categories, purposes] = await Promise.all([
      api("/v1/catalogue/partners", { auth: false }),
      api("/v1/catalogue/categories", { auth: false }),
      api("/v1/catalogue/purposes", { auth: false }),
    ]);
    state.partners = new Map(partners.map((p) => [p.id, p]));
    state.categories = new Map(categories.map((c) => [c.code, c]));
    state.purposes = new Map(purposes.map((p) => [p.code, p]));
  }

  function windowChoice() {
    return WINDOWS[document.getElementById("window").value] || WINDOWS["24h"];
  }

  async function loadAll(freshVerification) {
    const mine = ++generation;
    const choice = windowChoice();
    const until = new Date();
    const since = new Date(until.getTime() - choice.ms);
    const range = { since: since.toISOString(), until: until.toISOString() };
    const results = await Promise.allSettled([
      api("/v1/audit/flows", { params: range }),
      api("/v1/audit/refusals", { params: { ...range, bucket: choice.bucket } }),
      api("/v1/audit/verification", { params: { fresh: freshVerification ? "true" : "" } }),
      fetchEntries(range, null),
    ]);
    if (mine !== generation) return;
    state.since = range.since;
    state.until = range.until;
    const [flows, refusals, verification, entries] = results;
    if (flows.status === "fulfilled") state.flows = flows.value;
    if (refusals.status === "fulfilled") state.refusals = refusals.value;
    if (verification.status === "fulfilled") state.verification = verification.value;
    if (entries.status === "fulfilled") {
      state.entries = entries.value.entries;
      state.nextCursor = entries.value.next_cursor;
    }
    // The same token fails every call the same way: say each distinct problem once.
    const seen = new Set();
    for (const result of results) {
      if (result.status !== "rejected") continue;
      const key = String(result.reason && result.reason.message);
      if (seen.has(key)) continue;
      seen.add(key);
      showError(result.reason);
    }
    render();
  }

  function fetchEntries(range, cursor) {
    const kind = document.getElementById("entry-kind").value;
    return api("/v1/audit/entries", {
      params: { ...range, kind, cursor, limit: 50 },
    });
  }

  // A later choice of kind (or window) wins over a slower answer to an earlier one.
  let entriesLoad = 0;

  async function loadEntries(append) {
    const mine = generation;
    const load = append ? entriesLoad : ++entriesLoad;
    await act(async () => {
      const range = { since: state.since, until: state.until };
      const page = await fetchEntries(range, append ? state.nextCursor : null);
      if (mine !== generation || load !== entriesLoad) return;
      state.entries = append ? [...(state.entries || []), ...page.entries] : page.entries;
      state.nextCursor = page.next_cursor;
      renderEntries();
    });
  }

  // ----- summary tiles -----------------------------------------------------------------

  function renderTiles() {
    const box = document.getElementById("tiles");
    const range = document.getElementById("range");
    range.textContent = state.since
      ? t("window.range", { since: fmtDate(state.since), until: fmtDate(state.until) })
      : "";
    if (!state.flows) {
      box.replaceChildren();
      return;
    }
    const kindOf = new Map(state.flows.nodes.map((n) => [n.id, n.kind]));
    const sum = (from, field) =>
      state.flows.edges
        .filter((e) => kindOf.get(e.source) === from)
        .reduce((total, e) => total + e[field], 0);
    const tile = (id, value, label, style) =>
      el(
        "div",
        { class: "tile " + (style && value > 0 ? style : ""), id: "tile-" + id, dataset: { value } },
        el("div", { class: "tile-value" }, fmtNumber(value)),
        el("div", { class: "tile-label" }, t(label)),
      );
    box.replaceChildren(
      tile("events", sum("connector", "count"), "summary.events"),
      tile("dead-letters", sum("connector", "refused"), "summary.dead_letters", "warn"),
      tile("reads", sum("category", "count"), "summary.reads"),
      tile("refused", sum("category", "refused"), "summary.refused", "refused"),
      // Categories outside a partner's consent that it did not ask for: not refusals.
      tile("withheld", sum("category", "withheld"), "summary.withheld"),
    );
  }

  // ----- the flow map ------------------------------------------------------------------

  // Every size is measured from the text it holds (names are never cut), then the map grows
  // until each refusal label fits on its own edge, clear of the other labels and edges.
  const MAP = {
    minWidth: 900,
    nodeH: 36,
    rowGap: 14,
    padX: 10,
    minNodeW: 90,
    minGap: 80,
    margin: 12,
    top: 44,
    bottom: 16,
    lineH: 14,
    // How far another edge must stay from a label's anchor point on its own edge.
    clearance: 9,
    // Farther than this from other edges is clear enough: nearer the middle is then better.
    enoughClearance: 24,
    // Places along an edge a label may sit (fractions of the curve), the middle first.
    along: [
      0.5, 0.46, 0.54, 0.42, 0.58, 0.38, 0.62, 0.34, 0.66, 0.3, 0.7, 0.26, 0.74, 0.22, 0.78, 0.18,
      0.82, 0.14, 0.86,
    ],
    // Each failed attempt spreads the rows; every fourth one also widens the gaps.
    attempts: 40,
    growRow: 8,
    growGap: 40,
  };

  // Drawn at the size it is shown (1 unit = 1 CSS pixel), so labels stay readable; narrower
  // screens scroll the diagram sideways instead of shrinking it.
  function drawingWidth(box, min) {
    return Math.max(min, Math.floor(box.clientWidth) - 2);
  }

  function orderColumns(flows) {
    const columns = COLUMNS.map((kind) => flows.nodes.filter((n) => n.kind === kind));
    const position = new Map();
    columns[0].sort((a, b) => a.code.localeCompare(b.code));
    columns[0].forEach((n, i) => position.set(n.id, i));
    // Each later column follows the weighted mean position of what feeds it, which keeps
    // curves from crossing more than they must.
    for (let c = 1; c < columns.length; c++) {
      const key = new Map();
      for (const node of columns[c]) {
        let weight = 0;
        let total = 0;
        for (const edge of flows.edges) {
          if (edge.target !== node.id || !position.has(edge.source)) continue;
          const w = edge.count + edge.refused + 1;
          weight += w;
          total += w * position.get(edge.source);
        }
        key.set(node.id, weight ? total / weight : Number.MAX_SAFE_INTEGER);
      }
      columns[c].sort((a, b) => key.get(a.id) - key.get(b.id) || a.code.localeCompare(b.code));
      columns[c].forEach((n, i) => position.set(n.id, i));
    }
    return columns;
  }

  function curve(x1, y1, x2, y2) {
    const dx = (x2 - x1) / 2;
    return `M ${x1} ${y1} C ${x1 + dx} ${y1}, ${x2 - dx} ${y2}, ${x2} ${y2}`;
  }

  /** The point at ``t`` (0..1) of the curve drawn by ``curve``. */
  function pointOn(x1, y1, x2, y2, t) {
    const u = 1 - t;
    const dx = (x2 - x1) / 2;
    const x = u * u * u * x1 + 3 * u * u * t * (x1 + dx) + 3 * u * t * t * (x2 - dx) + t * t * t * x2;
    const y = (u * u * u + 3 * u * u * t) * y1 + (3 * u * t * t + t * t * t) * y2;
    return { x, y };
  }

  function polyline(x1, y1, x2, y2) {
    const points = [];
    for (let i = 0; i <= 32; i++) points.push(pointOn(x1, y1, x2, y2, i / 32));
    // The curve stays inside the box of its ends (its control points share their y).
    points.box = {
      x: Math.min(x1, x2),
      y: Math.min(y1, y2),
      w: Math.abs(x2 - x1),
      h: Math.abs(y2 - y1),
    };
    return points;
  }

  /** The distance from ``p`` to the curve ``points``, or ``cap`` if it is at least that. */
  function distanceTo(points, p, cap) {
    const b = points.box;
    if (p.x < b.x - cap || p.x > b.x + b.w + cap || p.y < b.y - cap || p.y > b.y + b.h + cap) {
      return cap;
    }
    let best = cap;
    for (let i = 1; i < points.length; i++) {
      const a = points[i - 1];
      const b = points[i];
      const vx = b.x - a.x;
      const vy = b.y - a.y;
      const len = vx * vx + vy * vy;
      const s = len ? Math.max(0, Math.min(1, ((p.x - a.x) * vx + (p.y - a.y) * vy) / len)) : 0;
      best = Math.min(best, Math.hypot(a.x + s * vx - p.x, a.y + s * vy - p.y));
    }
    return best;
  }

  function overlaps(a, b, margin) {
    return (
      a.x < b.x + b.w + margin &&
      b.x < a.x + a.w + margin &&
      a.y < b.y + b.h + margin &&
      b.y < a.y + a.h + margin
    );
  }

  function width(n, scale, max) {
    return Math.min(max, 1.5 + scale * Math.log(1 + n)).toFixed(2);
  }

  function refusedLines(edge) {
    // The count, then the reason (with its count when there are several): two short lines
    // leave a label room to move along its edge between two columns.
    const reasons = Object.entries(edge.reasons || {}).sort((a, b) => b[1] - a[1]);
    const named = (reason) => tOr("reason." + reason, reason);
    return [t("flows.label_refused", { refused: fmtNumber(edge.refused) })].concat(
      reasons.length === 1
        ? [named(reasons[0][0])]
        : reasons.map(([reason, n]) => `${named(reason)} ${fmtNumber(n)}`),
    );
  }

  /** Widths of texts as the page's fonts draw them, measured in a scratch SVG. */
  function measure(box, groups) {
    const scratch = el("svg", { width: 10, height: 10, class: "scratch", "aria-hidden": "true" });
    const texts = groups.map(({ cls, textCls, lines }) =>
      lines.map((line, i) => {
        const tspan = el("tspan", { class: i ? "reason" : "count" }, line);
        const text = el("text", { class: textCls || null, x: 0, y: 20 }, tspan);
        scratch.append(el("g", { class: cls }, text));
        return text;
      }),
    );
    box.append(scratch);
    const widths = texts.map((lines) => Math.max(0, ...lines.map((text) => text.getBBox().width)));
    scratch.remove();
    return widths;
  }

  function layoutMap(flows, columns, sizes, boxWidth, step, widen) {
    const columnIndex = new Map();
    columns.forEach((column, c) => column.forEach((n) => columnIndex.set(n.id, c)));
    const refused = flows.edges.filter(
      (e) => e.refused > 0 && columnIndex.has(e.source) && columnIndex.has(e.target),
    );
    // Columns as wide as their longest name; gaps as wide as their widest label, the rest
    // of the width shared by how many labels each gap holds.
    const colW = columns.map((column, c) =>
      Math.max(MAP.minNodeW, sizes.title[c] + 4, ...column.map((n) => sizes.node.get(n.id) + 2 * MAP.padX)),
    );
    const need = COLUMNS.slice(1).map(() => MAP.minGap + widen);
    const load = COLUMNS.slice(1).map(() => 1);
    for (const edge of refused) {
      const g = columnIndex.get(edge.source);
      need[g] = Math.max(need[g], 2 * sizes.label.get(edge).w + 20 + widen);
      load[g] += 1;
    }
    const base = 2 * MAP.margin + colW.reduce((a, b) => a + b, 0) + need.reduce((a, b) => a + b, 0);
    const mapWidth = Math.max(boxWidth, Math.ceil(base));
    const spare = mapWidth - base;
    const totalLoad = load.reduce((a, b) => a + b, 0);
    const colX = [];
    let x = MAP.margin;
    columns.forEach((_, c) => {
      colX.push(x);
      x += colW[c] + (c < need.length ? need[c] + (spare * load[c]) / totalLoad : 0);
    });

    const tallest = Math.max(...columns.map((c) => c.length), 1);
    const at = new Map();
    const nodeBoxes = [];
    columns.forEach((column, c) => {
      const offset = ((tallest - column.length) * step) / 2;
      column.forEach((node, i) => {
        const box = { x: colX[c], y: MAP.top + offset + i * step, w: colW[c], h: MAP.nodeH, node };
        at.set(node.id, box);
        nodeBoxes.push(box);
      });
    });

    const shiftOf = (edge) => (edge.refused > 0 && edge.count > 0 ? 5 : 0);
    const ends = (edge, shift) => {
      const from = at.get(edge.source);
      const to = at.get(edge.target);
      return [from.x + from.w, from.y + MAP.nodeH / 2 + shift, to.x, to.y + MAP.nodeH / 2 + shift];
    };
    const drawn = flows.edges.filter((e) => at.has(e.source) && at.has(e.target));
    const lines = drawn.map((edge) => {
      const paths = [];
      if (edge.count > 0) paths.push(polyline(...ends(edge, 0)));
      if (edge.refused > 0) paths.push(polyline(...ends(edge, shiftOf(edge))));
      return { edge, paths };
    });

    // Labels in the order of their edge's middle, top to bottom, so neighbours settle
    // in order rather than the first ones taking the best places of later ones.
    const placed = [];
    let ok = true;
    const order = refused
      .map((edge) => ({ edge, mid: pointOn(...ends(edge, shiftOf(edge)), 0.5) }))
      .sort((a, b) => a.mid.x - b.mid.x || a.mid.y - b.mid.y);
    for (const { edge } of order) {
      const [x1, y1, x2, y2] = ends(edge, shiftOf(edge));
      const { w, h } = sizes.label.get(edge);
      // Of the places clear of nodes and labels, the one farthest from any other edge (up
      // to a point), then the nearest to the middle.
      let spot = null;
      let best = -Infinity;
      for (const t of MAP.along) {
        const p = pointOn(x1, y1, x2, y2, t);
        const box = { x: p.x - w / 2, y: p.y - h / 2, w, h };
        if (box.x < x1 + 4 || box.x + w > x2 - 4 || box.y < MAP.top) continue;
        if (placed.some((other) => overlaps(box, other.box, 4))) continue;
        if (nodeBoxes.some((n) => overlaps(box, n, 2))) continue;
        let clear = MAP.enoughClearance;
        for (const line of lines) {
          if (line.edge === edge) continue;
          for (const points of line.paths) clear = Math.min(clear, distanceTo(points, p, clear));
        }
        if (clear < MAP.clearance) continue;
        const score = clear - 20 * Math.abs(t - 0.5);
        if (score > best) {
          best = score;
          spot = { edge, p, box };
        }
      }
      if (!spot) {
        ok = false;
        const p = pointOn(x1, y1, x2, y2, 0.5);
        spot = { edge, p, box: { x: p.x - w / 2, y: p.y - h / 2, w, h } };
      }
      placed.push(spot);
    }
    let height = MAP.top + tallest * step + MAP.bottom;
    for (const { box } of placed) height = Math.max(height, box.y + box.h + 8);
    return { ok, at, colX, colW, mapWidth, height, placed, ends, shiftOf, step, widen };
  }

  function renderFlowMap() {
    const box = document.getElementById("flow-map");
    const flows = state.flows;
    if (!flows) {
      box.replaceChildren(el("p", { class: "muted" }, t("common.loading")));
      return;
    }
    if (flows.edges.length === 0) {
      box.replaceChildren(el("p", { class: "empty" }, t("flows.empty")));
      renderFlowTable();
      return;
    }
    const columns = orderColumns(flows);
    const labelLines = new Map(flows.edges.filter((e) => e.refused > 0).map((e) => [e, refusedLines(e)]));
    const titleWidths = measure(
      box,
      COLUMNS.map((c) => ({ cls: "columns", textCls: "column-title", lines: [t("flows.col." + c)] })),
    );
    const nodeWidths = measure(
      box,
      flows.nodes.map((n) => ({ cls: "node", lines: [nodeLabel(n)] })),
    );
    const labelWidths = measure(
      box,
      [...labelLines.values()].map((lines) => ({ cls: "refused-label", lines })),
    );
    const sizes = {
      title: titleWidths,
      node: new Map(flows.nodes.map((n, i) => [n.id, nodeWidths[i]])),
      label: new Map(
        [...labelLines.entries()].map(([edge, lines], i) => [
          edge,
          { w: Math.ceil(labelWidths[i]) + 14, h: lines.length * MAP.lineH + 6 },
        ]),
      ),
    };
    // Rows spread further apart until every label finds a place on its own edge.
    const boxWidth = drawingWidth(box, MAP.minWidth);
    let step = MAP.nodeH + MAP.rowGap;
    let widen = 0;
    let map = layoutMap(flows, columns, sizes, boxWidth, step, widen);
    for (let i = 1; !map.ok && i < MAP.attempts; i++) {
      step += MAP.growRow;
      if (i % 4 === 0) widen += MAP.growGap;
      map = layoutMap(flows, columns, sizes, boxWidth, step, widen);
    }

    const nodesLayer = el("g", { class: "nodes" });
    const titles = el("g", { class: "columns" });
    columns.forEach((column, c) => {
      titles.append(
        el("text", { class: "column-title", x: map.colX[c], y: 22 }, t("flows.col." + COLUMNS[c])),
      );
      for (const node of column) {
        const { x, y, w } = map.at.get(node.id);
        const label = nodeLabel(node);
        nodesLayer.append(
          el(
            "g",
            { class: "node kind-" + node.kind, dataset: { node: node.id } },
            el("title", {}, `${label} (${node.code})`),
            el("rect", { x, y, width: w, height: MAP.nodeH, rx: 7 }),
            el("text", { class: "node-label", x: x + MAP.padX, y: y + MAP.nodeH / 2 + 4 }, label),
          ),
        );
      }
    });

    const edgesLayer = el("g", { class: "edges" });
    let refusedEdges = 0;
    for (const edge of flows.edges) {
      if (!map.at.has(edge.source) || !map.at.has(edge.target)) continue;
      const from = map.at.get(edge.source).node;
      const to = map.at.get(edge.target).node;
      const key = `${edge.source}->${edge.target}`;
      let title = t("flows.edge_title", {
        source: nodeLabel(from),
        target: nodeLabel(to),
        count: fmtNumber(edge.count),
      });
      if (edge.refused > 0) {
        const reasons = reasonsText(edge.reasons);
        title += " / " + t("flows.edge_refused", { refused: edge.refused, reasons });
      }
      if (edge.withheld > 0) title += " / " + t("flows.edge_withheld", { withheld: edge.withheld });
      const group = el(
        "g",
        {
          class: "edge" + (edge.refused > 0 ? " refused" : ""),
          dataset: {
            edge: key,
            count: edge.count,
            refused: edge.refused,
            withheld: edge.withheld || 0,
            reasons: Object.keys(edge.reasons || {}).sort().join(" "),
          },
        },
        el("title", {}, title),
      );
      if (edge.count > 0) {
        group.append(
          el("path", {
            class: "flow",
            d: curve(...map.ends(edge, 0)),
            "stroke-width": width(edge.count, 2, 14),
          }),
        );
      }
      if (edge.refused > 0) {
        refusedEdges += 1;
        // Beside the accepted flow (when there is one), so both stay visible.
        group.append(
          el("path", {
            class: "flow-refused",
            d: curve(...map.ends(edge, map.shiftOf(edge))),
            "stroke-width": width(edge.refused, 1.5, 10),
          }),
        );
      }
      edgesLayer.append(group);
    }

    const labelsLayer = el(
      "g",
      { class: "labels" },
      map.placed.map(({ edge, p, box: b }) =>
        el(
          "g",
          {
            class: "refused-label",
            dataset: {
              edge: `${edge.source}->${edge.target}`,
              refused: edge.refused,
              reasons: Object.keys(edge.reasons || {}).sort().join(" "),
            },
          },
          el("rect", { x: b.x.toFixed(1), y: b.y.toFixed(1), width: b.w, height: b.h, rx: 8 }),
          el(
            "text",
            { x: p.x.toFixed(1), y: b.y, "text-anchor": "middle" },
            labelLines.get(edge).map((line, i) =>
              el(
                "tspan",
                {
                  x: p.x.toFixed(1),
                  y: (b.y + (i + 1) * MAP.lineH).toFixed(1),
                  class: i ? "reason" : "count",
                },
                line,
              ),
            ),
          ),
        ),
      ),
    );

    const svg = el(
      "svg",
      {
        viewBox: `0 0 ${map.mapWidth} ${map.height}`,
        width: map.mapWidth,
        height: map.height,
        role: "img",
        "aria-label": t("flows.aria", {
          nodes: flows.nodes.length,
          edges: flows.edges.length,
          refused: refusedEdges,
        }),
        xmlns: "http://www.w3.org/2000/svg",
        // How the layout settled: the row pitch, how much the gaps grew, whether every
        // label found a clear place.
        dataset: { step: map.step, widen: map.widen, fits: map.ok },
      },
      titles,
      edgesLayer,
      nodesLayer,
      labelsLayer,
    );
    box.replaceChildren(svg);
    renderFlowTable();
  }

  function renderFlowTable() {
    const box = document.getElementById("flow-table");
    const flows = state.flows;
    if (!flows || flows.edges.length === 0) {
      box.replaceChildren(el("p", { class: "empty" }, t("flows.empty")));
      return;
    }
    const byId = new Map(flows.nodes.map((n) => [n.id, n]));
    const label = (id) => (byId.has(id) ? nodeLabel(byId.get(id)) : id);
    const purposes = (edge) =>
      Object.entries(edge.purposes || {})
        .map(([p, n]) => `${p} ${fmtNumber(n)}`)
        .join(", ");
    const headers = [
      "flows.from",
      "flows.to",
      "flows.count",
      "flows.refused",
      "flows.withheld",
      "flows.reasons",
      "flows.purposes",
      "flows.last_seen",
    ];
    const rows = flows.edges.map((edge) =>
      el(
        "tr",
        { class: edge.refused > 0 ? "refused" : "", dataset: { flow: `${edge.source}->${edge.target}` } },
        el("td", { title: edge.source }, label(edge.source)),
        el("td", { title: edge.target }, label(edge.target)),
        el("td", { class: "num" }, fmtNumber(edge.count)),
        el("td", { class: "num" }, fmtNumber(edge.refused)),
        el("td", { class: "num" }, fmtNumber(edge.withheld || 0)),
        el("td", {}, reasonsText(edge.reasons)),
        el("td", {}, purposes(edge)),
        el("td", { class: "nowrap" }, fmtDate(edge.last_seen)),
      ),
    );
    box.replaceChildren(dataTable(headers, rows, "flows.empty"));
  }

  // ----- refusals over time ------------------------------------------------------------

  const CHART = { minWidth: 320, height: 230, left: 40, right: 10, top: 14, bottom: 30 };

  function bucketLabel(iso, bucket) {
    const options =
      bucket === "day"
        ? { timeZone: "Asia/Tokyo", month: "2-digit", day: "2-digit" }
        : { timeZone: "Asia/Tokyo", hour: "2-digit", minute: "2-digit", hour12: false };
    const locale = window.Tsunagu.lang() === "en" ? "en-GB" : "ja-JP";
    return new Intl.DateTimeFormat(locale, options).format(new Date(iso));
  }

  function renderRefusals() {
    const box = document.getElementById("refusals");
    const data = state.refusals;
    if (!data) {
      box.replaceChildren(el("p", { class: "muted" }, t("common.loading")));
      return;
    }
    const series = data.series;
    const totalRefused = series.reduce((n, b) => n + b.refused, 0);
    const totalDead = series.reduce((n, b) => n + b.dead_letters, 0);
    // Withheld decisions are not refusals: counted beside the chart, never drawn as bars.
    const totalWithheld = series.reduce((n, b) => n + (b.withheld || 0), 0);
    const chartWidth = drawingWidth(box, CHART.minWidth);
    const plotW = chartWidth - CHART.left - CHART.right;
    const plotH = CHART.height - CHART.top - CHART.bottom;
    const max = Math.max(1, ...series.map((b) => b.refused + b.dead_letters));
    const slot = plotW / Math.max(series.length, 1);
    const barW = Math.max(2, slot * 0.72);
    const scale = (n) => (n / max) * plotH;
    const baseY = CHART.top + plotH;
    const every = Math.max(1, Math.ceil(series.length / Math.max(2, Math.floor(plotW / 60))));
    const bars = series.map((b, i) => {
      const x = CHART.left + i * slot + (slot - barW) / 2;
      const hRefused = scale(b.refused);
      const hDead = scale(b.dead_letters);
      const start = fmtDate(b.start);
      const reasons = reasonsText(b.reasons);
      const title =
        t("refusals.bar", { start, refused: b.refused, dead: b.dead_letters }) +
        (reasons ? ` (${reasons})` : "") +
        (b.withheld ? " / " + t("refusals.bar_withheld", { withheld: fmtNumber(b.withheld) }) : "");
      return el(
        "g",
        {
          class: "bar",
          dataset: {
            start: b.start,
            refused: b.refused,
            deadLetters: b.dead_letters,
            withheld: b.withheld || 0,
          },
        },
        el("title", {}, title),
        // An invisible full-height target, so every bucket has a tooltip, even an empty one.
        el("rect", { x, y: CHART.top, width: barW, height: plotH, fill: "transparent" }),
        hRefused > 0
          ? el("rect", { class: "bar-refused", x, y: baseY - hRefused, width: barW, height: hRefused })
          : null,
        hDead > 0
          ? el("rect", { class: "bar-dead", x, y: baseY - hRefused - hDead, width: barW, height: hDead })
          : null,
        i % every === 0
          ? el(
              "text",
              { class: "axis-label", x: x + barW / 2, y: baseY + 16, "text-anchor": "middle" },
              bucketLabel(b.start, data.bucket),
            )
          : null,
      );
    });
    const svg = el(
      "svg",
      {
        viewBox: `0 0 ${chartWidth} ${CHART.height}`,
        width: chartWidth,
        height: CHART.height,
        role: "img",
        "aria-label": t("refusals.aria", { refused: totalRefused, dead: totalDead }),
        xmlns: "http://www.w3.org/2000/svg",
        dataset: { refused: totalRefused, deadLetters: totalDead, withheld: totalWithheld },
      },
      el("line", { class: "axis", x1: CHART.left, y1: baseY, x2: chartWidth - CHART.right, y2: baseY }),
      el("line", { class: "axis", x1: CHART.left, y1: CHART.top, x2: CHART.left, y2: baseY }),
      el("text", { class: "axis-label", x: CHART.left - 6, y: CHART.top + 4, "text-anchor": "end" }, fmtNumber(max)),
      el("text", { class: "axis-label", x: CHART.left - 6, y: baseY, "text-anchor": "end" }, "0"),
      bars,
      totalRefused + totalDead === 0
        ? el(
            "text",
            { class: "axis-label", x: CHART.left + plotW / 2, y: CHART.top + plotH / 2, "text-anchor": "middle" },
            t("refusals.empty"),
          )
        : null,
    );
    const note = el(
      "p",
      { class: "help withheld-note", id: "refusals-withheld", dataset: { withheld: totalWithheld } },
      t("refusals.withheld_note", { withheld: fmtNumber(totalWithheld) }),
    );
    box.replaceChildren(svg, note);
  }

  // ----- verification ------------------------------------------------------------------

  function renderVerification() {
    const box = document.getElementById("verification");
    const v = state.verification;
    if (!v) {
      box.replaceChildren(el("p", { class: "muted" }, t("common.loading")));
      return;
    }
    const fact = (label, value) => [el("dt", {}, t(label)), el("dd", {}, value)];
    let problem = null;
    if (v.problem) {
      const vars = { seq: v.problem.seq, kind: v.problem.kind, detail: v.problem.detail };
      problem = el(
        "p",
        { class: "problem", dataset: { seq: v.problem.seq === null ? "" : v.problem.seq } },
        t(v.problem.seq === null ? "verify.problem_noseq" : "verify.problem", vars),
      );
    }
    box.replaceChildren(
      el(
        "div",
        { class: "verify-state", dataset: { ok: v.ok } },
        el("span", { class: "badge " + (v.ok ? "ok" : "broken") }, t(v.ok ? "verify.ok" : "verify.broken")),
      ),
      el(
        "dl",
        { class: "facts" },
        fact("verify.entries", fmtNumber(v.entries)),
        fact("verify.checkpoints", fmtNumber(v.checkpoints)),
        fact("verify.last_seq", String(v.last_seq)),
        fact("verify.last_checkpoint", v.checkpoints ? String(v.last_checkpoint_seq) : "—"),
        fact("verify.unsigned_tail", fmtNumber(v.unsigned_tail)),
        fact("verify.verified_at", fmtDate(v.verified_at)),
      ),
      ...(problem ? [problem] : []),
    );
  }

  // ----- entries -----------------------------------------------------------------------

  function renderKindSelect() {
    const select = document.getElementById("entry-kind");
    const chosen = select.value;
    select.replaceChildren(
      el("option", { value: "" }, t("common.all")),
      ...KINDS.map((kind) => el("option", { value: kind }, tOr("kind." + kind, kind))),
    );
    select.value = chosen;
  }

  function renderEntries() {
    const box = document.getElementById("entries");
    const more = document.getElementById("entries-more");
    more.hidden = !state.nextCursor;
    if (!state.entries) {
      box.replaceChildren(el("p", { class: "muted" }, t("common.loading")));
      return;
    }
    if (state.entries.length === 0) {
      box.replaceChildren(el("p", { class: "empty" }, t("entries.empty")));
      return;
    }
    const headers = [
      "entries.seq",
      "entries.at",
      "entries.kind",
      "entries.who",
      "entries.whose",
      "entries.purpose",
      "entries.decision",
      "entries.reason",
      "entries.raw",
    ];
    const rows = state.entries.map((entry) => {
      const decision = entryDecision(entry);
      return el(
        "tr",
        { dataset: { seq: entry.seq, kind: entry.kind } },
        el("td", { class: "num" }, String(entry.seq)),
        el("td", { class: "nowrap" }, fmtDate(entry.at)),
        el("td", {}, tOr("kind." + entry.kind, entry.kind)),
        el("td", { dataset: { col: "who" } }, entryActor(entry)),
        el("td", { dataset: { col: "whose" } }, entryWhose(entry)),
        el("td", { dataset: { col: "purpose" } }, purposeName(entry.fields.purpose)),
        el(
          "td",
          { dataset: { col: "decision", outcome: decision.outcome || "" } },
          decision.outcome
            ? el("span", { class: "outcome " + decision.outcome }, t("entries.outcome." + decision.outcome))
            : null,
          decision.text ? " " + decision.text : decision.outcome ? "" : "—",
        ),
        el("td", { dataset: { col: "reason" } }, entryReason(entry)),
        // The entry exactly as stored and hashed, for whoever needs to check it.
        el(
          "td",
          { class: "raw" },
          el(
            "details",
            {},
            el("summary", {}, t("entries.raw_show")),
            el("pre", { class: "raw-entry" }, JSON.stringify(entry, null, 2)),
          ),
        ),
      );
    });
    box.replaceChildren(dataTable(headers, rows, "entries.empty"));
  }

  // What an entry says, in the words of a municipal auditor: who acted, whose data or which
  // view, for what purpose, what was decided and why. Codes stay in the raw entry.

  function partnerName(id) {
    return nameOf(state.partners.get(id), id);
  }

  function categoryNames(codes) {
    return (codes || []).map((code) => nameOf(state.categories.get(code), code)).join(", ");
  }

  function purposeName(code) {
    return code ? nameOf(state.purposes.get(code), code) : "—";
  }

  function entryActor(entry) {
    const actor = entry.actor;
    if (state.partners.has(actor)) return partnerName(actor);
    // A dead letter refused at the door names the connector that sent it (its token's subject).
    const connector = entry.kind === "dead_letter" && actor !== "ingest";
    if (connector || actor.startsWith("urn:tsunagu:connector:")) {
      return t("entries.actor.connector", { name: actor.replace(/^urn:tsunagu:connector:/, "") });
    }
    return tOr("entries.actor." + actor, actor);
  }

  function entryWhose(entry) {
    const f = entry.fields;
    const parts = [];
    if (entry.subject_ref) parts.push(t("entries.resident_ref", { ref: entry.subject_ref.slice(0, 8) }));
    if (f.view) {
      parts.push(
        f.view.startsWith("statistics/")
          ? t("entries.view_statistics", { name: f.view.slice("statistics/".length) })
          : tOr("view." + f.view, f.view),
      );
    }
    if (f.topic) parts.push(tOr("topic." + f.topic, f.topic));
    if (entry.kind === "consent_change" && f.partner) parts.push(partnerName(f.partner));
    return parts.length ? parts.join(" / ") : "—";
  }

  function entryDecision(entry) {
    const f = entry.fields;
    switch (entry.kind) {
      case "decision": {
        const outcome = f.allowed ? "allowed" : f.withheld ? "withheld" : "refused";
        return { outcome, text: categoryNames([f.category]) };
      }
      case "partner_read":
        return {
          outcome: "read",
          text: t("entries.read", {
            categories: categoryNames(f.categories) || t("entries.no_categories"),
            rows: fmtNumber(f.rows || 0),
          }),
        };
      case "dead_letter":
        return { outcome: "dead_letter", text: "" };
      case "publish_batch":
        return {
          outcome: null,
          text: t("entries.batch", { events: fmtNumber(f.events), dead: fmtNumber(f.dead_letters || 0) }),
        };
      case "consent_change": {
        const change = tOr("change." + f.event, f.event);
        const categories = categoryNames(f.categories);
        return {
          outcome: null,
          text: categories ? t("entries.pair", { first: change, second: categories }) : change,
        };
      }
      case "token_issued":
        return { outcome: null, text: t("entries.token", { role: tOr("role." + f.role, f.role) }) };
      case "admin_change":
        // Operators' actions share their codes with the consent changes they cause.
        return {
          outcome: null,
          text: t("entries.pair", { first: tOr("change." + f.action, f.action), second: f.target }),
        };
      case "erasure":
        return { outcome: null, text: t("entries.erasure", { rows: fmtNumber(f.rows_deleted || 0) }) };
      case "audit_export":
        return { outcome: null, text: String(f.format).toUpperCase() };
      default:
        return { outcome: null, text: "" };
    }
  }

  function entryReason(entry) {
    const f = entry.fields;
    if (!f.reason) return "—";
    const reason = tOr("reason." + f.reason, f.reason);
    return f.path ? t("entries.reason_at", { reason, path: f.path }) : reason;
  }

  // ----- export ------------------------------------------------------------------------

  async function exportLog(format) {
    await act(async () => {
      const name = await download(
        "/v1/audit/export",
        { params: { format }, accept: "*/*" },
        `tsunagu-audit.${format}`,
      );
      announce(t("export.saved", { name }));
    });
  }

  // ----- page --------------------------------------------------------------------------

  function render() {
    renderTiles();
    renderFlowMap();
    renderRefusals();
    renderVerification();
    renderEntries();
  }

  let wired = false;

  async function ready() {
    if (!wired) {
      wired = true;
      document.getElementById("window").addEventListener("change", () => {
        window.Tsunagu.clearAlerts();
        loadAll(false);
      });
      document.getElementById("refresh").addEventListener("click", () => {
        window.Tsunagu.clearAlerts();
        loadAll(false);
      });
      document.getElementById("verify-again").addEventListener("click", async () => {
        await act(async () => {
          state.verification = await api("/v1/audit/verification", { params: { fresh: "true" } });
          renderVerification();
        });
      });
      document.getElementById("entry-kind").addEventListener("change", () => loadEntries(false));
      document.getElementById("entries-more").addEventListener("click", () => loadEntries(true));
      document.querySelectorAll("[data-format]").forEach((button) => {
        button.addEventListener("click", () => exportLog(button.dataset.format));
      });
      window.Tsunagu.onLangChange(() => {
        renderKindSelect();
        render();
      });
      let resizing = null;
      window.addEventListener("resize", () => {
        clearTimeout(resizing);
        resizing = setTimeout(() => {
          renderFlowMap();
          renderRefusals();
        }, 150);
      });
    }
    renderKindSelect();
    render();
    try {
      await loadCatalogue();
    } catch (error) {
      showError(error);
    }
    await loadAll(false);
  }

  window.Tsunagu.start(ready);
})();
