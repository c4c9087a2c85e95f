#!/usr/bin/env node
// Headless-browser check of a `kintsugi report STATE --html OUT.html` page.
//
//   node check_report.js PAGE.html --screenshot OUT.png --out RESULT.json
//        [--width 1280] [--strict] [--screenshot-height H]
//        [PAGE2.html --screenshot OUT2.png --out RESULT2.json [...] ...]
// (--screenshot-height: only the top H pixels, e.g. for the README). Several
// pages, each with its own options after it, are checked in one browser (a
// fresh tab each): Chromium's start is most of a check's time.
//
// Opens the page from a file:// URL in Chromium (puppeteer-core, Debian's
// /usr/bin/chromium or $CHROMIUM) with the network cut off: every request
// that is not file:, data: or blob: is aborted and recorded.  Waits for the
// page's body[data-rendered] (report_page.js sets it once every plot has
// rendered), then records each .plot's SVG size, each .plot-note, and the
// number of rendered marks of the named vega-lite layers, takes a full-page
// screenshot and writes RESULT.json:
//   {rendered, errors, warnings, blocked_requests, plots: {NAME: {width, height}},
//    notes: [ids], marks: {LAYER: count, LAYER_marks: count},
//    mark_groups: {LAYER_marks: groups}, mark_checks: [mismatches],
//    data: <the embedded report JSON>}
// LAYER: evaluations, front, task_bars, weight_bars (report_page.js's named
// vega-lite units; vega's <g> class is LAYER_marks); marks holds each count
// under both names: the number of <path>/<rect> children of those groups.
// Exit 1 (one line per problem on stderr, prefixed by the page's name when
// several are checked) on console errors or page errors,
// blocked requests, a .plot without an SVG/canvas of at least 100x60, or
// rendered != "ok"; with --strict also when a mark count disagrees with the
// data (one symbol per evaluation, one bar per checkpoint and group, ...).
"use strict";
const fs = require("fs");
const path = require("path");
const puppeteer = require("puppeteer-core");

const MARK_CLASSES = ["evaluations_marks", "front_marks", "task_bars_marks", "weight_bars_marks"];

function parseArgs(argv) {
  const usage = "usage: node check_report.js PAGE.html --screenshot OUT.png --out RESULT.json " +
    "[--width 1280] [--strict] [--screenshot-height H] [PAGE2.html ...]";
  const jobs = [];
  let a = null;
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i];
    if (!v.startsWith("--")) {
      a = {page: v, screenshot: null, out: null, width: 1280, strict: false, shotHeight: 0};
      jobs.push(a);
      continue;
    }
    if (!a) throw new Error(usage);
    if (v === "--screenshot") a.screenshot = argv[++i];
    else if (v === "--out") a.out = argv[++i];
    else if (v === "--width") a.width = parseInt(argv[++i], 10);
    else if (v === "--screenshot-height") a.shotHeight = parseInt(argv[++i], 10);
    else if (v === "--strict") a.strict = true;
    else throw new Error("unknown argument: " + v);
  }
  if (!jobs.length || jobs.some((j) => !j.screenshot || !j.out || !(j.width > 0))) throw new Error(usage);
  return jobs;
}

// What the marks should number, from the data (only for plots that rendered).
function expectedMarks(data, plots) {
  const checks = [];
  if (!data) return checks;
  const evals = Array.isArray(data.evaluations) ? data.evaluations : [];
  if (plots.progress) checks.push(["evaluations_marks", evals.length, "one symbol per evaluation"]);
  const tasks = (data.run && data.run.tasks) || (data.search && data.search.tasks) || [];
  const n = ((data.search && data.search.checkpoint_names) || []).length;
  const g = Math.max(1, (data.run && data.run.layer_groups) || 1);
  if (plots.weights) checks.push(["weight_bars_marks", n * g, "one bar per checkpoint and layer group"]);
  if (plots.tradeoffs && tasks.length >= 2) {
    // The front's members from the evaluations, or (a report without them) from "pareto".
    const front = evals.length ? evals.filter((e) => e.pareto && e.ok !== false &&
      tasks.every((t) => e.scores && typeof e.scores[t] === "number")).length :
      (data.pareto || []).filter((p) => tasks.every((t) => p.scores && p.scores[t] &&
        typeof p.scores[t].search === "number")).length;
    const cells = tasks.length * (tasks.length - 1) / 2; // one cell per task pair
    checks.push(["front_marks", front * cells, "one symbol per front member and scatter cell"]);
  }
  return checks;
}

// Checks one page in a new tab of `browser`; writes args.out; returns the problems.
async function checkPage(browser, args) {
  const problems = [];
  const result = {rendered: null, errors: [], warnings: [], blocked_requests: [], plots: {}, notes: [],
    marks: {}, mark_groups: {}, mark_checks: [], data: null};
  const page = await browser.newPage();
  try {
    await page.setViewport({width: args.width, height: 900, deviceScaleFactor: 1});
    await page.setRequestInterception(true);
    page.on("request", (req) => {
      const url = req.url();
      if (/^(file|data|blob):/i.test(url)) return req.continue();
      result.blocked_requests.push(url);
      return req.abort("blockedbyclient");
    });
    page.on("console", (msg) => {
      const text = msg.text();
      if (msg.type() === "error") result.errors.push("console.error: " + text);
      else if (msg.type() === "warn" || msg.type() === "warning") result.warnings.push(text);
    });
    page.on("pageerror", (err) => result.errors.push("page error: " + (err && err.message || err)));
    page.on("requestfailed", (req) => {
      if (/^(file|data|blob):/i.test(req.url()))
        result.errors.push("request failed: " + req.url() + " " + (req.failure() || {}).errorText);
    });

    const url = "file://" + path.resolve(args.page);
    await page.goto(url, {waitUntil: "load", timeout: 60000});
    try {
      await page.waitForSelector("body[data-rendered]", {timeout: 60000});
    } catch (e) {
      problems.push("timed out after 60 s waiting for body[data-rendered]");
    }
    const state = await page.evaluate((markClasses) => {
      const out = {rendered: document.body.dataset.rendered || null, plots: {}, empty: [], notes: [],
        marks: {}, groups: {}, data: null};
      for (const div of document.querySelectorAll(".plot")) {
        // vega's own <svg class="marks">; the embed's action menu holds a small icon svg too.
        const cands = Array.from(div.querySelectorAll("svg.marks, canvas.marks"));
        if (!cands.length) cands.push(...div.querySelectorAll("svg, canvas"));
        let best = null;
        for (const c of cands) {
          const r = c.getBoundingClientRect();
          if (!best || r.width * r.height > best.width * best.height) best = {width: r.width, height: r.height};
        }
        const name = (div.id || "").replace(/^plot-/, "");
        const hasMarks = best && div.querySelector("svg.marks g, canvas.marks");
        if (best) out.plots[name] = {width: Math.round(best.width), height: Math.round(best.height)};
        if (!best || best.width < 100 || best.height < 60 || !hasMarks) out.empty.push(name);
      }
      out.notes = Array.from(document.querySelectorAll(".plot-note[id]")).map((e) => e.id);
      for (const cls of markClasses) {
        // vega-lite prefixes unit names inside repeat (e.g. K > 2 trade-offs:
        // "child__row_addcolumn_rev_front_marks"): match the suffix too.
        const groups = Array.from(document.querySelectorAll("g.role-mark")).filter((g) =>
          Array.from(g.classList).some((c) => c === cls || c.endsWith("_" + cls)));
        let n = 0;
        for (const g of groups) for (const c of g.children) if (c.tagName === "path" || c.tagName === "rect") n++;
        out.marks[cls] = n;
        out.groups[cls] = groups.length;
      }
      const script = document.getElementById("kintsugi-report-data");
      try { out.data = script ? JSON.parse(script.textContent) : null; } catch (e) { out.data = null; }
      return out;
    }, MARK_CLASSES);
    const marks = {};
    for (const cls of MARK_CLASSES) marks[cls.replace(/_marks$/, "")] = marks[cls] = state.marks[cls];
    Object.assign(result, {rendered: state.rendered, plots: state.plots, notes: state.notes,
      marks: marks, mark_groups: state.groups, data: state.data});
    for (const name of state.empty) problems.push("plot-" + name + ": no rendered SVG/canvas of at least 100x60");
    for (const [cls, want, what] of expectedMarks(state.data, state.plots)) {
      if (state.marks[cls] !== want) {
        const m = `${cls}: ${state.marks[cls]} rendered, ${want} expected (${what})`;
        result.mark_checks.push(m);
        if (args.strict) problems.push(m);
        else process.stderr.write("warning: " + m + "\n");
      }
    }
    await page.screenshot(args.shotHeight > 0
      ? {path: args.screenshot, clip: {x: 0, y: 0, width: args.width, height: args.shotHeight}}
      : {path: args.screenshot, fullPage: true});
  } finally {
    await page.close();
  }
  if (result.rendered !== "ok") problems.push("rendered = " + JSON.stringify(result.rendered) + ", not \"ok\"");
  for (const e of result.errors) problems.push(e);
  for (const u of result.blocked_requests) problems.push("blocked network request: " + u);
  fs.writeFileSync(args.out, JSON.stringify(result, null, 1));
  return problems;
}

async function main() {
  const jobs = parseArgs(process.argv.slice(2));
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--disable-default-apps", "--disable-extensions", "--mute-audio"],
  });
  let failed = 0;
  try {
    for (const job of jobs) {
      const problems = await checkPage(browser, job);
      const prefix = jobs.length > 1 ? path.basename(job.page) + ": " : "";
      for (const p of problems) process.stderr.write(prefix + p.replace(/\s+/g, " ") + "\n");
      if (problems.length) failed++;
    }
  } finally {
    await browser.close();
  }
  return failed ? 1 : 0;
}

main().then((code) => process.exit(code), (err) => {
  process.stderr.write("check_report: " + (err && err.message.startsWith("usage:") ? err.message : err && err.stack || err) + "\n");
  process.exit(1);
});
