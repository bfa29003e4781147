// Filled in by the rope kernel work.
export {};
