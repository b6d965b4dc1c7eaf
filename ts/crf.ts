// Dense CRF post-processing (Krähenbühl & Koltun, NeurIPS 2011), as OVAM sharpens its masks with
// SimpleCRF: per-pixel label probabilities and the RGB image in, MAP labels out. The mean-field
// inference and the permutohedral-lattice filtering run natively (native/core/postprocess).
import { awaitNative } from "./errors";
import { GeneratedImage } from "./image";
import { native } from "./native";
import type { RGBInput } from "./photo";
import { denseCRFSchema, invalidOption, MAX_SIZE, parse, type DenseCRFOptions, type Map2D, type Tensor } from "./options";

/**
 * The fully connected CRF's MAP labels of `probabilities` ([labels, height, width], one plane per
 * label, finite; 2 to 255 labels) over `image` (a generated image or RGB bytes of the same size).
 * Defaults are OVAM's: w1 10, alpha 80, beta 13, w2 3, gamma 3, 5 iterations; the unary term is
 * −log(clip(p, 0.01, 0.99)).
 */
export async function denseCRF(image: GeneratedImage | RGBInput, probabilities: Tensor, options?: DenseCRFOptions): Promise<Map2D<Uint8Array>> {
  const where = "denseCRF()";
  const o = parse(where, denseCRFSchema, options ?? {});
  const rgb = image instanceof GeneratedImage ? { data: image.pixels, width: image.width, height: image.height } : image;
  const imageAccepted = `a GeneratedImage or { data: Uint8Array (width × height × 3 bytes), width, height } (sides 1 to ${MAX_SIZE})`;
  const side = (v: unknown) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= MAX_SIZE;
  if (typeof rgb !== "object" || rgb === null || !(rgb.data instanceof Uint8Array) || !side(rgb.width) || !side(rgb.height) || rgb.data.length !== rgb.width * rgb.height * 3)
    throw invalidOption(where, "image", image, imageAccepted);
  const { width, height } = rgb;
  const probabilitiesAccepted = `{ data: Float32Array, shape: [labels (2 to 255), ${height}, ${width}] } (the image's size)`;
  const shape = (probabilities as Tensor | undefined)?.shape;
  if (
    !(probabilities?.data instanceof Float32Array) ||
    !Array.isArray(shape) ||
    shape.length !== 3 ||
    !Number.isInteger(shape[0]) ||
    shape[0] < 2 ||
    shape[0] > 255 ||
    shape[1] !== height ||
    shape[2] !== width ||
    probabilities.data.length !== shape[0] * height * width
  )
    throw invalidOption(where, "probabilities", probabilities, probabilitiesAccepted);
  const labels = await awaitNative(
    native.denseCRF({ data: rgb.data, shape: [height, width, 3] }, { data: probabilities.data, shape: [shape[0], height, width] }, o),
  );
  return { data: labels.data as Uint8Array, width, height };
}
