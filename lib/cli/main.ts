#!/usr/bin/env node
// The `ternorm` executable (package.json "bin"): runs the command line and
// exits with its code.
import { run } from './run.js';

process.exitCode = await run(process.argv.slice(2));
