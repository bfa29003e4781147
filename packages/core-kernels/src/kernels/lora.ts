// Filled in by the lora kernel work.
export {};
