#!/usr/bin/env python3
"""The Python diffusers side of `npm run bench -- --compare-diffusers PYTHON` (issue 16).

    PYTHON scripts/diffusers-bench.py --json OUT.json [--threads 2] [--runs 3] [--quick]
                                      [--malloc tcmalloc|system] [--architecture FILE.json] [--tiny DIR]

PYTHON must have torch, diffusers and transformers (e.g. /opt/diffusers-ref/bin/python).
Runs the cases of native/bench/bench.cpp's --full on the same SD 1.5 architecture with random
weights (nothing is loaded): UNet steps (CFG batch 2) at 256² and 512² in float32 and bfloat16,
the text encoder on 77 tokens, and a 1-step generation + decode at 512² and 768² in float32 with
its peak resident memory. Where PYTHON can also import OVAM (vpulab/ovam, installed or on
PYTHONPATH), a one-word OVAM attribution at 512² on a 30-step store, as native's first attribution
(OVAM runs the text encoder and the keys in every call). --quick: the 256² steps and the text
encoder, one run each.
Each time is the median of --runs after one warm-up call; a generation is one run without warm-up,
as native's, after the freed heap is returned, so its time includes faulting memory back in, as
native's does.

Where first-touch page faults are costly (this project's 2-core VMs: ~17 µs per 4 KiB page), glibc's
malloc hands torch's large tensors fresh pages on every call and those faults dominate (a 256² float32
step: 22–26 s against 2.2 s), while native allocates them on huge pages. So the script restarts
itself with tcmalloc preloaded where the machine has it (Debian: libtcmalloc-minimal4), which keeps
freed memory mapped: diffusers on its best allocator. --malloc system keeps glibc's; the JSON's
"allocator" says which one ran.
"""
import argparse
import ctypes
import ctypes.util
import gc
import importlib
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 1 << 30

# The thread-pool settings the native side runs with (ts/native.ts, native/bench/bench.cpp): torch's
# OpenMP pool and OpenBLAS's pool otherwise steal each other's cores. Read when torch loads them.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", required=True, help="where to write the results")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--malloc", choices=("tcmalloc", "system"), default="tcmalloc",
                   help="tcmalloc (preloaded where found, else glibc's) or system (glibc's)")
    # The native bench's defaults, so that both sides build the same model.
    p.add_argument("--architecture", default=os.path.join(ROOT, "test", "fixtures", "architectures", "sd15.json"))
    p.add_argument("--tiny", default=os.path.join(ROOT, "models", "tiny-sd1"),
                   help="a model folder whose tokenizer/ and scheduler/ are used")
    return p.parse_args()


def use_tcmalloc(choice):
    """Restarts this script with tcmalloc preloaded (read only when the process starts)."""
    if choice != "tcmalloc" or "tcmalloc" in os.environ.get("LD_PRELOAD", ""):
        return
    name = ctypes.util.find_library("tcmalloc_minimal")
    if name is None:
        return  # not installed: glibc's, and "allocator" says so
    os.environ["LD_PRELOAD"] = " ".join(filter(None, [name, os.environ.get("LD_PRELOAD")]))
    os.execv(sys.executable, [sys.executable] + sys.argv)


def import_or_exit(name):
    try:
        return importlib.import_module(name)
    except Exception as e:  # a broken install raises more than ImportError
        sys.stderr.write(f"diffusers-bench: import {name} failed ({type(e).__name__}: {e}); PYTHON must be a Python "
                         f"with torch, diffusers and transformers (e.g. /opt/diffusers-ref/bin/python)\n")
        sys.exit(2)


ARGS = parse_args()
use_tcmalloc(ARGS.malloc)
torch = import_or_exit("torch")
diffusers = import_or_exit("diffusers")
transformers = import_or_exit("transformers")


def resident(field):
    """VmRSS or VmHWM (peak since the last reset) of this process, in GiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / GIB
    raise RuntimeError(f"no {field} in /proc/self/status")


def allocator():
    preload = os.environ.get("LD_PRELOAD", "").split()
    return " ".join(os.path.basename(p) for p in preload) or "glibc malloc"


def reset_peak():
    """Resets VmHWM to the current resident size; False where the kernel does not allow it."""
    gc.collect()
    # As native's reset_peak_resident: return freed heap first, so that "before" counts live memory
    # (a preloaded tcmalloc keeps it otherwise, and no peak would rise above it).
    process = ctypes.CDLL(None)
    if hasattr(process, "MallocExtension_ReleaseFreeMemory"):
        process.MallocExtension_ReleaseFreeMemory()
    process.malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def median_time(runs, fn):
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def check_shapes(name, module, expected):
    """Fails unless the module has exactly the release's tensors: the same model as native's."""
    have = {k: list(v.shape) for k, v in module.state_dict().items()}
    want = {k: list(shape) for k, shape in expected}
    if have != want:
        diff = sorted(set(have) ^ set(want)) + [k for k in want if k in have and have[k] != want[k]]
        raise SystemExit(f"diffusers-bench: {name} differs from the architecture file at {diff[:5]}")


def build(arch, tiny):
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    def config(key):  # "_use_default_values" and the like are not constructor arguments
        return {k: v for k, v in arch[key].items() if not k.startswith("_")}

    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(tiny, "tokenizer"))
    tc, shapes = arch["text_config"], dict(arch["text_encoder"])
    vocab, width = shapes["text_model.embeddings.token_embedding.weight"]
    text_config = CLIPTextConfig(
        vocab_size=vocab, hidden_size=width, intermediate_size=4 * width, num_hidden_layers=tc["layers"],
        num_attention_heads=tc["heads"], hidden_act=tc["hidden_act"],
        max_position_embeddings=shapes["text_model.embeddings.position_embedding.weight"][0],
        pad_token_id=tokenizer.convert_tokens_to_ids(tc["pad_token"]),
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(text_config).eval()
    unet = UNet2DConditionModel(**config("unet_config")).eval()
    vae = AutoencoderKL(**config("vae_config")).eval()
    for name, module in (("text_encoder", text_encoder), ("unet", unet), ("vae", vae)):
        check_shapes(name, module, arch[name])
    scheduler = PNDMScheduler.from_pretrained(os.path.join(tiny, "scheduler"))
    return tokenizer, text_encoder, unet, vae, scheduler


def ovam_attribution(pipe, prompt, steps, runs, add):
    """OVAM's attribution of one word at 512², its defaults: its hooker records a 1-step generation's
    queries (OVAM keeps the unconditional half's), copied to `steps` steps as native's store of random
    queries in a 1-step store's shapes; then the map of "car" at the image's size."""
    try:
        from ovam.stable_diffusion import StableDiffusionHooker
    except ImportError:
        print("  OVAM (vpulab/ovam) not importable: no attribution row", flush=True)
        return
    with StableDiffusionHooker(pipe) as hooker:
        pipe(prompt, num_inference_steps=1, height=512, width=512, output_type="latent",
             generator=torch.Generator().manual_seed(0))
    for block in hooker.cross_attention_hookers:
        stored = block.hidden_states.hidden_states
        stored[0] = stored[0].repeat(steps, 1, 1, 1)  # [steps, heads, queries, head_dim], a copy
    evaluate = hooker.get_ovam_callable(expand_size=(512, 512))
    add("attribute 1-token, softmax, first (text encoder + keys)", "float32", median_time(runs, lambda: evaluate("car")),
        f"{steps} steps; median of {runs} after a warm-up", by="OVAM")


def main():
    args = ARGS
    runs = 1 if args.quick else args.runs
    torch.set_num_threads(args.threads)
    with open(args.architecture) as f:
        arch = json.load(f)
    prompt = "a car in an urban environment"
    rows = []

    def add(case, dtype, seconds, note, by=None, **memory):
        """A row; `by` names what ran it where diffusers alone did not (OVAM)."""
        rows.append({"case": case, "dtype": dtype, "seconds": seconds, "note": note, **({"by": by} if by else {}), **memory})
        extra = "".join(f" {k} {v:.2f}" for k, v in memory.items())
        print(f"  {case:<36} {dtype:<9} {seconds * 1e3:10.0f} ms{extra}  {note}", flush=True)

    print(f"diffusers {diffusers.__version__}, transformers {transformers.__version__}, torch {torch.__version__}, "
          f"{args.threads} threads, {runs} runs, {allocator()}", flush=True)
    tokenizer, text_encoder, unet, vae, scheduler = build(arch, args.tiny)
    print(f"  built {args.architecture} with random weights; {resident('VmRSS'):.2f} GiB resident", flush=True)
    note = f"median of {runs} after a warm-up"

    with torch.no_grad():
        ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        add("text encoding (77 tokens)", "float32", median_time(runs, lambda: text_encoder(ids)), note + f", {ids.shape[1]} tokens")

        context = torch.randn(2, tokenizer.model_max_length, unet.config.cross_attention_dim)
        latents = {px: torch.randn(2, unet.config.in_channels, px // 8, px // 8) for px in (256, 512)}
        sizes = (256,) if args.quick else (256, 512)

        def steps(dtype):
            name = str(dtype).replace("torch.", "")
            unet.to(dtype)
            for px in sizes:
                x, c = latents[px].to(dtype), context.to(dtype)
                add(f"UNet step (CFG batch 2) {px}px", name,
                    median_time(runs, lambda: unet(x, 500, encoder_hidden_states=c)), note)

        steps(torch.float32)
        if not args.quick:
            pipe = diffusers.StableDiffusionPipeline(
                vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                safety_checker=None, feature_extractor=None, requires_safety_checker=False)
            pipe.set_progress_bar_config(disable=True)
            for px in (512, 768):
                # One run each, as native's: a 768² generation takes minutes here.
                resettable = reset_peak()
                before = resident("VmRSS")
                start = time.perf_counter()
                pipe(prompt, num_inference_steps=1, height=px, width=px, output_type="np",
                     generator=torch.Generator().manual_seed(0))
                seconds = time.perf_counter() - start
                gen_note = "one run, no warm-up" + (
                    "" if resettable else "; /proc/self/clear_refs not writable: peak since the process started")
                add(f"generate 1 step + decode {px}px", "float32", seconds, gen_note,
                    peak_gib=resident("VmHWM"), before_gib=before)
            ovam_attribution(pipe, prompt, 30, runs, add)
            del pipe
        # Last: bfloat16 converts the UNet in place.
        steps(torch.bfloat16)

    result = {"diffusers": diffusers.__version__, "transformers": transformers.__version__,
              "torch": torch.__version__, "threads": args.threads, "allocator": allocator(), "rows": rows}
    tmp = args.json + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
