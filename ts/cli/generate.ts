// ovam generate: one image from a prompt, saved as a PNG and as a generation file for attribution.
import { commonOptions, COMMON_HELP, loadOptions, modelHelp, modelOptions, noExtra, number, required, sampling, samplingOptions, SAMPLING_HELP, size, text, type Command } from "./args";
import { fileList, OutputDir, safeStem } from "./output";
import { generateAndSave, loadModel } from "./workflow";

export const generateCommand: Command = {
  name: "generate",
  summary: "generate an image and save it with its captured attention",
  options: {
    ...commonOptions,
    ...modelOptions,
    out: { type: "string", short: "o" },
    name: { type: "string" },
    ...samplingOptions,
    size: { type: "string" },
    "guidance-rescale": { type: "string" },
  },
  help: `Usage: ovam generate "<prompt>" --out DIR [options]

Generates an image and writes, into DIR:
  NAME.png              the image
  NAME.safetensors      the generation (image, latents, captured cross-attention and
                        settings), the input of "ovam attribute" and "ovam optimize"

Options:
  -o, --out DIR           output folder (created if missing; required)
  --name NAME             file name stem (default: generation)
  --size WxH              image size in pixels, multiples of 8 (default: the model's)
${SAMPLING_HELP}
  --guidance-rescale R    guidance rescale, 0 to 1 (default 0, off)

${modelHelp()}

${COMMON_HELP}

Examples:
  ovam generate "a photograph of a car in a city street" --steps 3 --seed 1 --out out/
  ovam generate "a cat on a sofa" --model ~/models/stable-diffusion-v1-5 --size 512x512 --out cat/`,

  async run(ctx, values, positionals) {
    const [prompt, ...extra] = positionals;
    required(prompt, 'prompt (ovam generate "<prompt>" --out DIR)');
    noExtra(extra, "quote a prompt that has spaces");
    const outDir = required(text(values, "out"), "--out DIR");
    const options = {
      prompt,
      ...sampling(values),
      guidanceRescale: number(values, "guidance-rescale"),
      ...size(values),
    };
    const load = loadOptions(values);
    const out = await new OutputDir(outDir, ctx.reporter).prepare();
    const sd = await loadModel(ctx, text(values, "model"), load);
    const { image } = await generateAndSave(ctx, sd, options, out, safeStem(text(values, "name") ?? "generation"));
    const { seed, width, height, steps, scheduler } = image.settings;
    ctx.reporter.result(
      { command: "generate", prompt, seed, width, height, steps, scheduler, files: out.files },
      `Generated a ${width}×${height} image of "${prompt}" (${steps} steps, ${scheduler}, seed ${seed}).\n${fileList(out.files)}`,
    );
  },
};
