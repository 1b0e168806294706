// Request validation. Bodies are validated strictly: no type coercion (an ID of 123 is not the
// string "123") and unknown fields are an error, not silently dropped. Query strings and path
// parameters arrive as text, so those may be coerced to the declared scalar types.
import type { FastifyInstance } from 'fastify';
import { Ajv } from 'ajv';
import addFormatsImport from 'ajv-formats';

const addFormats = addFormatsImport as unknown as (ajv: Ajv) => Ajv;

function makeAjv(coerce: boolean) {
  const ajv = new Ajv({
    coerceTypes: coerce ? 'array' : false,
    removeAdditional: false,
    useDefaults: true,
    allErrors: false,
    strict: false,
  });
  addFormats(ajv);
  // OpenAPI annotations that ajv does not know about.
  ajv.addKeyword({ keyword: 'example' });
  return ajv;
}

export function installValidation(app: FastifyInstance) {
  const strict = makeAjv(false);
  const lenient = makeAjv(true);
  app.setValidatorCompiler(({ schema, httpPart }) => {
    const ajv = httpPart === 'body' ? strict : lenient;
    return ajv.compile(schema);
  });
}
