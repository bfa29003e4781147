// Filled in by the rmsnorm kernel work.
export {};
