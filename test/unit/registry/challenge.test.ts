import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseChallenges } from '../../../src/registry/index.ts';

describe('parseChallenges', () => {
  const cases: Array<{
    name: string;
    header: string | string[];
    want: Array<{ scheme: string; params: Record<string, string> }>;
  }> = [
    {
      name: 'Docker Hub bearer challenge',
      header:
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"',
      want: [
        {
          scheme: 'bearer',
          params: {
            realm: 'https://auth.docker.io/token',
            service: 'registry.docker.io',
            scope: 'repository:library/nginx:pull',
          },
        },
      ],
    },
    {
      name: 'basic with realm',
      header: 'Basic realm="Registry Realm"',
      want: [{ scheme: 'basic', params: { realm: 'Registry Realm' } }],
    },
    {
      name: 'spaces around separators, unquoted values, case-insensitive names',
      header: 'BEARER  Realm = "https://t/x" , Service=svc ,scope="a b"',
      want: [{ scheme: 'bearer', params: { realm: 'https://t/x', service: 'svc', scope: 'a b' } }],
    },
    {
      name: 'two challenges in one header',
      header: 'Basic realm="r1", Bearer realm="https://t",service="s"',
      want: [
        { scheme: 'basic', params: { realm: 'r1' } },
        { scheme: 'bearer', params: { realm: 'https://t', service: 's' } },
      ],
    },
    {
      name: 'two header values',
      header: ['Basic realm="r1"', 'Bearer realm="https://t"'],
      want: [
        { scheme: 'basic', params: { realm: 'r1' } },
        { scheme: 'bearer', params: { realm: 'https://t' } },
      ],
    },
    {
      name: 'escaped quotes and commas inside a quoted value',
      header: 'Bearer realm="https://t/a,b",error="insufficient_scope",error_description="say \\"hi\\""',
      want: [
        {
          scheme: 'bearer',
          params: { realm: 'https://t/a,b', error: 'insufficient_scope', error_description: 'say "hi"' },
        },
      ],
    },
    {
      name: 'several scopes in one parameter',
      header: 'Bearer realm="https://t",scope="repository:a:pull repository:b:pull,push"',
      want: [{ scheme: 'bearer', params: { realm: 'https://t', scope: 'repository:a:pull repository:b:pull,push' } }],
    },
    {
      name: 'token68 after a scheme is skipped',
      header: 'Negotiate abc123==, Basic realm="r"',
      want: [
        { scheme: 'negotiate', params: {} },
        { scheme: 'basic', params: { realm: 'r' } },
      ],
    },
    { name: 'scheme without parameters', header: 'Basic', want: [{ scheme: 'basic', params: {} }] },
    { name: 'empty header', header: '', want: [] },
    {
      name: 'garbage after a valid challenge is dropped',
      header: 'Bearer realm="https://t" @@@',
      want: [{ scheme: 'bearer', params: { realm: 'https://t' } }],
    },
    {
      name: 'unterminated quote keeps what was read',
      header: 'Basic realm="open',
      want: [{ scheme: 'basic', params: { realm: 'open' } }],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      assert.deepEqual(
        parseChallenges(c.header).map((ch) => ({ scheme: ch.scheme, params: { ...ch.params } })),
        c.want,
      );
    });
  }
});
