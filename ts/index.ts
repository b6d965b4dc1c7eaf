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
export { startStudio, type StudioServer, type StudioServerOptions } from "./studio/server";
export { decodePNG, decodeIndexedPNG, encodeGray16, encodeGray8, encodeIndexed, encodeRGB, type DecodedPNG, type IndexedPNG } from "./png";
export { labelMaps, resolveMaskSettings, MASK_PRESETS, type LabelClass, type LabelMap, type LabelMapRequest, type MaskPreset, type MaskSettings, type MaskSettingsInput } from "./masks";
export * as dataset from "./dataset";
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
  BusyError,
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
