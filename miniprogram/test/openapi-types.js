/**
 * kit/types/server.d.ts from the server's OpenAPI document: the problem `code`s (the enum of
 * the Problem schema's `code`) and the shapes the kit hands out (Problem, Profile,
 * PhoneBinding, LoginResult, LoginSession). types.test.js fails when the file drifts from
 * the document; to write it again:
 *
 *   node miniprogram/test/openapi-types.js --write
 *
 * (starts the server as the tests do, see server.js).
 */
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const TARGET = path.resolve(__dirname, '..', 'kit', 'types', 'server.d.ts');
const SCHEMAS = ['Problem', 'Profile', 'PhoneBinding', 'LoginResult', 'LoginSession'];
const REF = '#/components/schemas/';

function typeOf(schema) {
  let type;
  if (schema.$ref) type = schema.$ref.slice(REF.length);
  else if (schema.allOf && schema.allOf.length === 1) type = typeOf(schema.allOf[0]);
  else if (schema.enum) type = schema.enum.map((v) => JSON.stringify(v).replace(/"/g, "'")).join(' | ');
  else if (schema.type === 'string') type = 'string';
  else if (schema.type === 'integer' || schema.type === 'number') type = 'number';
  else if (schema.type === 'boolean') type = 'boolean';
  else if (schema.type === 'array') type = `${typeOf(schema.items)}[]`;
  else if (schema.type === 'object') type = 'Record<string, unknown>';
  else throw new Error(`no TypeScript type for ${JSON.stringify(schema)}`);
  return schema.nullable ? `${type} | null` : type;
}

function comment(text, indent) {
  return text ? `${indent}/** ${text.replace(/\*\//g, '*\\/')} */\n` : '';
}

/** The text of server.d.ts for the OpenAPI document `doc`. */
function render(doc) {
  const schemas = doc.components.schemas;
  const codes = schemas.Problem.properties.code.enum;
  let out = '// Generated from the wxauth server\'s OpenAPI document by miniprogram/test/openapi-types.js:\n'
    + '// do not edit (types.test.js fails when this file and the document differ).\n\n'
    + '/** A problem+json `code` the server answers (README, Errors). */\n'
    + `export type ProblemCode =\n${codes.map((c) => `  | '${c}'`).join('\n')};\n`;
  for (const name of SCHEMAS) {
    const schema = schemas[name];
    const required = new Set(schema.required || []);
    out += `\n${comment(schema.description, '')}export interface ${name} {\n`;
    for (const [prop, sub] of Object.entries(schema.properties)) {
      const type = name === 'Problem' && prop === 'code' ? 'ProblemCode' : typeOf(sub);
      out += comment(sub.description, '  ');
      out += `  ${prop}${required.has(prop) ? '' : '?'}: ${type};\n`;
    }
    out += '}\n';
  }
  return out;
}

module.exports = { render, TARGET };

if (require.main === module && process.argv.includes('--write')) {
  const { startServer } = require('./server.js');
  (async () => {
    const server = await startServer();
    try {
      const doc = await (await fetch(`${server.url}/openapi.json`)).json();
      fs.writeFileSync(TARGET, render(doc));
      console.log(`wrote ${TARGET}`);
    } finally {
      server.stop();
    }
  })();
}
