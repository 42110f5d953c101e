// tote's OCI registry client: reference parsing, credentials, tag resolution and digest-preserving push.
// Other layers import from here only.
export { Authenticator, parseChallenges, repositoryScope } from './auth.ts';
export type { AuthenticatorOptions, AuthTarget, Challenge } from './auth.ts';
export { RegistryClient } from './client.ts';
export type {
  BlobSource,
  ImageSource,
  PushOptions,
  PushProgress,
  PushResult,
  RegistryClientOptions,
  ResolvedManifest,
  ResolveOptions,
  RetryOptions,
} from './client.ts';
export {
  credentialsFromDockerConfig,
  credentialsFromSecret,
  dockerCfgSecretType,
  dockerConfigJsonSecretType,
  staticCredentials,
} from './credentials.ts';
export type { Credential, CredentialLookup, DockerAuthEntry, DockerConfigJson, SecretLike } from './credentials.ts';
export { digestOf } from './digest-stream.ts';
export { RegistryError } from './errors.ts';
export type { OciErrorEntry } from './errors.ts';
export type { TransportOptions } from './http.ts';
export {
  isForeignLayer,
  isIndexMediaType,
  isManifestMediaType,
  manifestAccept,
  MediaTypes,
  parseManifest,
} from './media-types.ts';
export type { Descriptor, ParsedManifest } from './media-types.ts';
export { RegistryMetrics } from './metrics.ts';
export type { BlobOutcome } from './metrics.ts';
export {
  defaultDomain,
  defaultTag,
  familiarName,
  maxRepositoryNameLength,
  parseDigest,
  parseReference,
  recordNameFor,
  withIdentifiers,
} from './reference.ts';
export type { ImageReference } from './reference.ts';
