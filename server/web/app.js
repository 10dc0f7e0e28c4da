// pageowner's web page: the physical memory map from /viz/map (binary, run-length encoded),
// counters and top stacks from /viz/summary, one page from /viz/page. Plain canvas, no library.
"use strict";

const MAP_W = 1024;          // canvas width in pixels
const MAP_PIXELS = 1024 * 512;
const ZOOM_PAGES = 32768;    // pages shown when zooming into a pageblock (64 pageblocks)
const FREE = 0;

const $ = (id) => document.getElementById(id);
const state = {
  summary: null,
  map: null,          // the decoded map of the current view
  view: null,         // {start, end, cell, px, cols}
  by: "stack",
  highlight: null,    // Set of handles, or null
  selectedPfn: null,
  inflight: false,
  refreshes: 0,
};

// ---- colors ----

// A stack's color from its 64-bit content id (hex string): the same stack has the same color
// on every host and every refresh. hue: low 32 bits mod 360; saturation 55..84 %; lightness
// 42..61 % from the next bits.
function stackColor(contentId) {
  const id = BigInt(contentId);
  const lo = Number(id & 0xffffffffn);
  const hi = Number((id >> 32n) & 0xffffffffn);
  const h = lo % 360;
  const s = 55 + (hi % 30);
  const l = 42 + ((hi >>> 8) % 20);
  return hslToRgb(h, s, l);
}
function hslToRgb(h, s, l) {
  s /= 100; l /= 100;
  const k = (n) => (n + h / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
  return [Math.round(255 * f(0)), Math.round(255 * f(8)), Math.round(255 * f(4))];
}
function hashColor(v) {  // task colors: a hue from the pid
  let x = (v * 2654435761) >>> 0;
  return hslToRgb(x % 360, 60 + (x >>> 9) % 25, 45 + (x >>> 17) % 15);
}
const FREE_RGB = [232, 232, 232];
const EARLY_RGB = [150, 150, 150];
const DEPOT_RGB = [25, 25, 25];
const FAILURE_RGB = [255, 0, 255];
const dim = (rgb) => rgb.map((c) => Math.round(c + (255 - c) * 0.75));
const MT_RGB = [[214, 39, 40], [44, 160, 44], [31, 119, 180], [255, 127, 14], [148, 103, 189],
                [140, 86, 75]];
const ORDER_RGB = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
                   [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44],
                   [253, 231, 37], [255, 160, 0]];

function colorOf(value) {
  const m = state.map;
  if (value === FREE) return FREE_RGB;
  switch (m.coloring) {
    case 0: {  // stack
      const sp = state.summary.special;
      if (value === sp.early) return EARLY_RGB;
      if (value === sp.dummy) return DEPOT_RGB;
      if (value === sp.failure) return FAILURE_RGB;
      const id = m.legend.get(value);
      return id ? stackColor(id) : [0, 0, 0];
    }
    case 1: return MT_RGB[(value - 1) % MT_RGB.length];
    case 2: return ORDER_RGB[Math.min(value - 1, ORDER_RGB.length - 1)];
    case 3: return hashColor(value - 1);
    case 4: {  // age: oldest dark blue .. newest yellow
      const t = m.maxAge > m.minAge ? (value - m.minAge) / (m.maxAge - m.minAge) : 1;
      return [Math.round(30 + 225 * t), Math.round(40 + 190 * t), Math.round(120 - 90 * t)];
    }
  }
  return [0, 0, 0];
}
const css = (rgb) => `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;

// ---- data ----

async function fetchJson(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: ${r.status} ${await r.text()}`);
  return r.json();
}

function decodeMap(buf) {
  const dv = new DataView(buf);
  const magic = new TextDecoder().decode(new Uint8Array(buf, 0, 8));
  if (magic !== "POMAP001") throw new Error("not a map: " + magic);
  let o = 8;
  const u64 = () => { const v = Number(dv.getBigUint64(o, true)); o += 8; return v; };
  const u32 = () => { const v = dv.getUint32(o, true); o += 4; return v; };
  const m = { start: u64(), end: u64(), cell: u64(), coloring: u32(), ncells: u32() };
  const cells = new Uint32Array(m.ncells);
  const runs = u32();
  let c = 0;
  for (let i = 0; i < runs; i++) {
    const v = u32(), n = u32();
    cells.fill(v, c, c + n);
    c += n;
  }
  m.cells = cells;
  m.runs = runs;
  m.mixed = [];
  const nmixed = u32();
  for (let i = 0; i < nmixed; i++) m.mixed.push(u32());
  m.legend = new Map();
  const nlegend = u32();
  for (let i = 0; i < nlegend; i++) {
    const h = u32(), lo = u32(), hi = u32();
    m.legend.set(h, "0x" + ((BigInt(hi) << 32n) | BigInt(lo)).toString(16).padStart(16, "0"));
  }
  if (m.coloring === 4) {
    let mn = Infinity, mx = 0;
    for (const v of cells) if (v !== FREE) { mn = Math.min(mn, v); mx = Math.max(mx, v); }
    m.minAge = mn; m.maxAge = mx;
  }
  return m;
}

// The overview: one cell a page when pages fit (cells of 1 to 8 pixels), else one a pageblock
// (or more pages when even pageblocks do not fit).
function overview() {
  const total = state.summary.total_pages;
  let cell = 1;
  while (total / cell > MAP_PIXELS) cell *= (cell === 1 ? state.summary.pageblock_pages : 2);
  if (cell === 1 && total > MAP_PIXELS / 4) cell = state.summary.pageblock_pages;
  return makeView(0, total, cell);
}
function makeView(start, end, cell) {
  const cells = Math.ceil((end - start) / cell);
  let px = Math.max(1, Math.min(16, Math.floor(Math.sqrt(MAP_PIXELS / cells))));
  // Columns: a power of two, so that pageblocks line up in rows when cells are pages.
  let cols = 1;
  while (cols * 2 * px <= MAP_W) cols *= 2;
  return { start, end, cell, px, cols, cells };
}
function zoomTo(pfn) {
  const total = state.summary.total_pages;
  const start = Math.max(0, Math.floor(pfn / ZOOM_PAGES) * ZOOM_PAGES);
  return makeView(start, Math.min(total, start + ZOOM_PAGES), 1);
}

async function refresh() {
  if (state.inflight) return;
  state.inflight = true;
  try {
    state.summary = await fetchJson("/viz/summary");
    if (!state.view) state.view = overview();
    const v = state.view;
    const r = await fetch(`/viz/map?by=${state.by}&start=${v.start}&end=${v.end}&cell=${v.cell}`);
    if (!r.ok) throw new Error(await r.text());
    state.cost = r.headers.get("X-Pageowner-Walk-Us");
    state.map = decodeMap(await r.arrayBuffer());
    state.refreshes++;
    drawMap();
    drawStats();
    drawTable();
    drawFlame();
    drawLegend();
  } catch (e) {
    $("stats").textContent = "error: " + e.message;
  } finally {
    state.inflight = false;
  }
}

// ---- the map ----

function cellRect(i) {
  const v = state.view;
  return [(i % v.cols) * v.px, Math.floor(i / v.cols) * v.px];
}
function drawMap() {
  const v = state.view, m = state.map;
  const canvas = $("map");
  const rows = Math.ceil(m.ncells / v.cols);
  canvas.width = v.cols * v.px;
  canvas.height = Math.max(v.px, rows * v.px);
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(canvas.width, canvas.height);
  const d = img.data;
  const cache = new Map();
  for (let i = 0; i < m.ncells; i++) {
    const value = m.cells[i];
    let rgb = cache.get(value);
    if (!rgb) { rgb = colorOf(value); cache.set(value, rgb); }
    if (state.highlight && m.coloring === 0 && value !== FREE && !state.highlight.has(value)) {
      rgb = dim(rgb);  // other stacks stay visible, washed out towards white
    }
    const [x0, y0] = cellRect(i);
    for (let y = y0; y < y0 + v.px; y++) {
      let p = (y * canvas.width + x0) * 4;
      for (let x = 0; x < v.px; x++, p += 4) {
        d[p] = rgb[0]; d[p + 1] = rgb[1]; d[p + 2] = rgb[2]; d[p + 3] = 255;
      }
    }
  }
  ctx.putImageData(img, 0, 0);
  // The cells as the canvas holds them before the frames are stroked over them (for the probe).
  state.cellPixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  // Mixed pageblocks: a red frame around the pageblock (its rows when cells are pages).
  ctx.strokeStyle = "rgba(230,0,0,0.9)";
  ctx.lineWidth = 1;
  const pb = state.summary.pageblock_pages;
  for (const b of m.mixed) {
    const first = Math.floor((b * pb - v.start) / v.cell);
    const last = Math.floor(((b + 1) * pb - 1 - v.start) / v.cell);
    const [x0, y0] = cellRect(Math.max(0, first));
    const [x1, y1] = cellRect(Math.min(m.ncells - 1, last));
    ctx.strokeRect(x0 + 0.5, y0 + 0.5, (y1 > y0 ? v.cols * v.px : x1 - x0 + v.px) - 1,
                   y1 - y0 + v.px - 1);
  }
  if (state.selectedPfn !== null && state.selectedPfn >= v.start && state.selectedPfn < v.end) {
    const [x, y] = cellRect(Math.floor((state.selectedPfn - v.start) / v.cell));
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 2;
    ctx.strokeRect(x - 1, y - 1, v.px + 2, v.px + 2);
  }
  canvas.dataset.cells = m.ncells;
  canvas.dataset.pagesPerCell = m.cell;
  canvas.dataset.start = m.start;
  canvas.dataset.end = m.end;
  canvas.dataset.runs = m.runs;
  canvas.dataset.mixed = m.mixed.length;
  $("view").textContent =
      `pfn 0x${v.start.toString(16)}..0x${(v.end - 1).toString(16)}: ${m.ncells} cells of ` +
      `${m.cell === 1 ? "a page" : m.cell + " pages"} (${v.px} px), ${m.mixed.length} mixed ` +
      `pageblocks framed in red` + (m.cell > 1 ? "; click a cell to see its pages" : "");
}

function pfnAt(ev) {
  const v = state.view;
  const rect = $("map").getBoundingClientRect();
  const x = Math.floor((ev.clientX - rect.left) / v.px);
  const y = Math.floor((ev.clientY - rect.top) / v.px);
  if (x < 0 || x >= v.cols) return null;
  const i = y * v.cols + x;
  if (i < 0 || i >= state.map.ncells) return null;
  return { i, pfn: v.start + i * v.cell };
}

let hoverTimer = null;
function onHover(ev) {
  const at = pfnAt(ev);
  if (!at) return;
  const value = state.map.cells[at.i];
  $("hover").textContent = `pfn 0x${at.pfn.toString(16)}` +
      (state.view.cell > 1 ? ` (pageblock ${at.pfn / state.summary.pageblock_pages})` : "") +
      (value === FREE ? ": free" : `: ${describe(value)}`);
  if (state.view.cell === 1) {
    clearTimeout(hoverTimer);
    hoverTimer = setTimeout(() => showPage(at.pfn, false), 120);
  }
}
function describe(value) {
  switch (state.map.coloring) {
    case 0: {
      const sp = state.summary.special;
      const name = value === sp.early ? " (early)" : value === sp.dummy ? " (depot)"
                 : value === sp.failure ? " (failure)" : "";
      return `stack ${value}${name}`;
    }
    case 1: return state.summary.migratetypes[value - 1];
    case 2: return `order ${value - 1}`;
    case 3: return `pid ${value - 1}`;
    case 4: return `ts ~${((value - 1) * 2 ** state.summary.age_shift / 1e9).toFixed(3)} s`;
  }
  return String(value);
}
function onClick(ev) {
  const at = pfnAt(ev);
  if (!at) return;
  if (state.view.cell > 1) {
    state.view = zoomTo(at.pfn);
    refresh();
    return;
  }
  showPage(at.pfn, true);
}

// ---- one page ----

let pinned = false;
async function showPage(pfn, pin) {
  if (pinned && !pin) return;
  pinned = pin;
  const p = await fetchJson(`/viz/page?pfn=${pfn}`);
  state.selectedPfn = pfn;
  $("page-pfn").textContent = `0x${pfn.toString(16)} (${p.allocated ? "block 0x" +
      p.block_head.toString(16) + ", order " + p.block_order : "free"}; pageblock ${p.pageblock}` +
      ` ${p.pageblock_migratetype})`;
  $("page-text").textContent = p.text;
  $("page-stack").textContent = p.stack
      ? `handle ${p.stack.handle}, content id ${p.stack.content_id}\n` +
        `${p.stack.pages} pages now, ${p.stack.allocations} allocations ever\n` +
        p.stack.frames.map((f) => " " + f).join("\n")
      : "";
  if (pin) drawMap();
  return p;
}

// ---- stacks: table and flame graph ----

function drawStats() {
  const s = state.summary;
  const mb = (p) => (p * 4096 / 1048576).toFixed(1) + " MiB";
  $("stats").textContent = `${s.total_pages} pages (${mb(s.total_pages)}): ` +
      `${s.allocated_pages} allocated, ${s.free_pages} free, ${s.stacks_owning} stacks own ` +
      `pages; refresh ${state.refreshes}, map walk ${state.cost} us`;
}

function drawTable() {
  const s = state.summary;
  $("stacks-count").textContent = s.stacks.length === s.stacks_owning
      ? `${s.stacks_owning}, by pages now` : `${s.stacks.length} of ${s.stacks_owning}, by pages now`;
  const body = $("stacks-table").tBodies[0];
  body.textContent = "";
  for (const st of s.stacks) {
    const tr = body.insertRow();
    tr.dataset.handle = st.handle;
    if (state.highlight && state.highlight.size === 1 && state.highlight.has(st.handle)) {
      tr.className = "sel";
    }
    const sw = tr.insertCell();
    sw.innerHTML = `<span class="swatch" style="background:${css(stackRgb(st))}"></span>`;
    for (const [v, cls] of [[st.pages, "n"], [st.allocations, "n"], [st.handle, "n"],
                            [st.content_id, ""], [st.frames.join("\n"), "frames"]]) {
      const td = tr.insertCell();
      td.textContent = v;
      if (cls) td.className = cls;
    }
    tr.onclick = () => setHighlight(new Set([st.handle]));
  }
}
function stackRgb(st) {
  const sp = state.summary.special;
  if (st.handle === sp.early) return EARLY_RGB;
  if (st.handle === sp.dummy) return DEPOT_RGB;
  if (st.handle === sp.failure) return FAILURE_RGB;
  return stackColor(st.content_id);
}

function setHighlight(handles) {
  state.highlight = handles;
  if (state.by !== "stack") { $("by").value = "stack"; state.by = "stack"; refresh(); return; }
  drawMap();
  drawTable();
  drawFlame();
  writeProbe();
}

// Icicle: the root spans every page of the listed stacks; children are the next frame inward.
let flameNodes = [];
function drawFlame() {
  const canvas = $("flame");
  const ctx = canvas.getContext("2d");
  const root = { name: "all", pages: 0, children: new Map(), handles: new Set() };
  for (const st of state.summary.stacks) {
    root.pages += st.pages;
    root.handles.add(st.handle);
    let node = root;
    for (let i = st.frames.length - 1; i >= 0; i--) {
      const name = st.frames[i].replace(/\+0x[0-9a-f]+\/0x[0-9a-f]+/, "");
      let c = node.children.get(name);
      if (!c) { c = { name, pages: 0, children: new Map(), handles: new Set() };
                node.children.set(name, c); }
      c.pages += st.pages;
      c.handles.add(st.handle);
      node = c;
    }
  }
  const ROW = 16;
  let depth = 0;
  flameNodes = [];
  const lay = (node, x, w, d) => {
    depth = Math.max(depth, d + 1);
    flameNodes.push({ node, x, w, y: d * ROW });
    let cx = x;
    const kids = [...node.children.values()].sort((a, b) => b.pages - a.pages);
    for (const k of kids) {
      const kw = node.pages ? w * k.pages / node.pages : 0;
      lay(k, cx, kw, d + 1);
      cx += kw;
    }
  };
  lay(root, 0, canvas.width, 0);
  canvas.height = Math.max(ROW * 4, depth * ROW);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.font = "11px ui-monospace, monospace";
  ctx.textBaseline = "middle";
  for (const f of flameNodes) {
    if (f.w < 0.5) continue;
    const hit = !state.highlight || [...f.node.handles].some((h) => state.highlight.has(h));
    const seed = [...f.node.name].reduce((a, ch) => (a * 31 + ch.charCodeAt(0)) >>> 0, 7);
    ctx.fillStyle = hit ? `hsl(${20 + seed % 40}, 80%, ${55 + seed % 15}%)` : "#ddd";
    ctx.fillRect(f.x, f.y, Math.max(0.5, f.w - 1), ROW - 1);
    if (f.w > 40) {
      ctx.fillStyle = "#000";
      const label = `${f.node.name} (${f.node.pages})`;
      ctx.save();
      ctx.beginPath();
      ctx.rect(f.x, f.y, f.w - 2, ROW);
      ctx.clip();
      ctx.fillText(label, f.x + 3, f.y + ROW / 2);
      ctx.restore();
    }
  }
  canvas.onclick = (ev) => {
    const rect = canvas.getBoundingClientRect();
    const x = (ev.clientX - rect.left) * canvas.width / rect.width;
    const y = ev.clientY - rect.top;
    const f = flameNodes.find((f) => x >= f.x && x < f.x + f.w && y >= f.y && y < f.y + ROW);
    if (f) setHighlight(f.node === flameNodes[0].node ? null : new Set(f.node.handles));
  };
}

function drawLegend() {
  const m = state.map, s = state.summary;
  const items = [["free", FREE_RGB]];
  if (m.coloring === 0) {
    items.push(["early (allocated before tracking)", EARLY_RGB], ["stack depot's own", DEPOT_RGB],
               ["failure handle", FAILURE_RGB], ["other: the stack's color (table)", null]);
  } else if (m.coloring === 1) {
    s.migratetypes.slice(0, 3).forEach((n, i) => items.push([n + " (gfp)", MT_RGB[i]]));
  } else if (m.coloring === 2) {
    ORDER_RGB.forEach((c, i) => items.push([`order ${i}`, c]));
  } else if (m.coloring === 3) {
    items.push(["one color a pid", null]);
  } else {
    items.push(["oldest", colorOf(m.minAge)], ["newest", colorOf(m.maxAge)]);
  }
  items.push(["mixed pageblock", [230, 0, 0]]);
  $("legend").innerHTML = items.map(([n, c]) =>
      `<span>${c ? `<i style="background:${css(c)}"></i>` : ""}${n}</span>`).join("");
}

// ---- what tests read back: the map's cells, and the colors drawn for the selected page's
// stack, read from the canvas (before the red and black frames are stroked over it) ----

function writeProbe() {
  const m = state.map, v = state.view;
  const probe = { cells: m.ncells, pages_per_cell: m.cell, start: m.start, end: m.end,
                  mixed: m.mixed.length, refreshes: state.refreshes };
  if (state.selectedPfn !== null && m.coloring === 0 && v.cell === 1) {
    const img = state.cellPixels;
    const drawn = (i) => {
      const [x, y] = cellRect(i);
      const p = ((y + (v.px >> 1)) * $("map").width + x + (v.px >> 1)) * 4;
      return [img[p], img[p + 1], img[p + 2]];
    };
    const sel = state.selectedPfn - v.start;
    const handle = m.cells[sel];
    const expected = handle === FREE ? FREE_RGB : colorOf(handle);
    let cells = 0, same = 0;
    for (let i = 0; i < m.ncells; i++) {
      if (m.cells[i] !== handle) continue;
      cells++;
      const c = drawn(i);
      if (c[0] === expected[0] && c[1] === expected[1] && c[2] === expected[2]) same++;
    }
    probe.selected = { pfn: state.selectedPfn, handle, content_id: m.legend.get(handle) || null,
                       expected_rgb: expected, drawn_rgb: drawn(sel), stack_cells: cells,
                       stack_cells_in_color: same };
  }
  $("probe").textContent = JSON.stringify(probe);
}

// ---- start ----

async function start() {
  $("by").onchange = () => { state.by = $("by").value; refresh(); };
  $("zoom-out").onclick = () => { state.view = overview(); refresh(); };
  $("clear").onclick = () => setHighlight(null);
  $("map").addEventListener("mousemove", onHover);
  $("map").addEventListener("click", onClick);
  const params = new URLSearchParams(location.search);
  if (params.has("by")) { state.by = params.get("by"); $("by").value = state.by; }
  if (params.get("live") === "0") $("live").checked = false;
  state.summary = await fetchJson("/viz/summary");
  const pfnParam = params.get("pfn");
  if (pfnParam !== null) {
    const pfn = Number(pfnParam);
    state.view = overview();
    if (state.view.cell > 1) state.view = zoomTo(pfn);
    state.selectedPfn = pfn;
  }
  await refresh();
  if (pfnParam !== null) await showPage(Number(pfnParam), true);
  if (params.has("stack")) setHighlight(new Set([Number(params.get("stack"))]));
  writeProbe();
  document.body.dataset.ready = "1";
  setInterval(() => { if ($("live").checked) refresh().then(writeProbe); }, 2000);
}
start();
