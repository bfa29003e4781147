// @mlagent/env has no public API yet: it is built in issue 4. Nothing is exported until it works.
export {};
