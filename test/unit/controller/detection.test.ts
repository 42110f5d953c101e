import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { controllerOwner, detectStuckContainers, digestFromPod } from '../../../src/controller/pod/detection.ts';
import { digest, pod } from './factories.ts';

const missingLayer = `failed to create containerd container: error unpacking image: failed to extract layer sha256:${'1'.repeat(64)}: failed to get reader from content store: content digest ${digest}: not found`;
const missingConfig = `failed to create containerd container: failed to resolve rootfs: content digest ${digest}: not found`;

describe('detectStuckContainers', () => {
  const cases: { name: string; input: Parameters<typeof pod>[0]; reasons: string[]; missing?: string }[] = [
    {
      name: 'ErrImagePull',
      input: { waiting: { reason: 'ErrImagePull', message: 'not found' } },
      reasons: ['ErrImagePull'],
    },
    { name: 'ImagePullBackOff', input: { waiting: { reason: 'ImagePullBackOff' } }, reasons: ['ImagePullBackOff'] },
    {
      name: 'CreateContainerError, missing layer',
      input: { waiting: { reason: 'CreateContainerError', message: missingLayer } },
      reasons: ['CreateContainerError'],
      missing: digest,
    },
    {
      name: 'CreateContainerError, missing config',
      input: { waiting: { reason: 'CreateContainerError', message: missingConfig } },
      reasons: ['CreateContainerError'],
      missing: digest,
    },
    {
      name: 'CreateContainerError for another cause',
      input: { waiting: { reason: 'CreateContainerError', message: 'exec: "nope": not found in $PATH' } },
      reasons: [],
    },
    {
      name: 'an init container',
      input: { init: true, waiting: { reason: 'ErrImagePull' } },
      reasons: ['ErrImagePull'],
    },
    { name: 'a running pod', input: {}, reasons: [] },
    { name: 'ContainerCreating', input: { waiting: { reason: 'ContainerCreating' } }, reasons: [] },
    { name: 'kube-system', input: { namespace: 'kube-system', waiting: { reason: 'ErrImagePull' } }, reasons: [] },
    {
      name: 'kube-node-lease',
      input: { namespace: 'kube-node-lease', waiting: { reason: 'ErrImagePull' } },
      reasons: [],
    },
    { name: 'a terminating pod', input: { deleting: true, waiting: { reason: 'ErrImagePull' } }, reasons: [] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const stuck = detectStuckContainers(pod(c.input));
      assert.deepEqual(
        stuck.map((s) => s.reason),
        c.reasons,
      );
      if (c.missing) assert.equal(stuck[0]?.missingDigest, c.missing);
      if (stuck[0]) assert.equal(stuck[0].image, 'registry.example.com/team/app:1.4');
      if (c.input?.init) assert.equal(stuck[0]?.init, true);
    });
  }
});

describe('controllerOwner', () => {
  it('finds the controlling owner', () => assert.equal(controllerOwner(pod())?.kind, 'ReplicaSet'));
  it('is undefined for a bare pod', () => assert.equal(controllerOwner(pod({ owner: false })), undefined));
});

describe('digestFromPod', () => {
  it('reads a digest-pinned image', () => {
    assert.equal(digestFromPod(pod(), 'app', `registry.example.com/app@${digest}`), digest);
  });
  it('reads the imageID the kubelet recorded', () => {
    assert.equal(
      digestFromPod(
        pod({ imageID: `registry.example.com/team/app@${digest}` }),
        'app',
        'registry.example.com/team/app:1.4',
      ),
      digest,
    );
  });
  it('is undefined for a tag with no imageID', () => {
    assert.equal(digestFromPod(pod(), 'app', 'registry.example.com/team/app:1.4'), undefined);
  });
});
