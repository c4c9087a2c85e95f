/* kintsugi report page (`kintsugi report STATE --html OUT.html`).
 *
 * Plain ES2019, no modules, no network.  The C++ inlines this after
 * vega / vega-lite / vega-embed (globals `vega`, `vegaLite`, `vegaEmbed`)
 * and the report JSON (<script type="application/json"
 * id="kintsugi-report-data">), and before <footer id="licences">.
 *
 * Hooks for tools/report-web/check_report.js:
 *   <div class="plot" id="plot-NAME">, NAME in progress, sigma, tasks,
 *   weights, weights-heatmap (only when layer_groups > 1), mean-weights,
 *   tradeoffs, timing.  A plot that cannot be drawn is instead
 *   <div class="plot-note" id="plot-NAME"> with one line of text.
 *   window.kintsugiReport = {data, views: {NAME: vega.View}, ready: Promise};
 *   document.body.dataset.rendered = "ok" once every embed has finished, or
 *   "error: <messages>" (each also logged with console.error).
 *   Named vega-lite units; vega (svg renderer) emits each as
 *   <g class="mark-TYPE role-mark NAME_marks"> holding one <path> per datum
 *   (symbols, rules and rects alike); a faceted plot repeats the group once
 *   per facet cell, with the same class:
 *     evaluations_marks  progress (mark-symbol): one per evaluation, failed ones
 *                        included (red crosses at the bottom of the axis)
 *     front_marks        tradeoffs (mark-symbol): one per Pareto-front member
 *                        in each of the K(K-1)/2 task-pair cells
 *     task_bars_marks    tasks (mark-symbol): one dot per task x entry x split
 *                        with a score (dots, not bars: the differences that
 *                        matter are a point or two), in one cell per task
 *     weight_bars_marks  weights (mark-rect): one bar per checkpoint and layer
 *                        group (G > 1: one cell per group)
 *   Also named (not counted by the test): references, best_so_far, sigma,
 *   task_errors, weight_cells, mean_weights, tradeoff_evals, tradeoff_refs,
 *   tradeoff_best, front_line, timing_bars.
 */
(function () {
  "use strict";

  // One categorical scale for every plot (legend drawn once, in HTML), so a
  // colour or shape means the same thing wherever it appears.
  var STAR = "M0,-1L0.225,-0.309L0.951,-0.309L0.363,0.118L0.588,0.809L0,0.382L-0.588,0.809" +
    "L-0.363,0.118L-0.951,-0.309L-0.225,-0.309Z";
  var XMARK = "M-1,-0.6L-0.6,-1L0,-0.4L0.6,-1L1,-0.6L0.4,0L1,0.6L0.6,1L0,0.4L-0.6,1L-1,0.6L-0.4,0Z";
  var CATS = [
    ["evaluation", "#a3acb9", "circle"], ["best so far", "#334155", "stroke"],
    ["Pareto front", "#0d9488", "circle"], ["failed", "#dc2626", XMARK],
    ["checkpoint", "#4e79a7", "square"], ["recipe", "#59a14f", "triangle-up"],
    ["uniform soup", "#b07aa1", "diamond"], ["optimized merge", "#d4a017", STAR],
    ["merge + write", "#f28e2b", "square"], ["scoring", "#9c755f", "square"]];
  var DOMAIN = CATS.map(function (c) { return c[0]; });
  var COLOR = {field: "cat", type: "nominal", legend: null,
    scale: {domain: DOMAIN, range: CATS.map(function (c) { return c[1]; })}};
  var SHAPE = {field: "cat", type: "nominal", legend: null,
    scale: {domain: DOMAIN, range: CATS.map(function (c) { return c[2] === "stroke" ? "circle" : c[2]; })}};
  // Tooltips: each datum carries a ready "tip" object (vega-tooltip shows it
  // as a table), numbers as String(v) for full precision, empty fields left out.
  var TIP = {field: "tip", type: "nominal"};
  function tip(o) {
    var t = {};
    Object.keys(o).forEach(function (k) {
      var v = o[k];
      if (v !== null && v !== undefined && v !== "") t[k] = typeof v === "number" ? String(v) : v;
    });
    return t;
  }
  var CONFIG = {
    font: "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif",
    view: {stroke: "#e5e7eb"}, background: "white",
    axis: {labelColor: "#374151", titleColor: "#111827", titleFontWeight: 600, gridColor: "#eef0f3",
      domainColor: "#9ca3af", tickColor: "#9ca3af", labelFontSize: 11, titleFontSize: 12, labelLimit: 260},
    header: {labelFontSize: 12, labelFontWeight: 600, labelColor: "#111827", titleFontSize: 12},
    point: {size: 46}, text: {fontSize: 11}};

  var data, views = {}, pending = [], W = 900;

  // ---------- small helpers ----------
  function isNum(v) { return typeof v === "number" && isFinite(v); }
  function at(o) { // at(o, "a", "b") = o.a.b, or null when any step is missing
    for (var i = 1; i < arguments.length; i++) {
      if (o === null || o === undefined) return null;
      o = o[arguments[i]];
    }
    return o === undefined ? null : o;
  }
  function arr(v) { return Array.isArray(v) ? v : []; }
  function fmt(v, d) { return isNum(v) ? v.toFixed(d === undefined ? 3 : d) : "–"; }
  function signed(v, d) { return isNum(v) ? (v > 0 ? "+" : v < 0 ? "−" : "") + Math.abs(v).toFixed(d) : "–"; }
  function bytes(b) {
    if (!isNum(b)) return null;
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
    return b.toFixed(i ? 1 : 0) + " " + u[i];
  }
  function secs(s) {
    if (!isNum(s)) return "–";
    return s < 120 ? s.toFixed(1) + " s" : s < 7200 ? (s / 60).toFixed(1) + " min" : (s / 3600).toFixed(1) + " h";
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text); // never innerHTML: names are data
    return e;
  }
  function add(parent) {
    for (var i = 1; i < arguments.length; i++) if (arguments[i]) parent.appendChild(arguments[i]);
    return parent;
  }

  // ---------- the data, with derived references ----------
  var R = {};
  function derive() {
    R.tasks = arr(at(data, "run", "tasks")).length ? data.run.tasks : arr(at(data, "search", "tasks"));
    R.names = arr(at(data, "search", "checkpoint_names"));
    R.N = R.names.length || at(data, "run", "pool_checkpoints") || 0;
    R.G = Math.max(1, at(data, "run", "layer_groups") || 1);
    R.hib = at(data, "run", "higher_is_better") || {};
    R.ckpts = arr(data.checkpoints);
    R.recipes = arr(data.baselines);
    R.best = data.best || null;
    R.evals = arr(data.evaluations);
    R.comparisons = arr(data.comparisons);
    var byRole = function (role) {
      var c = R.comparisons.filter(function (x) { return x.role === role; })[0];
      return c ? c.reference : null;
    };
    var named = function (list, n) { return list.filter(function (e) { return e.name === n; })[0] || null; };
    var argmax = function (list) {
      var b = null;
      list.forEach(function (e) {
        var v = at(e, "objective", "search");
        if (isNum(v) && (!b || v > b.objective.search)) b = e;
      });
      return b;
    };
    // Prefer the C++'s own choice (the comparisons' references), else the best on search.
    R.uniform = named(R.recipes, byRole("uniform_soup")) || named(R.recipes, "uniform_soup");
    R.bestCkpt = named(R.ckpts, byRole("best_checkpoint")) || argmax(R.ckpts);
    R.bestRecipe = named(R.recipes, byRole("best_recipe")) ||
      argmax(R.recipes.filter(function (e) { return e !== R.uniform; }));
    // Objective margins read as points (x100) when the objectives are proportions.
    var objs = R.ckpts.concat(R.recipes, R.best ? [R.best] : []).map(function (e) {
      return at(e, "objective", "search");
    }).filter(isNum);
    R.points = at(data, "run", "objective") !== "chebyshev" && objs.length > 0 &&
      objs.every(function (v) { return v >= 0 && v <= 1; });
  }
  function catOf(e) {
    return e === R.best ? "optimized merge" : e === R.uniform ? "uniform soup" :
      R.ckpts.indexOf(e) >= 0 ? "checkpoint" : "recipe";
  }
  function arrow(t) { return R.hib[t] === false ? " ↓" : " ↑"; }

  // ---------- page structure ----------
  function section(id, title, intro) {
    var s = add(el("section"), el("h2", null, title));
    s.id = "section-" + id;
    if (intro) add(s, el("p", "intro", intro));
    add(document.getElementById("report"), s);
    return s;
  }
  function note(parent, name, text) {
    var d = el("div", "plot-note", text);
    d.id = "plot-" + name;
    add(parent, d);
  }
  // Builds the spec in a try so that one bad plot leaves the rest of the page.
  function plot(parent, name, build) {
    var spec;
    try {
      spec = build();
    } catch (err) {
      console.error("kintsugi report: " + name + ": " + (err && err.stack || err));
      note(parent, name, "This plot could not be drawn: " + (err && err.message || err));
      pending.push(Promise.reject(new Error(name + ": " + (err && err.message || err))));
      return;
    }
    if (typeof spec === "string") return note(parent, name, spec);
    var d = el("div", "plot");
    d.id = "plot-" + name;
    add(parent, d);
    var drop = function (sp) {
      if (sp.layer) sp.layer = sp.layer.filter(function (l) { return l && !(l.data && l.data.values && !l.data.values.length); });
      if (sp.spec) drop(sp.spec);
    };
    drop(spec);
    spec.config = Object.assign({}, CONFIG, spec.config);
    spec.autosize = {type: "pad"};
    pending.push(vegaEmbed(d, spec, {
      mode: "vega-lite", renderer: "svg", tooltip: true, downloadFileName: "kintsugi-" + name,
      actions: {export: true, source: false, compiled: false, editor: false}
    }).then(function (res) { views[name] = res.view; }, function (err) {
      throw new Error(name + ": " + (err && err.message || err));
    }));
  }

  function header() {
    var run = data.run || {}, h = el("header", "page-header");
    add(h, el("h1", null, "kintsugi report"));
    var bits = [run.job_file, run.created && "created " + run.created,
      run.kintsugi_version && "kintsugi " + run.kintsugi_version, isNum(run.seed) && "seed " + run.seed];
    add(h, el("p", "meta", bits.filter(Boolean).join("  ·  ")));
    var key = el("div", "legend-key");
    key.setAttribute("aria-label", "Colour key used by every plot");
    CATS.forEach(function (c) {
      var item = el("span", "key-item"), svg = "http://www.w3.org/2000/svg";
      var s = document.createElementNS(svg, "svg");
      s.setAttribute("viewBox", "-1.3 -1.3 2.6 2.6");
      s.setAttribute("width", "14"); s.setAttribute("height", "14");
      var p = document.createElementNS(svg, "path");
      var shapes = {circle: "M-0.8,0A0.8,0.8 0 1,0 0.8,0A0.8,0.8 0 1,0 -0.8,0Z",
        square: "M-0.8,-0.8H0.8V0.8H-0.8Z", "triangle-up": "M0,-0.9L0.9,0.8H-0.9Z",
        diamond: "M0,-1L0.9,0L0,1L-0.9,0Z", stroke: "M-1.1,0H1.1"};
      p.setAttribute("d", shapes[c[2]] || c[2]);
      p.setAttribute(c[2] === "stroke" ? "stroke" : "fill", c[1]);
      if (c[2] === "stroke") p.setAttribute("stroke-width", "0.5");
      add(item, add(s, p), el("span", null, c[0]));
      add(key, item);
    });
    add(document.getElementById("report"), h, key);
  }

  // ---------- summary ----------
  function card(grid, title, rows, big) {
    var c = add(el("div", "card"), el("h3", null, title));
    if (big) add(c, el("div", "big", big));
    var dl = el("dl");
    rows.forEach(function (r) { if (r && r[1] !== null && r[1] !== undefined && r[1] !== "") add(dl, el("dt", null, r[0]), el("dd", null, r[1])); });
    add(grid, add(c, dl));
  }
  function margin(ref, split) {
    var a = at(R.best, "objective", split), b = at(ref, "objective", split);
    if (!isNum(a) || !isNum(b)) return "–";
    return R.points ? signed(100 * (a - b), 2) + " pt" : signed(a - b, 4);
  }
  function summary() {
    var run = data.run || {}, se = data.search || {}, sel = data.selection || {};
    var s = section("summary", "Summary"), grid = el("div", "cards");
    add(s, grid);
    var b = R.best, o = function (e, sp) { return fmt(at(e, "objective", sp), 4); };
    if (b) {
      card(grid, "Optimized merge: objective", [
        ["search · test", o(b, "search") + " · " + o(b, "test")],
        ["validation", isNum(at(b, "objective", "validation")) ? o(b, "validation") : null],
        ["vs best checkpoint", R.bestCkpt && margin(R.bestCkpt, "search") + " · " + margin(R.bestCkpt, "test")],
        ["vs best recipe", R.bestRecipe && margin(R.bestRecipe, "search") + " · " + margin(R.bestRecipe, "test")],
        ["chosen on", sel.split === "validation" ? "validation split, out of sample" +
          (isNum(sel.candidates) ? " (" + sel.candidates + " candidates)" : "") : "search split, in-sample (optimistic)"],
        ["evaluation", isNum(b.evaluation) ? b.evaluation + " (generation " + b.generation + ")" : null],
        ["non-zero weights", isNum(b.nonzero_weights) ? b.nonzero_weights + " of " + arr(b.weights).length : null]],
        o(b, "test") !== "–" ? o(b, "test") + " on test" : o(b, "search") + " on search");
    } else {
      card(grid, "Optimized merge", [["", "no successful evaluation in this state"]], "none");
    }
    card(grid, "References: objective, search · test", [
      ["best checkpoint", R.bestCkpt && R.bestCkpt.name], ["", R.bestCkpt && o(R.bestCkpt, "search") + " · " + o(R.bestCkpt, "test")],
      ["best recipe", R.bestRecipe && R.bestRecipe.name], ["", R.bestRecipe && o(R.bestRecipe, "search") + " · " + o(R.bestRecipe, "test")],
      ["uniform soup", R.uniform && o(R.uniform, "search") + " · " + o(R.uniform, "test")],
      ["objective", run.objective]]);
    var done = isNum(se.evaluations) ? se.evaluations : R.evals.length;
    card(grid, "Search", [
      ["method", [run.method, run.parameterization].filter(Boolean).join(", ") || null],
      ["budget", isNum(run.budget) ? run.budget + " evaluations" : "–"],
      ["population", run.population],
      ["evaluations", done + " done, " + (se.failed || 0) + " failed"],
      ["generations", se.generations], ["stop reason", se.stop_reason || "–"],
      ["run status", se.run_status], ["time", secs(se.seconds)]], done + (isNum(run.budget) ? " / " + run.budget : ""));
    card(grid, "Pool", [
      ["checkpoints", R.N], ["size", bytes(run.pool_bytes)],
      ["granularity", run.granularity && run.granularity + (R.G > 1 ? " (" + R.G + " groups)" : "")],
      ["tasks", R.tasks.map(function (t) { return t + arrow(t); }).join(" · ")]], R.N + " checkpoints");
    comparisonsTable(s);
  }
  function comparisonsTable(s) {
    var cs = R.comparisons;
    if (!cs.length) return add(s, el("p", "plot-note", "No held-out comparisons (no test scores for the optimized merge)."));
    add(s, el("h3", null, "Held-out comparisons (" + (cs[0].split || "test") + " split)"));
    var t = el("table", "comparisons"), hr = el("tr");
    add(hr, el("th", null, "optimized merge vs"), el("th", null, "objective"));
    R.tasks.forEach(function (k) { add(hr, el("th", null, k)); });
    add(t, add(el("thead"), hr));
    var body = el("tbody"), roles = {best_checkpoint: "best checkpoint", best_recipe: "best recipe", uniform_soup: "uniform soup"};
    cs.forEach(function (c) {
      var tr = el("tr"), th = el("th", null, roles[c.role] || c.role);
      add(th, el("div", "ref", c.reference));
      add(tr, th, cell(c.objective));
      R.tasks.forEach(function (k) { add(tr, cell(at(c, "tasks", k))); });
      add(body, tr);
    });
    add(t, body);
    add(s, add(el("div", "table-wrap"), t));
    add(s, el("p", "caption", "Differences (optimized merge minus reference), " + (cs[0].resamples || "") +
      "-resample paired bootstrap, 95% intervals in brackets; points = 100 × proportion. ▲/▼: the interval excludes 0."));
  }
  function cell(c) {
    var td = el("td");
    if (!c || !isNum(c.difference)) return add(td, el("span", "na", "–"));
    var pts = c.unit === "points", d = pts ? 2 : 4;
    var main = el("span", "diff", signed(c.difference, d) + (c.significant ? (c.difference > 0 ? " ▲" : " ▼") : ""));
    if (c.significant) td.className = c.difference > 0 ? "sig pos" : "sig neg";
    add(td, main, el("span", "ci", "[" + signed(c.low, d) + ", " + signed(c.high, d) + "]"));
    td.title = c.difference + " " + (c.unit || "") + ", 95% interval [" + c.low + ", " + c.high + "]" +
      (isNum(c.examples) ? ", " + c.examples + " examples" : "");
    return td;
  }

  // ---------- search progress ----------
  function progress(s) {
    plot(s, "progress", function () {
      if (!R.evals.length) return "No evaluations in this state yet.";
      var ys = [], best = null, line = [], refs = [];
      var be = R.best ? R.best.evaluation : null;
      var pts = R.evals.map(function (e) {
        var ok = e.ok !== false && isNum(e.objective), row = {index: e.index, objective: ok ? e.objective : null,
          cat: !ok ? "failed" : e.index === be ? "optimized merge" : e.pareto ? "Pareto front" : "evaluation"};
        var t = {evaluation: e.index, generation: e.generation, status: ok ? "ok" : "failed", objective: row.objective,
          error: e.error, chosen: e.index === be ? "optimized merge" : null, "Pareto front": e.pareto ? "yes" : null};
        R.tasks.forEach(function (k) { t[k] = at(e, "scores", k); });
        row.tip = tip(t);
        if (ok) {
          ys.push(e.objective);
          best = best === null ? e.objective : Math.max(best, e.objective);
        }
        if (best !== null) line.push({index: e.index, best: best, cat: "best so far", tip: tip({evaluation: e.index, "best so far": best})});
        return row;
      });
      [[R.bestCkpt, "checkpoint", "best checkpoint"], [R.bestRecipe, "recipe", "best recipe"],
        [R.uniform, "uniform soup", "uniform soup"]].forEach(function (r) {
        var v = at(r[0], "objective", "search");
        if (isNum(v)) {
          refs.push({value: v, cat: r[1], label: r[2], tip: tip({reference: r[2], name: r[0].name, "objective (search)": v})});
          ys.push(v);
        }
      });
      var lo = ys.length ? Math.min.apply(null, ys) : 0, hi = ys.length ? Math.max.apply(null, ys) : 1;
      var pad = (hi - lo) * 0.08 || Math.abs(hi) * 0.01 || 0.01;
      // Failed evaluations have no objective: drawn at the bottom edge.
      pts.forEach(function (p) { p.y = p.objective === null ? lo - pad : p.objective; });
      var y = {type: "quantitative", title: "objective (search split)", scale: {domain: [lo - pad, hi + pad], zero: false, nice: false}};
      return {width: W - 70, height: 300, layer: [
        {name: "references", data: {values: refs}, mark: {type: "rule", strokeDash: [6, 4], strokeWidth: 1.5},
          encoding: {y: {field: "value", type: "quantitative", scale: y.scale}, color: COLOR,
            tooltip: TIP}},
        {data: {values: refs}, mark: {type: "text", align: "right", dx: -2, dy: -6, fontSize: 10, fontWeight: 600},
          encoding: {x: {value: W - 70}, y: {field: "value", type: "quantitative", scale: y.scale}, text: {field: "label"}, color: COLOR}},
        {name: "best_so_far", data: {values: line}, mark: {type: "line", interpolate: "step-after", strokeWidth: 2},
          encoding: {x: {field: "index", type: "quantitative"}, y: {field: "best", type: "quantitative", scale: y.scale},
            color: COLOR, tooltip: TIP}},
        {name: "evaluations", data: {values: pts}, mark: {type: "point", filled: true, opacity: 0.85, clip: false},
          encoding: {x: {field: "index", type: "quantitative", title: "evaluation", scale: {nice: false, padding: 8}},
            y: {field: "y", type: "quantitative", title: y.title, scale: y.scale},
            color: COLOR, shape: SHAPE, size: {condition: [{test: "datum.cat === 'optimized merge'", value: 160}, {test: "datum.cat === 'failed'", value: 70}], value: 46},
            order: {field: "index"}, tooltip: TIP}}]};
    });
    plot(s, "sigma", function () {
      var rows = arr(data.generations).filter(function (g) { return isNum(g.sigma); }).map(function (g) {
        return {generation: g.generation, sigma: g.sigma, tip: tip({generation: g.generation, "σ": g.sigma, "best so far": g.best_so_far})};
      });
      if (!rows.length) return at(data, "run", "method") === "random" ?
        "Random search has no step size (σ) to show." : "No step-size (σ) history in this state (written before it was kept, or no generation finished).";
      return {width: W - 70, height: 150, data: {values: rows}, layer: [
        {name: "sigma", mark: {type: "line", point: {color: "#334155"}, color: "#334155"},
          encoding: {x: {field: "generation", type: "quantitative", axis: {tickMinStep: 1, format: "d"}},
            y: {field: "sigma", type: "quantitative", title: "CMA-ES step size σ", scale: {zero: false}},
            tooltip: TIP}}]};
    });
  }

  // ---------- per task ----------
  function tasks(s) {
    plot(s, "tasks", function () {
      var rows = [], order = ["best checkpoint"];
      R.recipes.forEach(function (e) { order.push(e.name); });
      if (R.best) order.push("optimized merge");
      R.tasks.forEach(function (t) {
        var bc = null; // best checkpoint on this task, chosen on the search split
        R.ckpts.forEach(function (e) {
          var v = at(e, "scores", t, "search");
          if (isNum(v) && (!bc || (R.hib[t] === false ? v < bc.scores[t].search : v > bc.scores[t].search))) bc = e;
        });
        var entries = [[bc, "best checkpoint"]].concat(R.recipes.map(function (e) { return [e, e.name]; }),
          R.best ? [[R.best, "optimized merge"]] : []);
        entries.forEach(function (p) {
          ["search", "test"].forEach(function (split) {
            var v = at(p[0], "scores", t, split), se = at(p[0], "scores", t, split + "_stderr");
            if (!isNum(v)) return;
            var r = {task: t + arrow(t), row: p[1], name: p[0].name, cat: catOf(p[0]), split: split, score: v,
              lo: isNum(se) ? v - 1.96 * se : null, hi: isNum(se) ? v + 1.96 * se : null};
            r.tip = tip({task: t, name: p[0].name, kind: r.cat, split: split, score: v, "standard error": se,
              "95% interval": isNum(se) ? "[" + r.lo + ", " + r.hi + "]" : null});
            rows.push(r);
          });
        });
      });
      if (!rows.length) return "No per-task scores in this state.";
      clampOutliers(rows);
      var cols = R.tasks.length <= 5 ? R.tasks.length : Math.ceil(R.tasks.length / Math.ceil(R.tasks.length / 4));
      var y = {field: "row", type: "nominal", sort: order, title: null}, yOff = {field: "split", sort: ["search", "test"]};
      var x = {field: "x", type: "quantitative", title: "score", scale: {zero: false}, axis: {tickCount: 3, format: ".3~g", labelOverlap: "greedy"}};
      // Arrows beside pinned dots; a layer over every row (empty text where not
      // pinned), as a layer filtered to nothing in some facet warns of an infinite extent.
      var pinned = function (a, dx) {
        rows.forEach(function (r) { r["pin" + dx] = r.off && r.arrow === a ? a : ""; });
        return rows.some(function (r) { return r["pin" + dx]; }) &&
          {mark: {type: "text", fontSize: 12, dx: dx, color: "#6b7280"},
            encoding: {y: y, yOffset: yOff, x: x, text: {field: "pin" + dx}}};
      };
      return {data: {values: rows}, columns: cols, resolve: {scale: {x: "independent"}},
        facet: {field: "task", type: "nominal", sort: R.tasks.map(function (t) { return t + arrow(t); }), title: null},
        spec: {width: Math.max(110, Math.floor((W - 220) / cols) - 20), height: {step: 20}, layer: [
          // Only layers with data: an empty one makes vega warn of an infinite extent.
          rows.some(function (r) { return r.cat === "optimized merge" && r.split === "search"; }) &&
          {transform: [{filter: "datum.cat === 'optimized merge' && datum.split === 'search'"}],
            mark: {type: "rule", color: CATS[7][1], opacity: 0.45, strokeDash: [4, 3]}, encoding: {x: x}},
          rows.some(function (r) { return r.lo !== null; }) &&
          {name: "task_errors", transform: [{filter: "datum.lo !== null"}], mark: {type: "rule", opacity: 0.6},
            encoding: {y: y, yOffset: yOff, x: {field: "xlo", type: "quantitative"}, x2: {field: "xhi"},
              color: COLOR, tooltip: TIP}},
          {name: "task_bars", mark: {type: "point", size: 50, strokeWidth: 1.5},
            encoding: {y: y, yOffset: yOff, x: x, fill: COLOR, stroke: COLOR, shape: SHAPE,
              fillOpacity: {field: "split", type: "ordinal", sort: ["search", "test"], scale: {domain: ["search", "test"], range: [1, 0]}, legend: null},
              tooltip: TIP}},
          pinned("◂", -9), pinned("▸", 9)]}};
    });
  }

  // A recipe that collapses a task (score near 0) would stretch its axis so
  // far that the points that matter (a point or two apart) merge into one:
  // scores beyond 3 spans of the checkpoints / soup / merge are drawn pinned
  // at the axis edge, marked with an arrow; their tooltips keep the value.
  function clampOutliers(rows) {
    R.tasks.forEach(function (t) {
      var mine = rows.filter(function (r) { return r.task === t + arrow(t); });
      var core = mine.filter(function (r) { return r.cat !== "recipe"; }).map(function (r) { return r.score; });
      if (!core.length) core = mine.map(function (r) { return r.score; });
      var a = Math.min.apply(null, core), b = Math.max.apply(null, core);
      var span = Math.max(b - a, 0.01 * Math.abs(b), 1e-9), lo = a - 3 * span, hi = b + 3 * span;
      mine.forEach(function (r) {
        r.x = Math.min(hi, Math.max(lo, r.score));
        r.off = r.score < lo ? "below the axis: pinned to its edge" : r.score > hi ? "above the axis: pinned to its edge" : "";
        if (r.off) r.tip.note = r.off;
        r.arrow = r.score < lo ? "◂" : "▸";
        if (r.lo !== null) { r.xlo = Math.min(hi, Math.max(lo, r.lo)); r.xhi = Math.min(hi, Math.max(lo, r.hi)); }
      });
    });
  }

  // ---------- weights ----------
  function weightRows(w) { // [{checkpoint, group, weight}] from a group-major N x G vector
    var rows = [];
    if (!Array.isArray(w) || !R.N || w.length < R.N * R.G) return rows;
    for (var g = 0; g < R.G; g++) {
      for (var i = 0; i < R.N; i++) {
        var r = {checkpoint: R.names[i] || "checkpoint " + i, group: "layer group " + g, weight: w[g * R.N + i], cat: "optimized merge"};
        r.tip = tip({checkpoint: r.checkpoint, "layer group": R.G > 1 ? g : null, weight: r.weight});
        rows.push(r);
      }
    }
    return rows;
  }
  function weights(s) {
    var rows = weightRows(at(R.best, "weights"));
    var none = R.best ? "The optimized merge's weights do not match the pool (" + R.N + " checkpoints × " + R.G + " groups)." :
      "No optimized merge in this state: no weights to show.";
    plot(s, "weights", function () {
      if (!rows.length) return none;
      var cols = Math.min(R.G, 4);
      var uw = arr(at(R.uniform, "weights")).filter(isNum), layer = [];
      if (uw.length) { // the uniform soup's weight, as a reference line
        rows.forEach(function (r) { r.uniform = uw.reduce(function (a, v) { return a + v; }, 0) / uw.length; });
        layer.push({mark: {type: "rule", color: CATS[6][1], strokeDash: [5, 3], strokeWidth: 1.5},
          encoding: {x: {aggregate: "mean", field: "uniform", type: "quantitative"},
            tooltip: [{aggregate: "mean", field: "uniform", title: "uniform soup weight", format: ".10~g"}]}});
      }
      var unit = {name: "weight_bars", mark: {type: "bar", color: CATS[7][1], height: {band: 0.75}},
        encoding: {y: {field: "checkpoint", type: "nominal", sort: R.names, title: null},
          x: {field: "weight", type: "quantitative", title: "weight"}, tooltip: TIP}};
      layer.unshift(unit);
      if (R.G === 1) return {data: {values: rows}, width: W - 330, height: {step: 20}, layer: layer};
      return {data: {values: rows}, columns: cols, facet: {field: "group", type: "nominal", title: null},
        spec: {width: Math.max(90, Math.floor((W - 300) / cols) - 20), height: {step: 18}, layer: layer}};
    });
    if (R.G > 1) {
      plot(s, "weights-heatmap", function () {
        if (!rows.length) return none;
        var max = Math.max.apply(null, rows.map(function (r) { return isNum(r.weight) ? Math.abs(r.weight) : 0; }));
        return {data: {values: rows}, width: Math.min(W - 330, 90 * R.G), height: {step: 22}, layer: [
          {name: "weight_cells", mark: "rect", encoding: {
            x: {field: "group", type: "ordinal", title: null, axis: {labelAngle: 0}},
            y: {field: "checkpoint", type: "nominal", sort: R.names, title: null},
            color: {field: "weight", type: "quantitative", scale: {scheme: "blues"}, legend: {title: "weight", gradientLength: 160}},
            tooltip: TIP}},
          {mark: {type: "text", fontSize: 10}, encoding: {
            x: {field: "group", type: "ordinal"}, y: {field: "checkpoint", type: "nominal", sort: R.names},
            text: {field: "weight", format: ".2f"},
            color: {condition: {test: "abs(datum.weight) > " + max * 0.6, value: "white"}, value: "#111827"}}}]};
      });
    }
    plot(s, "mean-weights", function () {
      var rows = [];
      arr(data.generations).forEach(function (g) {
        var w = g.mean_weights;
        if (!Array.isArray(w) || w.length < R.N * R.G) return;
        for (var i = 0; i < R.N; i++) {
          var sum = 0; // with layer groups: the checkpoint's mean weight over its groups
          for (var k = 0; k < R.G; k++) sum += w[k * R.N + i];
          var r = {generation: g.generation, checkpoint: R.names[i] || "checkpoint " + i, weight: sum / R.G};
          r.tip = tip({checkpoint: r.checkpoint, generation: g.generation, "mean weight": r.weight, "(averaged over layer groups)": R.G > 1 ? "yes" : null});
          rows.push(r);
        }
      });
      if (!rows.length) return at(data, "run", "method") === "random" ? "Random search has no distribution mean to follow." :
        "No distribution-mean history in this state (written before it was kept, or no generation finished).";
      var cols = Math.min(R.N, 4), cw = Math.floor((W - 40) / cols) - 30;
      return {data: {values: rows}, columns: cols, facet: {field: "checkpoint", type: "nominal", sort: R.names, title: null,
        header: {labelLimit: cw + 20, labelFontSize: 11, labelFontWeight: 500}},
        spec: {width: cw, height: 80, layer: [{name: "mean_weights", mark: {type: "line", point: {size: 18}, color: CATS[4][1]},
          encoding: {x: {field: "generation", type: "quantitative", axis: {tickMinStep: 1, format: "d"}},
            y: {field: "weight", type: "quantitative", title: "mean weight"},
            tooltip: TIP}}]}};
    });
  }

  // ---------- trade-offs ----------
  // Points are {s: {task: score}, cat, name}; the plot's rows are one per
  // point and task pair (fields x, y), faceted by pair.  Not a vega-lite
  // repeat: that needs task names as field names, which breaks on names with
  // . [ ] or quotes (field paths, and vega-lite's generated aria expressions).
  function tradeoffs(s) {
    var omitted = [];
    plot(s, "tradeoffs", function () {
      var K = R.tasks.length;
      if (K < 2) return K === 1 ? "One task: there is no trade-off between tasks to show." : "No tasks in this state.";
      var point = function (name, cat, score) {
        var p = {name: name, cat: cat, s: {}}, ok = true;
        R.tasks.forEach(function (t) { p.s[t] = score(t); ok = ok && isNum(p.s[t]); });
        return ok ? p : null;
      };
      var pts = [], recipes = [];
      R.evals.forEach(function (e) {
        var p = e.ok !== false && point("evaluation " + e.index, e.pareto ? "Pareto front" : "evaluation",
          function (t) { return at(e, "scores", t); });
        if (p) pts.push(p);
      });
      if (!R.evals.length) arr(data.pareto).forEach(function (e) { // a report without "evaluations": the front only
        var p = point(e.name, "Pareto front", function (t) { return at(e, "scores", t, "search"); });
        if (p) pts.push(p);
      });
      R.ckpts.concat(R.recipes, R.best ? [R.best] : []).forEach(function (e) {
        var p = point(e.name, catOf(e), function (t) { return at(e, "scores", t, "search"); });
        if (p) (p.cat === "recipe" ? recipes : pts).push(p);
      });
      // A recipe far below everything else (e.g. task arithmetic at lambda 1)
      // would squeeze the evaluations into a corner: such recipes are left out
      // of the scatter and named in the caption.
      var lo = {}, hi = {};
      R.tasks.forEach(function (t) {
        var v = pts.map(function (p) { return p.s[t]; });
        var a = Math.min.apply(null, v), b = Math.max.apply(null, v), pad = Math.max((b - a) * 0.25, 0.02 * Math.abs(b) || 0.02);
        lo[t] = a - pad; hi[t] = b + pad;
      });
      recipes.forEach(function (p) {
        if (!pts.length || R.tasks.every(function (t) { return p.s[t] >= lo[t] && p.s[t] <= hi[t]; })) pts.push(p);
        else omitted.push(p.name);
      });
      if (!pts.length) return "No evaluation has scores on every task: nothing to plot.";
      var rows = [];
      R.tasks.forEach(function (a, i) {
        R.tasks.forEach(function (b, j) {
          if (i >= j) return; // lower triangle only: x = earlier task, y = later task
          pts.forEach(function (p) {
            var t = {name: p.name, kind: p.cat};
            R.tasks.forEach(function (k) { t[k] = p.s[k]; });
            rows.push({x: p.s[a], y: p.s[b], xt: a + arrow(a), yt: b + arrow(b), cat: p.cat, tip: tip(t)});
          });
        });
      });
      var enc = {x: {field: "x", type: "quantitative", scale: {zero: false}, axis: {format: ".4~g"}, title: K === 2 ? rows[0].xt : null},
        y: {field: "y", type: "quantitative", scale: {zero: false}, axis: {format: ".4~g"}, title: K === 2 ? rows[0].yt : null},
        color: COLOR, shape: SHAPE, tooltip: TIP};
      var has = function (cats) { return rows.some(function (r) { return cats.indexOf(r.cat) >= 0; }); };
      var layer = function (name, cats, mark) { // the points of some categories (a layer only when there are some)
        return has(cats) && {name: name, transform: [{filter: {field: "cat", oneOf: cats}}], mark: mark, encoding: enc};
      };
      var both = R.hib[R.tasks[0]] !== false && R.hib[R.tasks[1]] !== false;
      var layers = [layer("tradeoff_evals", ["evaluation"], {type: "point", filled: true, opacity: 0.55}),
        // With two tasks, both higher-is-better, the front's staircase.
        K === 2 && both && has(["Pareto front"]) && {name: "front_line", transform: [{filter: "datum.cat === 'Pareto front'"}],
          mark: {type: "line", interpolate: "step-before", color: CATS[2][1], opacity: 0.6},
          encoding: {x: enc.x, y: enc.y, order: {field: "x"}}},
        // In this order so that the front shows over the references, the merge's star over all.
        layer("tradeoff_refs", ["checkpoint", "recipe", "uniform soup"], {type: "point", filled: true, size: 70, stroke: "white", strokeWidth: 0.8}),
        layer("front", ["Pareto front"], {type: "point", filled: true, size: 100, stroke: "white", strokeWidth: 1}),
        layer("tradeoff_best", ["optimized merge"], {type: "point", filled: true, size: 220, stroke: "white", strokeWidth: 1})];
      if (K === 2) { var side = Math.min(W - 120, 520); return {data: {values: rows}, width: side, height: side, layer: layers}; }
      var cell = Math.max(110, Math.min(210, Math.floor((W - 60) / (K - 1)) - 34));
      return {data: {values: rows}, resolve: {scale: {x: "independent", y: "independent"}}, config: {view: {stroke: null}},
        facet: {column: {field: "xt", type: "nominal", sort: R.tasks.map(function (t) { return t + arrow(t); }), title: null},
          row: {field: "yt", type: "nominal", sort: R.tasks.map(function (t) { return t + arrow(t); }), title: null, header: {labelAngle: -90}}},
        spec: {width: cell, height: cell, layer: layers}};
    });
    var hv = data.hypervolume, ref = arr(data.hypervolume_reference), flat = arr(data.hypervolume_flat_tasks);
    if (R.tasks.length > 1) {
      var p = el("p", "caption");
      var txt = "Hypervolume of the Pareto front (search split): " + (isNum(hv) ? String(Number(hv.toPrecision(6))) : "–");
      if (ref.length) txt += "; reference point (worst checkpoint per task, oriented): " +
        R.tasks.map(function (t, k) { return t + " " + fmt(ref[k], 4); }).join(", ");
      if (flat.length) txt += ". No front member beats the reference on " + flat.join(", ") + ", which makes the hypervolume 0";
      if (omitted.length) txt += ". Not plotted, far outside the evaluations' range: " + omitted.join(", ");
      p.textContent = txt + ".";
      p.title = "hypervolume " + hv + "; reference " + JSON.stringify(ref);
      add(s, p);
    }
  }

  // ---------- time per candidate ----------
  function timing(s) {
    plot(s, "timing", function () {
      var rows = [];
      R.evals.forEach(function (e) {
        [["merge_seconds", "merge + write"], ["score_seconds", "scoring"]].forEach(function (p) {
          if (isNum(e[p[0]])) rows.push({index: e.index, cat: p[1], seconds: e[p[0]], tip: tip({evaluation: e.index, phase: p[1],
            seconds: e[p[0]], "merge + write seconds": e.merge_seconds, "scoring seconds": e.score_seconds, "total seconds": e.seconds,
            status: e.ok === false ? "failed" : "ok", error: e.error})});
        });
      });
      if (!rows.length) return "No per-candidate merge / scoring times in this state (written before they were kept).";
      var n = R.evals.length, step = Math.max(1, Math.ceil(n / 15)), ticks = [];
      for (var i = 0; i < n; i += step) ticks.push(R.evals[i].index);
      return {data: {values: rows}, width: W - 70, height: 200, layer: [{name: "timing_bars", mark: {type: "bar"},
        encoding: {x: {field: "index", type: "ordinal", title: "evaluation", axis: {values: ticks, labelAngle: 0}},
          y: {field: "seconds", type: "quantitative", stack: "zero", title: "seconds"},
          color: COLOR, order: {field: "cat", sort: "ascending"},
          tooltip: TIP}}]};
    });
  }

  // ---------- main ----------
  function settle(ps) { // Promise.allSettled (ES2020) by hand
    return Promise.all(ps.map(function (p) {
      return p.then(function () { return null; }, function (e) { return e && e.message || String(e); });
    }));
  }
  function main() {
    var root = document.getElementById("report");
    try {
      data = JSON.parse(document.getElementById("kintsugi-report-data").textContent);
      if (typeof vegaEmbed !== "function") throw new Error("vega-embed is not loaded");
      W = Math.max(480, Math.min(900, (root.clientWidth || 900) - 8));
      derive();
      header();
      summary();
      var se = data.search || {}, method = at(data, "run", "method");
      progress(section("progress", "Search progress", "Every evaluation's objective on the search split, in order; failed ones " +
        "are crosses at the bottom. Dashed rules: the references' search objectives." + (method === "cmaes" ? " Below: CMA-ES's step size per generation." : "")));
      tasks(section("tasks", "Per task", "Each task's score: the best checkpoint on that task (chosen on the search split), every recipe and " +
        "the optimized merge. Filled: search split; hollow: test split, with ±1.96 standard errors."));
      weights(section("weights", "Weights", "The optimized merge's weight per checkpoint" + (R.G > 1 ? " and layer group" : "") +
        ", then the search distribution's mean weights after each generation" +
        (R.G > 1 ? " (averaged over the layer groups)." : ".")));
      tradeoffs(section("tradeoffs", "Trade-offs", R.tasks.length > 1 ? "Search-split scores of every successful evaluation, " +
        "task against task; the Pareto front, checkpoints, recipes and the optimized merge are marked." : null));
      var share = isNum(se.merge_seconds) && isNum(se.score_seconds) && se.merge_seconds + se.score_seconds > 0 ?
        " (merging and writing " + fmt(100 * se.merge_seconds / (se.merge_seconds + se.score_seconds), 1) + "%, scoring " +
        fmt(100 * se.score_seconds / (se.merge_seconds + se.score_seconds), 1) + "%)" : "";
      timing(section("timing", "Time per candidate", "Merging (and writing, for a command evaluator) against scoring, per evaluation" +
        (isNum(se.seconds) ? "; " + secs(se.seconds) + " in all" + share + "." : ".")));
    } catch (err) {
      console.error("kintsugi report: " + (err && err.stack || err));
      add(root, el("p", "plot-note", "The report could not be built: " + (err && err.message || err)));
      pending.push(Promise.reject(err));
    }
    window.kintsugiReport.data = data;
    window.kintsugiReport.ready = settle(pending).then(function (errs) {
      errs = errs.filter(Boolean);
      errs.forEach(function (m) { console.error("kintsugi report: " + m); });
      document.body.dataset.rendered = errs.length ? "error: " + errs.join("; ") : "ok";
      return errs;
    });
  }
  window.kintsugiReport = {data: null, views: views, ready: null};
  main();
})();
