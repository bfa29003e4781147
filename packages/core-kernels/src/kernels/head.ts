// Filled in by the head kernel work.
export {};
