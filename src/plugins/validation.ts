// Request validation. Bodies are validated strictly: no type coercion (an ID of 123 is not the
// string "123") and unknown fields are an error, not silently dropped. Query strings and path
// parameters arrive as text, so those may be coerced to the declared scalar types.
import { Ajv } from 'ajv';
import addFormatsImport from 'ajv-formats';
import { isStorableDateTime } from '../lib/date-time.ts';
import { BadRequestError } from '../lib/errors.ts';
import { isValidText, type TextKind } from '../lib/text.ts';
import { describeValidation } from './errors.ts';

const addFormats = addFormatsImport as unknown as (ajv: Ajv) => Ajv;

/** The string formats of lib/text.ts: what characters a stored or shown string may hold. */
export const TEXT_FORMATS: readonly TextKind[] = ['id', 'text', 'multiline-text'];

function makeAjv(coerce: boolean) {
  const ajv = new Ajv({
    coerceTypes: coerce ? 'array' : false,
    removeAdditional: false,
    useDefaults: true,
    allErrors: false,
    // Errors carry the failing value and schema, so that messages can name what is allowed
    // (enum values, the field a misspelling was meant to be, the hidden character).
    verbose: true,
    strict: false,
  });
  addFormats(ajv);
  for (const kind of TEXT_FORMATS) ajv.addFormat(kind, { type: 'string', validate: (s) => isValidText(s, kind) });
  // RFC 3339, and an instant that can be stored and written back (lib/date-time.ts).
  ajv.addFormat('date-time', { type: 'string', validate: isStorableDateTime });
  // OpenAPI annotations that ajv does not know about.
  ajv.addKeyword({ keyword: 'example' });
  // What a `pattern` stands for, in words: its refusal says that rather than the regular expression.
  ajv.addKeyword({ keyword: 'x-rule' });
  return ajv;
}

/**
 * Body schemas that are documented on a route but validated by its handler (validateValue below),
 * because another entry point (the CI intake queue) takes the same body: one validation, so both
 * refuse a bad body with the same error.
 */
const handlerValidated = new WeakSet<object>();
export function validatedByHandler<T extends object>(schema: T): T {
  handlerValidated.add(schema);
  return schema;
}

/**
 * Fastify's validator factory. Given through `schemaController.compilersFactory` (not
 * setValidatorCompiler) because Fastify rebuilds the validator of any child context that adds
 * shared schemas, and would otherwise fall back to its default ajv there.
 */
export function buildValidator(externalSchemas: Record<string, unknown>) {
  const strict = makeAjv(false);
  const lenient = makeAjv(true);
  for (const schema of Object.values(externalSchemas)) {
    strict.addSchema(schema as object);
    lenient.addSchema(schema as object);
  }
  return ({ schema, httpPart, contentType }: { schema: object; httpPart?: string; contentType?: string }) => {
    // Streamed uploads (NDJSON, plain text) are documented in the schema but validated line by
    // line by their handler as they are read; the raw stream itself is not a JSON value.
    if (httpPart === 'body' && contentType && contentType !== 'application/json') return () => true;
    if (httpPart === 'body' && handlerValidated.has(schema)) return () => true;
    const ajv = httpPart === 'body' ? strict : lenient;
    return ajv.compile(schema);
  };
}

const inlineAjv = makeAjv(false);
const compiled = new WeakMap<object, ReturnType<Ajv['compile']>>();

/**
 * Validates a value that did not arrive as a JSON body (e.g. the first line of an NDJSON upload)
 * with the same strict rules and the same error shape as body validation. Applies defaults.
 */
export function validateValue<T>(schema: object, value: unknown, where: string): T {
  let validate = compiled.get(schema);
  if (!validate) {
    validate = inlineAjv.compile(schema);
    compiled.set(schema, validate);
  }
  if (validate(value)) return value as T;
  const { message, details } = describeValidation(validate.errors ?? [], where);
  throw new BadRequestError('VALIDATION_FAILED', message, details);
}
