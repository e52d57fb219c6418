import type { SectionStatus } from '../results';

export function statusNote(section: { status: SectionStatus; reason?: string } | undefined): string | undefined {
  if (!section) return 'not run';
  if (section.status === 'ok') return undefined;
  return `${section.status.toUpperCase()}: ${section.reason ?? ''}`.trim();
}
