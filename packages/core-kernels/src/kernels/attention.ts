// Filled in by the attention kernel work.
export {};
