// Filled in by the swiglu kernel work.
export {};
