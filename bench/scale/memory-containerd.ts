// An in-memory implementation of the agent's narrow containerd interface (src/containerd/types.ts), for the scale
// benchmark only: kwok's simulated nodes have no containerd, yet the controller must talk to a real agent server
// (tote.agent.v1 over mTLS, src/agent/server.ts) on every one of them. Blobs, ingests, image records and leases live
// in Maps; commits check size and sha256 like containerd does. No garbage collection: nothing is ever released, which
// does not matter for one benchmark run with small images.
//
// Concurrency: everything runs on the event loop; a writer belongs to one caller at a time (as the interface says).
import { createHash } from 'node:crypto';
import { ToteError } from '../../src/api/errors.ts';
import type {
  CallOptions,
  ContentInfo,
  ContentStore,
  ContentWriter,
  Containerd,
  ImageRecord,
  ImageRecordInput,
  ImageStore,
  IngestStatus,
  Lease,
  LeaseManager,
  LeaseResource,
  WriterOptions,
} from '../../src/containerd/types.ts';

const piece = 1 << 20;
const sha256 = (data: Uint8Array) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

interface StoredBlob {
  data: Buffer;
  labels: Record<string, string>;
  createdAt: Date;
}

interface Ingest {
  ref: string;
  chunks: Buffer[];
  offset: number;
  total: number;
  expected: string;
  startedAt: Date;
}

class MemoryContent implements ContentStore {
  readonly blobs = new Map<string, StoredBlob>();
  readonly ingests = new Map<string, Ingest>();

  async info(digest: string): Promise<ContentInfo | undefined> {
    const b = this.blobs.get(digest);
    return b ? { digest, size: b.data.length, createdAt: b.createdAt, labels: { ...b.labels } } : undefined;
  }

  async updateLabels(digest: string, labels: Readonly<Record<string, string>>): Promise<ContentInfo> {
    const b = this.blobs.get(digest);
    if (!b) throw new ToteError('not-found', 'BlobNotFound', `content ${digest}: not found`);
    for (const [k, v] of Object.entries(labels)) {
      if (v === '') delete b.labels[k];
      else b.labels[k] = v;
    }
    return (await this.info(digest))!;
  }

  async list(): Promise<ContentInfo[]> {
    return Promise.all([...this.blobs.keys()].map(async (d) => (await this.info(d))!));
  }

  async delete(digest: string): Promise<void> {
    this.blobs.delete(digest);
  }

  async *read(digest: string, offset = 0, options?: CallOptions): AsyncIterable<Uint8Array> {
    const b = this.blobs.get(digest);
    if (!b) throw new ToteError('not-found', 'BlobNotFound', `content digest ${digest}: not found`);
    for (let at = offset; at < b.data.length; at += piece) {
      if (options?.signal?.aborted) throw new ToteError('transient', 'Cancelled', 'read cancelled');
      yield b.data.subarray(at, Math.min(b.data.length, at + piece));
    }
  }

  async readAll(digest: string, maxBytes: number): Promise<Buffer> {
    const b = this.blobs.get(digest);
    if (!b) throw new ToteError('not-found', 'BlobNotFound', `content digest ${digest}: not found`);
    if (b.data.length > maxBytes)
      throw new ToteError('terminal', 'TooLarge', `${digest} is ${b.data.length} bytes, more than ${maxBytes}`);
    return b.data;
  }

  async ingestStatus(ref: string): Promise<IngestStatus | undefined> {
    const i = this.ingests.get(ref);
    return i ? { ref, offset: i.offset, total: i.total, expected: i.expected, startedAt: i.startedAt } : undefined;
  }

  async listIngests(): Promise<IngestStatus[]> {
    return Promise.all([...this.ingests.keys()].map(async (r) => (await this.ingestStatus(r))!));
  }

  async abortIngest(ref: string): Promise<void> {
    this.ingests.delete(ref);
  }

  async openWriter(ref: string, options: WriterOptions): Promise<ContentWriter> {
    if (this.blobs.has(options.expected))
      throw new ToteError('already-exists', 'AlreadyExists', `content ${options.expected}: already exists`);
    let ingest = this.ingests.get(ref);
    if (!ingest) {
      ingest = { ref, chunks: [], offset: 0, total: options.total, expected: options.expected, startedAt: new Date() };
      this.ingests.set(ref, ingest);
    }
    const blobs = this.blobs;
    const ingests = this.ingests;
    const current = ingest;
    return {
      ref,
      get offset() {
        return current.offset;
      },
      async write(chunk: Uint8Array) {
        if (current.offset + chunk.length > current.total)
          throw new ToteError('terminal', 'TooLong', `write past the announced size ${current.total} of ${ref}`);
        current.chunks.push(Buffer.from(chunk));
        current.offset += chunk.length;
      },
      async flush() {},
      async commit(labels = {}) {
        const data = Buffer.concat(current.chunks);
        if (data.length !== current.total || sha256(data) !== current.expected) {
          throw new ToteError(
            'integrity',
            'DigestMismatch',
            `unexpected commit digest ${sha256(data)} (size ${data.length}), expected ${current.expected} (size ${current.total})`,
          );
        }
        ingests.delete(ref);
        if (blobs.has(current.expected)) return 'exists';
        blobs.set(current.expected, { data, labels: { ...labels }, createdAt: new Date() });
        return 'committed';
      },
      close() {},
    };
  }

  /** Seeds a committed blob directly (benchmark setup). */
  put(data: Buffer, labels: Record<string, string> = {}): string {
    const digest = sha256(data);
    this.blobs.set(digest, { data, labels, createdAt: new Date() });
    return digest;
  }
}

class MemoryImages implements ImageStore {
  readonly records = new Map<string, ImageRecord>();

  async get(name: string): Promise<ImageRecord | undefined> {
    return this.records.get(name);
  }

  /** Understands the filters the agent uses: `name==…` and `target.digest==…`, ORed as containerd does. */
  async list(filters: readonly string[] = []): Promise<ImageRecord[]> {
    const all = [...this.records.values()];
    if (filters.length === 0) return all;
    return all.filter((r) =>
      filters.some((f) => {
        const [field, value] = f.split('==');
        if (field === 'name') return r.name === value;
        if (field === 'target.digest') return r.target.digest === value;
        throw new ToteError('terminal', 'UnsupportedFilter', `memory containerd does not understand filter ${f}`);
      }),
    );
  }

  async create(image: ImageRecordInput): Promise<ImageRecord> {
    if (this.records.has(image.name))
      throw new ToteError('already-exists', 'AlreadyExists', `image ${image.name}: already exists`);
    const now = new Date();
    const record = {
      name: image.name,
      target: image.target,
      labels: { ...image.labels },
      createdAt: now,
      updatedAt: now,
    };
    this.records.set(image.name, record);
    return record;
  }

  async update(image: ImageRecordInput, fields: readonly string[]): Promise<ImageRecord> {
    const old = this.records.get(image.name);
    if (!old) throw new ToteError('not-found', 'ImageNotFound', `image ${image.name}: not found`);
    const all = fields.length === 0;
    const labels = { ...old.labels };
    if (all || fields.includes('labels')) {
      for (const k of Object.keys(labels)) delete labels[k];
      Object.assign(labels, image.labels);
    }
    for (const f of fields.filter((f) => f.startsWith('labels.'))) {
      const k = f.slice('labels.'.length);
      const v = image.labels?.[k];
      if (v === undefined) delete labels[k];
      else labels[k] = v;
    }
    const record = {
      ...old,
      target: all || fields.includes('target') ? image.target : old.target,
      labels,
      updatedAt: new Date(),
    };
    this.records.set(image.name, record);
    return record;
  }

  async delete(name: string): Promise<void> {
    this.records.delete(name);
  }
}

class MemoryLeases implements LeaseManager {
  readonly leases = new Map<string, { lease: Lease; resources: LeaseResource[] }>();

  async create(id: string, expiresAt: Date, labels: Readonly<Record<string, string>> = {}): Promise<Lease> {
    if (this.leases.has(id)) throw new ToteError('already-exists', 'AlreadyExists', `lease ${id}: already exists`);
    const lease = {
      id,
      labels: { ...labels, 'containerd.io/gc.expire': expiresAt.toISOString() },
      createdAt: new Date(),
    };
    this.leases.set(id, { lease, resources: [] });
    return lease;
  }

  async delete(id: string): Promise<void> {
    this.leases.delete(id);
  }

  async list(): Promise<Lease[]> {
    return [...this.leases.values()].map((l) => l.lease);
  }

  async addResource(id: string, resource: LeaseResource): Promise<void> {
    const l = this.leases.get(id);
    if (!l) throw new ToteError('not-found', 'LeaseNotFound', `lease ${id}: not found`);
    l.resources.push(resource);
  }

  async listResources(id: string): Promise<LeaseResource[]> {
    return [...(this.leases.get(id)?.resources ?? [])];
  }
}

export class MemoryContainerd implements Containerd {
  readonly namespace = 'k8s.io';
  readonly content = new MemoryContent();
  readonly images = new MemoryImages();
  readonly leases = new MemoryLeases();
  /** No CRI plugin here, as on a containerd started without it: imports do not wait for CRI's lookup. */
  readonly cri = {
    imageId: async (): Promise<string | undefined> => {
      throw new ToteError('terminal', 'ContainerdUnimplemented', 'the in-memory containerd has no CRI service');
    },
  };

  async version() {
    return { version: 'memory (bench/scale)', revision: '' };
  }

  async namespaces() {
    return [this.namespace];
  }

  close(): void {}
}
