// What the controller and the agents share on the wire: mTLS credentials and identities, transfer tokens, the error
// contract and a typed client of the agent API (with its generated message types).
export * from './blob-http.ts';
export * from './client.ts';
export * from './errors.ts';
export * from './identity.ts';
export * from './certificate-request.ts';
export * from './tls-files.ts';
export * from './tls.ts';
export * from './token.ts';
export type {
  Blob as PlanBlob,
  DescribePlanResponse,
  GetNodeInfoResponse,
  Image as AgentImage,
  ImportResponse,
  Platform,
  PushImageResponse,
  PinImageResponse,
  RemoveImageResponse,
  ResolveTagResponse,
} from '../../generated/proto/tote/agent/v1/agent.ts';
export { BlobRole, ImportPhase } from '../../generated/proto/tote/agent/v1/agent.ts';
