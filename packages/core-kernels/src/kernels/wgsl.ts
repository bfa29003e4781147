/** WGSL snippets shared by kernels. */

/** `enable f16;` where f16 storage is in use. */
export function enableF16(dtypes: readonly string[]): string {
  return dtypes.includes('f16') ? 'enable f16;\n' : '';
}

/** WGSL scalar type for a tensor dtype. */
export function wgslType(dtype: string): string {
  return dtype === 'f16' ? 'f16' : dtype;
}

/** Linear workgroup index over a 2D grid made by `Gpu.grid()`. */
export const LINEAR_WORKGROUP = /* wgsl */ `
fn linear_wg(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.x + wid.y * nwg.x; }
`;

/**
 * Workgroups most a CPU adapter gets for a grid-stride loop (`strideGrid`): llvmpipe pays microseconds per
 * workgroup, so an add of 1.8M f32 took 10.6 ms over 7,168 workgroups of one element per invocation and 2.4–3.1 ms
 * as vec4 loops over 16–256 workgroups (scratch variants, one process, session 25).
 */
export const CPU_STRIDE_WORKGROUPS = 64;

/**
 * The grid for `items` work items in a grid-stride loop (`STRIDE_LOOP`) of `wg` invocations per workgroup: one item
 * per invocation on a GPU, at most CPU_STRIDE_WORKGROUPS workgroups on a CPU adapter.
 */
export function strideGrid(gpu: { softwareAdapter: boolean; grid(workgroups: number): [number, number, number] }, items: number, wg: number): [number, number, number] {
  const need = Math.ceil(items / wg);
  return gpu.grid(gpu.softwareAdapter ? Math.min(need, CPU_STRIDE_WORKGROUPS) : need);
}

/** `for (var e = ...; e < n; e += ...)` over a `strideGrid`: invocation-major, so a subgroup's items are adjacent. */
export function strideLoop(wg: number, e: string, n: string): string {
  return `for (var ${e} = (wid.x + wid.y * nwg.x) * ${wg}u + li; ${e} < ${n}; ${e} += nwg.x * nwg.y * ${wg}u)`;
}

/**
 * 4 where rows of `rowElems` elements can be read as vec4s in every tensor (rowElems a multiple of 4 and each
 * tensor's first element on a vec4), else 1: the item size of the kernels that take vec4s where the layout allows.
 */
export function vec4Rows(rowElems: number, tensors: readonly { byteOffset: number; dtype: string }[]): 1 | 4 {
  return rowElems % 4 === 0 && tensors.every((t) => t.byteOffset % (4 * (t.dtype === 'f16' ? 2 : 4)) === 0) ? 4 : 1;
}

/** The WGSL type of a `vec`-element item of a tensor (`t`) and of the same item in f32 math (`f`). */
export function itemTypes(dtype: string, vec: number): { t: string; f: string } {
  return vec === 4 ? { t: `vec4<${wgslType(dtype)}>`, f: 'vec4<f32>' } : { t: wgslType(dtype), f: 'f32' };
}
