/**
 * What the config file may not say about a webhook: a secret in its URL's query or in a literal header (secrets come
 * from the worker's environment, env:NAME), or a URL that is not https.
 */

/**
 * Words that make a URL query parameter a credential: `token`, `access_token`, `apiKey`, `X-Amz-Signature`, `sig`...
 * A name is split into words (separators and camelCase), so that `author` or `keyword` are not taken for secrets.
 */
const secretQueryWords = new Set([
  'token',
  'key',
  'apikey',
  'secret',
  'signature',
  'sig',
  'password',
  'passwd',
  'pwd',
  'auth',
  'authorization',
  'credential',
  'credentials',
  'jwt',
  'bearer',
]);
export function isSecretQueryName(name: string): boolean {
  const words = name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
  return words.some((w) => secretQueryWords.has(w));
}

/** A header whose value is a secret: Authorization, Cookie, or any name containing token, key, secret, password, auth. */
export function isSecretHeaderName(name: string): boolean {
  return /cookie|token|key|secret|passw|auth|credential|signature/i.test(name);
}

/**
 * The only environment variables a webhook header may read (`env:NAME`). A worker's environment also holds database
 * URLs (TENANT_RESTORE_DB_*), cloud keys and pgBackRest secrets: a config, or a workflow input started by anyone with
 * access to the namespace, must not be able to send those to a URL of its choosing.
 */
export const webhookEnvPrefix = 'TENANT_RESTORE_WEBHOOK_';

/** What is wrong with an `env:` header value, as what follows its JSON path; undefined when nothing (or not `env:`). */
export function envHeaderProblem(value: string): string | undefined {
  if (!value.startsWith('env:')) return undefined;
  const variable = value.slice(4);
  if (
    /^[A-Za-z_][A-Za-z0-9_]*$/.test(variable) &&
    variable.startsWith(webhookEnvPrefix) &&
    variable !== webhookEnvPrefix
  )
    return undefined;
  return `reads '${variable}' from the worker's environment, but a webhook header may only read variables named ${webhookEnvPrefix}<NAME> (the environment also holds database URLs and cloud keys): set ${webhookEnvPrefix}<NAME> on the workers to the value to send, and write 'env:${webhookEnvPrefix}<NAME>' here`;
}

/**
 * What is wrong with a webhook URL (empty when nothing), each problem as what follows its JSON path: the config and
 * workflow history must not carry credentials.
 */
export function webhookUrlProblems(url: string): string[] {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return ['must be an http(s) URL'];
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return ['must be an http(s) URL'];
  const problems: string[] = [];
  if (parsed.username || parsed.password) {
    problems.push(
      `carries credentials (user:password@), which would be stored in the config and in workflow history; remove them and send an 'Authorization' header with the value 'env:NAME', NAME being a variable of the worker's environment`,
    );
  }
  const secrets = [...new Set([...parsed.searchParams.keys()].filter(isSecretQueryName))];
  if (secrets.length) {
    problems.push(
      `its query carries ${secrets.map((n) => `'${n}'`).join(', ')}, which looks like a credential and would be stored in the config and in workflow history; send it in a header with the value 'env:NAME' (resolved from the worker's environment) instead`,
    );
  }
  return problems;
}
