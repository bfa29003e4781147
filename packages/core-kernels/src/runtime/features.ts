/** What the adapter offers that changes which kernels we run. */
export interface GpuFeatures {
  shaderF16: boolean;
  subgroups: boolean;
  timestampQuery: boolean;
  subgroupMatrix: boolean;
  subgroupMatrixConfigs: SubgroupMatrixConfig[];
}

/** One (M, N, K) tile shape the adapter's subgroup matrices support, with component and result types. */
export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

/** The kernel variant chosen for each family, from the features present. */
export interface KernelVariants {
  /** Frozen weights are stored in f16 where `shader-f16` exists, else widened to f32 (f16 tensors are refused). */
  weightDType: 'f16' | 'f32';
  /** f16 matmul: subgroup-matrix (tensor cores) where offered for f16 in, f32 out; else register-tiled. */
  matmulF16: 'subgroup-matrix' | 'tiled';
  matmulF32: 'tiled';
  /** Row reductions (norms, softmax): subgroup ops when present, else workgroup shared memory. */
  reduction: 'subgroup' | 'workgroup';
  timestamps: boolean;
}

export const WANTED_FEATURES = [
  'shader-f16',
  'subgroups',
  'timestamp-query',
  'chromium-experimental-subgroup-matrix',
] as const;

export function readFeatures(adapter: GPUAdapter, disabled: ReadonlySet<string>): GpuFeatures {
  const has = (f: string) => adapter.features.has(f) && !disabled.has(f);
  const info = adapter.info as GPUAdapterInfo & { subgroupMatrixConfigs?: ArrayLike<SubgroupMatrixConfig> };
  const configs = has('chromium-experimental-subgroup-matrix')
    ? Array.from(info.subgroupMatrixConfigs ?? [], (c) => ({
        componentType: String(c.componentType),
        resultComponentType: String(c.resultComponentType),
        M: Number(c.M),
        N: Number(c.N),
        K: Number(c.K),
      }))
    : [];
  return {
    shaderF16: has('shader-f16'),
    subgroups: has('subgroups'),
    timestampQuery: has('timestamp-query'),
    subgroupMatrix: configs.length > 0,
    subgroupMatrixConfigs: configs,
  };
}

/** The subgroup-matrix config for f16 inputs with f32 accumulation, if the adapter has one. */
export function f16MatrixConfig(features: GpuFeatures): SubgroupMatrixConfig | undefined {
  return features.subgroupMatrixConfigs.find((c) => c.componentType === 'f16' && c.resultComponentType === 'f32');
}

export function chooseVariants(features: GpuFeatures): KernelVariants {
  return {
    weightDType: features.shaderF16 ? 'f16' : 'f32',
    matmulF16: features.shaderF16 && f16MatrixConfig(features) ? 'subgroup-matrix' : 'tiled',
    matmulF32: 'tiled',
    reduction: features.subgroups ? 'subgroup' : 'workgroup',
    timestamps: features.timestampQuery,
  };
}

// Path selection asks these for every op it records (hundreds a decode step), so each adapter or device is read once.
const softwareAdapters = new WeakMap<object, boolean>();
const subgroupSizesOf = new WeakMap<object, SubgroupSizes>();

/** A CPU rasterizer (lavapipe/llvmpipe, SwiftShader): picks CPU-shaped kernels and CPU-sized benchmarks. */
export function isSoftwareAdapter(adapter?: { vendor: string; architecture: string; device: string; description: string }): boolean {
  if (!adapter) return false;
  let software = softwareAdapters.get(adapter);
  if (software === undefined) {
    const a = adapter;
    software = /llvmpipe|lavapipe|swiftshader|cpu/i.test(`${a.vendor} ${a.architecture} ${a.device} ${a.description}`);
    softwareAdapters.set(adapter, software);
  }
  return software;
}

export interface SubgroupSizes {
  min?: number;
  max?: number;
}

/** The device's subgroup sizes from its adapter info (Dawn builds a new info object on every `adapterInfo` read). */
export function subgroupSizes(device?: { adapterInfo?: { subgroupMinSize?: number; subgroupMaxSize?: number } }): SubgroupSizes {
  if (!device) return {};
  let sizes = subgroupSizesOf.get(device);
  if (!sizes) {
    const info = device.adapterInfo;
    sizes = { min: info?.subgroupMinSize, max: info?.subgroupMaxSize };
    subgroupSizesOf.set(device, sizes);
  }
  return sizes;
}
