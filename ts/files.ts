// The one way ovam writes a file and the one way it reads an input file. Writes go to a unique
// temporary file in the target's folder and are renamed into place, so a reader never sees half
// a file and concurrent writers never share a temporary; inputs must be regular files of bounded
// size, checked before reading, so a FIFO or a device never hangs or floods a read.
import { randomBytes } from "node:crypto";
import { constants, promises as fs } from "node:fs";
import path from "node:path";

import { InvalidArgumentError, IOError, NotFoundError, type OvamError } from "./errors";

let counter = 0;

/** The typed error for a failed file system call on `file`, naming `what` (a flag or an option). */
export function fileError(error: unknown, file: string, what: string): OvamError {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const reason = (error as Error | undefined)?.message ?? String(error);
  if (code === "ENOENT" || code === "ENOTDIR") return new NotFoundError(`${what}: ${file} does not exist (${reason})`, { cause: error });
  if (code === "EISDIR") return new InvalidArgumentError(`${what}: ${file} is a folder; a regular file is accepted`, { cause: error });
  return new IOError(`${what}: ${file} cannot be accessed (${reason})`, { cause: error });
}

// A target that exists must be a regular file: renaming over a device, FIFO or socket would
// replace the node (as root, /dev/full), and a folder cannot be replaced by a file. A symbolic
// link is replaced by the new file; the file it pointed to is left as it was.
async function checkTarget(target: string, what: string): Promise<void> {
  let stat;
  try {
    stat = await fs.lstat(target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw fileError(error, target, what);
  }
  if (!stat.isFile() && !stat.isSymbolicLink())
    throw new InvalidArgumentError(`${what}: ${target} is ${kindOf(stat)}; accepted: a regular file or a path that does not exist yet`);
}

function kindOf(stat: { isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean }): string {
  if (stat.isDirectory()) return "a folder";
  if (stat.isFIFO()) return "a FIFO";
  if (stat.isSocket()) return "a socket";
  if (stat.isCharacterDevice() || stat.isBlockDevice()) return "a device";
  return "not a regular file";
}

/**
 * Writes `data` to `target` atomically: a unique temporary `.NAME.tmp-<pid>-<counter>-<random>`
 * in the same folder (created with O_EXCL), written, fsynced, renamed over the target, and the
 * folder fsynced. Refuses targets that exist and are not regular files; creates no folders.
 */
export async function writeFileAtomic(target: string, data: Uint8Array | string, opts: { mode?: number; what?: string } = {}): Promise<void> {
  const what = opts.what ?? "write";
  const resolved = path.resolve(target);
  await checkTarget(resolved, what);
  const folder = path.dirname(resolved);
  const temporary = path.join(folder, `.${path.basename(resolved)}.tmp-${process.pid}-${counter++}-${randomBytes(6).toString("hex")}`);
  let handle;
  try {
    handle = await fs.open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, opts.mode ?? 0o666);
  } catch (error) {
    throw fileError(error, resolved, what);
  }
  try {
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await checkTarget(resolved, what);
    await fs.rename(temporary, resolved);
  } catch (error) {
    await fs.rm(temporary, { force: true });
    throw error instanceof InvalidArgumentError ? error : fileError(error, resolved, what);
  }
  await syncFolder(folder);
}

// Makes the rename durable; some file systems cannot fsync a folder, which loses nothing here.
async function syncFolder(folder: string): Promise<void> {
  let handle;
  try {
    handle = await fs.open(folder, constants.O_RDONLY);
    await handle.sync();
  } catch {
    // best effort
  } finally {
    await handle?.close();
  }
}

/**
 * Reads an input file: it must be a regular file (no FIFO, device or folder) of at most
 * `maxBytes`, checked by stat before opening and by fstat after a non-blocking open (the path may
 * change in between). Errors name `what`, e.g. "--mask".
 */
export async function readInputFile(file: string, opts: { maxBytes: number; what: string }): Promise<Buffer> {
  const { maxBytes, what } = opts;
  const resolved = path.resolve(file);
  const check = (stat: Parameters<typeof kindOf>[0] & { isFile(): boolean; size: number }) => {
    if (!stat.isFile()) throw new InvalidArgumentError(`${what}: ${resolved} is ${kindOf(stat)}; accepted: a regular file`);
    if (stat.size > maxBytes) throw new InvalidArgumentError(`${what}: ${resolved} is ${stat.size} bytes; accepted: at most ${maxBytes} bytes`);
  };
  try {
    check(await fs.stat(resolved));
  } catch (error) {
    throw error instanceof InvalidArgumentError ? error : fileError(error, resolved, what);
  }
  let handle;
  try {
    handle = await fs.open(resolved, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    throw fileError(error, resolved, what);
  }
  try {
    const stat = await handle.stat();
    check(stat);
    // One byte more than the stat said, so a file that grew since is refused rather than cut.
    const buffer = Buffer.allocUnsafe(stat.size + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > stat.size) throw new InvalidArgumentError(`${what}: ${resolved} grew while being read; accepted: a file nobody is writing`);
    return buffer.subarray(0, length);
  } catch (error) {
    throw error instanceof InvalidArgumentError ? error : fileError(error, resolved, what);
  } finally {
    await handle.close();
  }
}
