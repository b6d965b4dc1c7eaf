// Command-line parsing on node:util parseArgs: each command's flags, checked strictly, and the
// conversions of flag text to numbers and sizes. Mistakes here are UsageErrors (exit status 2).
import { parseArgs, type ParseArgsConfig } from "node:util";

import type { LoadOptions, SchedulerName } from "../options";
import type { Context } from "./workflow";

/** A mistake in how the command was called; the message says which flag or argument. */
export class UsageError extends Error {
  readonly code = "ERR_USAGE";
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export type OptionSpec = NonNullable<ParseArgsConfig["options"]>;
export type Values = Record<string, string | boolean | string[] | undefined>;

/** Flags every command takes. */
export const commonOptions = {
  help: { type: "boolean", short: "h" },
  json: { type: "boolean" },
  verbose: { type: "boolean" },
} as const satisfies OptionSpec;

/** --help text of commonOptions. */
export const COMMON_HELP = `Output options:
  --json                  JSON-lines records on stdout, one per event (note, progress,
                          done, file, then result or error)
  --verbose               stack traces with errors
  -h, --help              this help`;

/** Flags of the commands that load a model. */
export const modelOptions = {
  model: { type: "string" },
  device: { type: "string" },
  dtype: { type: "string" },
  "weight-dtype": { type: "string" },
  threads: { type: "string" },
} as const satisfies OptionSpec;

/** --help text of modelOptions; `input` names the files that must come from the same model. */
export function modelHelp(input?: string): string {
  const model = input
    ? `diffusers Stable Diffusion 1.x/2.x folder (default: the model
                          that made the ${input}, as recorded in it, else the bundled
                          tiny random-weight test model)`
    : `diffusers Stable Diffusion 1.x/2.x folder (default: the bundled
                          tiny random-weight test model, whose pictures are noise)`;
  return `Model options:
  --model DIR             ${model}
  --device NAME           cpu (default), cuda or cuda:N
  --dtype NAME            auto (default: bfloat16 where the CPU (AVX-512 BF16 or AMX) or
                          GPU computes it natively, else float32), float32 (the exact
                          reference the README's error figures use), float16 or bfloat16
  --weight-dtype NAME     float16 or bfloat16: store the linear and convolution weights
                          so under --dtype float32 (half the memory; still computed in
                          float32); default: the --dtype
  --threads N             CPU threads, 0 = all cores (default)`;
}

/** Whether one of `flags` comes before any "--"; read before parsing, so that help wins over other mistakes and errors know --json. */
export function hasFlag(args: readonly string[], ...flags: string[]): boolean {
  const end = args.indexOf("--");
  return (end < 0 ? args : args.slice(0, end)).some((arg) => flags.includes(arg));
}

export function parse(args: string[], options: OptionSpec): { values: Values; positionals: string[] } {
  try {
    return parseArgs({ args: joinNegativeValues(args, options), options, strict: true, allowPositionals: true }) as { values: Values; positionals: string[] };
  } catch (error) {
    // parseArgs words its errors for programmers ("Unknown option '--x'. To specify a positional…"): keep the first sentence.
    throw new UsageError(String((error as Error).message).split(". ")[0]);
  }
}

// parseArgs reads "--seed -1" as a flag followed by an unknown option "-1"; joined as "--seed=-1",
// a negative value reaches the flag's own range check and its message.
function joinNegativeValues(args: readonly string[], options: OptionSpec): string[] {
  const takesValue = (arg: string) =>
    Object.entries(options).some(([name, o]) => o.type === "string" && (arg === `--${name}` || (o.short !== undefined && arg === `-${o.short}`)));
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--") {
      out.push(...args.slice(i));
      break;
    }
    // "--seed=-1"; a short flag takes its value attached ("-o-1").
    if (takesValue(args[i]) && /^-(\d|\.\d)/.test(args[i + 1] ?? "")) out.push(`${args[i]}${args[i].startsWith("--") ? "=" : ""}${args[++i]}`);
    else out.push(args[i]);
  }
  return out;
}

/** A flag's string value (the last one given), or undefined. */
export function text(values: Values, name: string): string | undefined {
  const value = values[name];
  return Array.isArray(value) ? value.at(-1) : typeof value === "string" ? value : undefined;
}

export function texts(values: Values, name: string): string[] {
  const value = values[name];
  return Array.isArray(value) ? value : typeof value === "string" ? [value] : [];
}

const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i;

/** --name as a number, or undefined when absent; `integer` also refuses fractions. */
export function number(values: Values, name: string, kind: "integer" | "number" = "number"): number | undefined {
  const raw = text(values, name);
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!NUMBER.test(raw.trim()) || (kind === "integer" && !Number.isSafeInteger(value)))
    throw new UsageError(`--${name} expects ${kind === "integer" ? "an integer" : "a number"}, got "${raw}"`);
  return value;
}

/** --size WxH (e.g. 512x512) as { width, height }. */
export function size(values: Values): { width?: number; height?: number } {
  const raw = text(values, "size");
  if (raw === undefined) return {};
  // Signed, so that a negative side gets generate()'s range message rather than a format one.
  const match = /^([-+]?\d+)[x×]([-+]?\d+)$/i.exec(raw.trim());
  if (!match) throw new UsageError(`--size expects WIDTHxHEIGHT in pixels (e.g. 512x512), got "${raw}"`);
  return { width: Number(match[1]), height: Number(match[2]) };
}

/** --name restricted to `choices`. */
export function choice<T extends string>(values: Values, name: string, choices: readonly T[]): T | undefined {
  const raw = text(values, name);
  if (raw === undefined || (choices as readonly string[]).includes(raw)) return raw as T | undefined;
  throw new UsageError(`--${name} expects one of ${choices.join(", ")}, got "${raw}"`);
}

/** The load() options of --device, --dtype, --weight-dtype and --threads (their values are checked by load()). */
export function loadOptions(values: Values): LoadOptions {
  return {
    device: text(values, "device"),
    dtype: choice(values, "dtype", ["auto", "float32", "float16", "bfloat16"] as const),
    weightDtype: choice(values, "weight-dtype", ["float32", "float16", "bfloat16"] as const),
    threads: number(values, "threads", "integer"),
  };
}

/** Flags of the commands that run the diffusion loop (generate, segment). */
export const samplingOptions = {
  steps: { type: "string" },
  seed: { type: "string" },
  scheduler: { type: "string" },
  guidance: { type: "string" },
  negative: { type: "string" },
} as const satisfies OptionSpec;

/** --help lines of samplingOptions. */
export const SAMPLING_HELP = `  --steps N               denoising steps (default 50)
  --seed N                noise seed (default: random; printed and saved)
  --scheduler NAME        PNDM, DDIM, Euler, DPMSolver or LMS (default: the model's)
  --guidance G            classifier-free guidance scale (default: the model's, 7.5 SD, 5.0 SDXL)
  --negative TEXT         negative prompt (SDXL: none gives zero embeddings, "" is encoded)`;

/** The generate() options of samplingOptions (their values are checked by generate()). */
export function sampling(values: Values) {
  return {
    negativePrompt: text(values, "negative"),
    steps: number(values, "steps", "integer"),
    seed: number(values, "seed", "integer"),
    guidanceScale: number(values, "guidance"),
    scheduler: text(values, "scheduler") as SchedulerName | undefined,
  };
}

/** Flags of the finer maps (per block, per step); `stepsFlag` names the step range's flag. */
export function finerMapOptions<const S extends string>(stepsFlag: S) {
  return { blocks: { type: "string" }, [stepsFlag]: { type: "string" }, "per-block": { type: "boolean" } } as {
    blocks: { type: "string" };
    "per-block": { type: "boolean" };
  } & Record<S, { type: "string" }>;
}

/** --help text of finerMapOptions(stepsFlag). */
export function finerMapsHelp(stepsFlag: string): string {
  return `Finer maps:
  --blocks LIST           only these attention blocks: comma-separated stored names
                          (up_blocks.1.attentions.0.transformer_blocks.0.attn2) or
                          resolutions, a block grid's longer side (e.g. 16,32)
  ${`--${stepsFlag} FIRST:END`.padEnd(24)}only the stored denoising evaluations FIRST … END-1 (0-based)
  --per-block             also one map per block: one sheet row and files per block`;
}

/** The attribute() selections of --blocks, the step range flag and --per-block. */
export function finerMaps(values: Values, stepsFlag: string): { blocks?: (string | number)[]; steps?: [number, number]; perBlock: boolean } {
  const blocksText = text(values, "blocks");
  const stepsText = text(values, stepsFlag);
  const blocks = blocksText?.split(",").map((b) => b.trim()).filter((b) => b.length > 0).map((b) => (/^\d+$/.test(b) ? Number(b) : b));
  if (blocks !== undefined && blocks.length === 0) throw new UsageError(`--blocks expects block names or resolutions separated by commas, got "${blocksText}"`);
  let steps: [number, number] | undefined;
  if (stepsText !== undefined) {
    const match = /^(\d+):(\d+)$/.exec(stepsText.trim());
    if (!match || Number(match[1]) >= Number(match[2])) throw new UsageError(`--${stepsFlag} expects FIRST:END with FIRST < END (e.g. 0:10), got "${stepsText}"`);
    steps = [Number(match[1]), Number(match[2])];
  }
  return { blocks, steps, perBlock: values["per-block"] === true };
}

/** A subcommand: its flags, its --help text, and what it does with the parsed arguments. */
export interface Command {
  name: string;
  summary: string;
  help: string;
  options: OptionSpec;
  run(ctx: Context, values: Values, positionals: string[]): Promise<void>;
}

/** Throws a UsageError unless `value` was given. */
export function required<T>(value: T | undefined, what: string): T {
  if (value === undefined || (Array.isArray(value) && value.length === 0)) throw new UsageError(`missing ${what}`);
  return value;
}

/** Throws a UsageError naming arguments left over after a command's positionals. */
export function noExtra(extra: readonly string[], hint: string): void {
  if (extra.length > 0) throw new UsageError(`unexpected argument${extra.length > 1 ? "s" : ""} ${extra.map((a) => JSON.stringify(a)).join(" ")} (${hint})`);
}
