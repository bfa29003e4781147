// Filled in by the sampling kernel work.
export {};
