#!/usr/bin/env node
// Committed shim so npm links the binary at install time; the build writes dist/main.js.
import '../dist/main.js';
