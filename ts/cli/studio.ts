// ovam studio: serves the studio page for a dataset folder, a generation file or a folder of them,
// prints its address (with the access token) and opens it in a browser when there is a display.
import { spawn } from "node:child_process";

import { startStudio } from "../studio/server";
import { commonOptions, COMMON_HELP, loadOptions, modelHelp, modelOptions, noExtra, number, required, text, type Command } from "./args";
import { BUNDLED_WARNING, isBundled } from "./workflow";

export const studioCommand: Command = {
  name: "studio",
  summary: "look at a dataset or generations in the browser, ask any word, fix the masks",
  options: {
    ...commonOptions,
    ...modelOptions,
    host: { type: "string" },
    port: { type: "string" },
    classes: { type: "string" },
    open: { type: "boolean" },
    "no-open": { type: "boolean" },
  },
  help: `Usage: ovam studio <dataset folder | generation.safetensors | folder of them> [options]

Starts a local web server for the page and prints its address, which carries a random access
token (requests without it are refused). In the page: browse the items (a dataset's by class and
foreground fraction), overlay their classes' maps and a dataset's labels with live threshold and
opacity, type any words to see their maps from the stored capture (of all blocks, or of one block
or resolution), paint ground truth (saved as gt/{id}.png in the folder), optimise a token on it
and evaluate.
Stops with Ctrl-C. The HTTP JSON API behind the page is in docs/studio-api.md.

Options:
  --classes A,B,...       the classes to annotate (ids 1, 2, ...; background 0); a dataset's are its own
  --host ADDRESS          interface to listen on (default 127.0.0.1, this machine only)
  --port N                port (default: a free one)
  --open / --no-open      open the page in a browser (default: when there is a display)

${modelHelp("dataset or generations")}

${COMMON_HELP}

Examples:
  ovam generate "a car in a street" --steps 20 --out out/ && ovam studio out/ --classes car,street
  ovam dataset spec.json --out my-dataset && ovam studio my-dataset/`,

  async run(ctx, values, positionals) {
    const [target, ...extra] = positionals;
    required(target, "what to open (ovam studio <dataset folder | generation file | folder of them>)");
    noExtra(extra, "one file or folder");
    const classes = text(values, "classes")
      ?.split(",")
      .map((c) => c.trim())
      .filter(Boolean);
    const server = await startStudio(target, {
      classes,
      model: text(values, "model"),
      load: loadOptions(values),
      host: text(values, "host"),
      port: number(values, "port", "integer"),
    });
    const { source, pipeline } = server.studio;
    ctx.reporter.note(`Model: ${pipeline.folder} (${pipeline.device}, ${pipeline.dtype})`);
    if (isBundled(pipeline)) ctx.reporter.note(BUNDLED_WARNING);
    ctx.reporter.result(
      { command: "studio", url: server.url, items: source.items.length, kind: source.kind },
      `Studio for ${source.items.length} item(s) of ${source.root}:\n  ${server.url}\nCtrl-C stops it.`,
    );
    const display = process.platform === "darwin" || process.platform === "win32" || Boolean(process.env.DISPLAY || process.env.WAYLAND_DISPLAY);
    if (values.open === true || (display && values["no-open"] !== true)) openBrowser(server.url);
    await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
    await server.close();
  },
};

// Best effort: a missing opener leaves the printed address to click.
function openBrowser(url: string): void {
  const command = process.platform === "darwin" ? "open" : process.platform === "win32" ? "explorer" : "xdg-open";
  const child = spawn(command, [url], { stdio: "ignore", detached: true });
  child.on("error", () => undefined);
  child.unref();
}
