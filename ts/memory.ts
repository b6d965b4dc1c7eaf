// The memory budget: what a call is estimated to allocate, checked before it runs. Past the
// budget the call is refused with an InvalidOptionError (the operating system would otherwise
// grant the memory on credit and its OOM killer end the process mid-run).
import os from "node:os";

import { invalidOption } from "./options";

/** The default budget: 80 % of the machine's memory (or of the container's limit, when lower). */
export function defaultMemoryBudget(): number {
  const limit = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory?.() ?? 0;
  const total = limit > 0 ? Math.min(limit, os.totalmem()) : os.totalmem();
  return Math.floor(total * 0.8);
}

/** Bytes as people read them: "10.5 GB". */
export function formatBytes(bytes: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  for (; value >= 1000 && unit < units.length - 1; unit++) value /= 1000;
  return `${value.toFixed(value < 10 && unit > 0 ? 1 : 0)} ${units[unit]}`;
}

/**
 * Throws an InvalidOptionError naming `option` when the parts of an estimate (bytes each, e.g.
 * { attention, store }) add up to more than `budget`.
 */
export function checkMemory(where: string, option: string, value: unknown, parts: Record<string, number>, budget: number): void {
  const total = Object.values(parts).reduce((a, b) => a + b, 0);
  if (total <= budget) return;
  const detail = Object.entries(parts)
    .filter(([, bytes]) => bytes > 0)
    .map(([name, bytes]) => `${name} ${formatBytes(bytes)}`)
    .join(", ");
  throw invalidOption(
    where,
    option,
    value,
    `a value whose estimated memory fits the memory budget of ${formatBytes(budget)} (this one needs ${formatBytes(total)}: ${detail}); ` +
      `lower it, or raise the budget with load(dir, { memoryBudget })`,
  );
}
