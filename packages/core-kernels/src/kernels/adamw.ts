// Filled in by the adamw kernel work.
export {};
