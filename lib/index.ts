// Public entry point of the ternorm package.
export {
  cpuInfo,
  gemmF32,
  gemmF32Async,
  paddedCols,
  quantizeActivations,
  rmsNormGain,
  rmsNormGainBackward,
  rmsNormGainI8,
  TernaryMatrix,
} from './kernels.js';
export type {
  CpuFeatures,
  CpuInfo,
  Gain,
  GemmF32Args,
  Isa,
  KernelOptions,
  QuantizedActivations,
  RmsNormGainArgs,
  RmsNormGainBackwardArgs,
} from './kernels.js';
export { defaultModelConfig, defaultTrainOptions, evaluate, Model, Trainer } from './model/model.js';
export type {
  Checkpoint,
  EvalResult,
  EvaluateOptions,
  LoadOptions,
  ModelConfig,
  Precision,
  StepStats,
  TrainMode,
  TrainOptions,
} from './model/model.js';
export { trainBase, defaultBaseRun } from './model/train-base.js';
export type { BaseRunOptions, BaseRunRequest, TrainBaseInput, TrainBaseResult, ValidationPoint } from './model/train-base.js';
export { trainAdapter, defaultAdapterRun } from './model/train-adapter.js';
export { coreLimits, describeRange } from './model/limits.js';
export { Decoder, generate, generateBatch, generateLimits } from './model/generate.js';
export type { FinishReason, GenerateOptions, GenerateRequest, GenerateResult, RunOptions } from './model/generate.js';
export type { CoreLimits, Limit } from './model/limits.js';
export type { AdapterRunOptions, TrainAdapterResult } from './model/train-adapter.js';
export { Adapter, Encoding } from './adapter/adapter.js';
export { checkMethod, codecMethods, encodeAdapter } from './adapter/codec.js';
export type { CalibrationInput, CalibrationReport, CodecMethod, EncodeOptions, EncodeResult, MixedReport } from './adapter/codec.js';
