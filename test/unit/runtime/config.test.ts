import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  ConfigError,
  HelpRequested,
  helpText,
  option,
  parseBindAddress,
  parseConfig,
} from '../../../src/runtime/config/options.ts';
import { controllerOptions, parseControllerConfig } from '../../../src/runtime/config/controller.ts';
import { parseAgentConfig } from '../../../src/runtime/config/agent.ts';

const table = {
  name: option.string({ flag: 'name', env: 'T_NAME', default: 'def', help: 'A name.' }),
  count: option.integer({ flag: 'count', env: 'T_COUNT', default: 3, min: 1, max: 10, help: 'A count.' }),
  verbose: option.boolean({ flag: 'verbose', env: 'T_VERBOSE', default: false, help: 'Talk more.' }),
  wait: option.duration({ flag: 'wait', env: 'T_WAIT', default: 1000, help: 'A wait.' }),
  tags: option.list({ flag: 'tags', env: 'T_TAGS', default: [], help: 'Tags.' }),
  mode: option.choice(['a', 'b'] as const)({ flag: 'mode', default: 'a', help: 'A mode.' }),
  file: option.path({ flag: 'file', env: 'T_FILE', help: 'Optional file.' }),
  password: option.string({ flag: 'password', env: 'T_PASSWORD', sensitive: true, help: 'Secret.' }),
};

const parse = (argv: string[], env: Record<string, string> = {}) => parseConfig(table, argv, env);

describe('parseConfig', () => {
  it('uses defaults when nothing is given, and leaves optional options undefined', () => {
    const c = parse([]);
    assert.deepEqual(
      { ...c },
      {
        name: 'def',
        count: 3,
        verbose: false,
        wait: 1000,
        tags: [],
        mode: 'a',
        file: undefined,
        password: undefined,
      },
    );
  });

  const cases: {
    what: string;
    argv: string[];
    env?: Record<string, string>;
    expect: Partial<Record<keyof typeof table, unknown>>;
  }[] = [
    { what: 'env over default', argv: [], env: { T_NAME: 'env' }, expect: { name: 'env' } },
    { what: 'flag over env', argv: ['--name=flag'], env: { T_NAME: 'env' }, expect: { name: 'flag' } },
    { what: 'flag with separate value', argv: ['--name', 'sep'], expect: { name: 'sep' } },
    { what: 'empty env counts as unset', argv: [], env: { T_NAME: '' }, expect: { name: 'def' } },
    { what: 'bare boolean flag', argv: ['--verbose'], expect: { verbose: true } },
    { what: 'boolean =false', argv: ['--verbose=false'], env: { T_VERBOSE: 'true' }, expect: { verbose: false } },
    { what: 'boolean --no-', argv: ['--no-verbose'], env: { T_VERBOSE: '1' }, expect: { verbose: false } },
    { what: 'boolean from env', argv: [], env: { T_VERBOSE: 'yes' }, expect: { verbose: true } },
    { what: 'duration', argv: ['--wait=1m30s'], expect: { wait: 90_000 } },
    {
      what: 'list, comma separated and repeated',
      argv: ['--tags=a,b', '--tags', 'c'],
      expect: { tags: ['a', 'b', 'c'] },
    },
    { what: 'integer', argv: ['--count=7'], expect: { count: 7 } },
    { what: 'choice', argv: ['--mode=b'], expect: { mode: 'b' } },
  ];
  for (const c of cases) {
    it(c.what, () => {
      const out = parse(c.argv, c.env);
      for (const [k, v] of Object.entries(c.expect)) assert.deepEqual(out[k as keyof typeof out], v, k);
    });
  }

  const errors: { what: string; argv: string[]; env?: Record<string, string>; message: RegExp }[] = [
    {
      what: 'unknown flag, with a suggestion',
      argv: ['--cont=2'],
      message: /unknown flag --cont \(did you mean --count\?\)/,
    },
    {
      what: 'integer out of range names the flag',
      argv: ['--count=11'],
      message: /--count: expected an integer between 1 and 10, got 11/,
    },
    {
      what: 'bad env value names flag and variable',
      argv: [],
      env: { T_COUNT: 'x' },
      message: /--count \(from \$T_COUNT\): expected an integer/,
    },
    { what: 'bad duration', argv: ['--wait=soon'], message: /--wait: expected a duration/ },
    { what: 'bad boolean', argv: ['--verbose=maybe'], message: /--verbose: expected true or false/ },
    { what: 'bad choice', argv: ['--mode=c'], message: /--mode: expected one of a, b/ },
    { what: 'missing value', argv: ['--name'], message: /--name: needs a value/ },
    { what: 'repeated scalar', argv: ['--name=a', '--name=b'], message: /--name: given more than once/ },
    { what: 'positional argument', argv: ['extra'], message: /unexpected argument "extra"/ },
    { what: 'sensitive values are not echoed', argv: ['--count=x', '--password='], message: /--count/ },
  ];
  for (const e of errors) {
    it(`refuses: ${e.what}`, () => {
      assert.throws(
        () => parse(e.argv, e.env),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError);
          assert.match(err.message, e.message);
          return true;
        },
      );
    });
  }

  it('reports every problem at once', () => {
    assert.throws(
      () => parse(['--count=0', '--bogus', '--mode=z']),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.problems.length, 3);
        return true;
      },
    );
  });

  it('hides sensitive values in errors', () => {
    const t = { token: option.integer({ flag: 'token', sensitive: true, help: 'x' }) };
    assert.throws(
      () => parseConfig(t, ['--token=s3cr3t'], {}),
      (err: unknown) => err instanceof ConfigError && !err.message.includes('s3cr3t'),
    );
  });

  it('returns a frozen object', () => {
    const c = parse(['--tags=a']);
    assert.ok(Object.isFrozen(c));
    assert.ok(Object.isFrozen(c.tags));
    assert.throws(() => ((c as { name: string }).name = 'x'), TypeError);
  });

  it('fails required options with the env var named', () => {
    const t = { node: option.string({ flag: 'node-name', env: 'T_NODE', required: true, help: 'x' }) };
    assert.throws(() => parseConfig(t, [], {}), /--node-name: required \(or set \$T_NODE\)/);
    assert.equal(parseConfig(t, [], { T_NODE: 'n1' }).node, 'n1');
  });

  it('throws HelpRequested with text generated from the table', () => {
    assert.throws(
      () => parse(['--help']),
      (err: unknown) => {
        assert.ok(err instanceof HelpRequested);
        for (const opt of Object.values(table)) assert.ok(err.text.includes(`--${opt.flag}`), opt.flag);
        assert.match(err.text, /--count int\n\s+A count\. \[env T_COUNT; default 3\]/);
        assert.match(err.text, /--wait duration\n\s+A wait\. \[env T_WAIT; default 1s\]/);
        return true;
      },
    );
  });

  it('runs cross-field validation on the parsed values', () => {
    assert.throws(
      () =>
        parseConfig(
          table,
          ['--count=2'],
          {},
          { validate: (c) => (c.count < 5 ? ['--count: too small for --mode'] : []) },
        ),
      /too small/,
    );
  });
});

describe('parseBindAddress', () => {
  const cases: [string, { host: string; port: number } | undefined][] = [
    [':8080', { host: '', port: 8080 }],
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
    ['[::1]:9090', { host: '::1', port: 9090 }],
    ['0', undefined],
  ];
  for (const [input, want] of cases)
    it(`parses ${input}`, () => {
      const got = parseBindAddress(input);
      assert.deepEqual(got && { host: got.host, port: got.port }, want);
    });
  for (const bad of ['8080', 'host:', 'a:b', ':70000'])
    it(`refuses ${bad}`, () => assert.throws(() => parseBindAddress(bad)));
});

describe('controller and agent tables', () => {
  it('have the conventional flags and defaults', () => {
    const c = parseControllerConfig([], {});
    assert.equal(c.metricsBindAddress?.port, 8080);
    assert.equal(c.healthProbeBindAddress?.port, 8081);
    assert.equal(c.leaderElect, false);
    assert.equal(c.logFormat, 'json');
    assert.deepEqual(c.namespaces, []);
    const flags = Object.values(controllerOptions).map((o) => o.flag);
    for (const f of [
      'kubeconfig',
      'namespaces',
      'metrics-bind-address',
      'health-probe-bind-address',
      'leader-elect',
      'leader-election-namespace',
      'leader-election-id',
      'log-level',
      'log-format',
      'tls-cert-file',
      'tls-key-file',
      'tls-ca-file',
      'token-signing-key-file',
      'agent-namespace',
      'ttl-schedule',
    ])
      assert.ok(flags.includes(f), f);
  });

  it('declares every env var once, with the TOTE_ prefix', () => {
    const envs = Object.values(controllerOptions).map((o) => o.env);
    assert.equal(new Set(envs).size, envs.length);
    for (const e of envs) assert.match(e ?? '', /^TOTE_[A-Z0-9_]+$/);
  });

  it('reads the controller from the environment', () => {
    const c = parseControllerConfig([], {
      TOTE_LEADER_ELECT: 'true',
      TOTE_NAMESPACES: 'a, b',
      TOTE_AGENT_NAMESPACE: 'tote',
      TOTE_LOG_LEVEL: 'debug',
    });
    assert.equal(c.leaderElect, true);
    assert.deepEqual(c.namespaces, ['a', 'b']);
    assert.equal(c.agentNamespace, 'tote');
    assert.equal(c.logLevel, 'debug');
  });

  it('cross-checks TLS files and leader-election timings', () => {
    assert.throws(
      () => parseControllerConfig(['--tls-cert-file=/c'], {}),
      /--tls-cert-file and --tls-key-file: give both/,
    );
    assert.throws(
      () => parseControllerConfig(['--leader-elect', '--leader-elect-renew-deadline=20s'], {}),
      /renew-deadline: must be shorter/,
    );
  });

  it('requires the agent node name', () => {
    assert.throws(() => parseAgentConfig([], {}), /--node-name: required \(or set \$TOTE_NODE_NAME\)/);
    assert.equal(parseAgentConfig(['--node-name=n1'], {}).containerdNamespace, 'k8s.io');
  });

  it('generates help for the whole controller table', () => {
    const text = helpText(controllerOptions, { usage: 'tote controller [flags]' });
    assert.match(text, /^Usage: tote controller \[flags\]/);
    assert.match(text, /--metrics-bind-address host:port\n.*\[env TOTE_METRICS_BIND_ADDRESS; default :8080\]/);
  });
});
