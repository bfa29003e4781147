// Writing a response in ResearchAgent's format, with the field labels taken from the env's own format text.
import { renderResponseFormat } from '@mlagent/env';

export interface ResponseParts {
  reflection: string;
  researchPlanAndStatus: string;
  factCheck: string;
  thought: string;
  action: string;
  actionInput: Record<string, string | number>;
}

/** The six labels, in order, as renderResponseFormat() lists them ("Reflection", ..., "Action Input"). */
export const RESPONSE_LABELS: readonly string[] = (() => {
  const labels = renderResponseFormat()
    .split('\n')
    .map((l) => /^([A-Z][A-Za-z ]*):/.exec(l)?.[1])
    .filter((l): l is string => l !== undefined);
  if (labels.length !== 6 || labels[4] !== 'Action' || labels[5] !== 'Action Input')
    throw new Error(`renderResponseFormat() changed: expected six fields ending in Action, Action Input; got ${labels.join(', ')}`);
  return labels;
})();

/** One response: each field on its own line(s), the Action Input as indented JSON. */
export function formatResponse(p: ResponseParts): string {
  const values = [p.reflection, p.researchPlanAndStatus, p.factCheck, p.thought, p.action, JSON.stringify(p.actionInput, null, 4)];
  return RESPONSE_LABELS.map((label, i) => `${label}: ${values[i]}`).join('\n');
}
