// Filled in by the embedding kernel work.
export {};
