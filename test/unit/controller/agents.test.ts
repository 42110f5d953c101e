import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Lease } from '@kubernetes/client-node';
import { agentAddressAnnotation, agentLeaseLabels } from '../../../src/api/index.ts';
import { RenewableTls } from '../../../src/agentapi/index.ts';
import type { TlsMaterial } from '../../../src/agentapi/index.ts';
import type { AgentClient, AgentClientOptions, AgentImage, ImportResponse } from '../../../src/agentapi/index.ts';
import { AgentDirectory } from '../../../src/controller/agents/agents.ts';
import type { AgentDirectoryOptions } from '../../../src/controller/agents/agents.ts';
import { ManualClock, settle } from '../../../src/runtime/clock.ts';
import { digest } from './factories.ts';

const other = `sha256:${'7'.repeat(64)}`;

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (err: unknown) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve: (value: T) => void = () => {};
  let reject: (err: unknown) => void = () => {};
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** One fake channel: records its ListImages calls and leaves them pending until the test answers. */
interface FakeChannel {
  node: string;
  address: string;
  /** The certificate the channel was opened with. */
  tls: TlsMaterial;
  closed: boolean;
  lists: { digests: readonly string[]; answer: Deferred<AgentImage[]> }[];
  finds: { references: readonly string[]; answer: Deferred<AgentImage[]> }[];
  imports: Deferred<ImportResponse>[];
}

const image = (d: string): AgentImage => ({
  names: [],
  digest: d,
  mediaType: '',
  size: 100,
  platforms: [],
  complete: true,
  missingDigests: [],
  configDigest: '',
  managed: false,
  pinned: false,
  pinnedUntil: 0,
});

function fakeConnect(channels: FakeChannel[]) {
  return (options: AgentClientOptions): AgentClient => {
    const node = options.server.kind === 'agent' ? options.server.node : '';
    const channel: FakeChannel = {
      node,
      address: options.address,
      tls: options.tls,
      closed: false,
      lists: [],
      finds: [],
      imports: [],
    };
    channels.push(channel);
    const unused = () => Promise.reject(new Error('not used in this test'));
    return {
      address: options.address,
      getNodeInfo: unused,
      listImages: (digests = []) => {
        assert.ok(!channel.closed, `call on the closed channel to ${node}`);
        const answer = deferred<AgentImage[]>();
        channel.lists.push({ digests, answer });
        return answer.promise;
      },
      findImages: (references) => {
        assert.ok(!channel.closed, `call on the closed channel to ${node}`);
        const answer = deferred<AgentImage[]>();
        channel.finds.push({ references, answer });
        return answer.promise;
      },
      resolveTag: unused,
      describePlan: unused,
      readBlob: () => ({
        [Symbol.asyncIterator]: () => ({ next: unused }),
      }),
      import: () => {
        assert.ok(!channel.closed, `call on the closed channel to ${node}`);
        const done = deferred<ImportResponse>();
        channel.imports.push(done);
        return done.promise;
      },
      removeImage: unused,
      pinImage: unused,
      pushImage: unused,
      close: () => {
        channel.closed = true;
      },
    };
  };
}

function lease(node: string, clock: ManualClock, address = `10.0.0.${node.length}:7443`): V1Lease {
  return {
    metadata: {
      name: `tote-agent-${node}`,
      labels: { [agentLeaseLabels.node]: node },
      annotations: { [agentAddressAnnotation]: address },
    },
    spec: { renewTime: new Date(clock.now()), leaseDurationSeconds: 3600 },
  };
}

function setup(nodes: string[], options: Partial<AgentDirectoryOptions> = {}) {
  const clock = new ManualClock();
  const tls = new RenewableTls({ ca: Buffer.alloc(0), cert: Buffer.alloc(0), key: Buffer.alloc(0) });
  const channels: FakeChannel[] = [];
  const leases = nodes.map((n) => lease(n, clock));
  const source = { revision: 0, listed: 0 };
  const directory = new AgentDirectory({
    leases: {
      list: () => {
        source.listed++;
        return leases;
      },
      get revision() {
        return source.revision;
      },
    },
    tls,
    clock,
    connect: fakeConnect(channels),
    ...options,
  });
  const open = () => channels.filter((c) => !c.closed);
  const lists = () => channels.flatMap((c) => c.lists);
  return { clock, channels, directory, leases, source, open, lists, tls };
}

describe('agent directory', () => {
  it('asks one node about several images in one call, and answers each question', async () => {
    const { clock, directory, lists } = setup(['node-a']);
    const first = directory.image('node-a', digest);
    const second = directory.image('node-a', other);
    const again = directory.image('node-a', digest);
    await clock.advance(5);
    assert.equal(lists().length, 1);
    assert.deepEqual([...(lists()[0]?.digests ?? [])], [digest, other]);
    lists()[0]?.answer.resolve([image(digest)]);
    assert.equal((await first)?.digest, digest);
    assert.equal(await second, undefined);
    assert.equal((await again)?.digest, digest);

    // Cached per (node, digest): no new call within the TTL, a new one when asked fresh.
    assert.equal((await directory.image('node-a', other)) ?? 'absent', 'absent');
    const fresh = directory.image('node-a', digest, { fresh: true });
    await clock.advance(5);
    assert.equal(lists().length, 2);
    lists()[1]?.answer.resolve([]);
    assert.equal(await fresh, undefined);
  });

  it('sends the tags and images asked of one node together, on one channel and in one query slot', async () => {
    const { clock, channels, directory, lists } = setup(['node-a', 'node-b'], { maxInflightQueries: 1 });
    // One node's answer from a round of one, or its failure.
    const resolveOn = async (node: string, reference: string) => {
      const round = await directory.resolveEverywhere([node], reference);
      if (round.failed.has(node)) throw round.failed.get(node);
      return round.answers.get(node);
    };
    const tagA = resolveOn('node-a', 'registry.example/app:v1');
    const imageA = directory.image('node-a', digest);
    const gone = resolveOn('node-a', 'registry.example/app:v0');
    // Asked as the record name CRI keeps: no tag is latest.
    const latest = resolveOn('node-a', 'registry.example/app');
    const tagB = resolveOn('node-b', 'registry.example/app:v1');
    await clock.advance(5);
    const [a] = channels;
    assert.equal(channels.length, 1, 'node-b waits for the only slot');
    assert.deepEqual(
      a?.finds.map((f) => [...f.references]),
      [['registry.example/app:v1', 'registry.example/app:v0', 'registry.example/app:latest']],
      'every tag in one call',
    );
    assert.equal(lists().length, 1);
    // Questions asked of node-b while it waits for the slot join its batch.
    const imageB = directory.image('node-b', digest);
    a?.finds[0]?.answer.resolve([
      { ...image(digest), names: ['registry.example/app:v1', 'registry.example/app@' + digest] },
      { ...image(other), names: ['registry.example/app:latest'] },
    ]);
    await settle();
    assert.equal(channels.length, 1, 'the slot is held until every call of the batch answered');
    lists()[0]?.answer.resolve([image(digest)]);
    assert.equal(await tagA, digest);
    assert.equal(await gone, undefined, 'a tag no record names is not on the node');
    assert.equal(await latest, other);
    assert.equal((await imageA)?.digest, digest);
    await settle();
    assert.equal(channels.length, 2);
    assert.equal(channels[1]?.finds.length, 1);
    assert.deepEqual([...(channels[1]?.lists[0]?.digests ?? [])], [digest]);
    channels[1]?.finds[0]?.answer.reject(new Error('connection reset'));
    channels[1]?.lists[0]?.answer.resolve([]);
    await assert.rejects(tagB, /connection reset/);
    assert.equal(await imageB, undefined, "one call's failure fails only its own questions");
    // Where the tag pointed is a hint of where the image is.
    assert.deepEqual(directory.holderHints(digest), ['node-a']);
    assert.deepEqual(directory.holderHints(other), ['node-a']);
    await clock.advance(60_000);
    assert.deepEqual(directory.holderHints(digest), [], 'hints expire');
  });

  it('works out the live agents again only when a Lease changed or one expired', async () => {
    const { clock, directory, leases, source } = setup(['node-a', 'node-b']);
    assert.deepEqual([...directory.alive().keys()], ['node-a', 'node-b']);
    const listed = source.listed;
    directory.alive();
    directory.alive();
    assert.equal(source.listed, listed, 'unchanged Leases are not read again');
    const b = leases[1];
    assert.ok(b?.spec);
    b.spec.leaseDurationSeconds = 10;
    source.revision++;
    assert.equal(directory.alive().size, 2);
    assert.equal(source.listed, listed + 1);
    await clock.advance(10_000);
    assert.deepEqual([...directory.alive().keys()], ['node-a'], 'an expired agent drops out without a Lease change');
  });

  it('runs at most maxInflightQueries queries at once; questions to a waiting node join its call', async () => {
    const nodes = ['node-a', 'node-b', 'node-c', 'node-d'];
    const { clock, directory, lists } = setup(nodes, { maxInflightQueries: 2 });
    const answers = nodes.map((n) => directory.image(n, digest));
    await clock.advance(5);
    assert.equal(lists().length, 2);
    assert.deepEqual(directory.load(), { channelsOpen: 2, queriesInflight: 2, queriesQueued: 2 });

    // node-d has not been asked yet: a later question to it rides along.
    const late = directory.image('node-d', other);
    await clock.advance(5);
    assert.equal(lists().length, 2);

    for (let answered = 0; answered < 4; answered++) {
      const call = lists()[answered];
      assert.ok(call, `call ${answered} sent`);
      call.answer.resolve(call.digests.map(image));
      await settle();
      assert.ok(directory.load().queriesInflight <= 2);
    }
    assert.deepEqual(
      (await Promise.all(answers)).map((a) => a?.digest),
      nodes.map(() => digest),
    );
    assert.equal((await late)?.digest, other);
    assert.deepEqual([...(lists()[3]?.digests ?? [])], [digest, other]);
    assert.deepEqual(directory.load(), { channelsOpen: 4, queriesInflight: 0, queriesQueued: 0 });
  });

  it('fails every question of a call that fails, and caches no failure', async () => {
    const { clock, directory, lists } = setup(['node-a']);
    const answers = [directory.image('node-a', digest), directory.image('node-a', other)];
    await clock.advance(5);
    lists()[0]?.answer.reject(new Error('unreachable'));
    for (const answer of answers) await assert.rejects(answer, /unreachable/);
    const retry = directory.image('node-a', digest);
    await clock.advance(5);
    assert.equal(lists().length, 2);
    lists()[1]?.answer.resolve([image(digest)]);
    assert.equal((await retry)?.digest, digest);
  });

  it('rejects a question to a node without a live agent', async () => {
    const { clock, directory } = setup(['node-a']);
    const answer = directory.image('node-x', digest);
    await clock.advance(5);
    await assert.rejects(answer, /no live agent/);
  });

  it('closes a channel idle for idleCloseMs and opens it again when needed', async () => {
    const { clock, directory, channels, open, lists } = setup(['node-a'], { idleCloseMs: 30_000 });
    const answer = directory.image('node-a', digest);
    await clock.advance(5);
    lists()[0]?.answer.resolve([]);
    await answer;
    await clock.advance(20_000);
    assert.equal(open().length, 1);
    await clock.advance(30_000);
    assert.equal(open().length, 0);
    assert.equal(directory.load().channelsOpen, 0);

    const again = directory.image('node-a', digest, { fresh: true });
    await clock.advance(5);
    assert.equal(channels.length, 2);
    lists()[1]?.answer.resolve([image(digest)]);
    assert.equal((await again)?.digest, digest);
  });

  it('keeps at most maxOpenChannels open, closing the least recently used idle one', async () => {
    const nodes = ['node-a', 'node-b', 'node-c'];
    const { clock, directory, channels, open, lists } = setup(nodes, { maxOpenChannels: 2 });
    for (const [i, node] of nodes.entries()) {
      const answer = directory.image(node, digest);
      await clock.advance(5);
      lists()[i]?.answer.resolve([]);
      await answer;
    }
    assert.deepEqual(
      open().map((c) => c.node),
      ['node-b', 'node-c'],
    );
    assert.equal(channels[0]?.closed, true);
  });

  it('never closes a channel while a long call runs on it, and reopens one closed under a kept client', async () => {
    const { clock, directory, channels, open, lists } = setup(['node-a', 'node-b'], {
      maxOpenChannels: 1,
      idleCloseMs: 1_000,
    });
    const client = directory.client('node-a');
    assert.ok(client);
    const importing = client.import({ digest, sourceAddress: 'x', sourceNode: 'node-b', token: 't' });
    await settle();

    // Over the cap and idle for long: the channel to node-a runs an import, so only node-b's may close.
    const answer = directory.image('node-b', digest);
    await clock.advance(5);
    lists()[0]?.answer.resolve([]);
    await answer;
    await clock.advance(10_000);
    assert.deepEqual(
      open().map((c) => c.node),
      ['node-a'],
    );
    channels[0]?.imports[0]?.resolve({} as ImportResponse);
    await importing;
    await clock.advance(10_000);
    assert.equal(open().length, 0);

    // The client kept by the caller still works: its next call opens a new channel.
    const second = client.import({ digest, sourceAddress: 'x', sourceNode: 'node-b', token: 't' });
    await settle();
    assert.equal(open().length, 1);
    open()[0]?.imports[0]?.resolve({} as ImportResponse);
    await second;
  });

  it('closes the channel to an agent that moved once its call ends', async () => {
    const { clock, directory, channels, leases, source } = setup(['node-a']);
    const client = directory.client('node-a');
    assert.ok(client);
    const importing = client.import({ digest, sourceAddress: 'x', sourceNode: 'node-b', token: 't' });
    await settle();
    leases[0] = lease('node-a', clock, '10.0.9.9:7443');
    source.revision++;
    const answer = directory.image('node-a', digest);
    await clock.advance(5);
    assert.equal(channels.length, 2);
    assert.equal(channels[0]?.closed, false);
    assert.equal(directory.load().channelsOpen, 2);
    channels[0]?.imports[0]?.resolve({} as ImportResponse);
    await importing;
    assert.equal(channels[0]?.closed, true);
    channels[1]?.lists[0]?.answer.resolve([]);
    await answer;
    assert.equal(directory.load().channelsOpen, 1);
  });
});

describe('agent directory: a renewed controller certificate', () => {
  it('reaches agents on new channels; a channel with a call running keeps the old one until the call ends', async () => {
    const { clock, directory, channels, tls, lists } = setup(['node-a']);
    const client = directory.client('node-a');
    assert.ok(client);
    const importing = client.import({ digest, sourceAddress: 'x', sourceNode: 'node-b', token: 't' });
    await settle();
    tls.replace({ ca: Buffer.from('ca'), cert: Buffer.from('renewed'), key: Buffer.from('key') });
    const answer = directory.image('node-a', digest);
    await clock.advance(5);
    assert.equal(channels.length, 2, 'a new channel for the renewed certificate');
    assert.equal(channels[1]?.tls.cert.toString(), 'renewed');
    assert.equal(channels[0]?.closed, false, 'the running import keeps its channel');
    lists()[0]?.answer.resolve([]);
    await answer;
    channels[0]?.imports[0]?.resolve({} as ImportResponse);
    await importing;
    assert.equal(channels[0]?.closed, true, 'and it closes when the import ends');
  });
});

describe('agent directory: shared rounds of questions', () => {
  it('concurrent callers of one round share it; a later caller runs it again; a failure is shared, then dropped', async () => {
    const { directory } = setup([]);
    let runs = 0;
    let finish: (v: string) => void = () => undefined;
    const round = () => {
      runs++;
      return new Promise<string>((resolve) => (finish = resolve));
    };
    const a = directory.fanOut('holders|x', round);
    const b = directory.fanOut('holders|x', round);
    const other = directory.fanOut('holders|y', async () => 'y');
    assert.equal(runs, 1, 'one run for both callers of the same round');
    finish('answer');
    assert.deepEqual(await Promise.all([a, b, other]), ['answer', 'answer', 'y']);
    const later = directory.fanOut('holders|x', round);
    assert.equal(runs, 2, 'a settled round is not reused');
    finish('second');
    assert.equal(await later, 'second');

    const failing = () => Promise.reject(new Error('agents down'));
    const f1 = directory.fanOut('holders|z', failing);
    const f2 = directory.fanOut('holders|z', async () => 'not run');
    await assert.rejects(f1, /agents down/);
    await assert.rejects(f2, /agents down/);
    assert.equal(await directory.fanOut('holders|z', async () => 'after'), 'after');
  });

  it('a round asks each node once, takes fresh cached answers, caches new ones, and settles with every node', async () => {
    const { clock, directory, lists } = setup(['node-a', 'node-b', 'node-c']);
    const cached = directory.image('node-a', digest);
    await clock.advance(5);
    lists()[0]?.answer.resolve([image(digest)]);
    await cached;

    const round = directory.imageEverywhere(['node-a', 'node-b', 'node-c', 'node-b'], digest);
    await clock.advance(5);
    assert.equal(lists().length, 3, 'node-a answered from the cache; node-b asked once though named twice');
    let settled = false;
    void round.then(() => (settled = true));
    lists()[1]?.answer.resolve([image(digest)]);
    await settle();
    assert.equal(settled, false, 'waits for node-c');
    lists()[2]?.answer.reject(new Error('connection reset'));
    const { answers, failed } = await round;
    assert.deepEqual([...answers.keys()].sort(), ['node-a', 'node-b']);
    assert.equal(answers.get('node-b')?.digest, digest);
    assert.deepEqual([...failed.keys()], ['node-c']);
    assert.match(String(failed.get('node-c')), /connection reset/);

    // node-b's answer is cached like image()'s; node-c's failure is not.
    assert.equal((await directory.image('node-b', digest))?.digest, digest);
    const again = directory.imageEverywhere(['node-b', 'node-c'], digest);
    await clock.advance(5);
    assert.equal(lists().length, 4, 'only node-c asked again');
    lists()[3]?.answer.resolve([]);
    assert.deepEqual(
      [...(await again).answers.entries()].map(([n, a]) => [n, a?.digest]),
      [
        ['node-b', digest],
        ['node-c', undefined],
      ],
    );
    assert.deepEqual(await directory.imageEverywhere([], digest), { answers: new Map(), failed: new Map() });
  });

  it('forgets answers once they expire, without waiting for the cache to fill or another question', async () => {
    const { clock, directory, lists } = setup(['node-a']);
    const first = directory.imageEverywhere(['node-a'], digest);
    await clock.advance(5);
    lists()[0]?.answer.resolve([image(digest)]);
    await first;
    assert.equal(directory.cachedAnswers, 1);
    await clock.advance(2_000);
    const next = directory.imageEverywhere(['node-a'], other);
    await clock.advance(5);
    lists()[1]?.answer.resolve([]);
    await next;
    assert.equal(directory.cachedAnswers, 2);
    // No question after the burst: the answers go all the same, each once it has expired.
    await clock.advance(3_000);
    assert.equal(directory.cachedAnswers, 1, 'the first answer expired and went');
    await clock.advance(5_000);
    assert.equal(directory.cachedAnswers, 0, 'then the second');
  });
});
