import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Node } from '@kubernetes/client-node';
import {
  digestFromNodeImages,
  nodePlatform,
  nodesListingDigest,
  repositoryOf,
} from '../../../src/controller/pod/node-images.ts';
import { digest } from './factories.ts';

const other = `sha256:${'9'.repeat(64)}`;
const node = (name: string, images: string[][], labels: Record<string, string> = {}): V1Node => ({
  metadata: { name, labels },
  status: { images: images.map((names) => ({ names, sizeBytes: 1 })) },
});

describe('node image lists', () => {
  const nodes = [
    node('node-a', [[`docker.io/library/nginx@${digest}`, 'docker.io/library/nginx:1.25']]),
    node('node-b', [[`registry.example.com/app@${other}`, 'registry.example.com/app:2']]),
  ];

  it('maps a tag to its digest, normalising short names', () => {
    assert.equal(digestFromNodeImages(nodes, 'nginx:1.25'), digest);
    assert.equal(digestFromNodeImages(nodes, 'registry.example.com/app:2'), other);
  });

  it('returns the pinned digest of a digest reference as is', () => {
    assert.equal(digestFromNodeImages([], `nginx@${digest}`), digest);
  });

  it('knows nothing of an unlisted tag or a malformed reference', () => {
    assert.equal(digestFromNodeImages(nodes, 'nginx:1.26'), undefined);
    assert.equal(digestFromNodeImages(nodes, 'Bad Ref'), undefined);
  });

  it('refuses to guess when nodes disagree about a tag', () => {
    const split = [...nodes, node('node-c', [[`docker.io/library/nginx@${other}`, 'docker.io/library/nginx:1.25']])];
    assert.equal(digestFromNodeImages(split, 'nginx:1.25'), undefined);
  });

  it('lists the nodes naming repo@digest', () => {
    assert.deepEqual(nodesListingDigest(nodes, 'docker.io/library/nginx', digest), ['node-a']);
    assert.deepEqual(nodesListingDigest(nodes, 'docker.io/library/nginx', other), []);
  });

  it('normalises repositories and reads platforms', () => {
    assert.equal(repositoryOf('nginx:1'), 'docker.io/library/nginx');
    assert.equal(repositoryOf('bad ref!'), undefined);
    assert.equal(
      nodePlatform(node('n', [], { 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'arm64' })),
      'linux/arm64',
    );
    assert.equal(nodePlatform(node('n', [])), 'linux/amd64');
  });
});
