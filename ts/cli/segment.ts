// ovam segment: open-vocabulary maps and masks of words over a photograph (img2img with capture,
// maps drawn over the photo at its own size).
import { parse as parseOptions, segmentSchema } from "../options";
import { photoGeneration } from "../segment";
import { choice, commonOptions, COMMON_HELP, finerMapOptions, finerMaps, finerMapsHelp, loadOptions, modelHelp, modelOptions, number, required, sampling, samplingOptions, SAMPLING_HELP, text, UsageError, type Command } from "./args";
import { fileList, OutputDir } from "./output";
import { attributeSubjects, generateAndSave, loadModel } from "./workflow";

export const segmentCommand: Command = {
  name: "segment",
  summary: "map words over a photo (img2img with capture)",
  options: {
    ...commonOptions,
    ...modelOptions,
    // --steps is the denoising steps here: the maps' step range is --map-steps.
    ...finerMapOptions("map-steps"),
    out: { type: "string", short: "o" },
    prompt: { type: "string" },
    ...samplingOptions,
    strength: { type: "string" },
    side: { type: "string" },
    mode: { type: "string" },
    threshold: { type: "string" },
  },
  help: `Usage: ovam segment <photo> <word>... --out DIR [options]

Reads a photo (JPEG, PNG, WebP, AVIF, TIFF, GIF; turned upright by its EXIF orientation),
resizes it to the model's resolution (multiples of 8), runs img2img over it with the attention
captured, and attributes each word on its own. Writes, into DIR:
  generation.png         what the model made of the photo at --strength
  generation.safetensors the generation (input of "ovam attribute" and "ovam optimize")
  WORD.overlay.png       the map over the photo, at the photo's own size
  WORD.map.png, WORD.map.npy, WORD.mask.png   as "ovam attribute" writes them
  sheet.png              the photo and every map, labelled

At a low strength the picture stays close to the photo and the maps describe the photo; at a
high strength the model draws a new picture and the maps describe that one.

Options:
  -o, --out DIR           output folder (created if missing; required)
  --prompt TEXT           the img2img prompt (default: the words)
  --strength S            share of the --steps run over the photo, in (0, 1] (default 0.5)
${SAMPLING_HELP}
  --side N                the model input's longer side (default: the model's resolution)
  --mode NAME             softmax (default) or linear attention scores
  --threshold T           mask threshold on the normalised map, 0 to 1 (default 0.5)

${finerMapsHelp("map-steps")}

${modelHelp()}

${COMMON_HELP}

Examples:
  ovam segment photo.jpg car tree --model ~/models/stable-diffusion-v1-5 --out seg/
  ovam segment photo.jpg car --strength 0.3 --prompt "a red car parked under a tree" --out seg/`,

  async run(ctx, values, positionals) {
    const [file, ...words] = positionals;
    required(file, "photo (ovam segment <photo> <word>... --out DIR)");
    if (words.length === 0) throw new UsageError("missing words to map (ovam segment <photo> <word>... --out DIR)");
    const outDir = required(text(values, "out"), "--out DIR");
    const mode = choice(values, "mode", ["softmax", "linear"] as const);
    const threshold = number(values, "threshold");
    const finer = finerMaps(values, "map-steps");
    const o = parseOptions("segment", segmentSchema, {
      ...sampling(values),
      prompt: text(values, "prompt"),
      strength: number(values, "strength"),
      side: number(values, "side", "integer"),
    });
    const sd = await loadModel(ctx, text(values, "model"), loadOptions(values));
    const { photo, options } = await photoGeneration(sd, file, words, o, "segment");
    const out = new OutputDir(outDir, ctx.reporter);
    const { image } = await generateAndSave(ctx, sd, options, out, "generation");
    const subjects = words.map((word) => ({ label: word, text: word }));
    const { sheet } = await attributeSubjects(ctx, image, subjects, out, { mode, threshold, ...finer, backdrop: photo });
    const { seed, width, height, strength, steps } = image.settings;
    ctx.reporter.result(
      { command: "segment", photo: file, words, prompt: image.settings.prompt, strength, seed, size: [photo.width, photo.height], modelSize: [width, height], sheet, files: out.files },
      `Mapped ${words.map((w) => JSON.stringify(w)).join(", ")} over ${file} (${photo.width}×${photo.height}; img2img at ${width}×${height}, strength ${strength}, ${steps} steps, seed ${seed}).\n${fileList(out.files)}`,
    );
  },
};
