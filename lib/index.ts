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
export {
  Adapter,
  DEFAULT_MODEL_CONFIG,
  DEFAULT_TRAIN_OPTIONS,
  evaluate,
  Model,
  Trainer,
} from './model/model.js';
export type { Checkpoint, EvalResult, EvaluateOptions, LoadOptions, ModelConfig, Precision, StepStats, TrainMode, TrainOptions } from './model/model.js';
export { trainBase, DEFAULT_BASE_RUN } from './model/train-base.js';
export type { BaseRunOptions, TrainBaseInput, TrainBaseResult, ValidationPoint } from './model/train-base.js';
export { trainAdapter, DEFAULT_ADAPTER_RUN } from './model/train-adapter.js';
export type { AdapterRunOptions, TrainAdapterResult } from './model/train-adapter.js';
