// The narrow interface the agent uses to talk to containerd. Everything the agent does to a node's images goes through
// these four interfaces, so one conformance suite (test/integration/agent/containerd-conformance.test.ts) proves an
// implementation against each containerd generation.

/** An OCI descriptor as containerd stores it on an image record. */
export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly annotations?: Readonly<Record<string, string>>;
}

/** A committed blob in the content store. */
export interface ContentInfo {
  readonly digest: string;
  readonly size: number;
  readonly createdAt?: Date;
  readonly updatedAt?: Date;
  readonly labels: Readonly<Record<string, string>>;
}

/** An unfinished write (an "ingest"), kept by containerd across broken streams until committed or aborted. */
export interface IngestStatus {
  readonly ref: string;
  /** Bytes already written: the offset a resumed write continues from. */
  readonly offset: number;
  readonly total: number;
  readonly expected: string;
  readonly startedAt?: Date;
  readonly updatedAt?: Date;
}

/** An image record: a name pointing at a root descriptor (an index or a manifest). */
export interface ImageRecord {
  readonly name: string;
  readonly target: Descriptor;
  readonly labels: Readonly<Record<string, string>>;
  readonly createdAt?: Date;
  readonly updatedAt?: Date;
}

export interface Lease {
  readonly id: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly createdAt?: Date;
}

/** Per-call options. Every call has a deadline; these adjust it or tie the call to a lease or an abort signal. */
export interface CallOptions {
  /** Milliseconds until the call's deadline (defaults: 30 s for unary calls, see each streaming method). */
  readonly timeoutMs?: number;
  /** Cancels the call; the promise rejects with a transient ToteError. */
  readonly signal?: AbortSignal;
  /** Sends `containerd-lease`, so what the call creates is held by that lease. */
  readonly lease?: string;
}

export interface WriterOptions extends CallOptions {
  /** Total size of the blob; containerd refuses a commit of any other size. */
  readonly total: number;
  /** Expected digest; containerd refuses a commit whose bytes hash otherwise. */
  readonly expected: string;
}

/**
 * One open content ingest. Writes are pipelined (a few chunks in flight, each acknowledged by containerd in order), so
 * `write` resolves when the chunk is accepted into the window, not when it is on disk; `commit` waits for everything.
 * Concurrency: one caller at a time; do not call `write` again before the previous `write` resolved.
 */
export interface ContentWriter {
  readonly ref: string;
  /** Bytes in the ingest so far (after open: the offset to resume from). */
  readonly offset: number;
  /** Appends a chunk (≤ 1 MiB) at `offset`. */
  write(chunk: Uint8Array): Promise<void>;
  /** Waits until containerd acknowledged every chunk written so far (they are then in the ingest). */
  flush(): Promise<void>;
  /**
   * Commits the ingest under `expected`, storing `labels` on the new blob. Resolves `committed`, or `exists` when the
   * blob was already in the store (containerd then ignores `labels`: set them with `ContentStore.updateLabels`).
   * @throws ToteError `integrity` when containerd finds the size or digest wrong (the ingest is kept: abort it).
   */
  commit(labels?: Readonly<Record<string, string>>): Promise<'committed' | 'exists'>;
  /** Closes the stream, keeping the ingest for a later resume. Idempotent. */
  close(): void;
}

export interface ContentStore {
  /** The blob's info, or undefined when it is not in the store. */
  info(digest: string, options?: CallOptions): Promise<ContentInfo | undefined>;
  /** Sets (or, with an empty value, removes) the given labels only, leaving the others. */
  updateLabels(digest: string, labels: Readonly<Record<string, string>>, options?: CallOptions): Promise<ContentInfo>;
  list(filters?: readonly string[], options?: CallOptions): Promise<ContentInfo[]>;
  /** Deletes a blob; a missing blob is not an error. */
  delete(digest: string, options?: CallOptions): Promise<void>;
  /**
   * Streams the blob from `offset` in containerd's pieces (≤ 1 MiB). Does no digest check: hash what you read.
   * Default deadline 1 h (blobs can be large); pass `signal` to stop early.
   * @throws ToteError `not-found` when the blob is missing.
   */
  read(digest: string, offset?: number, options?: CallOptions): AsyncIterable<Uint8Array>;
  /** Reads a whole blob into memory; refuses blobs larger than `maxBytes` (manifests, configs, indexes only). */
  readAll(digest: string, maxBytes: number, options?: CallOptions): Promise<Buffer>;
  /** The ingest's status, or undefined when there is none. */
  ingestStatus(ref: string, options?: CallOptions): Promise<IngestStatus | undefined>;
  listIngests(filters?: readonly string[], options?: CallOptions): Promise<IngestStatus[]>;
  /** Drops an ingest; a missing ingest is not an error. */
  abortIngest(ref: string, options?: CallOptions): Promise<void>;
  /**
   * Opens (or resumes) the ingest `ref`. The stream's deadline defaults to 1 h.
   * @throws ToteError `already-exists` when the expected blob is already committed (nothing to write);
   *   `transient` when another writer holds the ref (retry later).
   */
  openWriter(ref: string, options: WriterOptions): Promise<ContentWriter>;
}

export interface ImageStore {
  /** The record, or undefined when there is none. */
  get(name: string, options?: CallOptions): Promise<ImageRecord | undefined>;
  /** Records matching any filter (containerd ORs them), e.g. `target.digest==sha256:…`. */
  list(filters?: readonly string[], options?: CallOptions): Promise<ImageRecord[]>;
  /** @throws ToteError `already-exists` when the name is taken. */
  create(image: ImageRecordInput, options?: CallOptions): Promise<ImageRecord>;
  /** Replaces the named fields (`target`, `labels`, `labels.<k>`); empty `fields` replaces everything. */
  update(image: ImageRecordInput, fields: readonly string[], options?: CallOptions): Promise<ImageRecord>;
  /** Deletes a record; `sync` waits for the garbage collection it triggers. A missing record is not an error. */
  delete(name: string, options?: CallOptions & { readonly sync?: boolean }): Promise<void>;
}

export interface ImageRecordInput {
  readonly name: string;
  readonly target: Descriptor;
  readonly labels?: Readonly<Record<string, string>>;
}

export interface LeaseManager {
  /**
   * Creates a lease that containerd's GC deletes by itself after `expiresAt` (label containerd.io/gc.expire), so a
   * crashed agent leaks nothing for long. @throws ToteError `already-exists` when the id is taken.
   */
  create(id: string, expiresAt: Date, labels?: Readonly<Record<string, string>>, options?: CallOptions): Promise<Lease>;
  /** Deletes the lease; `sync` waits for the garbage collection. A missing lease is not an error. */
  delete(id: string, options?: CallOptions & { readonly sync?: boolean }): Promise<void>;
  list(filters?: readonly string[], options?: CallOptions): Promise<Lease[]>;
  /** Makes the lease hold an existing resource (`content` + digest, `ingests` + ref). */
  addResource(id: string, resource: LeaseResource, options?: CallOptions): Promise<void>;
  listResources(id: string, options?: CallOptions): Promise<LeaseResource[]>;
}

export interface LeaseResource {
  readonly type: string;
  readonly id: string;
}

/**
 * containerd's CRI image service, as the kubelet sees it. CRI keeps its own index of image records, fed by containerd's
 * events, and answers the kubelet from it: a record written through the images API is known to the kubelet only once
 * CRI resolves it.
 */
export interface CriImages {
  /**
   * The image id (`sha256:` + config digest) that CRI's ImageStatus resolves `reference` to (a tag, `repo@digest`,
   * `repo:tag@digest` or an id), or undefined when CRI finds no such image. Fails with the reason
   * `ContainerdUnimplemented` when containerd runs without its CRI plugin.
   */
  imageId(reference: string, options?: CallOptions): Promise<string | undefined>;
}

/** A containerd daemon seen through one namespace. */
export interface Containerd {
  readonly namespace: string;
  readonly content: ContentStore;
  readonly images: ImageStore;
  readonly leases: LeaseManager;
  readonly cri: CriImages;
  version(options?: CallOptions): Promise<{ version: string; revision: string }>;
  namespaces(options?: CallOptions): Promise<string[]>;
  /** Closes the channel; pending calls fail. */
  close(): void;
}
