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
