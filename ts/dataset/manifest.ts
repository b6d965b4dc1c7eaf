// manifest.jsonl: one line per finished item, appended after the item's files are in place, so a
// line is the commit point of its item. Appends are single O_APPEND writes (whole lines, also
// with several shards appending to one folder on a local disk); rewriting the whole file per item
// through the atomic writer would cost O(n²) on a 20 000-image run. A line torn by a crash or a
// full disk does not parse and is skipped: its item counts as unfinished and is redone.
import { constants, promises as fs } from "node:fs";
import path from "node:path";

import { IOError } from "../errors";
import { MANIFEST_FILE, type ItemFiles } from "./layout";

/** What the manifest records of one finished item. */
export interface ManifestLine {
  id: string;
  index: number;
  prompt: string;
  /** Class ids the image is labelled for. */
  classes: number[];
  seed: number;
  settings: { steps: number; guidanceScale: number; width: number; height: number; scheduler: string };
  /** Fraction of the image's pixels labelled with each class, by class name; and of uncertain (255) pixels. */
  foreground: Record<string, number>;
  uncertain: number;
  /** Paths relative to the dataset folder. */
  files: Partial<ItemFiles> & Pick<ItemFiles, "image" | "label">;
  /** Seconds spent in each phase (the only field that differs between two runs of a spec). */
  timings: { generate: number; attribute: number; masks: number; write: number };
}

/** The parsed lines of `dir`'s manifest (none when it does not exist yet); lines that do not parse are skipped. */
export async function readManifest(dir: string): Promise<ManifestLine[]> {
  let text: string;
  try {
    text = await fs.readFile(path.join(dir, MANIFEST_FILE), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new IOError(`${path.join(dir, MANIFEST_FILE)} cannot be read (${(error as Error).message})`, { cause: error });
  }
  const lines: ManifestLine[] = [];
  // Only lines ended by "\n" were written whole.
  for (const line of text.split("\n").slice(0, -1)) {
    try {
      const value = JSON.parse(line) as ManifestLine;
      if (typeof value?.id === "string" && Number.isInteger(value.index)) lines.push(value);
    } catch {
      // a torn line: its item is redone
    }
  }
  return lines;
}

/** Appends `line` to `dir`'s manifest in one write, after a "\n" when a torn line precedes it, and syncs it to disk. */
export async function appendManifestLine(dir: string, line: ManifestLine): Promise<void> {
  const file = path.join(dir, MANIFEST_FILE);
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(file, constants.O_RDWR | constants.O_APPEND | constants.O_CREAT, 0o666);
    const { size } = await handle.stat();
    const last = Buffer.alloc(1);
    if (size > 0) await handle.read(last, 0, 1, size - 1);
    const text = `${size > 0 && last[0] !== 0x0a ? "\n" : ""}${JSON.stringify(line)}\n`;
    const bytes = Buffer.from(text, "utf8");
    const { bytesWritten } = await handle.write(bytes, 0, bytes.length, null);
    if (bytesWritten !== bytes.length) throw new Error(`wrote ${bytesWritten} of ${bytes.length} bytes`);
    await handle.sync();
  } catch (error) {
    throw new IOError(`${file}: cannot append the line of item ${line.id} (${(error as Error).message})`, { cause: error });
  } finally {
    await handle?.close();
  }
}
