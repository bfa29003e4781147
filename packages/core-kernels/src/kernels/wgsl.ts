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
