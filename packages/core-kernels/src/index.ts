export { Gpu, DAWN_FLAGS, mergeDawnFlags, type ElementWindow, type GpuOptions, type DispatchSpec, type DispatchTiming, type AdapterSummary } from './runtime/gpu.js';
export { Tensor, type ReadArray } from './runtime/tensor.js';
export { Params } from './runtime/params.js';
export { SeededRng } from './runtime/rng.js';
export { rowBinding, rowWindows } from './runtime/windows.js';
export { BufferAllocator, MIN_CACHE_LIMIT_BYTES, sizeClass, type MemoryStats } from './runtime/allocator.js';
export { profileByOp, profileWork, formatProfile, type OpProfile } from './runtime/profile.js';
export {
  type DType,
  type HostArray,
  DTYPE_BYTES,
  f32ToF16Bits,
  f16BitsToF32,
  bf16BitsToF32,
  bf16ToF32,
  toF16Bits,
  fromF16Bits,
  roundToF16,
  shapeSize,
  formatShape,
  convertCheckpointData,
  type CheckpointDType,
} from './runtime/dtype.js';
export {
  GpuError,
  GpuOutOfMemoryError,
  GpuValidationError,
  GpuLimitError,
  GpuDeviceLostError,
  GpuTimeoutError,
  GpuUnavailableError,
  ShapeError,
  formatBytes,
  type GpuErrorContext,
} from './runtime/errors.js';
export {
  chooseVariants,
  f16MatrixConfig,
  isSoftwareAdapter,
  type GpuFeatures,
  type KernelVariants,
  type SubgroupMatrixConfig,
} from './runtime/features.js';
export * from './kernels/index.js';
export { LINEAR_WORKGROUP, enableF16, wgslType } from './kernels/wgsl.js';
export {
  allBenches,
  benchTensor,
  benchValues,
  runBenchmarks,
  selectCases,
  torchTimings,
  findTorchPython,
  TorchSession,
  type TorchTimer,
  type BenchCase,
  type PreparedBench,
  type BenchResult,
  type BenchOptions,
  type BenchCheck,
  type TorchTimings,
} from './bench/index.js';
