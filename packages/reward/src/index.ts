// @mlagent/reward has no public API yet: it is built in issue 5. Nothing is exported until it works.
export {};
