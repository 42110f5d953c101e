// Publishing the image to a user's registry with hack/image/publish.sh (`make image-publish`), the offline builder:
// pushed to the local cluster's backup registry, which demands a password and TLS as a company registry would, tagged
// v<package.json version>, and the digest it prints is the one the registry serves. `latest` is refused.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { before, describe, it } from 'node:test';
import { ensureCluster, repoRoot } from '../../support/cluster.ts';
import type { ClusterEnv } from '../../support/cluster.ts';
import { tempDir } from '../../support/temp-dirs.ts';

const run = promisify(execFile);
const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };

describe('hack/image/publish.sh', () => {
  let env: ClusterEnv;
  let certDir: string;
  let publishEnv: NodeJS.ProcessEnv;

  before(async () => {
    env = await ensureCluster();
    certDir = tempDir('tote-publish-certs-');
    copyFileSync(env.caFile, join(certDir, 'ca.crt'));
    // Logged in as a person would be: skopeo login writes the credentials the push then uses.
    publishEnv = { ...process.env, REGISTRY_AUTH_FILE: join(certDir, 'auth.json'), TOTE_REGISTRY_CERT_DIR: certDir };
    const login = ['login', '--cert-dir', certDir, '-u', env.backupRegistryUser, '-p', env.backupRegistryPassword];
    await run('skopeo', [...login, env.backupRegistry], { env: publishEnv });
  });

  const publish = (repository: string, extra: Record<string, string> = {}) =>
    run(join(repoRoot, 'hack/image/publish.sh'), [repository], {
      env: { ...publishEnv, TOTE_IMAGE_BUILDER: 'offline', ...extra },
      timeout: 300_000,
    });

  it('pushes v<version> with the offline builder and prints the digest the registry serves', async () => {
    const repository = `${env.backupRegistry}/platform/tote`;
    const { stdout } = await publish(repository);
    const reference = stdout.trim();
    const match = new RegExp(`^${repository}:v${version}@(sha256:[a-f0-9]{64})$`).exec(reference);
    assert.ok(match, `printed ${reference}`);
    const inspected = await run('skopeo', ['inspect', '--cert-dir', certDir, `docker://${repository}:v${version}`], {
      env: publishEnv,
    });
    const image = JSON.parse(inspected.stdout) as { Digest: string };
    assert.equal(image.Digest, match[1]);
    const config = await run(
      'skopeo',
      ['inspect', '--config', '--cert-dir', certDir, `docker://${repository}@${match[1]}`],
      {
        env: publishEnv,
      },
    );
    assert.deepEqual((JSON.parse(config.stdout) as { config: { Entrypoint: string[] } }).config.Entrypoint, [
      '/nodejs/bin/node',
      '/app/dist/tote.mjs',
    ]);
  });

  it('refuses to push latest', async () => {
    await assert.rejects(
      publish(`${env.backupRegistry}/platform/tote`, { TOTE_IMAGE_TAG: 'latest' }),
      (err: { code?: number; stderr?: string }) => err.code === 2 && /not latest/.test(err.stderr ?? ''),
    );
  });
});
