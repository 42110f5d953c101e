// The one state the agent's RPC handlers share, and the helpers every handler uses: who is calling, whether it may,
// how its errors are counted and answered.
//
// Concurrency: handlers run concurrently on Node's event loop; the only shared mutable state is `importing` and
// `running` (see import.ts), touched between awaits only.
import type { ServerUnaryCall, sendUnaryData } from '@grpc/grpc-js';
import { ToteError } from '../../api/errors.ts';
import type { ErrorKind } from '../../api/errors.ts';
import { describeIdentity, identityFromCertificate, toStatus } from '../../agentapi/index.ts';
import type { PeerIdentity } from '../../agentapi/index.ts';
import type { Containerd } from '../../containerd/index.ts';
import type { BlobServiceDeps } from '../blob-service.ts';
import type { ContentDir } from '../content-dir.ts';
import type { AgentMetrics } from '../metrics.ts';
import type { Platform } from '../oci.ts';
import type { BlobPeer } from '../transfer.ts';

export interface AgentState {
  /** This node's name, as in its certificate and in transfer tokens. */
  readonly nodeName: string;
  readonly containerd: Containerd;
  /** The platform this node runs: what it lists, plans and imports unless a call names another. */
  readonly platform: Platform;
  readonly metrics: AgentMetrics;
  /** Who may read which blob, and where the bytes come from (blob-service.ts); shared with the HTTP blob endpoint. */
  readonly blobs: BlobServiceDeps;
  readonly contentDir: ContentDir | undefined;
  /** Plans larger than this are refused unless an Import asks for less. */
  readonly maxImageBytes: number;
  /** Blobs fetched at once when an Import does not say. */
  readonly defaultParallelism: number;
  /** Lifetime of a transfer's lease if the agent dies mid-way. */
  readonly leaseTtlMs: number;
  readonly connectPeer: (address: string, node: string) => BlobPeer & { close(): void };
  /** Imports running, by image digest: a second Import of the same digest is refused until the first ends. */
  readonly importing: Map<string, AbortController>;
  /** Every running Import, so stopping the server cancels them. */
  readonly running: Set<AbortController>;
}

export const peerOf = (call: { getAuthContext(): { sslPeerCertificate?: unknown } }): PeerIdentity | undefined =>
  identityFromCertificate(call.getAuthContext().sslPeerCertificate as { subjectaltname?: string } | undefined);

export function requireController(peer: PeerIdentity | undefined, operation: string): void {
  if (peer?.kind !== 'controller') {
    throw new ToteError(
      'unauthorized',
      'NotController',
      `${operation} is for the controller, not ${describeIdentity(peer)}`,
    );
  }
}

export function countError(state: AgentState, operation: string, err: unknown): void {
  const kind: ErrorKind = err instanceof ToteError ? err.kind : 'transient';
  state.metrics.errors.inc({ operation, kind });
}

/** A unary handler from an async function: its errors counted under `operation` and answered as gRPC statuses. */
export const unary =
  <Req, Res>(
    state: AgentState,
    operation: string,
    handler: (req: Req, peer: PeerIdentity | undefined) => Promise<Res>,
  ) =>
  (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    handler(call.request, peerOf(call)).then(
      (res) => callback(null, res),
      (err: unknown) => {
        countError(state, operation, err);
        callback(toStatus(err));
      },
    );
  };
