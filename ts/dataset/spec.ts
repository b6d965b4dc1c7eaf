// The dataset spec (one JSON file, checked with zod) and the plan: the items a spec asks for,
// each a pure function of (spec, index), so that resuming, sharding and the queue need nothing
// else to agree on what item i is.
import { createHash } from "node:crypto";
import { stat } from "node:fs/promises";
import path from "node:path";

import { z } from "zod";

import { InvalidOptionError, type OptionIssue } from "../errors";
import { readInputFile } from "../files";
import { resolveMaskSettings, maskSettingsSchema, type MaskSettings } from "../masks";
import {
  attributeShape,
  captureSchema,
  dtype,
  finite,
  integer,
  loadDtype,
  MAX_SIZE,
  oneOf,
  options,
  parse,
  refineSchema,
  string,
  type LoadOptions,
  type SchedulerName,
} from "../options";
import { safeStem } from "../cli/output";
import { CITYSCAPES_CLASSES, VOC_CLASSES } from "./layout";

const MAX_ITEMS = 10_000_000;
const MAX_PROMPTS_BYTES = 256 << 20;
const PLACEHOLDER = /\{([^{}]*)\}/g;
const PLACEHOLDERS = ["class"];

const nonEmpty = (accepted: string) => string(accepted).min(1, { error: accepted });
const rgb = () => z.tuple([integer(0, 255), integer(0, 255), integer(0, 255)], { error: "[r, g, b] with integers from 0 to 255" });
const tokenRef = () => options({ token: nonEmpty("a token file path (written by token.save() or ovam optimize), relative to the spec's folder") });

const classSchema = options({
  id: integer(0, 254, "an integer from 0 to 254 (255 is the uncertain/ignore value)").optional(),
  name: nonEmpty("a class name (a non-empty string)"),
  attribute: z.union([nonEmpty("a text"), tokenRef()], { error: 'the text whose map labels the class, or { "token": "file.safetensors" }' }).optional(),
  color: rgb().optional(),
  threshold: finite("a number in [0, 1]", (v) => v >= 0 && v <= 1).optional(),
});

// Template prompts ({ templates, perClass }) or a prompts file ({ file }): one object, so that a
// mistake is reported at its own path rather than as "matches neither form".
const promptsSchema = options({
  templates: z
    .array(nonEmpty("a prompt template with {class}"), { error: 'an array of prompt templates such as "A {class} in an urban environment"' })
    .min(1, { error: "at least one template" })
    .optional(),
  perClass: integer(1, MAX_ITEMS, `an integer from 1 to ${MAX_ITEMS}`).optional(),
  file: nonEmpty("a JSONL file path, relative to the spec's folder").optional(),
}).superRefine((p, ctx) => {
  const neither = '{ "templates": [...], "perClass": N } or { "file": "prompts.jsonl" }';
  if (p.file !== undefined) {
    if (p.templates !== undefined || p.perClass !== undefined) ctx.addIssue({ code: "custom", path: ["file"], message: `${neither}, not both` });
  } else if (p.templates === undefined) ctx.addIssue({ code: "custom", path: ["templates"], message: neither });
  else if (p.perClass === undefined) ctx.addIssue({ code: "custom", path: ["perClass"], message: "the number of images per class (an integer ≥ 1) with templates" });
});

const seedsSchema = z.union(
  [
    oneOf(["per-image", "shared-across-classes"]),
    options({
      base: integer(0, 2 ** 47, "an integer from 0 to 2^47").optional(),
      mode: oneOf(["per-image", "shared-across-classes"]).optional(),
    }),
  ],
  { error: '"per-image", "shared-across-classes" or { base, mode }' },
);

const generateShape = {
  steps: integer(1, 1000).default(50),
  guidanceScale: finite("a finite number ≥ 0", (v) => v >= 0).default(7.5),
  width: integer(8, MAX_SIZE, `a multiple of 8 up to ${MAX_SIZE}`).optional(),
  height: integer(8, MAX_SIZE, `a multiple of 8 up to ${MAX_SIZE}`).optional(),
  scheduler: oneOf(["PNDM", "DDIM", "Euler", "DPMSolver", "LMS", "PNDMScheduler", "DDIMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler", "LMSDiscreteScheduler"]).optional(),
  negativePrompt: string().default(""),
  capture: captureSchema.omit({ streaming: true }).default(() => captureSchema.omit({ streaming: true }).parse({})),
};

const saveSchema = options({
  maps: z.union([oneOf(["float16", "float32"]), z.literal(false)], { error: '"float16", "float32" or false' }).default("float16"),
  generation: z.boolean({ error: "true or false" }).default(false),
  overlays: z.boolean({ error: "true or false" }).default(false),
  selfAttention: z.boolean({ error: "true or false" }).default(false),
});

/** Self-attention refinement of the class maps before labelling (refine(); Dataset Diffusion's A^τ · c). */
export const datasetRefineSchema = refineSchema.omit({ size: true });

/** The spec file as written (see README, "Make a dataset"). */
export const datasetSpecSchema = options({
  model: nonEmpty("a diffusers model folder, relative to the spec's folder").optional(),
  dtype: loadDtype(),
  weightDtype: dtype().optional(),
  format: oneOf(["voc", "cityscapes", "custom"]).default("voc"),
  background: integer(0, 255).optional(),
  layout: oneOf(["default", "voc"]).default("default"),
  classes: z.array(classSchema, { error: "an array of classes { id, name, attribute }" }).min(1, { error: "at least one class" }).max(254, { error: "at most 254 classes" }),
  prompts: promptsSchema,
  seeds: seedsSchema.default({}),
  generate: options(generateShape).default(() => options(generateShape).parse({})),
  attribute: options(attributeShape).default(() => options(attributeShape).parse({})),
  refine: datasetRefineSchema.optional(),
  masks: maskSettingsSchema.default({}),
  save: saveSchema.default(() => saveSchema.parse({})),
});
export type DatasetSpecInput = z.input<typeof datasetSpecSchema>;

const promptLineSchema = options({
  prompt: nonEmpty("a prompt (a non-empty string)"),
  classes: z.array(z.union([nonEmpty("a class name"), integer(0, 254, "a class id")]), { error: "an array of class names or ids" }).min(1, { error: "at least one class" }),
  seed: integer(0, 2 ** 47, "an integer from 0 to 2^47").optional(),
  id: nonEmpty("an id of letters, digits, '_' and '-'").regex(/^[A-Za-z0-9_-]{1,100}$/, { error: "an id of letters, digits, '_' and '-' (1 to 100)" }).optional(),
});

export interface DatasetClass {
  id: number;
  name: string;
  /** File-name-safe form of the name (item ids of template prompts start with it). */
  stem: string;
  /** What is attributed: a text, or a token file (path as written, relative to the spec's folder). */
  attribute: { text: string } | { token: string };
  color: [number, number, number];
  threshold: number;
}

export interface PromptLine {
  id: string;
  prompt: string;
  classes: number[];
  seed?: number;
}

export type DatasetPrompts =
  | { templates: string[]; perClass: number }
  | { file: string; sha256: string; lines: PromptLine[] };

/** A checked spec with every default filled in: what the plan and the items read. */
export interface DatasetSpec {
  /** The model folder as written (relative to the spec's folder), or null for the bundled model. */
  model: string | null;
  /** The model's compute dtype when the run loads it (dataset.json records the one "auto" resolved to). */
  dtype: NonNullable<LoadOptions["dtype"]>;
  /** Its matrix weights' storage (load()'s weightDtype); absent: dtype (dataset.json records the one used). */
  weightDtype?: LoadOptions["weightDtype"];
  format: "voc" | "cityscapes" | "custom";
  /** The label of pixels no class passes. */
  background: number;
  layout: "default" | "voc";
  classes: DatasetClass[];
  prompts: DatasetPrompts;
  seeds: { base: number; mode: "per-image" | "shared-across-classes" };
  generate: {
    steps: number;
    guidanceScale: number;
    width?: number;
    height?: number;
    scheduler?: SchedulerName;
    negativePrompt: string;
    capture: {
      midBlock: boolean;
      branch: "unconditional" | "conditional";
      dtype: "float32" | "float16" | "bfloat16";
      /** Kept for refine and save.selfAttention (made so when the spec does not say). */
      selfAttention: false | { sides?: number[]; branch: "unconditional" | "conditional" };
    };
  };
  attribute: z.output<ReturnType<typeof options<typeof attributeShape>>>;
  /** The refinement of each class's map before labelling, or null. */
  refine: DatasetRefine | null;
  masks: MaskSettings;
  /** selfAttention: the maps file also holds the self-attention refinement uses (spec.refine.side, else the largest kept grid). */
  save: { maps: "float16" | "float32" | false; generation: boolean; overlays: boolean; selfAttention: boolean };
}

export type DatasetRefine = z.output<typeof datasetRefineSchema>;

/** One image of the dataset. */
export interface Item {
  index: number;
  /** File stem of its files, unique in the dataset. */
  id: string;
  prompt: string;
  /** Ids of the classes it is labelled for. */
  classes: number[];
  seed: number;
}

/**
 * Checks a spec (the parsed JSON; relative paths start at `baseDir`; `name` is the file's, for
 * messages) and fills its defaults: classes get ids, colours and thresholds, the prompts file
 * is read into lines, files the spec names are checked to exist. Every mistake found is reported
 * at once, each with its JSON path ("spec.classes[1].id"), the value and what is accepted.
 */
export async function resolveSpec(json: unknown, baseDir: string, name?: string): Promise<DatasetSpec> {
  const where = `dataset spec${name ? ` ${name}` : ""}`;
  const given = parse(where, datasetSpecSchema, json, "spec");
  const issues: OptionIssue[] = [];
  const issue = (option: string, value: unknown, accepted: string) => issues.push({ option: `spec.${option}`, value, accepted });

  const format = given.format;
  if (given.background !== undefined && format !== "custom") issue("background", given.background, `no background for format "${format}" (it is ${format === "voc" ? 0 : 255})`);
  const background = format === "voc" ? 0 : format === "cityscapes" ? 255 : (given.background ?? 0);
  const masks = resolveMaskSettings(given.masks, where, "spec.masks");

  const classes: DatasetClass[] = [];
  const byId = new Map<number, number>();
  const byName = new Map<string, number>();
  const byStem = new Map<string, number>();
  for (const [i, c] of given.classes.entries()) {
    const at = `classes[${i}]`;
    const id = c.id ?? knownId(format, c.name);
    if (id === undefined) {
      issue(`${at}.id`, c.id, format === "custom" ? "an id for every class of a custom format" : `an id, or a name among the ${format} classes (${knownNames(format)})`);
      continue;
    }
    const range = format === "voc" ? [1, 20] : format === "cityscapes" ? [0, 18] : [0, 254];
    if (id < range[0] || id > range[1] || id === background) issue(`${at}.id`, id, `an integer from ${range[0]} to ${range[1]}${format === "custom" ? ` other than the background (${background})` : ""}`);
    if (byId.has(id)) issue(`${at}.id`, id, `an id not used by another class (classes[${byId.get(id)}] has it)`);
    const name = c.name.trim();
    if (byName.has(name.toLowerCase())) issue(`${at}.name`, c.name, `a name not used by another class (classes[${byName.get(name.toLowerCase())}] has it)`);
    const stem = safeStem(name);
    if (!byName.has(name.toLowerCase()) && byStem.has(stem)) issue(`${at}.name`, c.name, `a name whose file-name form "${stem}" differs from classes[${byStem.get(stem)}]'s`);
    if (format !== "custom" && c.color) issue(`${at}.color`, c.color, `no color for format "${format}" (its palette is fixed)`);
    if (format === "custom" && !c.color) issue(`${at}.color`, c.color, "[r, g, b] for every class of a custom format");
    byId.set(id, i);
    byName.set(name.toLowerCase(), i);
    byStem.set(stem, i);
    const attribute: DatasetClass["attribute"] = typeof c.attribute === "object" ? { token: c.attribute.token } : { text: c.attribute ?? name };
    if ("token" in attribute) await checkFile(tokenFile(attribute.token, baseDir), `${at}.attribute.token`, attribute.token, "an existing token file (written by token.save() or ovam optimize)", issue);
    const threshold = c.threshold ?? ("token" in attribute ? masks.threshold.token : masks.threshold.text);
    classes.push({ id, name, stem, attribute, color: c.color ?? [0, 0, 0], threshold });
  }

  let prompts: DatasetPrompts;
  if (given.prompts.file === undefined) {
    const templates = given.prompts.templates ?? [];
    const perClass = given.prompts.perClass ?? 1;
    for (const [i, template] of templates.entries())
      for (const [, key] of template.matchAll(PLACEHOLDER))
        if (!PLACEHOLDERS.includes(key)) issue(`prompts.templates[${i}]`, template, `templates whose placeholders are ${PLACEHOLDERS.map((p) => `{${p}}`).join(", ")} (not {${key}})`);
    prompts = { templates, perClass };
    if (classes.length * prompts.perClass > MAX_ITEMS) issue("prompts.perClass", prompts.perClass, `at most ${MAX_ITEMS} images in all`);
  } else {
    const file = path.resolve(baseDir, given.prompts.file);
    const found = await checkFile(file, "prompts.file", given.prompts.file, "an existing JSONL file", issue);
    const text = found ? (await readInputFile(file, { maxBytes: MAX_PROMPTS_BYTES, what: "prompts file" })).toString("utf8") : "";
    const lines = readPromptLines(text, given.prompts.file, classes, issue);
    prompts = { file: given.prompts.file, sha256: createHash("sha256").update(text).digest("hex"), lines };
  }

  const seedsGiven = typeof given.seeds === "string" ? { mode: given.seeds } : given.seeds;
  const seeds = { base: seedsGiven.base ?? 0, mode: seedsGiven.mode ?? "per-image" };
  if (seeds.mode === "shared-across-classes" && !("templates" in prompts))
    issue("seeds", given.seeds, '"per-image" with a prompts file (each line may give its own seed)');
  for (const side of ["width", "height"] as const) {
    const value = given.generate[side];
    if (value !== undefined && value % 8 !== 0) issue(`generate.${side}`, value, `a multiple of 8 up to ${MAX_SIZE}`);
  }
  const capture = selfAttentionCapture(json, given, issue);
  if (given.model !== undefined) await checkFile(path.resolve(baseDir, given.model, "model_index.json"), "model", given.model, "a diffusers model folder (with model_index.json)", issue);
  if (issues.length > 0) throw new InvalidOptionError(where, issues);

  return {
    model: given.model ?? null,
    dtype: given.dtype,
    weightDtype: given.weightDtype,
    format,
    background,
    layout: given.layout,
    classes,
    prompts,
    seeds,
    generate: { ...given.generate, capture } as DatasetSpec["generate"],
    attribute: given.attribute,
    refine: given.refine ?? null,
    masks,
    save: given.save,
  };
}

/**
 * The capture a spec needs: refine and save.selfAttention need the image's self-attention, so a
 * spec that does not mention capture.selfAttention keeps it (refine's side only, when it names
 * one); one that turns it off, or keeps other sides, is a mistake.
 */
function selfAttentionCapture(json: unknown, given: z.output<typeof datasetSpecSchema>, issue: (o: string, v: unknown, a: string) => void): DatasetSpec["generate"]["capture"] {
  const capture = given.generate.capture;
  const side = given.refine?.side;
  const needs = given.refine ? "spec.refine" : given.save.selfAttention ? "spec.save.selfAttention" : undefined;
  if (!needs) return capture;
  if (given.save.selfAttention && given.save.maps === false) issue("save.selfAttention", true, "false when save.maps is false (the self-attention is stored in the maps file)");
  const written = (json as { generate?: { capture?: { selfAttention?: unknown } } }).generate?.capture?.selfAttention;
  if (written === undefined) return { ...capture, selfAttention: { branch: "conditional", ...(side === undefined ? {} : { sides: [side] }) } };
  const kept = capture.selfAttention;
  if (kept === false) issue("generate.capture.selfAttention", false, `true or { sides?, branch? }: ${needs} needs the image's self-attention`);
  else if (side !== undefined && kept.sides && !kept.sides.includes(side)) issue("refine.side", side, `one of generate.capture.selfAttention.sides (${kept.sides.join(", ")})`);
  return capture;
}

/** The file a class's token reference names (token banks' "file#name" references will resolve here too). */
export function tokenFile(ref: string, baseDir: string): string {
  return path.resolve(baseDir, ref);
}

// A file that must exist: an issue (and false) when it does not, or is not a regular file.
async function checkFile(file: string, option: string, value: string, accepted: string, issue: (o: string, v: unknown, a: string) => void): Promise<boolean> {
  try {
    if ((await stat(file)).isFile()) return true;
    issue(option, value, `${accepted}; ${file} is not a regular file`);
  } catch {
    issue(option, value, `${accepted}; ${file} does not exist`);
  }
  return false;
}

// One JSON object per non-empty line; classes by name or id, ids unique.
function readPromptLines(text: string, file: string, classes: readonly DatasetClass[], issue: (o: string, v: unknown, a: string) => void): PromptLine[] {
  const lines: PromptLine[] = [];
  const raw = text.split("\n");
  const width = Math.max(6, String(raw.length).length);
  const ids = new Set<string>();
  raw.forEach((line, n) => {
    if (line.trim() === "") return;
    const at = `prompts.file ${file} line ${n + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      issue(`prompts.file`, line.slice(0, 80), `${file} line ${n + 1}: a JSON object { prompt, classes, seed? }`);
      return;
    }
    const result = promptLineSchema.safeParse(value);
    if (!result.success) {
      for (const i of result.error.issues) issue("prompts.file", value, `${file} line ${n + 1}${i.path.length ? ` (${i.path.join(".")})` : ""}: ${i.message}`);
      return;
    }
    const ids_: number[] = [];
    for (const ref of result.data.classes) {
      const found = classes.find((c) => (typeof ref === "number" ? c.id === ref : c.name.toLowerCase() === ref.trim().toLowerCase()));
      if (found) ids_.push(found.id);
      else issue("prompts.file", ref, `${at}: a class of the spec (${classes.map((c) => c.name).join(", ")})`);
    }
    const id = result.data.id ?? String(lines.length).padStart(width, "0");
    if (ids.has(id)) issue("prompts.file", id, `${at}: an id not used by an earlier line`);
    ids.add(id);
    lines.push({ id, prompt: result.data.prompt, classes: [...new Set(ids_)].sort((a, b) => a - b), ...(result.data.seed === undefined ? {} : { seed: result.data.seed }) });
  });
  if (lines.length === 0) issue("prompts.file", file, "a JSONL file with at least one prompt line");
  return lines;
}

function normalName(name: string): string {
  return name.toLowerCase().replace(/[\s_-]+/g, "");
}

function knownId(format: DatasetSpec["format"], name: string): number | undefined {
  const list = format === "voc" ? VOC_CLASSES : format === "cityscapes" ? CITYSCAPES_CLASSES : [];
  const at = list.findIndex((n) => normalName(n) === normalName(name));
  return at < 0 ? undefined : format === "voc" ? at + 1 : at;
}

function knownNames(format: DatasetSpec["format"]): string {
  return (format === "voc" ? VOC_CLASSES : CITYSCAPES_CLASSES).join(", ");
}

/** How many images the spec asks for. */
export function itemCount(spec: DatasetSpec): number {
  return "templates" in spec.prompts ? spec.classes.length * spec.prompts.perClass : spec.prompts.lines.length;
}

/**
 * Item `index` of the plan. Template prompts run class by class (class c's k-th image is index
 * c · perClass + k, template k mod templates, id "<class>-<k>"); a prompts file runs line by line.
 * Seeds: base + index, or base + k for "shared-across-classes" (the same seeds for every class).
 */
export function planItem(spec: DatasetSpec, index: number): Item {
  const count = itemCount(spec);
  if (!Number.isInteger(index) || index < 0 || index >= count) throw new RangeError(`item index ${index} is outside 0..${count - 1}`);
  const { base, mode } = spec.seeds;
  if ("templates" in spec.prompts) {
    const { templates, perClass } = spec.prompts;
    const c = spec.classes[Math.floor(index / perClass)];
    const k = index % perClass;
    const prompt = templates[k % templates.length].replace(PLACEHOLDER, () => c.name);
    const id = `${c.stem}-${String(k).padStart(Math.max(4, String(perClass - 1).length), "0")}`;
    return { index, id, prompt, classes: [c.id], seed: base + (mode === "shared-across-classes" ? k : index) };
  }
  const line = spec.prompts.lines[index];
  return { index, id: line.id, prompt: line.prompt, classes: line.classes, seed: line.seed ?? base + index };
}

/** Every item of the plan, in index order. */
export function planItems(spec: DatasetSpec): Item[] {
  return Array.from({ length: itemCount(spec) }, (_, i) => planItem(spec, i));
}

/** The spec as dataset.json records it: prompt lines replaced by their file's name and digest. */
export function specRecord(spec: DatasetSpec): unknown {
  const prompts = "lines" in spec.prompts ? { file: spec.prompts.file, sha256: spec.prompts.sha256, count: spec.prompts.lines.length } : spec.prompts;
  return { ...spec, prompts };
}
