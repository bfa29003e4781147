// Shared by the llvmpipe probes (load-probe.ts, subgroup-probe.ts): one compute shader, bound to two resources at
// bindings 0 and 1, timed by wall clock over whole dispatches (compiled first, then the median of `runs`).

export async function medianDispatchMs(
  dev: GPUDevice,
  code: string,
  resources: [GPUBindingResource, GPUBindingResource],
  workgroups: number,
  runs: number,
): Promise<number> {
  const pipeline = dev.createComputePipeline({ layout: 'auto', compute: { module: dev.createShaderModule({ code }), entryPoint: 'main' } });
  const bindGroup = dev.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: resources.map((resource, binding) => ({ binding, resource })),
  });
  const once = async () => {
    const t0 = performance.now();
    const encoder = dev.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(workgroups);
    pass.end();
    dev.queue.submit([encoder.finish()]);
    await dev.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  };
  await once(); // compiles
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) ms.push(await once());
  ms.sort((a, b) => a - b);
  return ms[Math.floor(runs / 2)];
}
