// Turns ajv's errors into answers that say what is allowed: the values of an enum, the field a
// misspelling was probably meant to be next to the field it left missing, the hidden character of
// a string that breaks the text rule. Needs ajv's `verbose` errors (the failing value and schema).
import { closest } from '../lib/closest.ts';
import { DATE_TIME_RULE } from '../lib/date-time.ts';
import { TEXT_RULES, textProblem, type TextKind } from '../lib/text.ts';

export interface ValidationIssue {
  keyword?: string;
  instancePath: string;
  schemaPath?: string;
  message?: string;
  params?: Record<string, unknown>;
  /** verbose: the schema value of the keyword, its parent schema and the data that failed. */
  schema?: unknown;
  parentSchema?: unknown;
  data?: unknown;
}

export interface IssueDetail {
  field: string;
  message: string;
  [extra: string]: unknown;
}

interface ObjectSchema {
  properties?: Record<string, unknown>;
  required?: string[];
  additionalProperties?: unknown;
}

const TEXT_KINDS = new Set(Object.keys(TEXT_RULES));
const quoteList = (xs: unknown[]) => xs.map((x) => JSON.stringify(x)).join(', ');
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Field names meant for one another that no spelling distance finds: a signal takes `detail` where
 * every command takes `reason`, and `{kind, reason}` was refused without a hint (a trial).
 */
const SYNONYMS: Record<string, readonly string[]> = {
  reason: ['detail', 'comment'],
  detail: ['reason', 'comment'],
  details: ['detail', 'reason'],
  message: ['detail', 'reason', 'comment'],
  description: ['detail', 'reason', 'comment'],
  note: ['detail', 'reason', 'comment'],
  comment: ['reason', 'detail'],
};

const fieldOf = (where: string, instancePath: string) => `${where}${instancePath.replace(/\//g, '.')}`;

/** Unknown and missing fields of an object that failed `required` or `additionalProperties`. */
function objectFieldIssues(issue: ValidationIssue, field: string): IssueDetail[] {
  const schema = issue.parentSchema as ObjectSchema | undefined;
  const data = issue.data;
  if (!schema || !isObject(data)) return [];
  const known = Object.keys(schema.properties ?? {});
  const out: IssueDetail[] = [];
  if (schema.additionalProperties === false) {
    for (const key of Object.keys(data)
      .filter((k) => !known.includes(k))
      .slice(0, 20)) {
      // A misspelling usually stands for a field that is missing: prefer those.
      const guess =
        closest(
          key,
          known.filter((k) => !(k in data)),
        ) ??
        closest(key, known) ??
        SYNONYMS[key.toLowerCase()]?.find((k) => known.includes(k) && !(k in data));
      out.push({
        field,
        message: 'must NOT have additional properties',
        unknownField: key,
        ...(guess ? { didYouMean: guess } : {}),
        allowedFields: known,
      });
    }
  }
  for (const key of (schema.required ?? []).filter((k) => !(k in data)))
    out.push({ field, message: `must have required property '${key}'`, missingField: key });
  return out;
}

/** One issue → its detail entries (usually one). */
function detailsOf(issue: ValidationIssue, where: string, group: ValidationIssue[]): IssueDetail[] {
  const field = fieldOf(where, issue.instancePath);
  const message = issue.message ?? 'is invalid';
  switch (issue.keyword) {
    case 'required':
    case 'additionalProperties': {
      const found = objectFieldIssues(issue, field);
      return found.length ? found : [{ field, message }];
    }
    case 'type': {
      // No body at all (or null) where an object is due: "must be object" did not say what to send
      // (POST …/pause without a body, a new-user trial). Name the fields it must have.
      const missingBody = issue.instancePath === '' && (issue.data === undefined || issue.data === null);
      if (!missingBody || issue.params?.type !== 'object') return [{ field, message }];
      const required = (issue.parentSchema as ObjectSchema | undefined)?.required ?? [];
      const fields = required.length ? ` with ${required.map((k) => `"${k}"`).join(', ')}` : '';
      // Fastify hands a request without a body to validation as null, like a body of `null`.
      return [
        {
          field,
          message: `must be a JSON object${fields}; got no body (or null)`,
          ...(required.length ? { required } : {}),
        },
      ];
    }
    case 'enum': {
      const allowed = (issue.params?.allowedValues as unknown[] | undefined) ?? [];
      return [{ field, message: `must be one of ${quoteList(allowed)}`, allowed }];
    }
    case 'const':
      return [
        {
          field,
          message: `must be ${JSON.stringify(issue.params?.allowedValue)}`,
          allowed: [issue.params?.allowedValue],
        },
      ];
    case 'pattern': {
      // A wave step of "0" or "150%" was answered with the raw regular expression (a trial).
      const rule = (issue.parentSchema as { 'x-rule'?: string } | undefined)?.['x-rule'];
      return rule ? [{ field, message: rule, value: issue.data }] : [{ field, message }];
    }
    case 'format': {
      const kind = issue.params?.format as string;
      if (TEXT_KINDS.has(kind) && typeof issue.data === 'string') {
        const p = textProblem(issue.data, kind as TextKind);
        if (p)
          return [
            {
              field,
              message: p.message,
              codePoint: p.codePoint,
              position: p.position,
              escaped: p.escaped,
              allowed: TEXT_RULES[kind as TextKind],
            },
          ];
      }
      if (kind === 'date-time') return [{ field, message: `must be ${DATE_TIME_RULE}`, allowed: DATE_TIME_RULE }];
      return [{ field, message }];
    }
    case 'anyOf': {
      // The branches' own errors say more than "must match a schema in anyOf".
      const branches = (issue.schema as { const?: unknown; type?: unknown }[] | undefined) ?? [];
      if (branches.length && branches.every((b) => b.const !== undefined)) {
        const allowed = branches.map((b) => b.const);
        return [{ field, message: `must be one of ${quoteList(allowed)}`, allowed }];
      }
      // A branch that failed on more than its type is the one the client meant: report that.
      const specific = group.find((g) => g.keyword !== 'type');
      if (specific) return detailsOf(specific, where, []);
      const types = [...new Set(group.map((g) => String(g.params?.type)))];
      return [{ field, message: `must be ${types.join(' or ')}`, allowed: types }];
    }
    case 'uniqueItems': {
      // ajv names the two positions ("items ## 1 and 0 are identical"): a CLI user who typed
      // `--delivery 7 7` never saw a list with positions. The value says which.
      const i = issue.params?.i;
      const value = Array.isArray(issue.data) && typeof i === 'number' ? (issue.data as unknown[])[i] : undefined;
      if (typeof value !== 'string' && typeof value !== 'number') return [{ field, message }];
      const shown = typeof value === 'string' && value.length > 60 ? `${value.slice(0, 60)}…` : value;
      return [
        { field, message: `must not list a value twice (${JSON.stringify(shown)} is given more than once)`, value },
      ];
    }
    default:
      return [{ field, message, ...(issue.params && 'limit' in issue.params ? { limit: issue.params.limit } : {}) }];
  }
}

/** Names each offending field (`body.ids.1`) and leads with an unknown field when there is one. */
export function describeValidation(issues: readonly ValidationIssue[], where: string) {
  // Errors of anyOf branches come before the anyOf error itself: fold them into it.
  const anyOfs = issues.filter((i) => i.keyword === 'anyOf');
  const inBranch = (i: ValidationIssue) =>
    anyOfs.some(
      (a) => a !== i && i.schemaPath?.startsWith(`${a.schemaPath}/`) && i.instancePath.startsWith(a.instancePath),
    );
  const details = issues
    .filter((i) => !inBranch(i))
    .flatMap((i) =>
      detailsOf(
        i,
        where,
        i.keyword === 'anyOf' ? issues.filter((b) => b !== i && b.schemaPath?.startsWith(`${i.schemaPath}/`)) : [],
      ),
    )
    .slice(0, 50);
  const unknown = details.filter((d) => 'unknownField' in d);
  const missing = details.filter((d) => 'missingField' in d);
  let message: string;
  if (unknown.length) {
    message = unknown
      .map(
        (d) =>
          `Unknown field "${String(d.unknownField)}" in ${d.field}${d.didYouMean ? ` (did you mean "${d.didYouMean as string}"?)` : ''}`,
      )
      .join('; ');
    if (missing.length)
      message += `; missing required field ${missing.map((d) => `"${String(d.missingField)}"`).join(', ')}`;
  } else if (missing.length) {
    message = `Invalid ${missing[0]!.field}: missing required field ${missing.map((d) => `"${String(d.missingField)}"`).join(', ')}`;
  } else {
    message = `Invalid ${details[0]?.field ?? where}: ${details[0]?.message ?? 'failed validation'}`;
  }
  return { message, details };
}
