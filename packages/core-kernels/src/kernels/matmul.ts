// Filled in by the matmul kernel work.
export {};
