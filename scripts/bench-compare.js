#!/usr/bin/env node
// Compares two benchmark results (the JSON `npm run bench` writes): every case found in both,
// matched by model and case, with the old and new median and their ratio, marked where it moved by
// more than 10 %; the cases found in one run only; and the two machines' ceilings, so that a slower
// machine can be told from slower code. Used by `npm run bench -- --compare FILE.json`, or alone on
// two saved runs (exit status 0 whatever changed: it is a report, not a gate):
//
//   node scripts/bench-compare.js OLD.json NEW.json
"use strict";
const path = require("node:path");
const { z } = require("zod");

const root = path.resolve(__dirname, "..");
const { InvalidArgumentError, OvamError } = require(path.join(root, "dist", "errors.js"));
const { readInputFile } = require(path.join(root, "dist", "files.js"));
const { UsageError } = require(path.join(root, "dist", "cli", "args.js"));

// A case whose median moved by more than 10 % either way (new/old above 1.10× or below 0.90×) is
// marked slower or faster.
const THRESHOLD = 0.1;
// A full run's JSON is a few tens of kB.
const MAX_BYTES = 16 << 20;
const ACCEPTED = "the JSON file `npm run bench` writes (ceilings and cases)";

const seconds = z.number().nonnegative();
const resultSchema = z.object({
  device: z.string().optional(),
  threads: z.number().optional(),
  torch: z.string().optional(),
  ceilings: z.object({ sgemm_gflops: seconds, copy_gbs: seconds }),
  cases: z.array(
    z.object({ model: z.string(), case: z.string(), median_s: seconds, flops: seconds.optional(), bytes_read: seconds.optional() }),
  ),
  // The rows scripts/bench-eval.js and scripts/bench-dataset.js add.
  eval: z.object({ size: z.number(), thresholds: z.number(), seconds_per_1000_items: seconds }).optional(),
  dataset: z.object({ items: z.number(), steps: z.number(), wall_s: seconds }).optional(),
});

/** The benchmark result in `file`, checked; errors name `what` (a flag or an argument) and have a stable code. */
async function loadResult(file, what) {
  const text = (await readInputFile(file, { maxBytes: MAX_BYTES, what })).toString("utf8");
  let json;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new InvalidArgumentError(`${what}: ${path.resolve(file)} is not JSON (${error.message}); accepted: ${ACCEPTED}`, { cause: error });
  }
  const result = resultSchema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue.path.length ? issue.path.join(".") : "the top level";
    throw new InvalidArgumentError(`${what}: ${path.resolve(file)} is not a benchmark result (${where}: ${issue.message}); accepted: ${ACCEPTED}`);
  }
  return result.data;
}

// Every timed row of a result as { key, label, seconds, ceiling }: `ceiling` names the machine
// figure that bounds it (copy for rows that read the attention store, whose notes give their
// memory floor; SGEMM for the other rows that count FLOPs). A
// repeated model + case (none today) is numbered so that it still pairs with its own kind.
function rows(result) {
  const list = result.cases.map((c) => ({
    label: [c.model, c.case],
    seconds: c.median_s,
    ceiling: c.bytes_read > 0 ? "copy_gbs" : c.flops > 0 ? "sgemm_gflops" : undefined,
  }));
  if (result.eval) {
    const e = result.eval;
    list.push({ label: ["eval", `evaluate() per 1000 items, ${e.size}², ${e.thresholds} thresholds`], seconds: e.seconds_per_1000_items });
  }
  if (result.dataset) {
    const d = result.dataset;
    list.push({ label: ["dataset", `dataset.run() ${d.items} items, ${d.steps} steps`], seconds: d.wall_s });
  }
  const seen = new Map();
  for (const row of list) {
    const key = row.label.join("\t");
    seen.set(key, (seen.get(key) ?? 0) + 1);
    row.key = seen.get(key) > 1 ? `${key}\t${seen.get(key)}` : key;
  }
  return list;
}

const describe = (r) => [r.device && `device ${r.device}`, r.threads !== undefined && `${r.threads} threads`, r.torch && `libtorch ${r.torch}`].filter(Boolean).join(", ") || "no machine details";
const times = (ratio) => `${ratio.toFixed(2)}×`;
const percent = (ratio) => `${ratio >= 1 ? "+" : ""}${((ratio - 1) * 100).toFixed(1)} %`;
const pad = (text, width) => (width < 0 ? String(text).padStart(-width) : String(text).padEnd(width));

/**
 * The comparison of `before` with `after` (results as loadResult returns them) as lines of text.
 * A case's ratio is new/old median time (below 1: faster); "machine-adjusted" multiplies it by the
 * change of the ceiling that bounds the case, so it stays near 1.00× where only the machine changed.
 */
function compare(before, after, names = { before: "old", after: "new" }) {
  const lines = [`ovam benchmark comparison: ${names.before} (${describe(before)}) → ${names.after} (${describe(after)})`, ""];
  const ceilingNames = { sgemm_gflops: "SGEMM GFLOP/s", copy_gbs: "copy GB/s" };
  const ceilingRatio = {};
  lines.push(`${pad("ceiling (higher is faster)", 28)}${pad("old", -10)}${pad("new", -10)}${pad("new/old", -10)}  change`);
  for (const [key, name] of Object.entries(ceilingNames)) {
    const [a, b] = [before.ceilings[key], after.ceilings[key]];
    ceilingRatio[key] = a > 0 && b > 0 ? b / a : undefined;
    const change = ceilingRatio[key] === undefined ? "not measured" : `${pad(times(ceilingRatio[key]), -10)}  ${percent(ceilingRatio[key])}`;
    lines.push(`${pad(name, 28)}${pad(a.toFixed(1), -10)}${pad(b.toFixed(1), -10)}${change}`);
  }

  const old = new Map(rows(before).map((r) => [r.key, r]));
  const fresh = rows(after);
  const width = Math.max(40, ...[...old.values(), ...fresh].map((r) => r.label[1].length + 2));
  lines.push("", `${pad("model", 10)}${pad("case", width)}${pad("old ms", -12)}${pad("new ms", -12)}${pad("new/old", -9)}${pad("change", -10)}${pad("machine-adj.", -14)}`);
  const counts = { compared: 0, slower: 0, faster: 0 };
  const added = [];
  for (const row of fresh) {
    const was = old.get(row.key);
    if (!was) {
      added.push(row);
      continue;
    }
    old.delete(row.key);
    const head = `${pad(row.label[0], 10)}${pad(row.label[1], width)}${pad((was.seconds * 1e3).toFixed(3), -12)}${pad((row.seconds * 1e3).toFixed(3), -12)}`;
    if (!(was.seconds > 0 && row.seconds > 0)) {
      lines.push(`${head}  (not timed)`);
      continue;
    }
    const ratio = row.seconds / was.seconds;
    const machine = row.ceiling && ceilingRatio[row.ceiling];
    const mark = ratio > 1 + THRESHOLD ? "slower" : ratio < 1 - THRESHOLD ? "faster" : "";
    counts.compared++;
    if (mark) counts[mark]++;
    lines.push(`${head}${pad(times(ratio), -9)}${pad(percent(ratio), -10)}${pad(machine ? times(ratio * machine) : "", -14)}  ${mark}`.trimEnd());
  }
  for (const [list, where] of [[added, `only in ${names.after} (added)`], [[...old.values()], `only in ${names.before} (removed)`]])
    for (const row of list) lines.push(`${pad(row.label[0], 10)}${pad(row.label[1], width)}${where}`);
  const pct = THRESHOLD * 100;
  lines.push(
    "",
    `${counts.compared} timed cases compared: ${counts.slower} slower, ${counts.faster} faster by more than ${pct} % (new/old above ${times(1 + THRESHOLD)} or below ${times(1 - THRESHOLD)});`,
    `${added.length} added, ${old.size} removed. machine-adj.: new/old × the change of the case's ceiling (copy for rows that read`,
    "memory, SGEMM for the other rows with FLOPs), near 1.00× where only the machine changed.",
  );
  return lines;
}

/** Prints `error` as one line, `prefix: message [CODE]` (as the ovam CLI does), and gives the exit status. */
function reportError(prefix, error) {
  if (error instanceof UsageError) {
    process.stderr.write(`${prefix}: ${error.message}\n`);
    return 2;
  }
  const code = error instanceof OvamError ? error.code : undefined;
  process.stderr.write(`${prefix}: ${error instanceof OvamError ? error.message : (error?.stack ?? error)}${code ? ` [${code}]` : ""}\n`);
  return 1;
}

module.exports = { loadResult, compare, reportError, THRESHOLD };

if (require.main === module) {
  (async () => {
    const files = process.argv.slice(2);
    if (files.length !== 2) throw new UsageError("usage: node scripts/bench-compare.js OLD.json NEW.json (two files `npm run bench` wrote)");
    const [before, after] = await Promise.all([loadResult(files[0], "OLD.json"), loadResult(files[1], "NEW.json")]);
    console.log(compare(before, after, { before: files[0], after: files[1] }).join("\n"));
  })().catch((error) => {
    process.exitCode = reportError("bench-compare", error);
  });
}
