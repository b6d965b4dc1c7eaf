// ovam attribute: heat maps, raw maps and masks of words (or optimised tokens) over a saved generation.
import { loadGeneration } from "../image";
import { resolveTokenRef } from "../token";
import { choice, commonOptions, COMMON_HELP, finerMapOptions, finerMaps, finerMapsHelp, loadOptions, modelHelp, modelOptions, number, required, text, texts, UsageError, type Command } from "./args";
import { fileList, OutputDir } from "./output";
import { attributeSubjects, loadModelFor, type Subject } from "./workflow";

export const attributeCommand: Command = {
  name: "attribute",
  summary: "map words (or optimised tokens) over a saved generation",
  options: {
    ...commonOptions,
    ...modelOptions,
    ...finerMapOptions("steps"),
    out: { type: "string", short: "o" },
    mode: { type: "string" },
    threshold: { type: "string" },
    token: { type: "string", multiple: true },
  },
  help: `Usage: ovam attribute <generation.safetensors> <word or text>... --out DIR [options]
       ovam attribute <generation.safetensors> --token token.safetensors --out DIR

Attributes each word (or quoted text, or optimised token) on its own; words need not be in the
prompt. Writes, into DIR, per word (its name made safe for a file name):
  WORD.overlay.png      the map over the image (viridis, opacity by intensity)
  WORD.map.png          the map, min-max normalised, as a 16-bit grey PNG
  WORD.map.npy          the raw map (float32 NumPy array, [height, width])
  WORD.mask.png         white where the normalised map exceeds --threshold
and sheet.png, the image and every map side by side, labelled. A token's files are
named token-TEXT.*.

Options:
  -o, --out DIR           output folder (created if missing; required)
  --mode NAME             softmax (default) or linear attention scores
  --threshold T           mask threshold on the normalised map, 0 to 1 (default 0.5)
  --token FILE[#NAME]     also attribute a token written by "ovam optimize", or token NAME
                          of a bank (repeatable)

${finerMapsHelp("steps")}

${modelHelp("generation")}

${COMMON_HELP}

Examples:
  ovam attribute out/generation.safetensors car street tree --out maps/
  ovam attribute out/generation.safetensors "city street" --mode linear --threshold 0.4 --out maps/
  ovam attribute out/generation.safetensors --token car.safetensors --out maps/
  ovam attribute out/generation.safetensors --token bank.safetensors#car --out maps/
  ovam attribute out/generation.safetensors car --blocks 16,32 --steps 0:10 --per-block --out maps/`,

  async run(ctx, values, positionals) {
    const [file, ...words] = positionals;
    required(file, "generation file (ovam attribute <generation.safetensors> <word>... --out DIR)");
    const tokenFiles = texts(values, "token");
    if (words.length === 0 && tokenFiles.length === 0) throw new UsageError("missing words to attribute (or --token FILE)");
    const outDir = required(text(values, "out"), "--out DIR");
    const mode = choice(values, "mode", ["softmax", "linear"] as const);
    const threshold = number(values, "threshold");
    const finer = finerMaps(values, "steps");
    const out = await new OutputDir(outDir, ctx.reporter).prepare();
    const subjects: Subject[] = words.map((word) => ({ label: word, text: word }));
    for (const tokenFile of tokenFiles) {
      const token = await resolveTokenRef(tokenFile);
      subjects.push({ label: `${token.text} (token)`, token });
    }
    const sd = await loadModelFor(ctx, text(values, "model"), file, loadOptions(values));
    const image = await loadGeneration(sd, file);
    const { sheet } = await attributeSubjects(ctx, image, subjects, out, { mode, threshold, ...finer });
    ctx.reporter.result(
      { command: "attribute", generation: file, subjects: subjects.map((s) => s.label), sheet, files: out.files },
      `Attributed ${subjects.map((s) => JSON.stringify(s.label)).join(", ")} over "${image.settings.prompt}".\n${fileList(out.files)}`,
    );
  },
};
