// The test harness API (see docs/cluster.md): cluster, namespaces, kubectl, waiting by watching, test images.
export * from './cluster.ts';
export * from './wait.ts';
export * from './images.ts';
