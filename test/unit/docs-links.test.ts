/**
 * The README is a map: every relative link in it and in docs/*.md resolves to a file of the checkout, and to a heading
 * of that file when it has a #fragment (GitHub's anchors); and every docs/ page is linked from the README.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(__dirname, '..', '..');
const pages = [
  'README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

/** GitHub's anchor of a heading: lowercase, punctuation but `-` and spaces dropped, spaces to `-`. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\- ]/gu, '')
    .replace(/ /g, '-');
}

function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const heading = !fenced && /^#{1,6} (.+)$/.exec(line);
    if (heading) anchors.add(slug(heading[1]!));
  }
  return anchors;
}

/** The relative links of a markdown text, outside code: [text](target), without the http(s) and mailto ones. */
function linksOf(markdown: string): string[] {
  const prose = markdown.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  return [...prose.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((t) => !/^(https?:|mailto:)/.test(t));
}

describe('the documentation links', () => {
  it('slugs headings as GitHub does', () => {
    expect(slug('Deployment: N workers on N hosts')).toBe('deployment-n-workers-on-n-hosts');
    expect(slug('Config file (`--config`, JSON)')).toBe('config-file---config-json');
  });

  it.each(pages)('every relative link of %s resolves, to a heading where it names one', (page) => {
    const text = readFileSync(join(root, page), 'utf8');
    const broken: string[] = [];
    for (const link of linksOf(text)) {
      const [path, fragment] = link.split('#') as [string, string | undefined];
      const target = path === '' ? join(root, page) : resolve(dirname(join(root, page)), path);
      if (!existsSync(target)) broken.push(`${link}: no file ${relative(root, target)}`);
      else if (fragment && target.endsWith('.md') && !anchorsOf(readFileSync(target, 'utf8')).has(fragment))
        broken.push(`${link}: no heading #${fragment} in ${relative(root, target)}`);
    }
    expect(broken).toEqual([]);
  });

  it('the README links every docs/ page and is at most 250 lines', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const linked = new Set(linksOf(readme).map((l) => l.split('#')[0]));
    expect(pages.filter((p) => p.startsWith('docs/') && !linked.has(p))).toEqual([]);
    expect(readme.split('\n').length).toBeLessThanOrEqual(251);
  });
});
