// Typed errors. Each class has a stable `code`; native rejections (objects with a `code` from
// native/core/util/errors.h) are turned into these classes here and nowhere else.
import { inspect } from "node:util";

import type { NativeJob } from "./native";

export type ErrorCode =
  | "ERR_OVAM_INVALID_OPTION"
  | "ERR_OVAM_INVALID_ARGUMENT"
  | "ERR_OVAM_DISPOSED"
  | "ERR_OVAM_ABORTED"
  | "ERR_OVAM_CONFIG"
  | "ERR_OVAM_SAFETENSORS"
  | "ERR_OVAM_WEIGHTS"
  | "ERR_OVAM_NOT_FOUND"
  | "ERR_OVAM_IO"
  | "ERR_OVAM_IMAGE"
  | "ERR_OVAM_TOKENIZER"
  | "ERR_OVAM_DEVICE"
  | "ERR_OVAM_WORD_NOT_FOUND"
  | "ERR_OVAM_AMBIGUOUS_WORD"
  | "ERR_OVAM_BUSY"
  | "ERR_OVAM_INTERNAL"
  | "ERR_OVAM_QUEUE"
  | "ERR_OVAM_ADDON";

/** Base class of every error ovam raises; `code` tells them apart without reading messages. */
export class OvamError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** One rejected option: its path ("capture.branch"), the value given and what is accepted. */
export interface OptionIssue {
  option: string;
  value: unknown;
  accepted: string;
}

/** An option failed validation before reaching the native core. */
export class InvalidOptionError extends OvamError {
  readonly option: string;
  readonly value: unknown;
  readonly accepted: string;
  /** Every rejected option of the call; the first is also on `option`, `value`, `accepted`. */
  readonly issues: readonly OptionIssue[];
  constructor(where: string, issues: readonly OptionIssue[]) {
    super("ERR_OVAM_INVALID_OPTION", `${where}: ${issues.map(describeIssue).join("; ")}`);
    this.issues = issues;
    ({ option: this.option, value: this.value, accepted: this.accepted } = issues[0]);
  }
}

function describeIssue(issue: OptionIssue): string {
  return `option "${issue.option}" got ${showValue(issue.value)}; accepted: ${issue.accepted}`;
}

/** A value as it reads in a message: short, one line, typed arrays and long strings cut. */
export function showValue(value: unknown): string {
  return inspect(value, { depth: 1, maxArrayLength: 4, maxStringLength: 60, breakLength: Infinity });
}

/** An argument the core cannot use though its type is right: a file of the wrong kind, an image without attention. */
export class InvalidArgumentError extends OvamError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_OVAM_INVALID_ARGUMENT", message, options);
  }
}

/** The pipeline or image was disposed before this call. */
export class DisposedError extends OvamError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_OVAM_DISPOSED", message, options);
  }
}

/** A job stopped by its AbortSignal; `cause` is the signal's reason. The pipeline stays usable. */
export class AbortError extends OvamError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_OVAM_ABORTED", message, options);
    this.name = "AbortError";
  }
}

/** Base class of the errors raised while reading a model, generation or token from disk. */
export class ModelLoadError extends OvamError {}

/** A config value that is missing or that ovam does not implement (names file, key and value). */
export class ConfigError extends ModelLoadError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_OVAM_CONFIG", message, options);
  }
}

/** A malformed or truncated safetensors file. */
export class SafetensorsError extends ModelLoadError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_OVAM_SAFETENSORS", message, options);
  }
}

/** A missing, extra or mis-shaped tensor. */
export class WeightsError extends ModelLoadError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_OVAM_WEIGHTS", message, options);
  }
}

/** A file or folder that is not there (or cannot be written). */
export class NotFoundError extends ModelLoadError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_OVAM_NOT_FOUND", message, options);
  }
}

/** A file that exists but cannot be read or written: permissions, a read-only or full disk. */
export class IOError extends OvamError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_OVAM_IO", message, options);
  }
}

/** A picture that cannot be used: not an image the decoder reads, or more pixels than accepted. */
export class ImageError extends OvamError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_OVAM_IMAGE", message, options);
  }
}

/** Tokenizer files that cannot be read or used. */
export class TokenizerError extends ModelLoadError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_OVAM_TOKENIZER", message, options);
  }
}

/** The requested device or dtype is not available in this build or on this machine. */
export class DeviceError extends OvamError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_OVAM_DEVICE", message, options);
  }
}

/**
 * The native addon cannot be loaded: none was built, or a prebuilt one was made for another
 * libtorch than this machine has. `builtAgainst` and `found` describe the two when known.
 */
export class AddonLoadError extends OvamError {
  readonly file: string | null;
  readonly builtAgainst: string | null;
  readonly found: string | null;
  constructor(message: string, details: { file: string | null; builtAgainst?: string | null; found?: string | null; cause?: unknown }) {
    super("ERR_OVAM_ADDON", message, { cause: details.cause });
    this.file = details.file;
    this.builtAgainst = details.builtAgainst ?? null;
    this.found = details.found ?? null;
  }
}

/** A libtorch failure the core did not foresee. */
export class InternalError extends OvamError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_OVAM_INTERNAL", message, options);
  }
}

/** The dataset queue (Redis, BullMQ) could not be read or written; the message names the URL without its password. */
export class QueueError extends OvamError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_OVAM_QUEUE", message, options);
  }
}

/** maps.word(): the word's tokens are not among the attributed text's tokens. */
export class WordNotFoundError extends OvamError {
  readonly word: string;
  readonly tokens: readonly string[];
  constructor(word: string, tokens: readonly string[]) {
    super("ERR_OVAM_WORD_NOT_FOUND", `"${word}" is not among the tokens ${tokens.join(" ")}`);
    this.word = word;
    this.tokens = tokens;
  }
}

/** maps.word(): the word occurs more than once; pass { occurrence } to pick one. */
export class AmbiguousWordError extends OvamError {
  readonly word: string;
  /** Token indices of each occurrence, in order. */
  readonly occurrences: readonly (readonly number[])[];
  constructor(word: string, occurrences: readonly (readonly number[])[]) {
    const span = (tokens: readonly number[]) => (tokens.length > 1 ? `tokens ${tokens[0]}–${tokens.at(-1)}` : `token ${tokens[0]}`);
    const list = occurrences.map((tokens, i) => `occurrence ${i} at ${span(tokens)}`).join(", ");
    super("ERR_OVAM_AMBIGUOUS_WORD", `"${word}" occurs ${occurrences.length} times: ${list}; pass { occurrence } to choose one`);
    this.word = word;
    this.occurrences = occurrences;
  }
}

/** A task was asked of something already running one that cannot run two (the studio's jobs). */
export class BusyError extends OvamError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_OVAM_BUSY", message, options);
  }
}

type NativeErrorClass = new (message: string, options?: { cause?: unknown }) => OvamError;

const byCode: Record<string, NativeErrorClass> = {
  ERR_OVAM_INVALID_ARGUMENT: InvalidArgumentError,
  ERR_OVAM_DISPOSED: DisposedError,
  ERR_OVAM_ABORTED: AbortError,
  ERR_OVAM_CONFIG: ConfigError,
  ERR_OVAM_SAFETENSORS: SafetensorsError,
  ERR_OVAM_WEIGHTS: WeightsError,
  ERR_OVAM_NOT_FOUND: NotFoundError,
  ERR_OVAM_IO: IOError,
  ERR_OVAM_TOKENIZER: TokenizerError,
  ERR_OVAM_DEVICE: DeviceError,
  ERR_OVAM_INTERNAL: InternalError,
};

/** The error class for a native rejection; anything without a known code passes through. */
export function fromNative(error: unknown): unknown {
  if (error instanceof OvamError || typeof error !== "object" || error === null) return error;
  const { code, message } = error as { code?: unknown; message?: unknown };
  const Class = typeof code === "string" ? byCode[code] : undefined;
  return Class ? new Class(String(message), { cause: error }) : error;
}

/** Runs a synchronous native call, mapping what it throws. */
export function callNative<T>(call: () => T): T {
  try {
    return call();
  } catch (error) {
    throw fromNative(error);
  }
}

/** Awaits a native promise, mapping its rejection. */
export async function awaitNative<T>(promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (error) {
    throw fromNative(error);
  }
}

/** An AbortError for a signal that fired before or during `what`. */
export function abortError(what: string, signal: AbortSignal): AbortError {
  return new AbortError(`${what} was aborted`, { cause: signal.reason });
}

/**
 * Runs a cancellable native job: an already-aborted signal rejects before anything starts, a
 * later abort cancels the job, and a progress callback that throws, or returns a promise that
 * rejects, cancels it and becomes the rejection (the native side would otherwise swallow the
 * first, and the second would be an unhandled rejection that ends Node while the job runs on).
 */
export async function runJob<T>(
  what: string,
  start: (progress: ((a: number, b: number) => void) | null) => NativeJob<T>,
  onProgress: ((a: number, b: number) => void) | undefined,
  signal: AbortSignal | undefined,
): Promise<T> {
  if (signal?.aborted) throw abortError(what, signal);
  let failure: { error: unknown } | undefined;
  let job: NativeJob<T> | undefined;
  const fail = (error: unknown) => {
    if (failure) return;
    failure = { error };
    job?.cancel();
  };
  const progress = onProgress
    ? (a: number, b: number) => {
        if (failure) return;
        try {
          const returned = onProgress(a, b) as unknown as PromiseLike<unknown> | undefined;
          if (typeof returned?.then === "function") returned.then(undefined, fail);
        } catch (error) {
          fail(error);
        }
      }
    : null;
  job = callNative(() => start(progress));
  const cancel = () => job?.cancel();
  signal?.addEventListener("abort", cancel, { once: true });
  let result: T;
  try {
    result = await job.promise;
  } catch (error) {
    if (failure) throw failure.error;
    const mapped = fromNative(error);
    if (mapped instanceof AbortError && signal?.aborted) throw abortError(what, signal);
    throw mapped;
  } finally {
    signal?.removeEventListener("abort", cancel);
  }
  if (failure) throw failure.error;
  return result;
}
