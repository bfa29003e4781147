// @mlagent/policy has no public API yet: it is built in issue 3. Nothing is exported until it works.
export {};
