// ovam: Stable Diffusion with open-vocabulary attention maps (DAAM/OVAM) on a native libtorch core.
//
//   const sd = await ovam.load();
//   const image = await ovam.generate(sd, { prompt: "a car in an urban environment", seed: 0 });
//   const maps = await ovam.attribute(image, "car");
//   const mask = maps.mask("car");
import { native } from "./native";

export { bundledModelDir, load, Pipeline, type Tokenized } from "./pipeline";
export type { TextKeyCacheStats } from "./native";
export { GeneratedImage, generate, loadGeneration, readGenerationInfo, type AttentionBlock, type GenerationInfo, type GenerationSettings, type SelfAttentionGrid } from "./image";
export { attribute, AttributionMaps, PerBlockMaps } from "./maps";
export { segment, type Segmentation } from "./segment";
export type { RGBInput } from "./photo";
export { refine } from "./refine";
export { denseCRF } from "./crf";
export {
  loadToken,
  loadTokens,
  OptimizedToken,
  optimizeToken,
  optimizeTokens,
  resolveTokenRef,
  saveTokens,
  type OptimizedTokenFields,
  type OptimizeTokensOptions,
  type TrainingExample,
} from "./token";
export { evaluate, type EvaluateOptions, type EvaluationFolders, type EvaluationItem, type EvaluationReport } from "./eval/evaluate";
export { writeReport as writeEvaluation } from "./eval/report";
export { startStudio, type StudioServer, type StudioServerOptions } from "./studio/server";
export { decodePNG, decodeIndexedPNG, encodeGray16, encodeGray8, encodeIndexed, encodeRGB, type DecodedPNG, type IndexedPNG } from "./png";
export { labelMaps, resolveMaskSettings, MASK_PRESETS, type CRFSettings, type LabelClass, type LabelMap, type LabelMapRequest, type MaskPreset, type MaskSettings, type MaskSettingsInput } from "./masks";
export * as dataset from "./dataset";
export type {
  Activation,
  AttributeOptions,
  CaptureOptions,
  DenseCRFOptions,
  DType,
  GenerateOptions,
  LoadOptions,
  Map2D,
  MaskOptions,
  OptimizeOptions,
  RefineOptions,
  SchedulerName,
  SegmentOptions,
  SelfAttentionCapture,
  Target,
  Tensor,
  WordOptions,
} from "./options";
export {
  AbortError,
  AddonLoadError,
  AmbiguousWordError,
  BusyError,
  ConfigError,
  DeviceError,
  DisposedError,
  ImageError,
  InternalError,
  InvalidArgumentError,
  InvalidOptionError,
  IOError,
  ModelLoadError,
  NotFoundError,
  OvamError,
  QueueError,
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
