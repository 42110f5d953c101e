// The node agent: serves the agent API over mTLS beside containerd's socket (server.ts), moves images node to node
// (transfer.ts), and reports the node's images (images.ts).
export { agentVersion, startAgentServer } from './server.ts';
export type { AgentServer, AgentServerOptions } from './server.ts';
export { createAgentMetrics } from './metrics.ts';
export type { AgentMetrics } from './metrics.ts';
export { hostPlatform, normalizePlatform, planImage, platformRank, selectManifest } from './oci.ts';
export type { ImagePlan, OciDescriptor, Platform, PlannedBlob } from './oci.ts';
export { importLeaseId, ingestRef, runImport } from './transfer.ts';
export type { BlobPeer, ImportProgress, ImportSpec } from './transfer.ts';
