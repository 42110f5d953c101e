// The agent's view of containerd: narrow interfaces (types.ts), their gRPC implementation (client.ts) and the label
// vocabulary containerd and CRI give meaning to (labels.ts).
export * from './types.ts';
export { connectContainerd, maxMessageBytes } from './client.ts';
export type { ContainerdOptions } from './client.ts';
export { maxChunkBytes } from './writer.ts';
export { fromContainerdError } from './errors.ts';
export * from './labels.ts';
