// @mlagent/rl has no public API yet: it is built in issue 6. Nothing is exported until it works.
export {};
