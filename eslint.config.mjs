// Lint rules that make workflow determinism visible: workflow code may not import Node builtins,
// database drivers, loggers or the AWS SDK. Anything non-deterministic belongs in activities.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const nonDeterministicImports = {
  patterns: [
    { group: ['node:*'], message: 'Workflows must be deterministic: no Node builtins. Do this in an activity.' },
    {
      group: ['pg', 'pg-*', 'pino', '@aws-sdk/*', '@temporalio/activity', '@temporalio/worker', '@temporalio/client'],
      message: 'Workflows must be deterministic: I/O belongs in activities.',
    },
    // restore-types.ts and input-contract.ts are the exceptions: the engine's plain shapes and pure functions, and the
    // input contract (zod and pure functions only), which the workflows carry, check and the engine records; so is
    // when-contract.ts, `when`'s part of that contract (zod and types only).
    {
      regex: '^\\.\\./activities(/(?!restore-types$|input-contract$|when-contract$).*)?$',
      allowTypeImports: true,
      message: 'Workflows may only import the *types* of activities (import type).',
    },
  ],
  paths: [
    'fs',
    'path',
    'os',
    'child_process',
    'crypto',
    'http',
    'https',
    'net',
    'stream',
    'events',
    'util',
    'worker_threads',
  ].map((name) => ({ name, message: 'Workflows must be deterministic: no Node builtins.' })),
};

export default tseslint.config(
  { ignores: ['node_modules/**', '.stack/**', '.tools/**', 'dist/**', 'test/artifacts/**', 'bin/**', 'scripts/*.cjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': 'off',
      '@typescript-eslint/no-restricted-imports': ['error', nonDeterministicImports],
      'no-restricted-globals': [
        'error',
        { name: 'setTimeout', message: 'Use sleep() from @temporalio/workflow.' },
        { name: 'setInterval', message: 'Use sleep() in a loop from @temporalio/workflow.' },
        { name: 'process', message: 'Workflows cannot read the environment.' },
      ],
    },
  },
  { files: ['eslint.config.mjs'], ...tseslint.configs.disableTypeChecked },
);
