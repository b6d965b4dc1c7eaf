// ovam: Stable Diffusion with open-vocabulary attention maps (DAAM/OVAM) on a native libtorch core.
//
//   const sd = await ovam.load();
//   const image = await ovam.generate(sd, { prompt: "a car in an urban environment", seed: 0 });
//   const maps = await ovam.attribute(image, "car");
//   const mask = maps.mask("car");
import { native } from "./native";

export { bundledModelDir, load, Pipeline, type Tokenized } from "./pipeline";
export { GeneratedImage, generate, loadGeneration, readGenerationInfo, type AttentionBlock, type GenerationInfo, type GenerationSettings } from "./image";
export { attribute, AttributionMaps } from "./maps";
export { loadToken, OptimizedToken, optimizeToken, type OptimizedTokenFields } from "./token";
export { evaluate, type EvaluateOptions, type EvaluationFolders, type EvaluationItem, type EvaluationReport } from "./eval/evaluate";
export { writeReport as writeEvaluation } from "./eval/report";
export { decodePNG, encodeGray16, encodeGray8, encodeRGB, type DecodedPNG } from "./png";
export type {
  Activation,
  AttributeOptions,
  CaptureOptions,
  DType,
  GenerateOptions,
  LoadOptions,
  Map2D,
  MaskOptions,
  OptimizeOptions,
  SchedulerName,
  Target,
  Tensor,
  WordOptions,
} from "./options";
export {
  AbortError,
  AmbiguousWordError,
  ConfigError,
  DeviceError,
  DisposedError,
  InternalError,
  InvalidArgumentError,
  InvalidOptionError,
  IOError,
  ModelLoadError,
  NotFoundError,
  OvamError,
  SafetensorsError,
  TokenizerError,
  WeightsError,
  WordNotFoundError,
  type ErrorCode,
  type OptionIssue,
} from "./errors";

/** The libtorch version the addon was built against. */
export const torchVersion: string = native.torchVersion;
/** Whether this build sees a CUDA device (load(dir, { device: "cuda" }) needs one). */
export const cudaAvailable: boolean = native.cudaAvailable;
