import { globals } from 'webgpu';

// Dawn's GPUBufferUsage, GPUMapMode and friends, installed once before any module reads them.
Object.assign(globalThis, globals);
