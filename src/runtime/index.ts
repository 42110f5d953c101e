// The controller runtime: work queue, informers, leader election, Kubernetes client and errors, metrics, logging,
// health endpoints, configuration. Layer rule: imports only src/api and generated/.
export * from './api-wait.ts';
export * from './clock.ts';
export * from './concurrency-limiter.ts';
export * from './config/index.ts';
export * from './health-server.ts';
export * from './informer.ts';
export * from './kube.ts';
export * from './leader-election.ts';
export * from './logging.ts';
export * from './metrics.ts';
export * from './reconcile-loop.ts';
export * from './trim.ts';
export * from './workqueue.ts';
