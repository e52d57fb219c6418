#!/usr/bin/env node
// `npm run test:property -- [--runs N] [--seed S] [--lanes L] [--minutes M] [--path P] [--restarts] | --replay <case.json>`
// The property suite's long mode: N random cases per lane (default 100, two lanes), new seeds each run unless --seed;
// --minutes stops drawing and shrinking after M minutes (a failure then reports its smallest case so far);
// --path with --seed replays one case of a failed run as fast-check printed it; --replay runs one saved case (the
// case.json a failure wrote under test/artifacts/property/). --restarts adds PostgreSQL restarts, so nothing else may
// use the stack meanwhile. Needs dist (the worker runs the built CLI), which `npm run test:property` builds first.
const { spawnSync } = require('node:child_process');
const { existsSync } = require('node:fs');
const { join, resolve } = require('node:path');
const { parseArgs } = require('node:util');

const usage =
  'usage: npm run test:property -- [--runs N] [--seed S] [--lanes L] [--minutes M] [--path P] [--restarts] | --replay <case.json>';
let values;
try {
  ({ values } = parseArgs({
    options: {
      runs: { type: 'string' },
      seed: { type: 'string' },
      lanes: { type: 'string' },
      minutes: { type: 'string' },
      path: { type: 'string' },
      replay: { type: 'string' },
      restarts: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  }));
} catch (error) {
  process.stderr.write(`${error.message}\n${usage}\n`);
  process.exit(2);
}
if (values.help) {
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}
const whole = (name, value) => {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1) {
    process.stderr.write(`--${name} must be a whole number above 0, not ${JSON.stringify(value)}\n${usage}\n`);
    process.exit(2);
  }
  return value;
};
const env = { ...process.env };
const set = (key, value) => value !== undefined && (env[key] = value);
set('PROPERTY_RUNS', whole('runs', values.runs));
set(
  'PROPERTY_SEED',
  values.seed === undefined ? undefined : /^-?\d+$/.test(values.seed) ? values.seed : whole('seed', 'x'),
);
set('PROPERTY_LANES', whole('lanes', values.lanes));
set('PROPERTY_MINUTES', whole('minutes', values.minutes));
set('PROPERTY_PATH', values.path);
if (values.restarts) env.PROPERTY_RESTARTS = '1';
if (values.replay) {
  const file = resolve(values.replay);
  if (!existsSync(file)) {
    process.stderr.write(`--replay: no file ${file} (a failure writes its case.json under test/artifacts/property/)\n`);
    process.exit(2);
  }
  env.PROPERTY_REPLAY = file;
}
const vitest = join(__dirname, '..', 'node_modules', 'vitest', 'vitest.mjs');
const result = spawnSync(process.execPath, [vitest, 'run', '--config', 'vitest.property.config.ts'], {
  cwd: join(__dirname, '..'),
  env,
  stdio: 'inherit',
});
process.exit(result.status ?? 1);
