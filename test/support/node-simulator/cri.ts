// A promise-shaped client for the few CRI calls the node simulator makes, over one node's containerd socket.
// Every call carries a deadline; errors are grpc-js ServiceErrors, rendered the way the kubelet's Go client prints
// them (`rpc error: code = NotFound desc = …`) by `criErrorMessage`.
import { Metadata, credentials, status as grpcStatus } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import {
  ImageServiceClient,
  ImageStatusRequest,
  ListImagesRequest,
  PullImageRequest,
  RemoveImageRequest,
  RuntimeServiceClient,
  VersionRequest,
} from '../../../generated/proto/cri/runtime/v1/api.ts';
import type { Image, PodSandboxConfig } from '../../../generated/proto/cri/runtime/v1/api.ts';

const deadline = (ms: number) => ({ deadline: new Date(Date.now() + ms) });

export class CriClient {
  readonly socket: string;
  readonly #images: ImageServiceClient;
  readonly #runtime: RuntimeServiceClient;

  constructor(socket: string) {
    this.socket = socket;
    const options = { 'grpc.max_receive_message_length': 64 * 1024 * 1024 };
    this.#images = new ImageServiceClient(`unix://${socket}`, credentials.createInsecure(), options);
    this.#runtime = new RuntimeServiceClient(`unix://${socket}`, credentials.createInsecure(), options);
  }

  version(): Promise<{ runtimeName: string; runtimeVersion: string; runtimeApiVersion: string }> {
    return new Promise((resolve, reject) => {
      this.#runtime.version(
        VersionRequest.fromPartial({ version: 'v1' }),
        new Metadata(),
        deadline(5_000),
        (err, res) => (err ? reject(err) : resolve(res)),
      );
    });
  }

  listImages(): Promise<Image[]> {
    return new Promise((resolve, reject) => {
      this.#images.listImages(ListImagesRequest.fromPartial({}), new Metadata(), deadline(10_000), (err, res) =>
        err ? reject(err) : resolve(res.images),
      );
    });
  }

  /** The image as CRI resolves `ref` (tag, digest or id), or undefined when this node does not have it. */
  imageStatus(ref: string): Promise<Image | undefined> {
    return new Promise((resolve, reject) => {
      this.#images.imageStatus(
        ImageStatusRequest.fromPartial({ image: { image: ref } }),
        new Metadata(),
        deadline(10_000),
        (err, res) => (err ? reject(err) : resolve(res.image)),
      );
    });
  }

  /** Pulls like the kubelet does; resolves to the image id (`sha256:<config digest>`). */
  pullImage(ref: string, sandbox?: PodSandboxConfig, timeoutMs = 10 * 60_000): Promise<string> {
    return new Promise((resolve, reject) => {
      this.#images.pullImage(
        PullImageRequest.fromPartial({ image: { image: ref }, sandboxConfig: sandbox }),
        new Metadata(),
        deadline(timeoutMs),
        (err, res) => (err ? reject(err) : resolve(res.imageRef)),
      );
    });
  }

  removeImage(ref: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#images.removeImage(
        RemoveImageRequest.fromPartial({ image: { image: ref } }),
        new Metadata(),
        deadline(30_000),
        (err) => (err ? reject(err) : resolve()),
      );
    });
  }

  close(): void {
    this.#images.close();
    this.#runtime.close();
  }
}

/** Go's names for gRPC codes, as grpc-go prints them. */
const codeNames: Record<number, string> = Object.fromEntries(
  Object.entries(grpcStatus)
    .filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => [
      v as number,
      k
        .toLowerCase()
        .split('_')
        .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
        .join(''),
    ]),
);
codeNames[grpcStatus.OK] = 'OK';

/** `err.Error()` of a grpc-go status error: what the kubelet puts into a container's waiting message. */
export function criErrorMessage(err: unknown): string {
  const e = err as Partial<ServiceError>;
  if (typeof e.code === 'number') return `rpc error: code = ${codeNames[e.code] ?? e.code} desc = ${e.details ?? ''}`;
  return String(err);
}

/** The gRPC status message alone (`s.Message()`), which the kubelet uses for CreateContainerError. */
export function criStatusMessage(err: unknown): string {
  const e = err as Partial<ServiceError>;
  return typeof e.code === 'number' ? (e.details ?? '') : String(err);
}
