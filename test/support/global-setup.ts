// node --test --test-global-setup=test/support/global-setup.ts: starts (or reuses) the local cluster once before any
// test file runs, so integration tests only read its environment, and applies this checkout's CRDs to it. The cluster
// is left running for the next run; `make cluster-down` stops it.
import { applyCrds, ensureCluster } from './cluster.ts';

export async function globalSetup(): Promise<void> {
  await applyCrds(await ensureCluster());
}
